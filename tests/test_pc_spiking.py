"""Spiking predictive coding: paired value and error units, tied and gated feedback.

* the building blocks: ties follow their learning source in the engine; the value pair's currents
  stay exact negatives in [-1, 1]; the error pair's two prediction copies learn the same ``dW`` and
  stay exact negatives;
* the error currents estimate the rate network's errors (signed values, ``f'``-gated feedback) at
  the clamped equilibrium;
* it learns digits well above chance and close to the rate network's forward pass of its own weights;
* the graph (inference and learning) runs identically on Lava's floating_pt simulator, and
  ``hardware.check`` names what Loihi 2 cannot run.
"""
from dataclasses import replace

import numpy as np
import pytest
import torch

from networks.pc_spiking import SpikingPC, SpikingPCConfig, build_spiking, value_model
from neuro import Simulator
from neuro.datasets import load_digits

# The rule's eta: a power of two, which Loihi's learning engine holds exactly (2^-7 at the least:
# the trace impulse 2^-3 carries the rest of an effective 2^-10).
ETA = 2.0**-7
SMALL = SpikingPCConfig(hidden=(8,), steps=32, test_steps=32, batch=1, feedback=0.05, tau_error=5e-3,
                        trace_impulse=2.0**-3)


def small_inputs(n_inputs=16, label=1):
    data = load_digits()
    image = data.x_train[0][:n_inputs]
    return {"x0": image, "bias": np.ones(1), "y": np.eye(3)[label]}


def test_pairs_mirror_and_ties_follow_the_learned_predictions():
    net = build_spiking(16, 3, SMALL, rule_eta=ETA)
    sim = Simulator(net, dtype=torch.float64)
    before = sim.weights("W2p").clone()
    rec = sim.run(4 * SMALL.steps, small_inputs(),
                  monitors=["x1.i", "x1m.i", "x1.spikes", "x1m.spikes", "e1p.spikes", "e1n.spikes"])
    w2p, w2n = sim.weights("W2p"), sim.weights("W2n")
    assert (w2p - before).abs().max() > 1e-3  # it learned
    torch.testing.assert_close(w2n, -w2p, rtol=0, atol=0)  # the two copies stay exact negatives
    for half, w in (("p", w2p), ("n", w2n)):
        torch.testing.assert_close(sim.weights(f"e2{half}_to_x1"), -SMALL.feedback * w.T, rtol=1e-15, atol=0)
        torch.testing.assert_close(sim.weights(f"e2{half}_to_x1m"), SMALL.feedback * w.T, rtol=1e-15, atol=0)
        assert net.projections[f"e2{half}_to_x1"].gated and not net.projections[f"e1{half}_to_x1"].gated
    # The values are signed, bounded to [-1, 1], held by the pair as exact negatives; both halves
    # spike, and so do both halves of the errors.
    torch.testing.assert_close(rec["x1m.i"], -rec["x1.i"], rtol=0, atol=0)
    assert rec["x1.i"].min() < -0.05 and rec["x1.i"].max() > 0.05 and rec["x1.i"].abs().max() <= 1
    assert rec["x1.spikes"].sum() > 0 and rec["x1m.spikes"].sum() > 0
    assert rec["e1p.spikes"].sum() > 0 and rec["e1n.spikes"].sum() > 0
    with pytest.raises(ValueError, match="tied to 'W2p'"):
        sim.set_weights("e2p_to_x1", np.zeros((8, 3)))


def test_the_rule_learns_once_per_presentation_and_lowers_to_loihi():
    from hardware.loihi_rules import to_loihi_strings

    net = build_spiking(16, 3, SMALL, rule_eta=ETA)
    rule = net.projections["W1p"].rule
    assert rule.u_exponent == 5 and rule.t_epoch == 1  # u is 1 every 32 steps
    assert to_loihi_strings(rule) == {"dw": "-2^-7 * u5 * y2 * x1"}
    with pytest.raises(ValueError, match="power of two"):
        SpikingPCConfig(steps=48)
    sim = Simulator(net, dtype=torch.float64)
    rec = sim.run(2 * SMALL.steps, small_inputs(), monitors=["W1p.w"])
    w = rec["W1p.w"][:, 0]
    changed = [k + 1 for k in range(1, len(w)) if not torch.equal(w[k], w[k - 1])]
    assert changed == [SMALL.steps, 2 * SMALL.steps]


def test_error_currents_estimate_the_rate_networks_clamped_errors():
    """At the end of a presentation the error units' currents (their y2) are the errors of the rate
    network (values in [-1, 1], f = clip(., 0, 1), feedback from above gated by f') relaxed to
    equilibrium with the label clamped."""
    data = load_digits()
    cfg = SpikingPCConfig(hidden=(32,), steps=128, batch=16, tau_error=10e-3)
    net = build_spiking(64, 10, cfg)
    sim = Simulator(net, replicas=16, dtype=torch.float64)
    sim.learning = False
    x = torch.as_tensor(data.x_train[:16], dtype=torch.float64)
    y = torch.eye(10, dtype=torch.float64)[data.y_train[:16]]
    rec = sim.run(cfg.steps, {"x0": x, "bias": torch.ones(16, 1), "y": y}, monitors=["e1p.i", "e2p.i"])
    w1, w2 = -sim.weights("W1p") * cfg.rate, -sim.weights("W2p") * cfg.rate
    h = (x @ w1.T).clamp(-1, 1)
    for _ in range(300):
        gate = ((h > 0) & (h < 1)).to(h.dtype)
        h = (h + 0.1 * (-(h - x @ w1.T) + gate * ((y - h.clamp(0, 1) @ w2.T) @ w2))).clamp(-1, 1)
    gain = cfg.current_gain
    e1, e2 = rec["e1p.i"][-16:].mean(dim=0) / gain, rec["e2p.i"][-16:].mean(dim=0) / gain
    r1, r2 = h - x @ w1.T, y - h.clamp(0, 1) @ w2.T
    assert np.corrcoef(e2.ravel(), r2.ravel())[0, 1] > 0.99
    assert np.corrcoef(e1.ravel(), r1.ravel())[0, 1] > 0.9
    # Units whose prediction lies in (-1, 0) have (next to) no error: the gate keeps the top's feedback away.
    mu = x @ w1.T
    off, on = (mu > -0.9) & (mu < -0.1), (mu > 0.1) & (mu < 0.9)
    # Measured: 0.024 against 0.124 (what is left is the settling's residual); the same network with
    # the feedback's gated flags cleared: 0.137 against 0.122.
    assert e1[off].abs().mean() < 0.3 * e1[on].abs().mean()


def test_values_start_at_the_feed_forward_prediction():
    """``start="forward"``: the hidden values begin a presentation at ``clip(W1 x + b1, -1, 1)``, so with
    the top free the first layer's errors are small from the first step; started at 0 they are the
    whole prediction until the values have settled."""
    data = load_digits()
    x = data.x_test[:16]
    errors = {}
    for start in ("forward", "zero"):
        pc = SpikingPC(64, 10, SpikingPCConfig(hidden=(32,), start=start), dtype=torch.float64)
        (w1, b1), _ = pc.rate_weights()
        v = pc.forward_values(torch.as_tensor(x))["x1"]
        np.testing.assert_allclose(v.numpy(), np.clip(x @ w1.T + b1, -1, 1), rtol=1e-12, atol=1e-12)
        sim = pc.frozen(16)
        pc.start(sim, torch.as_tensor(x))
        torch.testing.assert_close(sim.state["x1m"]["i"], -sim.state["x1"]["i"], rtol=0, atol=0)
        rec = sim.run(32, {"x0": x, "bias": np.ones(1)}, monitors=["e1p.i", "x1.i"])
        errors[start] = rec["e1p.i"].abs().mean(dim=(1, 2)) / pc.cfg.current_gain
        if start == "forward":  # the values stay at their predictions
            np.testing.assert_allclose(rec["x1.i"][-1].numpy(), v.numpy(), atol=0.05)
    # Measured: mean |e1| over the first 32 steps 0.020 (forward; spike-count noise) against 0.17 (zero).
    assert errors["forward"].max() < 0.05 and errors["zero"][8:].mean() > 0.1, errors
    with pytest.raises(ValueError, match="start must be"):
        SpikingPCConfig(start="random")


def test_floors_keep_error_and_value_membranes_at_or_above_zero():
    data = load_digits()
    x, y = data.x_train[:8], np.eye(10)[data.y_train[:8]]
    errors, values = ("e1p.v", "e2n.v"), ("x1.v", "x1m.v")
    lows = {}
    for error_floor, value_floor in ((False, False), (True, False), (False, True)):
        cfg = SpikingPCConfig(hidden=(16,), error_floor=error_floor, value_floor=value_floor)
        sim = Simulator(build_spiking(64, 10, cfg), replicas=8, dtype=torch.float64)
        rec = sim.run(64, {"x0": x, "bias": np.ones(1), "y": y}, monitors=[*errors, *values])
        lows[error_floor, value_floor] = [min(float(rec[m].min()) for m in group) for group in (errors, values)]
    assert lows[False, False][0] < -0.01 and lows[False, False][1] < -0.01, lows  # both integrate negative currents
    assert lows[True, False][0] >= 0.0 and lows[True, False][1] < -0.01, lows
    assert lows[False, True][0] < -0.01 and lows[False, True][1] >= 0.0, lows


def test_one_sided_value_leak_keeps_the_pairs_mirrored():
    """``value_leak="positive"``: values decay only while positive, on both halves of a pair (``x1``
    while its current is positive, ``x1m`` while its current is negative), so the pair stays exact
    negatives; a negative value is held where the two-sided leak lets it drift towards 0."""
    data = load_digits()
    x, y = data.x_train[:8], np.eye(10)[data.y_train[:8]]
    held = {}
    for leak in ("both", "positive"):
        cfg = SpikingPCConfig(hidden=(16,), value_leak=leak, tau_value=0.05)
        net = build_spiking(64, 10, cfg)
        assert (net.populations["x1"].model.syn_leak, net.populations["x1m"].model.syn_leak) == (
            ("both", "both") if leak == "both" else ("positive", "negative"))
        sim = Simulator(net, replicas=8, dtype=torch.float64)
        rec = sim.run(64, {"x0": x, "bias": np.ones(1), "y": y}, monitors=["x1.i", "x1m.i"])
        torch.testing.assert_close(rec["x1m.i"], -rec["x1.i"], rtol=0, atol=0)
        # Where the values go in 20 steps without input: both halves of the pair.
        before = sim.state["x1"]["i"].clone()
        after = {}
        for pop in ("x1", "x1m"):
            state = {k: v.clone() for k, v in sim.state[pop].items()}
            for _ in range(20):
                net.populations[pop].model.step(torch.zeros_like(before), state, cfg.dt)
            after[pop] = state["i"]
        torch.testing.assert_close(after["x1m"], -after["x1"], rtol=0, atol=0)
        neg, pos = before < -0.01, before > 0.01
        assert neg.sum() > 5 and pos.sum() > 5
        held[leak] = (after["x1"][neg] / before[neg]).min().item()
        assert (after["x1"][pos] / before[pos]).max() < 0.7  # positives decay in both: (1 - 1/50)**20
    assert held["positive"] == 1.0 and held["both"] < 0.7, held
    with pytest.raises(ValueError, match="value_leak must be"):
        SpikingPCConfig(value_leak="negative")


def test_spiking_pc_learns_digits_and_its_energy_falls():
    data = load_digits()
    # 64 steps a sample: fast errors (5 ms) and feedback 0.05 settle the values in time (critically damped).
    cfg = SpikingPCConfig(hidden=(32,), epochs=3, eta=0.1, steps=64, test_steps=64, tau_error=5e-3, feedback=0.05)
    pc = SpikingPC(64, 10, cfg)
    n_test = 300
    untrained = pc.accuracy(data.x_test[:n_test], data.y_test[:n_test])
    pc.train(data.x_train, data.y_train)
    learned = pc.accuracy(data.x_test[:n_test], data.y_test[:n_test])
    forward = pc.rate_accuracy(data.x_test[:n_test], data.y_test[:n_test])
    # Measured: untrained 0.15, learned 0.75 after three epochs (seed 1: 0.74), the forward pass of the weights 0.76.
    assert untrained < 0.25 and learned > 0.65, (untrained, learned)
    assert learned > forward - 0.1, (learned, forward)  # the spike-count readout reads what was learned
    energy, rec = pc.clamped_run(data.x_test[:50], data.y_test[:50], monitors=["x1.spikes"])
    assert energy.shape == (cfg.steps,) and rec["x1.spikes"].shape == (cfg.steps, 50, 32)
    peak = int(np.argmax(energy))
    assert energy[0] < energy[peak] and energy[-1] < 0.8 * energy[peak]  # errors rise, then inference lowers them


def test_spiking_pc_graph_runs_identically_on_lava():
    pytest.importorskip("lava")
    from export.lava import run_lava

    net = build_spiking(16, 3, SMALL, rule_eta=ETA)
    pops = ["x1", "x1m", "e1p", "e1n", "e2p", "e2n"]
    monitors = [f"{p}.spikes" for p in pops] + ["x1.i", "x1m.i", "W1p.w", "W2p.w", "W2n.w", "B2p.w", "e2p_to_x1.w"]
    steps = 20 * SMALL.steps  # 20 learning epochs
    ours = Simulator(net, dtype=torch.float64).run(steps, small_inputs(), monitors=monitors)
    lava = run_lava(net, steps, small_inputs(), monitors=monitors)
    for p in pops:
        if p != "e2n":  # e2n stays silent here: the label is above its predictions (it learns from its current)
            assert lava[f"{p}.spikes"].sum() > 10, p
        np.testing.assert_array_equal(ours[f"{p}.spikes"].numpy(), lava[f"{p}.spikes"].numpy(), err_msg=p)
    for m in ("x1.i", "x1m.i"):
        np.testing.assert_allclose(ours[m].numpy(), lava[m].numpy(), rtol=1e-9, atol=1e-9, err_msg=m)
    for w in ("W1p", "W2p", "W2n", "B2p"):
        np.testing.assert_allclose(ours[f"{w}.w"].numpy(), lava[f"{w}.w"].numpy(), rtol=1e-5, atol=1e-9, err_msg=w)
    assert np.abs(lava["W2p.w"][-1] - lava["W2p.w"][0]).max() > 1e-2  # learning happened
    # The tied feedback follows the learned W2p^T. Lava's host rewrites it between epochs, after the
    # monitor has read the epoch's last step: there it shows the old copy one step longer.
    epoch_end = (np.arange(1, steps + 1) % SMALL.steps) == 0
    tied_ours, tied_lava = ours["e2p_to_x1.w"].numpy(), lava["e2p_to_x1.w"].numpy()
    np.testing.assert_allclose(tied_ours[~epoch_end], tied_lava[~epoch_end], rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(tied_lava[epoch_end], tied_ours[np.roll(epoch_end, -1)], rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(tied_lava[-2, 0], -SMALL.feedback * lava["W2p.w"][-2, 0].T, rtol=1e-12)


def test_check_names_what_loihi2_cannot_run(tmp_path, capsys):
    from hardware import check
    from neuro.cli import main
    from neuro.io import save

    net = build_spiking(784, 10, SpikingPCConfig(hidden=(256,), steps=128, trace_impulse=2.0**-3), rule_eta=ETA)
    report = check(net)
    assert not report.fits
    reasons = report.reasons
    ties = [r for r in reasons if "cannot read another group's weights" in r]
    assert sorted(r.split("'")[1] for r in ties) == ["e2n_to_x1", "e2n_to_x1m", "e2p_to_x1", "e2p_to_x1m"]
    assert all("every 128 steps" in r for r in ties)  # once per presented sample
    neurons = sorted((r.split("'")[1], kind) for r in reasons
                     for kind in ("saturates", "gated input", "subtracting", "floor", "decays only while") if kind in r)
    # The defaults: values leak on one side of 0 only (value_leak), error membranes are floored (error_floor).
    values = [(p, k) for p in ("x1", "x1m") for k in ("saturates", "gated input", "subtracting", "decays only while")]
    errors = [(e, k) for e in ("e1n", "e1p", "e2n", "e2p") for k in ("subtracting", "floor")]
    assert neurons == sorted(values + errors)
    assert all("custom (microcode) neuron program" in r for r in reasons if r not in ties)
    assert len(reasons) == len(ties) + len(neurons), reasons  # nothing else: the rule, the pairs and the sizes fit
    path = str(tmp_path / "spiking_pc.h5")
    save(path, Simulator(net))
    assert main(["check", "--target", "loihi2", path]) == 1
    out = capsys.readouterr().out
    assert f"DOES NOT FIT ({len(reasons)} reasons)" in out and "e2p_to_x1m" in out and "'e1p'" in out


def test_lava_fixed_point_refuses_what_only_floating_point_runs():
    pytest.importorskip("lava")
    from export.lava import LavaExportError, run_lava

    net = build_spiking(16, 3, SMALL, rule_eta=ETA)
    with pytest.raises(LavaExportError, match="'x1': its current saturates.*floating_pt"):
        run_lava(net, 10, small_inputs(), select_tag="fixed_pt")


def test_layer_eta_scales_each_layers_update():
    """``layer_eta=(1, 0.5)``: from the same start, the first batch moves the top layer's predictions half
    as far and the first layer's exactly as far as with one rate for all; a wrong count or a factor
    that is not positive is refused by name."""
    data = load_digits()
    x, y = data.x_train[:2, :16], data.y_train[:2] % 3
    steps = {}
    for factors in ((), (1.0, 0.5)):
        pc = SpikingPC(16, 3, replace(SMALL, epochs=1, batch=2, layer_eta=factors), dtype=torch.float64)
        before = {n: pc.sim.weights(n).clone() for n in pc.plastic}
        pc.train(x, y)
        steps[factors] = {n: pc.sim.weights(n) - before[n] for n in pc.plastic}
    one, half = steps[()], steps[(1.0, 0.5)]
    for n in ("W1p", "W1n", "B1p"):
        torch.testing.assert_close(half[n], one[n], rtol=0, atol=0)
    for n in ("W2p", "W2n", "B2n"):
        assert one[n].abs().max() > 0, n
        torch.testing.assert_close(half[n], 0.5 * one[n], rtol=1e-9, atol=1e-15)
    for bad in ((1.0,), (1.0, 0.5, 0.5), (1.0, 0.0), (1.0, -0.5)):
        with pytest.raises(ValueError, match="layer_eta"):
            replace(SMALL, layer_eta=bad)


def test_learning_rate_falls_linearly_to_eta_final():

    cfg = replace(SMALL, epochs=3, eta_final=0.25, batch=2)
    pc = SpikingPC(16, 3, cfg)
    seen = []
    original = pc.learn

    def spy(x, onehot):
        seen.append(float(pc.sim.params["W1p"]["eta"][0, 0, 0]))
        original(x, onehot)

    pc.learn = spy
    data = load_digits()
    pc.train(data.x_train[:4, :16], data.y_train[:4] % 3)
    base = cfg.rule_eta
    assert np.allclose(seen, [base, base, 0.625 * base, 0.625 * base, 0.25 * base, 0.25 * base], rtol=1e-6)
    with pytest.raises(ValueError, match="eta_final"):
        replace(SMALL, eta_final=0.0)


def test_tune_epochs_lower_the_rate_and_change_the_leak_for_the_last_epochs_only():
    """``tune_fraction=0.4`` of 3 epochs: the last epoch learns at ``tune_eta`` times the rate (on top of ``eta_final``'s
    fall) with the values leaking at ``tune_tau_value``; the simulator steps the graph's models afterwards."""
    cfg = replace(SMALL, epochs=3, eta_final=0.25, batch=2, tune_fraction=0.4, tune_eta=0.5, tune_tau_value=7.0)
    assert cfg.tune_epochs == 1 and replace(cfg, epochs=10, tune_fraction=0.3).tune_epochs == 3
    pc = SpikingPC(16, 3, cfg)
    seen = []
    original = pc.learn

    def spy(x, onehot):
        seen.append((float(pc.sim.params["W1p"]["eta"][0, 0, 0]), pc.sim.models["x1"].tau_syn,
                     pc.sim.models["x1m"].tau_syn, pc.sim.models["x1m"].gate_min))
        original(x, onehot)

    pc.learn = spy
    data = load_digits()
    pc.train(data.x_train[:4, :16], data.y_train[:4] % 3)
    base, tau = cfg.rule_eta, cfg.tau_value
    assert np.allclose([s[0] for s in seen], [base, base, 0.625 * base, 0.625 * base, 0.125 * base, 0.125 * base],
                       rtol=1e-6)
    assert [s[1:3] for s in seen] == [(tau, tau)] * 4 + [(7.0, 7.0)] * 2
    assert seen[-1][3] == value_model(replace(cfg, tau_value=7.0), mirror=True).gate_min < 0
    assert all(pc.sim.models[n] is pc.network.populations[n].model for n in ("x1", "x1m"))
    for bad in ({"tune_fraction": 1.5}, {"tune_fraction": -0.1}, {"tune_eta": 0.0},
                {"tune_tau_value": 0.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            replace(cfg, **bad)


def test_leak_free_steps_let_the_values_settle_as_without_the_leak():
    """``leak_free_steps=64``: the first 64 steps of a clamped presentation are those of the leaking
    network; in the last 64 the values move to where a network that never leaks holds them (more than
    halfway from the leaking network's, with a strong leak of 0.2 s); learning leaves the simulator
    stepping with the graph's leaking models again."""
    data = load_digits()
    x, y = data.x_train[:16], data.y_train[:16]
    values, nets = {}, {}
    for name, tau, free in (("leak", 0.2, 0), ("free", 0.2, 64), ("never", 1e9, 0)):
        pc = nets[name] = SpikingPC(64, 10, SpikingPCConfig(hidden=(16,), batch=16, tau_value=tau, leak_free_steps=free),
                       dtype=torch.float64)
        _, rec = pc.clamped_run(x, y, monitors=["x1.i", "x1m.i"])
        assert rec["x1.i"].shape == (128, 16, 16)
        torch.testing.assert_close(rec["x1m.i"], -rec["x1.i"], rtol=0, atol=0)  # the pair stays mirrored
        values[name] = rec["x1.i"]
    assert torch.equal(values["free"][:64], values["leak"][:64])
    gap = {k: (values[k][-1] - values["never"][-1]).norm().item() for k in ("leak", "free")}
    assert gap["leak"] > 0.2 and gap["free"] < 0.5 * gap["leak"], gap
    pc = nets["free"]
    pc.learn(torch.as_tensor(x), pc._onehot(y))
    assert all(pc.sim.models[n] is pc.network.populations[n].model for n in ("x1", "x1m"))
    for bad in (-1, 129, 1.5):
        with pytest.raises(ValueError, match="leak_free_steps must be an integer in \\[0, steps=128\\]"):
            SpikingPCConfig(leak_free_steps=bad)


def test_config_refuses_time_constants_not_longer_than_dt():
    """``current_gain = tau_error / dt - 1``: 0 at ``tau_error = dt`` (the rule's eta divides by it) and negative
    below (learning would unlearn); a value unit at ``tau_value <= dt`` keeps none of its current."""
    for name, tau, why in (("tau_error", 1e-3, "current gain tau_error / dt - 1 would be 0"),
                           ("tau_error", 5e-4, "would be -0.5"),
                           ("tau_value", 1e-3, r"keep 1 - dt / tau_value = 0 of its current"),
                           ("tune_tau_value", 1e-3, "replaces tau_value")):
        with pytest.raises(ValueError, match=rf"{name} \({tau:g} s\) must be longer than the time step dt "
                                             rf"\(0.001 s\): .*{why}"):
            SpikingPCConfig(**{name: tau})
    with pytest.raises(ValueError, match=r"tau_error \(0.002 s\) must be longer than the time step dt \(0.002 s\)"):
        SpikingPCConfig(tau_error=2e-3, dt=2e-3)
    assert SpikingPCConfig(tau_error=1.5e-3).current_gain > 0


def test_config_requires_true_ints_and_a_tuple_of_widths():
    for field, bad, message in (
        ("steps", 8.0, r"steps must be a positive integer, got 8.0 \(float\)"),
        ("epochs", 2.0, r"epochs must be a positive integer, got 2.0 \(float\)"),
        ("test_steps", 16.0, r"test_steps must be a positive integer, got 16.0 \(float\)"),
        ("batch", True, r"batch must be a positive integer, got True \(bool\)"),
        ("batch", 0, r"batch must be a positive integer, got 0 \(int\)"),
        ("seed", -1, r"seed must be a non-negative integer, got -1"),
        ("hidden", (8, 2.5), r"hidden\[1\] must be a positive integer, got 2.5 \(float\)"),
        ("hidden", (0,), r"hidden\[0\] must be a positive integer, got 0"),
    ):
        with pytest.raises(ValueError, match=message):
            SpikingPCConfig(**{field: bad})
    with pytest.raises(TypeError, match=r"hidden must be a tuple of layer widths, e.g. \(16,\) for one layer, got 16"):
        SpikingPCConfig(hidden=16)
    cfg = SpikingPCConfig(hidden=[8], steps=np.int64(32), epochs=np.int64(2))
    assert cfg.hidden == (8,) and type(cfg.steps) is int and cfg.steps.bit_length() == 6  # build_spiking uses it


def test_train_and_accuracy_refuse_bad_images_labels_and_too_few_images():
    cfg = SpikingPCConfig(hidden=(4,), steps=8, test_steps=8, batch=4, epochs=1)
    pc = SpikingPC(6, 3, cfg)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(8, 6)), np.arange(8) % 3
    before = pc.sim.weights("W1p").clone()
    x_nan = np.full_like(x, np.nan)
    for args, message in (
        ((x, y.astype(float)), "train: labels must be integer class indices, got dtype float64"),
        ((x, y[:5]), r"train: labels must have shape \(8,\), one per image, got \(5,\)"),
        ((x, y + 3), r"train: labels must lie in \[0, 3\) for 3 classes, got values from 3 to 5"),
        ((x[:, :5], y), r"train: images must have shape \(n, 6\), got \(8, 5\)"),
        ((x_nan, y), r"train: images contain NaN or infinite values \(48 of 48\)"),
        ((x[:3], y[:3]), r"train: 3 images are fewer than one batch \(cfg.batch=4\)"),
    ):
        with pytest.raises(ValueError, match=message):
            pc.train(*args)
    torch.testing.assert_close(pc.sim.weights("W1p"), before, rtol=0, atol=0)
    for method in (pc.accuracy, pc.rate_accuracy):
        name = method.__name__
        with pytest.raises(ValueError, match=rf"{name}: labels must have shape \(8,\), one per image, got \(8, 1\)"):
            method(x, y[:, None])
        with pytest.raises(ValueError, match=rf"{name}: labels must lie in \[0, 3\) for 3 classes, got values from 10"):
            method(x, y + 10)
        with pytest.raises(ValueError, match=rf"{name}: images contain NaN"):
            method(x_nan, y)
    with pytest.raises(ValueError, match="clamped_run: images contain NaN"):
        pc.clamped_run(x_nan[:2], y[:2])
    with pytest.raises(ValueError, match=r"clamped_run: labels must have shape \(2,\)"):
        pc.clamped_run(x[:2], y[:3])
    assert 0 <= pc.rate_accuracy(x, y) <= 1

"""Graph and neuron features predictive coding needs, tested on their own:

* ties: weights that follow another projection's (transposed, scaled), checked when built,
  kept by the engine after every learning epoch of the source and by ``set_weights``, saved and
  loaded with the model;
* a LIF whose current saturates (``i_min`` / ``i_max``), that gates an input (``gate_min`` /
  ``gate_max``, projections with ``gated``) and resets by subtraction (``subtract_reset``), in the
  engine, in model files and in Lava's floating-point simulator;
* the regular (deterministic) rate encoder.
"""
import math

import numpy as np
import pytest
import torch

from neuro import LIF, LearningRule, Network, RegularEncoder, Simulator, Tie, Trace, x1, y0
from neuro import y2 as y2_i
from neuro.io import describe, load, save
from neuro.neurons import model_from_data, model_to_data


def tied_net() -> Network:
    net = Network(dt=1e-3)
    net.input("a", 4, RegularEncoder(max_rate=500.0))
    net.population("b", 3, LIF(tau_mem=10e-3, v_th=0.2))
    rule = LearningRule(dw=0.01 * y0 * x1, traces={"x1": Trace(1.0, 20e-3)}, t_epoch=5)
    net.connect("a", "b", np.random.default_rng(0).uniform(0, 0.5, (3, 4)), rule=rule, name="ff")
    net.population("c", 4, LIF())
    net.tied("b", "c", "ff", transpose=True, scale=-2.0, name="back")
    return net


def test_ties_are_checked_when_built():
    net = tied_net()
    np.testing.assert_array_equal(net.projections["back"].weights, -2.0 * net.projections["ff"].weights.T)
    with pytest.raises(ValueError, match="unknown projection 'nope'"):
        net.connect("b", "c", np.zeros((4, 3)), name="x", tie=Tie("nope"))
    with pytest.raises(ValueError, match="itself tied"):
        net.tied("c", "b", "back", name="y")
    with pytest.raises(ValueError, match="cannot have a rule"):
        net.connect("b", "c", -2.0 * net.projections["ff"].weights.T, name="z", tie=Tie("ff", scale=-2.0),
                    rule=net.projections["ff"].rule)
    with pytest.raises(ValueError, match="shape"):
        net.tied("a", "b", "ff", transpose=True, name="w")  # (4, 3) weights onto a (3, 4) projection
    with pytest.raises(ValueError, match="differ from the tie"):
        net.connect("b", "c", np.zeros((4, 3)), name="v", tie=Tie("ff", scale=-2.0))
    with pytest.raises(ValueError, match="tie must be a mapping"):
        Tie.from_data({"source": "ff"})


def test_engine_keeps_ties_after_learning_and_set_weights():
    net = tied_net()
    sim = Simulator(net, dtype=torch.float64)
    rec = sim.run(12, {"a": np.full(4, 1.0)}, monitors=["ff.w", "back.w"])
    ff, back = rec["ff.w"][:, 0], rec["back.w"][:, 0]
    assert not torch.equal(ff[4], ff[3])  # learned at step 5
    for k in range(12):
        torch.testing.assert_close(back[k], -2.0 * ff[k].T, rtol=0, atol=0)
    sim.set_weights("ff", torch.zeros(3, 4))
    assert torch.count_nonzero(sim.weights("back")) == 0
    with pytest.raises(ValueError, match="tied to 'ff'"):
        sim.set_weights("back", torch.zeros(4, 3))


def test_ties_and_bounds_survive_a_model_file(tmp_path):
    net = tied_net()
    value = LIF(i_min=0.0, i_max=1.0, gate_min=0.0, gate_max=0.5, subtract_reset=True)
    net.population("bounded", 2, value)
    net.connect("a", "bounded", np.ones((2, 4)), name="drive")
    net.connect("a", "bounded", -0.1 * np.ones((2, 4)), name="gated_drive", gated=True)
    sim = Simulator(net, dtype=torch.float64)
    sim.run(7, {"a": np.full(4, 1.0)})
    path = tmp_path / "tied.h5"
    save(path, sim)
    loaded = load(path)
    proj = loaded.network.projections["back"]
    assert proj.tie == Tie("ff", transpose=True, scale=-2.0) and proj.rule is None
    assert loaded.network.populations["bounded"].model == value
    assert loaded.network.projections["gated_drive"].gated and not loaded.network.projections["drive"].gated
    text = describe(path)
    assert "tied: -2 x ff^T" in text and "tied: -2 x ff^T\n    static" not in text  # a tie is not also "static"
    assert "static\n    gated: passes while bounded's current" in text
    a = sim.run(10, {"a": np.full(4, 1.0)}, monitors=["back.w", "bounded.i"])
    b = loaded.run(10, {"a": np.full(4, 1.0)}, monitors=["back.w", "bounded.i"])
    torch.testing.assert_close(a["back.w"], b["back.w"], rtol=0, atol=0)
    torch.testing.assert_close(a["bounded.i"], b["bounded.i"], rtol=0, atol=0)


def test_bounded_current_saturates_before_the_membrane_integrates_it():
    model = LIF(tau_mem=1.0, tau_syn=1.0, v_th=10.0, i_min=0.0, i_max=1.0)
    state = model.initial_state((1, 3), torch.zeros((), dtype=torch.float64))
    for _ in range(5):
        model.step(torch.tensor([[0.4, -0.4, 2.0]], dtype=torch.float64), state, 1e-3)
    du = 1e-3
    assert state["i"][0, 0] == pytest.approx(1.0 * (1 - du))   # climbed and saturated
    assert state["i"][0, 1] == 0.0 and state["i"][0, 2] == pytest.approx(1.0 * (1 - du))
    # v integrated the bounded current, never 2.0: after 5 steps at most 5 * dt/tau_mem * 1.
    assert state["v"][0, 2] <= 5e-3 + 1e-12
    assert model_from_data(model_to_data(model)) == model
    assert model_from_data(model_to_data(LIF())) == LIF()
    assert math.isinf(model_from_data(model_to_data(LIF())).i_min) and model_from_data(model_to_data(LIF())).i_min < 0
    with pytest.raises(ValueError, match="i_min must be below i_max"):
        LIF(i_min=1.0, i_max=0.0)


def test_regular_encoder_spikes_evenly_and_repeatably():
    enc = RegularEncoder(max_rate=1000.0)
    values = torch.tensor([[0.0, 0.25, 0.5, 0.9, 1.0, 0.25]])
    spikes = torch.stack([enc.step(values, k, 1e-3, torch.Generator()) for k in range(200)])[:, 0]
    counts = spikes.sum(dim=0)
    assert torch.all((counts - 200 * values[0]).abs() <= 1)
    assert torch.equal(spikes[:, 4], torch.ones(200))  # value 1 at one spike per step: every step
    # Equal values, different inputs: the same count, not the same steps (phases differ).
    assert counts[1] == counts[5] and not torch.equal(spikes[:, 1], spikes[:, 5])
    gaps = torch.diff(torch.nonzero(spikes[:, 1])[:, 0])
    assert set(gaps.tolist()) == {4}
    with pytest.raises(ValueError, match="exceeds one spike per step"):
        RegularEncoder(max_rate=2000.0).step(values, 0, 1e-3, torch.Generator())


def test_per_replica_ties_follow_each_replicas_weights():
    net = Network(dt=1e-3)
    net.input("a", 4, RegularEncoder(max_rate=500.0))
    net.population("b", 3, LIF(tau_mem=10e-3, v_th=0.2))
    rule = LearningRule(dw=0.01 * y0 * x1, traces={"x1": Trace(1.0, 20e-3)})
    w = np.random.default_rng(1).uniform(0, 0.5, (2, 3, 4))  # two replicas, each its own weights
    net.connect("a", "b", w, rule=rule, name="ff")
    net.population("c", 4, LIF())
    back = net.tied("b", "c", "ff", scale=0.5, name="back")
    assert back.weights.shape == (2, 4, 3)
    sim = Simulator(net, replicas=2, dtype=torch.float64)
    sim.run(20, {"a": np.array([[1.0, 0.5, 0.2, 0.0], [0.0, 0.2, 0.5, 1.0]])})
    ff = sim.weights("ff")
    assert not torch.allclose(ff[0] - torch.as_tensor(w[0]), ff[1] - torch.as_tensor(w[1]))  # they learned apart
    torch.testing.assert_close(sim.weights("back"), 0.5 * ff.transpose(1, 2), rtol=0, atol=0)


def test_tie_values_are_checked_and_kept_json_safe():
    tie = Tie("ff", transpose=np.bool_(True), scale=np.float32(2.0))
    assert type(tie.transpose) is bool and type(tie.scale) is float
    for bad, match in [(dict(source=3), "projection name"), (dict(source="ff", transpose=1), "True or False"),
                       (dict(source="ff", scale="2"), "must be a number"), (dict(source="ff", scale=float("nan")), "finite")]:
        with pytest.raises(ValueError, match=match):
            Tie(**bad)
    with pytest.raises(ValueError, match="must be a number"):
        Tie.from_data({"source": "ff", "transpose": True, "scale": True})


def test_a_tie_loaded_from_a_state_follows_its_source():
    net = tied_net()
    sim = Simulator(net, dtype=torch.float64)
    state = sim.state_dict()
    state["synapses/back/w"] = np.zeros_like(state["synapses/back/w"])  # an edited or damaged file
    sim.load_state_dict(state)
    torch.testing.assert_close(sim.weights("back"), -2.0 * sim.weights("ff").T, rtol=0, atol=0)


def test_a_rule_reading_a_state_the_post_neuron_lacks_is_refused():
    from neuro import IAF

    net = Network(dt=1e-3)
    net.input("a", 2)
    net.population("b", 2, IAF())
    rule = LearningRule(dw=0.1 * y0 * x1 * y2_i, traces={"x1": Trace(1.0, 20e-3), "y2": Trace(driven_by="i")})
    with pytest.raises(ValueError, match="reads y2 from the post neuron's 'i'.*IAF"):
        net.connect("a", "b", 0.1, rule=rule)


def test_fixed_point_refuses_what_it_cannot_follow():
    from hardware.fixed_point import FixedPointError, to_fixed_point

    with pytest.raises(FixedPointError, match="'back' is tied to 'ff', which learns"):
        to_fixed_point(tied_net())
    net = Network(dt=1e-3)
    net.input("a", 2)
    net.population("b", 2, LIF(i_min=0.0, i_max=1.0))
    net.connect("a", "b", 0.1)
    with pytest.raises(FixedPointError, match="'b'.*saturates"):
        to_fixed_point(net)
    for model, what in ((LIF(gate_min=0.0, gate_max=1.0), "gated input"), (LIF(subtract_reset=True), "subtracting")):
        net = Network(dt=1e-3)
        net.input("a", 2)
        net.population("b", 2, model)
        net.connect("a", "b", 0.1)
        with pytest.raises(FixedPointError, match=f"'b'.*{what}"):
            to_fixed_point(net)


def test_gated_input_passes_only_inside_the_gate():
    model = LIF(tau_mem=1.0, tau_syn=1.0, v_th=10.0, gate_min=0.0, gate_max=1.0)
    state = model.initial_state((1, 4), torch.zeros((), dtype=torch.float64))
    state["i"] = torch.tensor([[-0.5, 0.0, 0.5, 1.5]], dtype=torch.float64)
    model.step(torch.full((1, 4), 0.01, dtype=torch.float64), state, 1e-3,
               gated=torch.full((1, 4), 0.1, dtype=torch.float64))
    # Only 0.5 lies strictly inside (0, 1): the gate ends where the slope of clip(., 0, 1) does.
    expected = torch.tensor([[-0.49, 0.01, 0.61, 1.51]], dtype=torch.float64) * (1 - 1e-3)
    torch.testing.assert_close(state["i"], expected, rtol=1e-12, atol=1e-12)
    # In a network: the gated projection's input adds up only while the current is inside the gate.
    net = Network(dt=1e-3)
    net.input("a", 1)
    net.population("b", 1, LIF(tau_mem=1.0, tau_syn=1.0, v_th=10.0, gate_min=-1.0, gate_max=0.25))
    net.connect("a", "b", 0.1, name="plain")
    net.connect("a", "b", 0.1, name="gate", gated=True)
    rec = Simulator(net, dtype=torch.float64).run(6, {"a": np.ones((6, 1))}, monitors=["b.i"])
    expected, i = [], 0.0
    for k in range(6):  # a spike reaches b one step later; the gate reads the current before the input
        i = (i + (0.0 if k == 0 else 0.1 + (0.1 if -1.0 < i < 0.25 else 0.0))) * (1 - 1e-3)
        expected.append(i)
    np.testing.assert_allclose(rec["b.i"][:, 0, 0].numpy(), expected, rtol=1e-12)
    assert expected[2] > 0.25 and expected[3] - expected[2] < 0.11  # it did close
    net.population("c", 1, LIF())
    with pytest.raises(ValueError, match="gated input needs a post neuron with a gate"):
        net.connect("a", "c", 0.1, name="y", gated=True)
    from neuro.rates import Identity, RateSimulator

    with pytest.raises(ValueError, match="'gate' is gated; gates exist in the spiking engine only"):
        RateSimulator(net, {"b": Identity(), "c": Identity()})
    with pytest.raises(ValueError, match="gate_min must be below gate_max"):
        LIF(gate_min=1.0, gate_max=1.0)
    with pytest.raises(ValueError, match="'gated' must be true or false"):
        data = net.to_data()
        data["projections"][1]["gated"] = "yes"
        Network.from_data(data, {p.name: p.weights for p in net.projections.values()})


def test_subtract_reset_fires_at_the_exact_rate():
    """A near-perfect integrator at a constant current of 0.7 threshold per step: 70 spikes in 100 steps
    when the reset keeps the excess, 50 (one every ceil(1 / 0.7) = 2 steps) when it resets to 0."""
    counts = {}
    for subtract in (True, False):
        model = LIF(tau_mem=1.0, tau_syn=1e6, v_th=(1 - 1e-9) * 1e-3, subtract_reset=subtract)
        state = model.initial_state((1, 1), torch.zeros((), dtype=torch.float64))
        state["i"] = torch.full((1, 1), 0.7, dtype=torch.float64)
        zero = torch.zeros((1, 1), dtype=torch.float64)
        counts[subtract] = int(sum(model.step(zero, state, 1e-3).item() for _ in range(100)))
    assert abs(counts[True] - 70) <= 1 and counts[False] == 50, counts
    assert model_from_data(model_to_data(LIF(subtract_reset=True))).subtract_reset is True
    assert model_from_data(model_to_data(LIF(v_min=-0.5))) == LIF(v_min=-0.5)
    assert model_from_data(model_to_data(LIF())).v_min == -math.inf
    with pytest.raises(ValueError, match="subtract_reset must be True or False"):
        LIF(subtract_reset=1.0)


def test_gate_bounds_and_subtract_reset_run_identically_on_lava():
    pytest.importorskip("lava")
    from export.lava import LavaExportError, run_lava

    net = Network(dt=1e-3)
    net.input("a", 3, RegularEncoder(max_rate=700.0))
    net.population("b", 3, LIF(tau_mem=20e-3, tau_syn=50e-3, v_th=0.05, i_min=-0.5, i_max=1.0,
                                gate_min=0.0, gate_max=0.6, subtract_reset=True, v_min=-0.02, syn_leak="positive"))
    net.population("c", 2, LIF(tau_mem=10e-3, v_th=0.2, subtract_reset=True))
    rng = np.random.default_rng(3)
    net.connect("a", "b", rng.uniform(0.0, 0.3, (3, 3)), name="plain")
    net.connect("c", "b", -rng.uniform(0.2, 0.6, (3, 2)), name="back", gated=True)
    net.connect("b", "c", rng.uniform(0.2, 1.0, (2, 3)), name="up")
    inputs = {"a": np.array([0.9, 0.5, 0.2])}
    monitors = ["b.spikes", "c.spikes", "b.i", "b.v", "c.v"]
    ours = Simulator(net, dtype=torch.float64).run(200, inputs, monitors=monitors)
    lava = run_lava(net, 200, inputs, monitors=monitors)
    assert ours["b.spikes"].sum() > 20 and ours["c.spikes"].sum() > 5
    for m in ("b.spikes", "c.spikes"):
        np.testing.assert_array_equal(ours[m].numpy(), lava[m].numpy(), err_msg=m)
    np.testing.assert_allclose(ours["b.i"].numpy(), lava["b.i"].numpy(), rtol=1e-9, atol=1e-12)
    for m in ("b.v", "c.v"):
        np.testing.assert_allclose(ours[m].numpy(), lava[m].numpy(), rtol=1e-9, atol=1e-12, err_msg=m)
    # The gate (which reads b.i as recorded) was open and closed at both edges, else this would test
    # less than it says; the bounds held.
    i = ours["b.i"].numpy()
    assert (i >= 0.6).any() and (i <= 0).any() and ((i > 0) & (i < 0.6)).any() and i.min() >= -0.5
    assert ours["b.v"].min() == pytest.approx(-0.02) and lava["b.v"].min() == pytest.approx(-0.02)  # the floor held
    with pytest.raises(LavaExportError, match="'b':.*saturates.*gated input.*subtracting.*floor.*decays only while "
                                              "positive.*floating_pt"):
        run_lava(net, 10, inputs, select_tag="fixed_pt")
    # A current that never decays (syn_leak="none") runs identically as well.
    held = Network(dt=1e-3)
    held.input("a", 3, RegularEncoder(max_rate=700.0))
    held.population("b", 3, LIF(tau_mem=20e-3, tau_syn=50e-3, v_th=0.05, subtract_reset=True, syn_leak="none"))
    held.connect("a", "b", np.array([[0.02, -0.01, 0.0], [-0.03, 0.0, 0.01], [0.0, 0.01, 0.01]]), name="plain")
    ours = Simulator(held, dtype=torch.float64).run(100, inputs, monitors=["b.spikes", "b.i"])
    lava = run_lava(held, 100, inputs, monitors=["b.spikes", "b.i"])
    assert ours["b.spikes"].sum() > 10 and (ours["b.i"] < 0).any()
    np.testing.assert_array_equal(ours["b.spikes"].numpy(), lava["b.spikes"].numpy())
    np.testing.assert_allclose(ours["b.i"].numpy(), lava["b.i"].numpy(), rtol=1e-9, atol=1e-12)
    with pytest.raises(LavaExportError, match="'b':.*never decays.*floating_pt"):
        run_lava(held, 10, inputs, select_tag="fixed_pt")
    # Lava starts where the engine stopped (its current before the decay, held on b's negative side)
    # and goes on identically.
    sim = Simulator(net, dtype=torch.float64)
    sim.run(120, inputs)
    assert (sim.state["b"]["i"] < 0).any() and (sim.state["b"]["i"] > 0).any()
    lava = run_lava(net, 80, inputs, monitors=["b.i", "b.spikes"], initial=sim)
    rest = sim.run(80, inputs, monitors=["b.i", "b.spikes"])
    np.testing.assert_array_equal(rest["b.spikes"].numpy(), lava["b.spikes"].numpy())
    np.testing.assert_allclose(rest["b.i"].numpy(), lava["b.i"].numpy(), rtol=1e-9, atol=1e-12)


def test_one_sided_leak_holds_the_current_on_the_other_side():
    """``syn_leak="positive"``: a positive current decays as Norse's LIF, a negative one is held
    exactly; ``"negative"`` the mirror image; the choice survives the file format and is checked."""
    for side, sign in (("positive", 1.0), ("negative", -1.0)):
        model = LIF(tau_mem=1.0, tau_syn=0.1, v_th=10.0, syn_leak=side)
        plain = LIF(tau_mem=1.0, tau_syn=0.1, v_th=10.0)
        states = [m.initial_state((1, 2), torch.zeros((), dtype=torch.float64)) for m in (model, plain)]
        kick = torch.tensor([[0.5 * sign, -0.5 * sign]], dtype=torch.float64)
        zero = torch.zeros_like(kick)
        for k in range(20):
            for m, st in zip((model, plain), states):
                m.step(kick if k == 0 else zero, st, 1e-3)
        decayed = 0.5 * sign * (1 - 1e-3 / 0.1) ** 20
        assert states[0]["i"][0, 0].item() == pytest.approx(decayed, rel=1e-12)
        assert states[0]["i"][0, 1].item() == -0.5 * sign  # held, not decayed
        assert states[1]["i"][0, 1].item() == pytest.approx(-decayed, rel=1e-12)
        assert states[0]["v"][0, 0].item() == states[1]["v"][0, 0].item()  # the decaying side is Norse's LIF
        assert states[0]["v"][0, 1].item() * sign < states[1]["v"][0, 1].item() * sign  # v integrated the held current
        assert model_from_data(model_to_data(model)) == model
    # "none": neither side decays (a perfect integrator), while v integrates as Norse's LIF does.
    held = LIF(tau_mem=1.0, tau_syn=0.1, v_th=10.0, syn_leak="none")
    st = held.initial_state((1, 2), torch.zeros((), dtype=torch.float64))
    kick = torch.tensor([[0.5, -0.25]], dtype=torch.float64)
    for k in range(20):
        held.step(kick if k == 0 else torch.zeros_like(kick), st, 1e-3)
    assert st["i"].tolist() == [[0.5, -0.25]]
    assert st["v"][0, 0].item() == pytest.approx(1e-3 * 0.5 * sum((1 - 1e-3) ** k for k in range(20)), rel=1e-12)
    assert model_from_data(model_to_data(held)) == held
    assert model_from_data(model_to_data(LIF())).syn_leak == "both"
    with pytest.raises(ValueError, match="syn_leak must be one of 'both', 'positive', 'negative', 'none', got 'pos'"):
        LIF(syn_leak="pos")


def test_membrane_floor_leaves_no_debt_from_a_negative_current():
    """50 steps at -0.7 threshold per step, then 50 at +0.7: with the floor at 0 the neuron fires
    35 times in the second half; without it, it first climbs back from -34 thresholds (the leak took
    one) and fires at most once."""
    counts = {}
    for v_min in (0.0, -math.inf):
        model = LIF(tau_mem=1.0, tau_syn=1e6, v_th=(1 - 1e-9) * 1e-3, subtract_reset=True, v_min=v_min)
        state = model.initial_state((1, 1), torch.zeros((), dtype=torch.float64))
        state["i"] = torch.full((1, 1), -0.7, dtype=torch.float64)
        zero = torch.zeros((1, 1), dtype=torch.float64)
        for _ in range(50):
            model.step(zero, state, 1e-3)
        assert state["v"].item() == (0.0 if v_min == 0.0 else pytest.approx(-0.035, rel=0.05))
        state["i"] = -state["i"]
        counts[v_min] = int(sum(model.step(zero, state, 1e-3).item() for _ in range(50)))
    assert abs(counts[0.0] - 35) <= 1 and counts[-math.inf] <= 1, counts
    with pytest.raises(ValueError, match="v_min must be at most v_reset"):
        LIF(v_min=0.5)

"""The Brian2 export (``export.brian2``) runs the same network as the torch engine.

Every test builds one :class:`neuro.Network`, runs it in the torch engine (float64, one replica) and,
compiled by ``export.brian2``, in Brian2's numpy runtime, and compares spikes (identical, every neuron
and step), neuron state and synaptic variables at every step (to float64 rounding). Each test also
checks that what it compares was exercised (learning moved the weights, a gate closed, a floor was
hit), so a translation that dropped a feature would fail it.
"""
import math

import numpy as np
import pytest
import torch

from neuro import (
    IAF,
    LIF,
    LearningRule,
    Network,
    Param,
    PoissonEncoder,
    Simulator,
    Trace,
    abs_,
    clamp,
    d,
    exp,
    maximum,
    minimum,
    random_mask,
    sign,
    softmax,
    standard_rules,
    sum_pre,
    t,
    u,
    w,
    x0,
    x1,
    x2,
    y0,
    y1,
    y2,
    y3,
)

b2 = pytest.importorskip("brian2")
from export.brian2 import Brian2ExportError, rule_code, run_brian2, to_brian2  # noqa: E402

# brian2 2.9 calls pyparsing's camelCase API, which pyparsing 3.3 deprecates (noise, not ours).
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated.*:DeprecationWarning")

T = 500
DT = 1e-3


def spikes(n, rate=0.04, seed=0, steps=T):
    return (np.random.default_rng(seed).random((steps, n)) < rate).astype(np.float64)


def both(net, monitors, inputs, third_factors=None, replicas=1, replica=0, seed=0, steps=T):
    """The torch engine's recording (replica ``replica``) and Brian2's, for the same run."""
    sim = Simulator(net, replicas=replicas, dtype=torch.float64, seed=seed)
    # a per-step third factor is (steps, R, N) for the engine
    tf = {k: (v[:, None] if np.ndim(v) == 2 else v) for k, v in (third_factors or {}).items()}
    ours = sim.run(steps, inputs={k: torch.as_tensor(v) for k, v in inputs.items()}, third_factors=tf,
                   monitors=monitors)
    ref = run_brian2(net, steps, inputs=inputs, monitors=monitors, third_factors=third_factors, seed=seed,
                     replica=replica)
    return {m: ours[m][:, replica].numpy() for m in monitors}, {m: ref[m][:, 0].numpy() for m in monitors}


def assert_same(ours, ref, tol=1e-10):
    for m in ours:
        assert ours[m].shape == ref[m].shape, m
        if m.endswith(".spikes"):
            mismatch = np.argwhere(ours[m] != ref[m])
            assert mismatch.size == 0, f"{m}: first differing (step, neuron): {mismatch[:3].tolist()}"
        else:
            err = np.abs(ours[m] - ref[m]).max()
            assert err < tol, f"{m}: max difference {err:.3g}"


# --- STDP: the rule of standard_rules, compiled, not re-written ---------------------------------
@pytest.mark.parametrize("multiplicative, masked", [(False, False), (True, False), (False, True)],
                         ids=["additive", "multiplicative", "masked"])
def test_stdp_network_matches_the_engine(multiplicative, masked):
    w0 = np.random.default_rng(1).uniform(0.0, 0.8, (10, 24))
    mask = random_mask(10, 24, 0.5, seed=2) if masked else None
    w0 = w0 if mask is None else w0 * mask
    net = Network(dt=DT)
    net.input("inp", 24)
    net.population("lif", 10, LIF())
    rule = standard_rules.stdp(multiplicative=multiplicative, a_plus=0.015, a_minus=0.012, tau_minus=30e-3)
    net.connect("inp", "lif", w0, rule=rule, mask=mask)
    mons = ["lif.spikes", "lif.v", "lif.i", "inp_to_lif.w"]
    ours, ref = both(net, mons, {"inp": spikes(24, 0.03)})
    assert_same(ours, ref)
    assert ours["lif.spikes"].sum() > 50
    change = ours["inp_to_lif.w"][-1] - w0
    if masked:
        assert (ref["inp_to_lif.w"][:, ~mask] == 0).all(), "missing synapses must stay 0"
    assert (change > 0.03).any() and (change < -0.03).any(), "learning should move weights both ways"


# --- every neuron feature, recurrence, masks, gated input and a static tie ------------------------
def feature_network():
    rng = np.random.default_rng(2)
    net = Network(dt=DT)
    net.input("inp", 30)
    net.population("adapt", 8, LIF(tau_mem=20e-3, theta_plus=0.3, tau_theta=40e-3, subtract_reset=True))
    net.population("gate", 6, LIF(v_leak=0.1, i_min=-1.0, i_max=1.6, gate_min=-0.4, gate_max=0.6,
                                  v_min=-0.3, syn_leak="positive"))
    net.population("iaf", 5, IAF(v_th=1.2, v_reset=-0.1))
    net.connect("inp", "adapt", rng.uniform(0.0, 0.9, (8, 30)))
    mask = random_mask(8, 8, 0.4, seed=3, autapses=False)
    net.connect("adapt", "adapt", rng.uniform(-0.5, 0.5, (8, 8)) * mask, mask=mask)
    net.connect("inp", "gate", rng.uniform(-0.6, 0.7, (6, 30)))
    net.connect("adapt", "gate", rng.uniform(0.0, 0.6, (6, 8)), gated=True)
    net.connect("gate", "iaf", rng.uniform(0.0, 0.9, (5, 6)))
    net.tied("iaf", "gate", source="gate_to_iaf", scale=-0.4)  # static: a fixed copy
    return net


def test_neuron_features_recurrence_masks_gates_and_ties_match_the_engine():
    net = feature_network()
    mons = ["adapt.spikes", "adapt.v", "adapt.i", "adapt.theta", "gate.spikes", "gate.v", "gate.i",
            "iaf.spikes", "iaf.v"]
    ours, ref = both(net, mons, {"inp": spikes(30, 0.05, seed=4)})
    assert_same(ours, ref)
    for pop in ("adapt", "gate", "iaf"):
        assert ours[f"{pop}.spikes"].sum() > 10, f"{pop} should fire"
    assert ours["adapt.theta"].max() > 0.3, "the threshold should adapt"
    assert ours["gate.v"].min() == pytest.approx(-0.3), "the membrane floor should be hit"
    i = ours["gate.i"]
    open_ = (i > -0.4) & (i < 0.6)
    assert open_.mean() > 0.05 and (~open_).mean() > 0.05, "the gate should both open and close"


def test_the_comparison_sees_a_changed_neuron_parameter():
    """Negative control: the same network with a 10% different adaptation step gives other spikes."""
    net = feature_network()
    inputs = {"inp": spikes(30, 0.05, seed=4, steps=200)}
    ours, _ = both(net, ["adapt.spikes"], inputs, steps=200)
    net.populations["adapt"].model = LIF(tau_mem=20e-3, theta_plus=0.33, tau_theta=40e-3, subtract_reset=True)
    changed = run_brian2(net, 200, inputs=inputs, monitors=["adapt.spikes"])["adapt.spikes"][:, 0].numpy()
    assert (ours["adapt.spikes"] != changed).sum() > 3


# --- the rule language: every operation, tags, delays, u periods, driven traces --------------------
def rich_rule():
    eta = Param("eta")
    return LearningRule(
        dw=eta * y0 * clamp(x1 - 0.5 * w, -0.2, 0.3) - 0.004 * x0 * maximum(y1, y3) + 0.002 * u * t * y2
        + 0.0005 * x0 * y0 * sign(w - 0.4),
        dt=0.02 * y0 * x1 - 0.05 * u * t + 0.01 * x0 * abs_(y2) ** 1.5 + 0.003 * y0 * sum_pre(x1 * w),
        dd=0.01 * u * minimum(x2, y3) * exp(-w) - 0.001 * y0 * d / (w + 1.0),
        traces={"x1": Trace(1.0, 20e-3), "x2": Trace(0.5, 50e-3), "y1": Trace(1.0, 30e-3),
                "y2": Trace(driven_by="v"), "y3": Trace(driven_by="i")},
        u_exponent=1, w_min=0.0, w_max=1.0, params={"eta": 0.01}, name="rich",
    )


def test_every_rule_operation_tags_delays_and_u_periods_match_the_engine():
    w0 = np.random.default_rng(5).uniform(0.0, 0.8, (6, 16))
    net = Network(dt=DT)
    net.input("inp", 16)
    net.population("lif", 6, LIF(v_leak=0.2))
    net.connect("inp", "lif", w0, rule=rich_rule())
    mons = ["lif.spikes", "lif.v", "inp_to_lif.w", "inp_to_lif.t", "inp_to_lif.d"]
    ours, ref = both(net, mons, {"inp": spikes(16, 0.05, seed=6)})
    assert_same(ours, ref)
    assert np.abs(ours["inp_to_lif.w"][-1] - w0).max() > 0.05
    assert np.abs(ours["inp_to_lif.t"][-1]).max() > 0.01
    assert np.abs(ours["inp_to_lif.d"][-1]).max() > 0.01
    # u every second step: the tag's decay term alone makes odd and even steps differ
    assert "(t_in_timesteps + 1) % 2 == 0" in rule_code(rich_rule(), DT).learn


@pytest.mark.parametrize("t_epoch", [2, 5])
def test_multi_step_epochs_match_the_engine(t_epoch):
    """Loihi's epochs: traces sampled at each product's dependency time from their epoch-start value, a second
    spike in an epoch adding its impulse to that value, updates at the epoch's end, ``u`` counted in epochs."""
    rule = rich_rule()
    rule = LearningRule(dw=rule.dw, dt=rule.dt, dd=rule.dd, traces=rule.traces, t_epoch=t_epoch, u_exponent=1,
                        w_min=0.0, w_max=1.0, params=rule.params)
    w0 = np.random.default_rng(20).uniform(0.0, 0.8, (6, 16))
    net = Network(dt=DT)
    net.input("inp", 16)
    net.population("lif", 6, LIF(v_leak=0.2))
    net.connect("inp", "lif", w0, rule=rule)
    inputs = {"inp": spikes(16, 0.15, seed=21)}
    mons = ["lif.spikes", "lif.v", "inp_to_lif.w", "inp_to_lif.t", "inp_to_lif.d"]
    ours, ref = both(net, mons, inputs)
    assert_same(ours, ref)
    assert np.abs(ours["inp_to_lif.w"][-1] - w0).max() > 0.05
    w = ours["inp_to_lif.w"]
    changed = np.flatnonzero(np.abs(np.diff(w, axis=0)).reshape(T - 1, -1).max(axis=1) > 0) + 2  # engine steps
    assert changed.size and (changed % t_epoch == 0).all(), "weights change only at the end of an epoch"
    pre = inputs["inp"][: T // t_epoch * t_epoch].reshape(-1, t_epoch, 16).sum(axis=1)
    assert (pre > 1).any(), "some epochs should hold two spikes of a neuron"
    # ... and continued from a simulator stopped mid-epoch
    sim = Simulator(net, dtype=torch.float64)
    sim.run(103, inputs={"inp": torch.as_tensor(inputs["inp"][:103])})
    rest = {"inp": inputs["inp"][103:]}
    ref = run_brian2(net, T - 103, inputs=rest, monitors=mons, initial=sim)
    ours = sim.run(T - 103, inputs={"inp": torch.as_tensor(rest["inp"])}, monitors=mons)
    assert_same({m: ours[m][:, 0].numpy() for m in mons}, {m: ref[m][:, 0].numpy() for m in mons})


def test_reward_modulated_stdp_with_a_third_factor_sequence_matches_the_engine():
    w0 = np.random.default_rng(7).uniform(-0.2, 0.8, (6, 20))
    net = Network(dt=DT)
    net.input("inp", 20)
    net.population("lif", 6, LIF())
    net.connect("inp", "lif", w0, rule=standard_rules.reward_modulated_stdp(a_plus=0.05, a_minus=0.05))
    reward = np.random.default_rng(8).normal(0.0, 1.0, (T, 6))
    mons = ["lif.spikes", "inp_to_lif.w", "inp_to_lif.t"]
    ours, ref = both(net, mons, {"inp": spikes(20, 0.05, seed=9)}, third_factors={"lif": reward})
    assert_same(ours, ref)
    assert np.abs(ours["inp_to_lif.w"][-1] - w0).max() > 0.01


def test_encoded_inputs_draw_the_engines_spikes():
    """A Poisson-encoded input draws, for the same seed, the spikes the engine draws."""
    rng = np.random.default_rng(10)
    net = Network(dt=DT)
    net.input("img", 12, PoissonEncoder(max_rate=80.0))
    net.population("lif", 5, LIF())
    net.connect("img", "lif", rng.uniform(0.0, 0.9, (5, 12)), rule=standard_rules.stdp())
    mons = ["img.spikes", "lif.spikes", "img_to_lif.w"]
    ours, ref = both(net, mons, {"img": rng.random(12)}, seed=3)
    assert ours["img.spikes"].sum() > 50 and ours["lif.spikes"].sum() > 20
    assert_same(ours, ref)


def test_replica_picks_per_replica_weights():
    w0 = np.random.default_rng(11).uniform(0.0, 0.9, (3, 5, 12))
    net = Network(dt=DT)
    net.input("inp", 12)
    net.population("lif", 5, LIF())
    net.connect("inp", "lif", w0, rule=standard_rules.stdp())
    mons = ["lif.spikes", "inp_to_lif.w"]
    inputs = {"inp": spikes(12, 0.06, seed=12)}
    ours, ref = both(net, mons, inputs, replicas=3, replica=2)
    assert_same(ours, ref)
    other = run_brian2(net, T, inputs=inputs, monitors=mons, replica=0)
    assert np.abs(other["inp_to_lif.w"][:, 0].numpy() - ours["inp_to_lif.w"]).max() > 0.1


def test_spiking_softhebb_layer_with_its_weight_norm_sum_matches_the_engine():
    """SoftHebb's adaptive rule, ``eta * y0 * (x1 - y2 * w) * |sum_pre(w * w)**0.5 - 1|**0.5``: the sum over the
    pre neurons becomes a Brian2 summed variable; Poisson pixels, global inhibition through an IAF neuron,
    adaptive thresholds."""
    from networks.softhebb import SoftHebbConfig, SpikingConfig, build_spiking

    spk = SpikingConfig(theta_plus=0.5, tau_theta=50e-3, eta=2.0**-6, v_th=5.0, inhibition=10.0)
    net = build_spiking(32, SoftHebbConfig(n_neurons=6, seed=1), spk, adaptive=True)
    assert "sum_pre" in str(net.projections["ff"].rule.dw)
    image = np.random.default_rng(17).random(32)
    mons = ["pixels.spikes", "layer1.spikes", "layer1.theta", "inh.spikes", "ff.w"]
    ours, ref = both(net, mons, {"pixels": image / np.linalg.norm(image) * 6.0}, seed=4, steps=300)
    assert_same(ours, ref)
    assert ours["layer1.spikes"].sum() > 20 and ours["inh.spikes"].sum() > 5
    assert np.abs(ours["ff.w"][-1] - ours["ff.w"][0]).max() > 1e-3


def test_mas_importance_gated_stdp_matches_the_engine():
    from networks.mas import importance_gated

    rule = importance_gated(standard_rules.stdp(a_plus=0.02, a_minus=0.02, w_max=1.0), gamma=0.5)
    w0 = np.random.default_rng(18).uniform(0.0, 0.8, (6, 20))
    net = Network(dt=DT)
    net.input("inp", 20)
    net.population("lif", 6, LIF())
    net.connect("inp", "lif", w0, rule=rule)
    sim = Simulator(net, dtype=torch.float64)
    sim.syn["inp_to_lif"]["t"] = torch.full_like(sim.syn["inp_to_lif"]["t"], 0.5)  # an earlier task's importance
    inputs = {"inp": spikes(20, 0.05, seed=19)}
    mons = ["lif.spikes", "inp_to_lif.w", "inp_to_lif.t", "inp_to_lif.d"]
    ref = run_brian2(net, T, inputs=inputs, monitors=mons, initial=sim)
    ours = sim.run(T, inputs={"inp": torch.as_tensor(inputs["inp"])}, monitors=mons)
    assert_same({m: ours[m][:, 0].numpy() for m in mons}, {m: ref[m][:, 0].numpy() for m in mons})
    assert ours["inp_to_lif.d"][-1].max() > 0.1, "the current task's importance should accumulate"


# --- what Brian2 cannot run, and bad input ----------------------------------------------------------
def small(rule=None):
    net = Network(dt=DT)
    net.input("inp", 4)
    net.population("lif", 3, LIF())
    net.connect("inp", "lif", 0.5, rule=rule)
    return net


@pytest.mark.parametrize(
    "rule, message",
    [
        (LearningRule(dw=y0 * softmax(y1) * x1, traces={"x1": Trace(1.0, 0.02), "y1": Trace(1.0, 0.02)}), "softmax"),
    ],
    ids=["softmax"],
)
def test_refuses_what_a_brian2_synapse_cannot_express(rule, message):
    with pytest.raises(Brian2ExportError, match=message):
        to_brian2(small(rule), 10, inputs={"inp": spikes(4, steps=10)})


def masked_net(rule):
    net = Network(dt=DT)
    net.input("inp", 12)
    net.population("lif", 4, LIF())
    mask = random_mask(4, 12, 0.6, seed=24)
    net.connect("inp", "lif", np.random.default_rng(25).uniform(0.2, 0.9, (4, 12)) * mask, rule=rule, mask=mask)
    return net


def test_a_pre_sum_over_a_mask_runs_where_missing_synapses_add_nothing():
    traces = {"x1": Trace(1.0, 0.02)}
    net = masked_net(LearningRule(dw=0.01 * y0 * x1 * sum_pre(w * w + x1 * w) - 0.01 * x0 * y1, w_min=0.0, w_max=1.0,
                                  traces={**traces, "y1": Trace(1.0, 0.02)}))
    ours, ref = both(net, ["lif.spikes", "inp_to_lif.w"], {"inp": spikes(12, 0.1, seed=26)})
    assert_same(ours, ref)
    assert np.abs(ours["inp_to_lif.w"][-1] - ours["inp_to_lif.w"][0]).max() > 0.01
    with pytest.raises(Brian2ExportError, match="masked projection"):
        to_brian2(masked_net(LearningRule(dw=y0 * sum_pre(w + x1) * x1, traces=traces)), 10)


def test_what_the_review_found():
    """A ratio of traces (0/0 where nobody spiked), an update infinite where it applies, a short trace in a
    long epoch (a**negative), three projections summed in the engine's order onto an IAF at its threshold,
    a projection without synapses, names Brian2 reserves or cannot spell."""
    traces = {"x1": Trace(1.0, 0.02), "y1": Trace(1.0, 0.02)}
    for rule in (LearningRule(dw=0.01 * y0 * x1 / (x1 + y1), traces=traces),
                 LearningRule(dt=0.5 * y0 / w, dw=0.01 * y0 * x1, traces=traces),
                 standard_rules.stdp(tau_plus=1e-5, tau_minus=1e-5, t_epoch=10)):
        net = Network(dt=DT)
        net.input("inp", 6)
        net.population("lif", 3, LIF())
        w0 = np.full((3, 6), 0.6)
        w0[0, 0] = 0.0
        net.connect("inp", "lif", w0, rule=rule)
        mons = ["lif.spikes", "inp_to_lif.w"] + (["inp_to_lif.t"] if rule.dt is not None else [])
        ours, ref = both(net, mons, {"inp": spikes(6, 0.15, seed=27, steps=200)}, steps=200)
        assert not np.isnan(ref["inp_to_lif.w"]).any()
        assert ours["lif.spikes"].sum() > 5
        np.testing.assert_array_equal(ours["lif.spikes"], ref["lif.spikes"])
        for m in mons[1:]:  # an infinite tag is infinite in both
            np.testing.assert_allclose(ref[m], ours[m], rtol=1e-12, atol=1e-12)
    net = Network(dt=DT)
    for p in ("pz", "pm", "pa"):
        net.input(p, 1)
    net.population("ñ", 1, IAF(v_th=0.6))
    for p, name, weight in (("pz", "z", 0.1), ("pm", "m", 0.2), ("pa", "a", 0.3)):
        net.connect(p, "ñ", np.array([[weight]]), name=name)  # (0.1 + 0.2) + 0.3 > 0.6 = (0.3 + 0.2) + 0.1
    net.connect("pz", "ñ", np.zeros((1, 1)), mask=np.zeros((1, 1), dtype=bool), name="_empty")
    one = np.zeros((3, 1))
    one[0] = 1
    ours, ref = both(net, ["ñ.spikes", "_empty.w"], {"pz": one, "pm": one, "pa": one}, steps=3)
    assert ours["ñ.spikes"].sum() == 1
    assert_same(ours, ref)


def test_spiking_predictive_coding_network_matches_the_engine():
    """The project's spiking PC network: bounded, gated, floored, one-sided-leak LIFs, rate-coded inputs,
    u-period learning and W^T feedback tied to learning projections (rewritten by the host each step)."""
    from networks.pc_spiking import SpikingPCConfig, build_spiking

    cfg = SpikingPCConfig(hidden=(6,), steps=16, seed=3)
    net = build_spiking(10, 3, cfg)
    rng = np.random.default_rng(16)
    inputs = {"x0": rng.random(10), "bias": np.ones(1), "y": np.eye(3)[1]}
    learning = [n for n, p in net.projections.items() if p.rule is not None]
    ties = [n for n, p in net.projections.items() if p.tie is not None]
    assert ties, "the network should have W^T feedback"
    mons = [f"{p}.spikes" for p in net.populations] + [f"{n}.w" for n in learning + ties]
    ours, ref = both(net, mons, inputs, steps=96)
    assert_same(ours, ref)
    spiking = sum(ours[f"{p}.spikes"].sum() for p in net.populations if not p.startswith(("x0", "bias", "y")))
    assert spiking > 100
    w = ours[f"{ties[0]}.w"]
    assert np.abs(w[-1] - w[0]).max() > 1e-4, "the tied feedback should follow the learning weights"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(inputs={"inp": np.zeros((9, 4))}), r"shape \(steps, N\) = \(10, 4\)"),
        (dict(inputs={"inp": np.full((10, 4), 0.5)}), "0 or 1"),
        (dict(inputs={"nope": np.zeros((10, 4))}), "unknown population"),
        (dict(inputs={"lif": np.zeros((10, 3))}), "not an input population"),
        (dict(replica=2), "replica 2"),
    ],
    ids=["shape", "not-binary", "unknown", "not-input", "replica"],
)
def test_bad_input_is_named(kwargs, message):
    net = small()
    net.connect("inp", "lif", np.full((2, 3, 4), 0.1), name="per_replica")
    with pytest.raises(Brian2ExportError, match=message):
        to_brian2(net, 10, **kwargs)


def test_missing_or_bad_third_factor_and_bad_monitors_are_named():
    net = small(standard_rules.reward_modulated_stdp())
    with pytest.raises(Brian2ExportError, match=r"third factor of 'lif'"):
        to_brian2(net, 10)
    with pytest.raises(Brian2ExportError, match="NaN"):
        to_brian2(net, 10, third_factors={"lif": np.full(3, math.nan)})
    with pytest.raises(Brian2ExportError, match="expected shape"):
        to_brian2(net, 10, third_factors={"lif": np.zeros((4, 3))})
    with pytest.raises(Brian2ExportError, match="records"):
        run_brian2(net, 10, monitors=["lif.count"], third_factors={"lif": np.zeros(3)})
    with pytest.raises(Brian2ExportError, match="no adaptive threshold"):
        run_brian2(net, 10, monitors=["lif.theta"], third_factors={"lif": np.zeros(3)})
    with pytest.raises(Brian2ExportError, match="steps"):
        to_brian2(small(), 0)
    with pytest.raises(Brian2ExportError, match="'numpy' or 'cython'"):
        run_brian2(small(), 10, target="cpp_standalone")


def test_continues_where_a_simulator_stopped():
    """``initial=sim``: Brian2 goes on from the engine's state (weights, tags, traces, neurons, buffered
    input, swapped models, parameters and u's phase) as the engine itself goes on."""
    rule = standard_rules.reward_modulated_stdp(a_plus=0.05, a_minus=0.05)
    rule = LearningRule(dt=rule.dt, dw=rule.dw, traces=rule.traces, u_exponent=2, params=rule.params)
    rng = np.random.default_rng(13)
    net = Network(dt=DT)
    net.input("inp", 20)
    net.population("lif", 6, LIF(theta_plus=0.1, tau_theta=30e-3))
    net.connect("inp", "lif", rng.uniform(-0.2, 0.8, (6, 20)), rule=rule)
    inputs = {"inp": spikes(20, 0.05, seed=14, steps=301)}
    reward = np.random.default_rng(15).normal(0.0, 1.0, (301, 1, 6))
    sim = Simulator(net, dtype=torch.float64)
    sim.run(101, inputs={"inp": torch.as_tensor(inputs["inp"][:101])}, third_factors={"lif": reward[:101]})
    sim.set_model("lif", LIF(theta_plus=0.1, tau_theta=30e-3, tau_mem=15e-3))
    sim.set_param("inp_to_lif", "learning_rate", 2.0)
    rest = {"inp": inputs["inp"][101:]}
    mons = ["lif.spikes", "lif.v", "lif.i", "lif.theta", "inp_to_lif.w", "inp_to_lif.t"]
    ref = run_brian2(net, 200, inputs=rest, monitors=mons, third_factors={"lif": reward[101:, 0]}, initial=sim)
    ours = sim.run(200, inputs={"inp": torch.as_tensor(rest["inp"])}, third_factors={"lif": reward[101:]},
                   monitors=mons)
    assert ref.steps["lif.v"][0] == 102
    assert_same({m: ours[m][:, 0].numpy() for m in mons}, {m: ref[m][:, 0].numpy() for m in mons})
    assert ours["lif.spikes"].sum() > 10
    # ... and a fresh Brian2 run from the network's start does not: the state was carried over
    fresh = run_brian2(net, 200, inputs=rest, monitors=["inp_to_lif.w"], third_factors={"lif": reward[101:, 0]})
    assert np.abs(fresh["inp_to_lif.w"].numpy() - ours["inp_to_lif.w"].numpy()).max() > 1e-3


def test_a_frozen_threshold_adaptation_keeps_its_value():
    """A run continued after ``set_model`` froze the adaptation (theta_plus 0): the threshold still holds
    what the adaptation reached, in the engine and in Brian2."""
    net = Network(dt=DT)
    net.input("inp", 20)
    net.population("lif", 6, LIF(theta_plus=0.3, tau_theta=math.inf))
    net.connect("inp", "lif", np.random.default_rng(22).uniform(0.0, 0.9, (6, 20)))
    inputs = spikes(20, 0.08, seed=23)
    sim = Simulator(net, dtype=torch.float64)
    sim.run(200, inputs={"inp": torch.as_tensor(inputs[:200])})
    assert sim.state["lif"]["theta"].max() > 0.5
    sim.set_model("lif", LIF(theta_plus=0.0))
    mons = ["lif.spikes", "lif.theta"]
    ref = run_brian2(net, 300, inputs={"inp": inputs[200:]}, monitors=mons, initial=sim)
    ours = sim.run(300, inputs={"inp": torch.as_tensor(inputs[200:])}, monitors=mons)
    assert ours["lif.spikes"].sum() > 10
    assert torch.equal(ours["lif.spikes"], ref["lif.spikes"]) and torch.equal(ours["lif.theta"], ref["lif.theta"])


def test_initial_must_be_one_replica_of_this_network():
    net = small(standard_rules.stdp())
    with pytest.raises(Brian2ExportError, match="one replica"):
        to_brian2(net, 10, initial=Simulator(net, replicas=2))
    with pytest.raises(Brian2ExportError, match="this very network"):
        to_brian2(net, 10, initial=Simulator(small(standard_rules.stdp())))

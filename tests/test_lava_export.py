"""One network description, two back-ends: the torch engine and the exported Lava graph agree.

Equivalence contract (DESIGN.md): Lava ``floating_pt`` vs torch, identical
spike trains and weights equal to 1e-5 (relative) over >= 500 steps with learning on.
"""
import dataclasses

import numpy as np
import pytest
import torch

from neuro import IAF, LIF, LearningRule, Network, PoissonEncoder, Simulator, Trace, standard_rules, u, w, x0, x1, y0, y1, y2

pytest.importorskip("lava")
from export.lava import LavaExportError, run_lava  # noqa: E402

DT = 1e-3
STEPS = 600


def network(rule, n_in=20, n_out=8, inhibition=0.5, model=None, seed=0):
    rng = np.random.default_rng(seed)
    net = Network(dt=DT)
    net.input("inp", n_in, encoder=PoissonEncoder(max_rate=150.0))
    net.population("out", n_out, model or LIF(tau_mem=10e-3, tau_syn=5e-3, v_th=1.0, v_leak=0.0))
    net.connect("inp", "out", rng.uniform(0.0, 0.6, (n_out, n_in)), rule=rule, name="ff")
    if inhibition:
        net.connect("out", "out", -inhibition * (1 - np.eye(n_out)), name="inh")
    return net


def both(net, monitors, third_factors=None, values=None):
    values = np.random.default_rng(1).uniform(0, 1, net.populations["inp"].n) if values is None else values
    sim = Simulator(net, dtype=torch.float64, seed=4)
    ours = sim.run(STEPS, {"inp": values}, third_factors=third_factors and {k: torch.as_tensor(v)[:, None] if v.ndim == 2 else v for k, v in third_factors.items()}, monitors=monitors)
    lava = run_lava(net, STEPS, {"inp": values}, monitors=monitors, third_factors=third_factors, seed=4)
    return ours, lava


def assert_equivalent(ours, lava, weights="ff.w"):
    spikes_ours, spikes_lava = ours["out.spikes"].numpy(), lava["out.spikes"].numpy()
    assert spikes_lava.sum() > 100
    np.testing.assert_array_equal(spikes_ours, spikes_lava)
    np.testing.assert_allclose(ours[weights].numpy()[:, 0], lava[weights].numpy()[:, 0], rtol=1e-5, atol=1e-9)


STDP_EXACT = LearningRule(
    dw=2**-5 * y0 * x1 - 2**-5 * x0 * y1 - 2**-7 * y0 * x1 * w,
    traces={"x1": Trace(1.0, 20e-3), "y1": Trace(1.0, 15e-3)},
    w_min=0.0,
    name="stdp_soft",
)


def test_stdp_with_lateral_inhibition_runs_identically_on_lava():
    net = network(STDP_EXACT)
    ours, lava = both(net, ["out.spikes", "out.v", "ff.w"])
    assert_equivalent(ours, lava)
    np.testing.assert_allclose(ours["out.v"].numpy(), lava["out.v"].numpy(), rtol=1e-9, atol=1e-9)
    w = lava["ff.w"].numpy()[:, 0]
    assert np.abs(w[-1] - w[0]).max() > 0.05  # learning happened


def test_multi_step_epochs_on_lava():
    rule = LearningRule(
        dw=STDP_EXACT.dw, traces=STDP_EXACT.traces, w_min=0.0, t_epoch=4, name="stdp_epoch4"
    )
    ours, lava = both(network(rule), ["out.spikes", "ff.w"])
    assert_equivalent(ours, lava)


def test_three_factor_rule_driven_through_y2():
    rule = standard_rules.modulated_stdp(a_plus=2**-4, a_minus=2**-5)
    reward = np.where(np.arange(STEPS)[:, None] % 200 < 100, 1.0, -0.5) * np.ones((1, 8))
    net = network(rule)
    ours, lava = both(net, ["out.spikes", "ff.w"], third_factors={"out": reward})
    assert_equivalent(ours, lava)
    w = lava["ff.w"].numpy()[:, 0]
    assert (w[-1] - w[0]).max() > 0.01 and (w[-1] - w[0]).min() < -0.01


def test_tag_rule_reward_modulated_stdp():
    rule = standard_rules.reward_modulated_stdp(
        a_plus=2**-3, a_minus=2**-3, eligibility_decay=2**-3, learning_rate=2**-2
    )
    reward = np.sin(np.arange(STEPS) / 40.0)[:, None] * np.ones((1, 8))
    ours, lava = both(network(rule), ["out.spikes", "ff.w", "ff.t"], third_factors={"out": reward})
    assert_equivalent(ours, lava)
    np.testing.assert_allclose(ours["ff.t"].numpy()[:, 0], lava["ff.t"].numpy()[:, 0], rtol=1e-5, atol=1e-9)
    assert np.abs(lava["ff.t"].numpy()).max() > 0.01


def test_membrane_potential_as_third_factor():
    # A SoftHebb-like gate: potentiation scaled by the post membrane potential.
    rule = LearningRule(
        # u fires every 2**4 epochs: a slow decay, and Loihi's u decimation exercised.
        dw=2**-4 * y0 * x1 * y2 - 2**-7 * u * w,
        traces={"x1": Trace(1.0, 20e-3), "y2": Trace(driven_by="v")},
        u_exponent=4,
        name="v_gated",
    )
    ours, lava = both(network(rule), ["out.spikes", "ff.w"])
    assert_equivalent(ours, lava)


def test_iaf_population_on_lava():
    net = network(STDP_EXACT, model=IAF(v_th=2.0), inhibition=0.0)
    ours, lava = both(net, ["out.spikes", "ff.w"])
    assert_equivalent(ours, lava)


@pytest.mark.parametrize(
    "model, message",
    [
        (LIF(v_reset=-0.1), "resets to 0"),
        (LIF(theta_plus=0.1, tau_theta=1.0), "adaptive threshold"),
    ],
)
def test_neuron_models_lava_cannot_express(model, message):
    with pytest.raises(LavaExportError, match=message):
        run_lava(network(STDP_EXACT, model=model), 5, {"inp": np.ones(20)})


def test_other_export_errors():
    per_replica = Network(dt=DT)
    per_replica.input("inp", 3)
    per_replica.population("out", 2)
    per_replica.connect("inp", "out", np.zeros((2, 2, 3)), name="ff")
    with pytest.raises(LavaExportError, match="one replica"):
        run_lava(per_replica, 5, {"inp": np.zeros((5, 3))})
    with pytest.raises(LavaExportError, match="needs a third factor"):
        run_lava(network(standard_rules.modulated_stdp(a_plus=2**-4, a_minus=2**-5)), 5, {"inp": np.ones(20)})
    with pytest.raises(LavaExportError, match="cannot monitor"):
        run_lava(network(STDP_EXACT), 5, {"inp": np.ones(20)}, monitors=["ff.x1"])


@pytest.mark.parametrize("rule", [STDP_EXACT, standard_rules.reward_modulated_stdp(a_plus=2**-3, a_minus=2**-3, eligibility_decay=2**-3, learning_rate=2**-2)], ids=["stdp", "r_stdp"])
def test_lava_continues_exactly_where_torch_stopped(rule):
    """Train in torch, hand the state to Lava, keep learning there: same as torch all along."""
    net = network(rule)
    values = np.random.default_rng(1).uniform(0, 1, 20)
    reward = {"out": np.sin(np.arange(2 * STEPS) / 40.0)[:, None] * np.ones((1, 8))} if rule.dt is not None else None
    first = {k: v[:STEPS] for k, v in reward.items()} if reward else None
    second = {k: v[STEPS:] for k, v in reward.items()} if reward else None
    monitors = ["out.spikes", "ff.w"]
    straight = Simulator(net, dtype=torch.float64, seed=4).run(
        2 * STEPS, {"inp": values}, third_factors=reward and {"out": torch.as_tensor(reward["out"])[:, None]}, monitors=monitors
    )
    torch_part = Simulator(net, dtype=torch.float64, seed=4)
    torch_part.run(STEPS, {"inp": values}, third_factors=first and {"out": torch.as_tensor(first["out"])[:, None]})
    lava = run_lava(net, STEPS, {"inp": values}, monitors=monitors, third_factors=second, initial=torch_part)
    np.testing.assert_array_equal(lava["out.spikes"].numpy(), straight["out.spikes"][STEPS:].numpy())
    np.testing.assert_allclose(lava["ff.w"].numpy(), straight["ff.w"][STEPS:].numpy(), rtol=1e-5, atol=1e-9)
    assert lava["out.spikes"].sum() > 100


def test_continuation_mid_epoch_is_refused():
    rule = LearningRule(dw=STDP_EXACT.dw, traces=STDP_EXACT.traces, w_min=0.0, t_epoch=4)
    net = network(rule)
    sim = Simulator(net, dtype=torch.float64)
    sim.run(10, {"inp": np.ones(20)})
    with pytest.raises(LavaExportError, match="mid-epoch"):
        run_lava(net, 5, {"inp": np.ones(20)}, initial=sim)


def test_lava_continues_a_run_with_its_swapped_model_learning_switch_and_rule_parameters():
    """What the torch run changed after building (set_model, learning off, set_param) is what Lava continues with."""
    net = network(standard_rules.stdp(a_plus=3 * 2**-6, a_minus=5 * 2**-7, w_max=float("inf")))
    values = np.random.default_rng(2).uniform(0, 1, 20)
    monitors = ["out.spikes", "ff.w"]
    model = net.populations["out"].model
    tweaks = {
        "model": lambda s: s.set_model("out", dataclasses.replace(model, tau_mem=2 * model.tau_mem)),
        "frozen": lambda s: setattr(s, "learning", False),
        "param": lambda s: s.set_param("ff", "a_plus", 3 * 2**-4),
    }
    for what, tweak in tweaks.items():
        straight = Simulator(net, dtype=torch.float64, seed=4)
        straight.run(STEPS // 3, {"inp": values})
        tweak(straight)
        torch_part = Simulator(net, dtype=torch.float64, seed=4)
        torch_part.run(STEPS // 3, {"inp": values})
        tweak(torch_part)
        expected = straight.run(STEPS // 3, {"inp": values}, monitors=monitors)
        lava = run_lava(net, STEPS // 3, {"inp": values}, monitors=monitors, initial=torch_part)
        np.testing.assert_array_equal(lava["out.spikes"].numpy(), expected["out.spikes"].numpy(), err_msg=what)
        np.testing.assert_allclose(lava["ff.w"].numpy(), expected["ff.w"].numpy(), rtol=1e-5, atol=1e-9, err_msg=what)
        if what == "frozen":
            np.testing.assert_array_equal(lava["ff.w"][-1, 0].numpy(), torch_part.weights("ff").reshape(lava["ff.w"].shape[-2:]).numpy())
        else:
            assert not np.array_equal(lava["ff.w"][-1, 0].numpy(), torch_part.weights("ff").reshape(lava["ff.w"].shape[-2:]).numpy())

"""SoftHebb's spiking layer on Loihi 2: the rule lowers, Lava runs it like torch, the chip holds it.

* the hardware form ``eta * y0 * (x1 - y2 * w)`` lowers to one exact learning-engine string,
  the simulator-only variants (adaptive rate, anti-Hebbian losers) are refused by name;
* a small spiking SoftHebb layer (Poisson pixels -> plastic ``ff`` -> LIF ``layer1`` <-> IAF
  ``inh``) learns identically in torch (float64) and on Lava's ``floating_pt`` simulator;
* ``neuro check --target loihi2`` maps the full-size 784 -> 2000 model onto one chip.
"""
import re

import numpy as np
import pytest
import torch

from hardware.loihi_rules import LoihiLoweringError, lower_products, lowering_problems, to_loihi_strings
from networks.softhebb import SoftHebbConfig, SpikingConfig, build_spiking, scale_inputs, softhebb_rule
from neuro import Simulator

ETA = 2.0**-5
HARDWARE_STRING = "2^-5 * y0 * x1 - 2^-5 * y0 * y2 * w"


# --------------------------------------------------------------------------------------------
# Lowering the rule
# --------------------------------------------------------------------------------------------
def test_hardware_rule_lowers_to_exact_loihi_string():
    rule = softhebb_rule(eta=ETA, adaptive=False, anti_hebbian=False)
    assert to_loihi_strings(rule) == {"dw": HARDWARE_STRING}
    assert lowering_problems(rule) == []

    # The string is a faithful transcription: evaluate its products against the rule's
    # own formula dw = eta * y0 * (x1 - y2 * w) at random points (y0 a 0/1 spike).
    products = lower_products(rule)["dw"]
    assert [(p.coef, p.dependency, tuple((f.var, f.const, f.sgn) for f in p.factors)) for p in products] == [
        (ETA, "y0", (("x1", None, False),)),
        (-ETA, "y0", (("y2", None, False), ("w", None, False))),
    ]
    rng = np.random.default_rng(0)
    for _ in range(20):
        v = {"y0": float(rng.integers(0, 2)), "x1": rng.uniform(0, 5), "y2": rng.normal(0, 2), "w": rng.normal(0, 1)}
        lowered = sum(p.coef * v[p.dependency] * np.prod([v[f.var] for f in p.factors]) for p in products)
        assert lowered == pytest.approx(ETA * v["y0"] * (v["x1"] - v["y2"] * v["w"]), rel=1e-12, abs=1e-15)

    # What the Lava exporter builds from it: the 3-factor path, y2 sent by the post neuron as its current.
    pytest.importorskip("lava")
    from export.loihi_rules import to_loihi_rule

    lowered_rule = to_loihi_rule(rule, 1e-3)
    assert lowered_rule.strings == {"dw": HARDWARE_STRING}
    assert lowered_rule.three_factor
    assert set(lowered_rule.post_traces) == {"y2"} and lowered_rule.post_traces["y2"].driven_by == "i"


@pytest.mark.parametrize(
    "variant, offending, explanation",
    [
        (dict(adaptive=True), "sum_pre", None),
        (dict(anti_hebbian=True), "winner", "compares the post neurons with each other"),
    ],
    ids=["adaptive", "anti_hebbian"],
)
def test_simulator_only_variants_are_refused_by_name(variant, offending, explanation):
    rule = softhebb_rule(eta=ETA, **{"adaptive": False, "anti_hebbian": False, **variant})
    problems = lowering_problems(rule)
    # One error per product that carries the non-local factor: the Hebbian and the Oja term.
    assert len(problems) == 2
    for e in problems:
        assert isinstance(e, LoihiLoweringError)
        assert e.target == "dw" and offending in e.term and offending in str(e)
        if explanation:
            assert explanation in e.reason
    assert any("x1" in e.term for e in problems) and any("y2 * w" in e.term for e in problems)
    with pytest.raises(LoihiLoweringError, match=offending):
        to_loihi_strings(rule)


def test_adaptive_variant_is_explained_by_its_sum_over_the_pre_population():
    for e in lowering_problems(softhebb_rule(eta=ETA, adaptive=True)):
        assert "sums over the pre-synaptic population" in e.reason


# --------------------------------------------------------------------------------------------
# torch vs Lava floating_pt
# --------------------------------------------------------------------------------------------
SPK = SpikingConfig(dt=1e-3, max_rate=200.0, tau=20e-3, tau_mem=10e-3, v_th=0.8, inhibition=2.0, eta=ETA)
MONITORS = ["layer1.spikes", "inh.spikes", "layer1.v", "ff.w"]


def small_layer():
    """64 digit pixels -> 16 LIF neurons + the global inhibitory IAF neuron."""
    from neuro.datasets import load_digits

    net = build_spiking(64, SoftHebbConfig(n_neurons=16, init_radius=2.0, seed=0), SPK)
    images = scale_inputs(load_digits().x_train[:2], SPK)
    return net, images


def assert_same(ours, lava, min_layer1_spikes, min_inh_spikes, busy=10):
    s_ours, s_lava = ours["layer1.spikes"].numpy(), lava["layer1.spikes"].numpy()
    i_ours, i_lava = ours["inh.spikes"].numpy(), lava["inh.spikes"].numpy()
    # The layer spikes, competes through inh, and learns: a comparison that can fail.
    assert s_lava.sum() > min_layer1_spikes and i_lava.sum() > min_inh_spikes
    assert (s_lava.sum(axis=(0, 1)) > busy).sum() >= 2
    np.testing.assert_array_equal(s_ours, s_lava)
    np.testing.assert_array_equal(i_ours, i_lava)
    np.testing.assert_allclose(ours["layer1.v"].numpy(), lava["layer1.v"].numpy(), rtol=1e-9, atol=1e-9)
    w_ours, w_lava = ours["ff.w"].numpy()[:, 0], lava["ff.w"].numpy()[:, 0]
    np.testing.assert_allclose(w_ours, w_lava, rtol=1e-5, atol=1e-9)
    assert np.abs(w_lava[-1] - w_lava[0]).max() > 1e-3
    assert (np.abs(w_lava[-1] - w_lava[0]).max(axis=1) > 1e-3).sum() >= 2  # several neurons learned


def test_spiking_softhebb_layer_runs_identically_on_lava():
    pytest.importorskip("lava")
    from export.lava import run_lava

    net, images = small_layer()
    steps = 600
    ours = Simulator(net, dtype=torch.float64, seed=4).run(steps, {"pixels": images[0]}, monitors=MONITORS)
    lava = run_lava(net, steps, {"pixels": images[0]}, monitors=MONITORS, seed=4)
    assert_same(ours, lava, min_layer1_spikes=500, min_inh_spikes=100)


def test_lava_continues_softhebb_training_on_a_new_digit():
    """Torch learns digit A; Lava takes over its full state and learns digit B, exactly as torch would."""
    pytest.importorskip("lava")
    from export.lava import run_lava

    net, images = small_layer()
    steps = 300
    straight = Simulator(net, dtype=torch.float64, seed=4)
    straight.run(steps, {"pixels": images[0]})
    expected = straight.run(steps, {"pixels": images[1]}, monitors=MONITORS)
    first = Simulator(net, dtype=torch.float64, seed=4)
    first.run(steps, {"pixels": images[0]})
    lava = run_lava(net, steps, {"pixels": images[1]}, monitors=MONITORS, initial=first)
    assert_same(expected, lava, min_layer1_spikes=500, min_inh_spikes=100)


def test_current_monitor_matches_torch():
    pytest.importorskip("lava")
    from export.lava import run_lava

    net, images = small_layer()
    ours = Simulator(net, dtype=torch.float64, seed=4).run(60, {"pixels": images[0]}, monitors=["layer1.i"])
    lava = run_lava(net, 60, {"pixels": images[0]}, monitors=["layer1.i"], seed=4)
    assert np.abs(ours["layer1.i"].numpy()).max() > 0.1
    np.testing.assert_allclose(ours["layer1.i"].numpy(), lava["layer1.i"].numpy(), rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------------------------
# neuro check --target loihi2 on the full-size layer
# --------------------------------------------------------------------------------------------
def save_full_size(path, **variant):
    from neuro.io import save

    net = build_spiking(784, SoftHebbConfig(n_neurons=2000, seed=0), SpikingConfig(eta=ETA), **variant)
    save(path, Simulator(net, seed=0))


def test_neuro_check_loihi2_full_size_hardware_model_fits(tmp_path, capsys):
    from neuro.cli import main

    path = str(tmp_path / "softhebb_784x2000.h5")
    save_full_size(path)
    rc = main(["check", "--target", "loihi2", path])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "result: FITS" in out and f"{path} fits loihi2." in out
    assert "why it does not fit" not in out
    # 784 plastic 9-bit synapses + 1 static 8-bit synapse per layer1 neuron = 7,064 bits;
    # floor(2**20 / 7,064) = 148 neurons per core -> ceil(2000 / 148) = 14 cores, + 1 for inh.
    assert "layer1: 2,000 LIF neurons x 7,064 synapse bits each -> 148 per core" in out
    assert re.search(r"limited by synaptic memory per core -> 14 cores", out)
    assert "cores: 15 of 128 neuro cores" in out
    assert "ff: pixels -> layer1, 2,000 x 784 synapses x 9 bits (w 9 (plastic, mixed sign))" in out


@pytest.mark.parametrize(
    "variant, offending", [(dict(adaptive=True), "sum_pre"), (dict(anti_hebbian=True), "winner(y2)")],
    ids=["adaptive", "anti_hebbian"],
)
def test_neuro_check_loihi2_refuses_simulator_only_variants(tmp_path, capsys, variant, offending):
    from neuro.cli import main

    path = str(tmp_path / "softhebb_variant.h5")
    save_full_size(path, **variant)
    rc = main(["check", "--target", "loihi2", path])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "result: DOES NOT FIT (2 reasons)" in out
    reasons = [line for line in out.splitlines() if line.startswith("  - projection 'ff' (rule 'softhebb')")]
    assert len(reasons) == 2 and all(offending in r for r in reasons)
    assert f"{path} does not fit loihi2: 2 reasons listed above." in out


def test_benchmark_spiking_configuration_runs_identically_on_lava():
    """The SpikingConfig the benchmark trains with (eta 2^-7, init radius 4), on a small layer."""
    pytest.importorskip("lava")
    from export.lava import run_lava
    from neuro.datasets import load_digits

    spk = SpikingConfig()
    assert spk.eta == 2.0**-7 and SoftHebbConfig().init_radius == 4.0
    net = build_spiking(64, SoftHebbConfig(n_neurons=16, seed=1), spk)
    assert to_loihi_strings(net.projections["ff"].rule) == {"dw": "2^-7 * y0 * x1 - 2^-7 * y0 * y2 * w"}
    pixels = scale_inputs(load_digits().x_train[3:4], spk)[0]
    ours = Simulator(net, dtype=torch.float64, seed=2).run(500, {"pixels": pixels}, monitors=MONITORS)
    lava = run_lava(net, 500, {"pixels": pixels}, monitors=MONITORS, seed=2)
    # Each neuron wins a few times, then its norm (so its drive) has shrunk below threshold.
    assert_same(ours, lava, min_layer1_spikes=20, min_inh_spikes=10, busy=1)
    # The Oja term pulls the winners' weight norms from 4 towards 1.
    w_end = lava["ff.w"].numpy()[-1, 0]
    assert np.linalg.norm(w_end, axis=1).min() < 3.0

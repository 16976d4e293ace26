"""Target descriptions, fixed-point quantization, core mapping and fit checks (hardware/)."""
from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
from lava.magma.core.learning import constants as lava_constants
from lava.utils.weightutils import SignMode, clip_weights, determine_sign_mode, truncate_weights

import neuro.cli
from hardware import FLOAT_TARGET, LOIHI2, TARGETS, check, quantize_weights
from hardware.cli import main_check, register
from hardware.mapping import rates_from_spikes
from hardware.quantize import QuantizationError, lif_fixed_point
from hardware.targets import STATUSES, Figure
from neuro import (
    IAF,
    LIF,
    LearningRule,
    Network,
    Param,
    Simulator,
    Trace,
    abs_,
    clamp,
    exp,
    sign,
    softmax,
    standard_rules,
    u,
    w,
    x0,
    x1,
    y0,
    y1,
)
from neuro.io import save

MEM = 128 * 1024 * 8  # bits of synaptic memory per Loihi 2 core (assumed, see hardware/targets.py)


# --- targets -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", list(TARGETS.values()), ids=list(TARGETS))
def test_every_figure_has_a_source_and_a_status(target):
    figures = target.figures()
    assert len(figures) >= 25
    for name, fig in figures.items():
        assert isinstance(fig, Figure), name
        assert fig.status in STATUSES, name
        assert len(fig.source.strip()) > 15, f"{target.name}.{name} needs a real source"
    assert target.describe().count("source:") == len(figures)


def test_figure_without_source_is_refused():
    with pytest.raises(ValueError, match="source"):
        Figure(1, "", " ", "published")
    with pytest.raises(ValueError, match="status"):
        Figure(1, "", "somewhere", "rumour")


def test_loihi2_figures_match_lava_and_publications():
    assert LOIHI2.neuro_cores_per_chip.value == 128 and LOIHI2.neuro_cores_per_chip.status == "published"
    assert LOIHI2.embedded_cpus_per_chip.value == 6
    assert LOIHI2.neurons_per_chip.value == 1_000_000 and LOIHI2.synapses_per_chip.value == 120_000_000
    assert LOIHI2.neurons_per_core.value == 8192 and LOIHI2.neurons_per_core.status == "derived"
    assert LOIHI2.synaptic_memory_bits_per_core.value == MEM
    assert LOIHI2.synaptic_memory_bits_per_core.status == "assumed"
    # The fixed-point widths are Lava's own constants.
    assert LOIHI2.trace_bits.value == lava_constants.W_TRACE
    assert LOIHI2.trace_fraction_bits.value == lava_constants.W_TRACE_FRACTIONAL_PART
    assert LOIHI2.weight_bits_plastic.value == (lava_constants.W_WEIGHTS_U, lava_constants.W_WEIGHTS_S)
    assert LOIHI2.tag_bits.value == lava_constants.W_TAG_1_S
    assert LOIHI2.delay_tag_bits.value == lava_constants.W_TAG_2_U
    assert LOIHI2.accumulator_bits.value == lava_constants.W_ACCUMULATOR_S
    assert LOIHI2.t_epoch_range.value == (1, 2**lava_constants.W_EPOCH_TIME - 1)
    # Energies: Loihi 1 measurements (Davies 2018), assumed for Loihi 2, and said so.
    energies = {"energy_per_synop_J": 23.6, "energy_per_neuron_update_J": 81, "energy_per_synaptic_update_J": 120}
    for name, pj in energies.items():
        fig = getattr(LOIHI2, name)
        assert fig.value == pytest.approx(pj * 1e-12)
        assert fig.status == "assumed" and "Davies" in fig.source and "Loihi 1" in fig.source
    assert FLOAT_TARGET.neuro_cores_per_chip.value is None and FLOAT_TARGET.rule_ops is None


# --- quantization --------------------------------------------------------------------------------------
def _weights(kind: str, rng) -> np.ndarray:
    if kind == "excitatory":
        return rng.uniform(0, 0.7, (30, 40))
    if kind == "inhibitory":
        return -rng.uniform(0, 2.5, (30, 40))
    return rng.normal(0, 0.4, (30, 40))


@pytest.mark.parametrize("kind", ["excitatory", "inhibitory", "mixed"])
@pytest.mark.parametrize("scale", [None, 3.0, 100.0, 1e4])
def test_quantization_error_is_at_most_half_a_step(kind, scale):
    w = _weights(kind, np.random.default_rng(1))
    q = quantize_weights(w, LOIHI2, scale)
    mantissa, exponent, s, max_error = q  # unpacks like the brief's 4-tuple
    mode = {"excitatory": SignMode.EXCITATORY, "inhibitory": SignMode.INHIBITORY, "mixed": SignMode.MIXED}[kind]
    assert q.sign_mode == mode == determine_sign_mode(w)
    assert not q.saturated
    assert max_error == pytest.approx(np.abs(q.values() - w).max())
    assert max_error <= q.lsb / 2 * (1 + 1e-9)
    lo, hi = (-(2 ** (q.num_weight_bits - 1)), 2 ** (q.num_weight_bits - 1) - 1) if kind == "mixed" else (
        (0, 2**q.num_weight_bits - 1) if kind == "excitatory" else (-(2**q.num_weight_bits - 1), 0))
    assert 1 <= q.num_weight_bits <= 8 and lo <= mantissa.min() and mantissa.max() <= hi
    # What Lava's fixed-point Dense does with these integers: clip to 8 bits, truncate to num_weight_bits
    # (unchanged), then sum and shift by weight_exp; divided by the scale that is our value.
    lw = q.lava_weights
    assert np.array_equal(truncate_weights(clip_weights(lw, mode, num_bits=8), mode, q.num_weight_bits), lw)
    assert np.array_equal(lw * 2.0**exponent / s, q.values())
    if scale is None:  # full range: the largest weight magnitude sits at the top of the 8-bit range
        assert exponent == 0 and np.abs(lw).max() >= 254


def test_lava_fixed_point_dense_computes_with_the_quantized_weights():
    """Lava's own fixed_pt Dense -> LIF: the input a LIF receives is floor(sum of our values x scale)."""
    from export.lava import _prepare_lava_import

    _prepare_lava_import()  # whatever ran before (a tqdm bar) may have fixed the multiprocessing context
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF as LavaLIF
    from lava.proc.monitor.process import Monitor

    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (6, 10))
    q = quantize_weights(w, LOIHI2, scale=40.0)
    assert q.sign_mode == SignMode.MIXED and q.exponent < 0  # the sum is shifted right: floored
    spikes = (rng.random((10, 5)) < 0.5).astype(float)
    src = RingBuffer(data=spikes)
    dense = Dense(weights=q.lava_weights, weight_exp=q.exponent, num_weight_bits=q.num_weight_bits,
                  sign_mode=q.sign_mode)
    lif = LavaLIF(shape=(6,), du=4095, dv=0, vth=100000, bias_mant=0)  # u = this step's input << 6
    src.s_out.connect(dense.s_in)
    dense.a_out.connect(lif.a_in)
    mon = Monitor()
    mon.probe(lif.u, 5)
    try:
        lif.run(condition=RunSteps(num_steps=5), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        u = np.asarray(mon.get_data()[lif.name]["u"]).T
    finally:
        lif.stop()
    expected = np.floor(q.values() * q.scale @ spikes)  # spikes of step k arrive at step k + 1
    assert np.array_equal(u[:, 1:] / 64, expected[:, :-1])


def test_quantization_with_a_larger_scale_is_finer_until_the_mantissa_is_full():
    w = _weights("excitatory", np.random.default_rng(2))
    coarse = quantize_weights(w, LOIHI2, scale=50.0)
    fine = quantize_weights(w, LOIHI2)
    assert fine.max_error < coarse.max_error
    assert coarse.exponent < 0  # 50 * 0.7 = 35 integer units: a negative exponent keeps 8 bits of precision


def test_quantization_saturates_beyond_the_exponent_range():
    w = np.array([[0.0, 1.0, 2.0]])
    q = quantize_weights(w, LOIHI2, scale=1e6)  # 2e6 integer units need 2e6 / 255 > 2**7
    assert q.saturated and q.exponent == LOIHI2.weight_exponent_range.value[1]
    assert q.max_error > q.lsb / 2 and q.notes


def test_quantization_edge_cases():
    q = quantize_weights(np.zeros((3, 4)), LOIHI2)
    assert q.max_error == 0 and not q.mantissa.any()
    with pytest.raises(QuantizationError, match="excitatory"):
        quantize_weights(np.array([[-0.1, 0.2]]), LOIHI2, sign_mode=SignMode.EXCITATORY)
    with pytest.raises(QuantizationError, match="NaN"):
        quantize_weights(np.array([[np.nan]]), LOIHI2)
    # Weights that are multiples of a power of two pack into fewer bits (Lava's optimize_weight_bits).
    q = quantize_weights(np.array([[0.0, 0.5, 1.0]]), LOIHI2, scale=4.0)
    assert q.num_weight_bits == 2 and q.mantissa.tolist() == [[0, 1, 2]] and q.max_error == 0


def test_lif_fixed_point_parameters_share_the_weight_scale():
    fx = lif_fixed_point(LIF(tau_mem=20e-3, tau_syn=5e-3, v_th=1.0), 1e-3, scale=100.0, target=LOIHI2)
    assert fx.vth == round(1.0 / (1e-3 / 20e-3) * 100)  # v_th / dv * scale
    assert fx.dv == round(4096 / 20) and fx.du == round(4096 / 5) - 1  # Lava adds 1 to du
    assert not fx.problems
    assert lif_fixed_point(LIF(tau_mem=0.5e-3), 1e-3, 1.0, LOIHI2).problems  # dt/tau > 1
    assert lif_fixed_point(IAF(v_th=1.0), 1e-3, 1e6, LOIHI2).problems  # threshold beyond 17 bits


# --- mapping and fit -----------------------------------------------------------------------------------
def softhebb_sized(rule, n_in=784, n_out=2000, model=None, weights=None):
    net = Network(dt=1e-3, name="softhebb_sized")
    net.input("pixels", n_in)
    net.population("exc", n_out, model or LIF(tau_mem=20e-3, tau_syn=5e-3))
    w0 = np.random.default_rng(0).uniform(0, 0.3, (n_out, n_in)) if weights is None else weights
    net.connect("pixels", "exc", w0, rule=rule, name="ff")
    return net


def test_softhebb_sized_layer_maps_by_the_formula():
    net = softhebb_sized(standard_rules.stdp(a_plus=2**-7, a_minus=2**-7, w_min=0.0, w_max=math.inf))
    r = check(net, LOIHI2)
    assert r.fits, r.reasons
    bits = lava_constants.W_WEIGHTS_U  # a single-sign plastic weight, nothing else learned
    per_neuron = 784 * bits
    per_core = min(8192, MEM // per_neuron)
    assert (per_neuron, per_core) == (6272, 167)
    assert r.populations[0].neurons_per_core == per_core
    assert r.populations[0].limited_by == "synaptic memory per core"
    assert r.cores_used == math.ceil(2000 / per_core) == 12
    assert r.synapse_memory_bits == 2000 * 784 * bits == 12_544_000
    # Activity at the default 10 Hz and dt = 1 ms: p = 0.01 spikes per neuron per step.
    p = 0.01
    assert r.synops_per_step == pytest.approx(784 * p * 2000)
    updates = 784 * 2000 * (1 - (1 - p) * (1 - p))  # x0 and y0 terms, t_epoch = 1
    assert r.synaptic_updates_per_step == pytest.approx(updates)
    assert r.neuron_updates_per_step == 2000
    assert r.energy_per_step_J == pytest.approx(784 * p * 2000 * 23.6e-12 + 2000 * 81e-12 + updates * 120e-12)
    q = r.quantized["ff"]
    assert q.sign_mode == SignMode.EXCITATORY and q.max_error <= q.lsb / 2 * (1 + 1e-9)
    # The shared scale keeps the LIF threshold v_th / dv within Lava's 17 bits.
    assert 1.0 / (1e-3 / 20e-3) * q.scale <= 2**17 - 1
    text = r.summary()
    assert "FITS" in text and "12 of 128 neuro cores" in text and "12,544,000 bits" in text


def test_default_stdp_bounds_are_not_loihi_expressible():
    r = check(softhebb_sized(standard_rules.stdp()), LOIHI2)  # w in [0, 1], rates 0.01 and 0.0105
    assert not r.fits
    assert len(r.reasons) == 3, r.reasons
    assert "[0, 1]" in r.reasons[0] and "only keeps the sign" in r.reasons[0] and "w_max=math.inf" in r.reasons[0]
    assert any("'0.01 * y0 * x1'" in reason and "2^-7" in reason for reason in r.reasons)
    assert any("'-0.0105 * x0 * y1'" in reason for reason in r.reasons)
    assert "DOES NOT FIT (3 reasons)" in r.summary()


def test_measured_rates_replace_the_assumed_rate():
    net = softhebb_sized(standard_rules.stdp(a_plus=2**-7, a_minus=2**-7, w_max=math.inf), n_in=20, n_out=10)
    spikes = {"pixels.spikes": np.zeros((100, 2, 20)), "exc.spikes": np.zeros((100, 2, 10))}
    spikes["pixels.spikes"][::10] = 1  # 1 spike every 10 steps = 100 Hz at dt = 1 ms
    rates = rates_from_spikes(spikes, net.dt)
    assert rates == pytest.approx({"pixels": 100.0, "exc": 0.0})
    r = check(net, LOIHI2, rates=rates)
    assert r.synops_per_step == pytest.approx(20 * 0.1 * 10)
    assert r.rate_source.startswith("measured")


def _bad_rule(dw, **kw):
    return LearningRule(dw=dw, traces={"x1": Trace(1.0, 20e-3), "y1": Trace(1.0, 20e-3)},
                        w_min=0.0, w_max=math.inf, **kw)


def test_softmax_rule_reports_the_offending_term():
    rule = _bad_rule(Param("eta") * y0 * (softmax(y1, 0.5) - w), params={"eta": 2**-3})
    r = check(softhebb_sized(rule, n_in=30, n_out=20), LOIHI2)
    assert not r.fits and len(r.reasons) == 1, r.reasons
    reason = r.reasons[0]
    assert "'ff'" in reason and "dw: the product '0.125 * y0 * softmax(y1, 0.5)'" in reason
    assert "post population" in reason and "WTA" in reason


@pytest.mark.parametrize(
    "dw, words",
    [
        (2**-7 * y0 * abs_(x1 - w), "no absolute value"),
        (2**-7 * y0 * exp(x1), "multiplies and adds only"),
        (2**-7 * y0 * x1**0.5, "fractional"),
        (2**-7 * y0 * clamp(x1, 0.0, 0.5), "no clipping"),
        (2**-7 * y0 * (x1 / y1), "no division on chip"),
        (2**-7 * y0 * sign(x1), "sgn() applies only to w, t or d"),
        (2**-7 * x0 * u, "second dependency"),
    ],
)
def test_non_loihi_operations_are_named(dw, words):
    r = check(softhebb_sized(_bad_rule(dw, u_exponent=2), n_in=30, n_out=20), LOIHI2)
    assert not r.fits and any(words in reason for reason in r.reasons), r.reasons


def test_loihi_expressible_rules_pass():
    # u as a factor is harmless when it is 1 in every epoch (u_exponent = 0), and first it is the dependency.
    assert check(softhebb_sized(_bad_rule(2**-7 * x0 * u), n_in=30, n_out=20), LOIHI2).fits
    # Constant sub-expressions are folded (computed before upload); sign(w) and soft bounds are products.
    rule = _bad_rule(
        Param("k") * 2**-6 * y0 * x1 * (1.0 - w) - 2**-6 / Param("k") * x0 * y1 * sign(w - 0.5),
        params={"k": 0.5},
    )
    assert check(softhebb_sized(rule, n_in=30, n_out=20), LOIHI2).fits
    rm = standard_rules.reward_modulated_stdp(a_plus=2**-7, a_minus=2**-7, eligibility_decay=2**-4, learning_rate=1.0)
    r = check(softhebb_sized(rm, n_in=30, n_out=20), LOIHI2)
    assert r.fits, r.reasons
    assert r.projections[0].bits_per_synapse == lava_constants.W_WEIGHTS_S + lava_constants.W_TAG_1_S


def test_rule_ranges_are_checked():
    r = check(softhebb_sized(standard_rules.stdp(a_plus=2**-7, a_minus=2**-7, w_max=math.inf, t_epoch=64), n_in=30, n_out=20), LOIHI2)
    assert any("t_epoch = 64" in reason for reason in r.reasons)
    r = check(softhebb_sized(standard_rules.stdp(a_plus=2**-7, a_minus=2**-7, w_max=math.inf, tau_plus=0.5), n_in=30, n_out=20), LOIHI2)
    assert any("trace x1 tau" in reason and "500 steps" in reason for reason in r.reasons)
    neg = softhebb_sized(standard_rules.stdp(a_plus=2**-7, a_minus=2**-7, w_max=math.inf), n_in=30, n_out=20, weights=np.full((20, 30), -0.1))
    assert any("start negative" in reason for reason in check(neg, LOIHI2).reasons)


def test_neuron_models_lava_cannot_express():
    rule = standard_rules.stdp(a_plus=2**-7, a_minus=2**-7, w_max=math.inf)
    r = check(softhebb_sized(rule, n_in=30, n_out=20, model=LIF(v_reset=-0.2)), LOIHI2)
    assert not r.fits and any("v_reset = -0.2" in reason and "resets v to 0" in reason for reason in r.reasons)
    r = check(softhebb_sized(rule, n_in=30, n_out=20, model=LIF(theta_plus=0.05, tau_theta=1.0)), LOIHI2)
    assert any("adaptive threshold" in reason for reason in r.reasons)
    r = check(softhebb_sized(rule, n_in=30, n_out=20, model=IAF(v_reset=0.5)), LOIHI2)
    assert any("v_reset = 0.5" in reason for reason in r.reasons)


def test_capacity_limits():
    net = Network(dt=1e-3)
    net.population("big", 8192 * 128 + 1)  # one neuron more than 128 full cores
    r = check(net, LOIHI2)
    assert r.cores_used == 129
    assert any("needs 129 neuro cores" in reason for reason in r.reasons)
    assert any("neurons exceed" in reason for reason in r.reasons)
    assert check(net, LOIHI2.with_chips(2)).cores_available == 256
    wide = Network(dt=1e-3)
    wide.input("inp", MEM // 8 + 1)  # one 8-bit synapse more than a core holds
    wide.population("out", 1)
    wide.connect("inp", "out", 0.001, rule=standard_rules.stdp(a_plus=2**-7, a_minus=2**-7, w_max=math.inf))
    r = check(wide, LOIHI2)
    assert any("one neuron's fan-in" in reason for reason in r.reasons)


def test_replicas_multiply_cores_and_shared_learning_is_refused():
    rule = standard_rules.stdp(a_plus=2**-7, a_minus=2**-7, w_max=math.inf)
    per_replica = np.random.default_rng(0).uniform(0, 0.3, (3, 2000, 784))
    r = check(softhebb_sized(rule, weights=per_replica), LOIHI2, replicas=3)
    assert r.fits, r.reasons
    assert r.cores_per_replica == 12 and r.cores_used == 36
    assert r.synapse_memory_bits == 3 * 12_544_000
    shared = check(softhebb_sized(rule), LOIHI2, replicas=3)
    assert any("shared by 3 replicas" in reason for reason in shared.reasons)
    eleven = check(softhebb_sized(rule), LOIHI2, replicas=11)
    assert any("needs 132 neuro cores (12 per replica x 11 replicas)" in reason for reason in eleven.reasons)


def test_float_target_accepts_everything():
    dw = 0.1 * y0 * (softmax(y1) - abs_(w)) * (w / x1) + 0.01 * x0 * u
    rule = LearningRule(dw=dw, traces={"x1": Trace(1.0, 5.0), "y1": Trace(1.0, 20e-3)}, t_epoch=100,
                        w_min=0.1, w_max=0.9)
    net = softhebb_sized(rule, n_in=30, n_out=20, model=LIF(v_reset=-0.3, theta_plus=0.1, tau_theta=1.0))
    assert not check(net, LOIHI2).fits
    r = check(net, FLOAT_TARGET, replicas=4)
    assert r.fits and r.reasons == []
    assert r.cores_used is None and r.energy_per_step_J is None
    assert r.synapse_memory_bits == 4 * 20 * 30 * 32
    assert "FITS" in r.summary() and "no limit" in r.summary()


def test_check_uses_a_simulators_current_weights_and_replicas():
    net = softhebb_sized(standard_rules.stdp(a_plus=2**-7, a_minus=2**-7, w_max=math.inf), n_in=30, n_out=20)
    sim = Simulator(net, replicas=1)
    sim.set_weights("ff", np.full((20, 30), 0.25))
    r = check(sim, LOIHI2)
    assert r.replicas == 1 and r.quantized["ff"].max_error <= r.quantized["ff"].lsb / 2 * (1 + 1e-9)
    assert np.unique(r.quantized["ff"].values()).size == 1


# --- the neuro check command ---------------------------------------------------------------------------
@pytest.fixture
def model_files(tmp_path):
    good = softhebb_sized(standard_rules.stdp(a_plus=2**-7, a_minus=2**-7, w_max=math.inf), n_in=30, n_out=20)
    bad = softhebb_sized(standard_rules.stdp(), n_in=30, n_out=20)  # w in [0, 1]
    paths = {}
    for name, net in (("good", good), ("bad", bad)):
        paths[name] = tmp_path / f"{name}.h5"
        save(paths[name], Simulator(net, replicas=1))
    return paths


def _args(model, target="loihi2", rate=10.0):
    return argparse.Namespace(model=str(model), target=target, rate=rate, chips=1, replicas=None, figures=False)


def test_main_check_exit_status_and_report(model_files, capsys):
    assert main_check(_args(model_files["good"])) == 0
    out = capsys.readouterr().out
    assert "result: FITS" in out and "fits loihi2" in out and "cores: 1 of 128" in out
    assert main_check(_args(model_files["bad"])) == 1
    out = capsys.readouterr().out
    assert "DOES NOT FIT" in out and "[0, 1]" in out and "does not fit loihi2: 3 reasons" in out
    assert main_check(_args(model_files["bad"], target="float")) == 0
    assert main_check(_args(model_files["good"].parent / "missing.h5")) == 2
    assert "neuro check:" in capsys.readouterr().err


def test_register_adds_the_check_command(model_files, capsys):
    parser = argparse.ArgumentParser(prog="neuro")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["check", "--target", "loihi2", str(model_files["good"]), "--rate", "5", "--figures"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "pixels 5 Hz" in out and "source: Davies" in out
    with pytest.raises(SystemExit):
        parser.parse_args(["check", "--target", "truenorth", str(model_files["good"])])


def test_neuro_cli_runs_check_through_the_entry_point_group(model_files, monkeypatch, capsys):
    real_group = neuro.cli._group

    class EntryPoint:
        name = "check"

        def load(self):
            return register

    def group(name):
        found = dict(real_group(name))
        if name == "neuro.commands":
            found["check"] = EntryPoint()
        return found

    monkeypatch.setattr(neuro.cli, "_group", group)
    assert neuro.cli.main(["check", str(model_files["bad"])]) == 1
    assert neuro.cli.main(["check", "--target", "float", str(model_files["bad"])]) == 0
    assert "result: FITS" in capsys.readouterr().out


def test_check_counts_per_replica_weights_and_validates_replicas_rates_and_decays():
    net = Network()
    net.input("inp", 20)
    net.population("out", 8)
    net.connect("inp", "out", np.full((3, 8, 20), 0.1))  # three weight sets: three copies on chip
    assert check(net).replicas == 3
    with pytest.raises(ValueError, match="replicas=5, but projection 'inp_to_out' holds weights for 3 replicas"):
        check(net, replicas=5)
    for bad in (float("nan"), -50.0, float("inf")):
        with pytest.raises(ValueError, match="rates must be finite rates >= 0"):
            check(net, rates={"inp": bad})
    # dt / tau_mem within half a 12-bit step of 1 (tau_mem >= dt): Lava's largest decay, not a refusal
    for tau in (1.0001e-3, 1e-3):
        close = Network(dt=1e-3)
        close.input("i", 4)
        close.population("o", 2, LIF(tau_mem=tau))
        close.connect("i", "o", 0.1)
        report = check(close)
        assert report.fits and not report.reasons, report.reasons
        assert any("dv = dt/tau" in n and "4095/4096" in n for n in report.notes)

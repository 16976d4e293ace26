"""Equivalence contract (DESIGN.md): torch engine in fixed-point mode vs Lava ``fixed_pt``, bit-exact.

The Lava graph is built here by hand from Lava's own processes (RingBuffer ->
Dense -> LIF) with the integer parameters of :func:`hardware.fixed_point.to_fixed_point`,
and run with ``Loihi2SimCfg(select_tag="fixed_pt")`` (``PySendModelFixed``,
``PyDenseModelBitAcc``, ``PyLifModelBitAcc``). Spikes, ``u`` and ``v`` must be
identical (``np.array_equal``) at every step.
"""
import dataclasses
import math

import numpy as np
import pytest
import torch

from neuro import IAF, LIF, LearningRule, Network, PoissonEncoder, Trace, x1, y0, y2

pytest.importorskip("lava")
from export.lava import _prepare_lava_import, encoded_inputs  # noqa: E402
from hardware.fixed_point import FixedPointError, FixedPointSimulator, lava_product, to_fixed_point  # noqa: E402
from hardware.loihi_rules import LoihiFactor, LoihiProduct, format_products  # noqa: E402
from neuro.standard_rules import stdp  # noqa: E402
from lava.utils.weightutils import SignMode  # noqa: E402

DT = 1e-3
STEPS = 600


def compare(net, values, steps=STEPS, seed=4, **quantization):
    fixed = to_fixed_point(net, **quantization)
    sim = FixedPointSimulator(fixed, seed=seed)
    pops = list(fixed.populations)
    ours = sim.run(steps, values, monitors=[f"{p}.{v}" for p in pops for v in ("spikes", "u", "v")])
    lava = run_lava_fixed(fixed, steps, encoded_inputs(net, steps, values, seed=seed))
    for p in pops:
        for var in ("spikes", "u", "v"):
            a, b = ours[f"{p}.{var}"][:, 0].numpy(), lava[p][var]
            assert a.shape == b.shape == (steps, fixed.populations[p].n)
            assert np.array_equal(a, b), f"{p}.{var}: first difference at step {np.argwhere(a != b)[0]}"
    return fixed, ours


def lateral_inhibition_net(w_max=0.6, n_in=20, n_out=8, v_leak=0.0, rate=150.0):
    rng = np.random.default_rng(0)
    net = Network(dt=DT)
    net.input("inp", n_in, encoder=PoissonEncoder(max_rate=rate))
    net.population("out", n_out, LIF(tau_mem=10e-3, tau_syn=5e-3, v_th=1.0, v_leak=v_leak))
    net.connect("inp", "out", rng.uniform(0.0, w_max, (n_out, n_in)), name="ff")
    net.connect("out", "out", -0.5 * (1 - np.eye(n_out)), name="inh")
    return net


VALUES = {"inp": np.random.default_rng(1).uniform(0, 1, 20)}


def test_lif_dense_with_recurrent_inhibition_is_bit_exact_with_lava():
    net = lateral_inhibition_net()
    fixed, ours = compare(net, VALUES)
    assert ours["out.spikes"].sum() > 100
    assert fixed.projections["ff"].sign_mode == SignMode.EXCITATORY
    assert fixed.projections["inh"].sign_mode == SignMode.INHIBITORY
    pop = fixed.populations["out"]
    assert (pop.du, pop.dv) == (round(4096 * 0.2) - 1, round(4096 * 0.1))
    assert pop.vth == round(1.0 / 0.1 * pop.scale)


def test_bias_mixed_weights_and_iaf_are_bit_exact_with_lava():
    rng = np.random.default_rng(2)
    net = Network(dt=DT)
    net.input("inp", 20, encoder=PoissonEncoder(max_rate=200.0))
    net.population("leaky", 10, LIF(tau_mem=20e-3, tau_syn=3e-3, v_th=1.0, v_leak=0.6))
    net.population("iaf", 4, IAF(v_th=2.0))
    net.connect("inp", "leaky", rng.uniform(-0.4, 0.8, (10, 20)), name="mixed")
    net.connect("leaky", "iaf", rng.uniform(0.0, 0.5, (4, 10)), name="to_iaf")
    net.connect("leaky", "leaky", -0.2 * (1 - np.eye(10)), name="inh")
    fixed, ours = compare(net, VALUES)
    assert fixed.projections["mixed"].sign_mode == SignMode.MIXED
    assert fixed.populations["leaky"].bias_mant != 0
    assert ours["leaky.spikes"].sum() > 100 and ours["iaf.spikes"].sum() > 20


def test_24_bit_wrap_of_u_and_clipping_of_v_match_lava():
    # No headroom and strong input: u overflows Lava's 24 bits and wraps, v saturates.
    net = lateral_inhibition_net(w_max=3.0, rate=400.0)
    fixed, ours = compare(net, VALUES, steps=300, headroom_bits=0)
    u = ours["out.u"].numpy()
    assert np.any(np.abs(np.diff(u, axis=0)) > 2**23), "expected a wrap-around of u"


def test_negative_weight_exponent_is_bit_exact_with_lava():
    # Large threshold relative to the weights: scale forces weight_exp < 0 (right shift of the sums).
    net = lateral_inhibition_net(w_max=0.6)
    pop = to_fixed_point(net).populations["out"]
    fixed, ours = compare(net, VALUES, steps=300, scales={"out": pop.scale / 8})
    assert fixed.projections["ff"].weight_exp < 0
    assert ours["out.spikes"].sum() > 30


def test_replicas_run_independent_copies():
    net = Network(dt=DT)
    net.input("inp", 20)
    net.population("out", 8, LIF())
    net.connect("inp", "out", np.random.default_rng(0).uniform(0, 0.6, (8, 20)), name="ff")
    spikes = (torch.rand(200, 3, 20, generator=torch.Generator().manual_seed(0)) < 0.2).double()
    batched = FixedPointSimulator(net, replicas=3).run(200, {"inp": spikes}, monitors=["out.v", "out.spikes"])
    for r in range(3):
        single = FixedPointSimulator(net).run(200, {"inp": spikes[:, r]}, monitors=["out.v", "out.spikes"])
        assert torch.equal(batched["out.v"][:, r], single["out.v"][:, 0])
        assert torch.equal(batched["out.spikes"][:, r], single["out.spikes"][:, 0])
    assert batched["out.spikes"].dtype == torch.int64


def test_fixed_point_follows_the_float_engine_closely():
    from neuro import Simulator

    net = lateral_inhibition_net()
    fixed = FixedPointSimulator(net, seed=4).run(STEPS, VALUES, monitors=["out.spikes"])
    flt = Simulator(net, dtype=torch.float64, seed=4).run(STEPS, VALUES, monitors=["out.spikes"])
    n_fixed, n_float = fixed["out.spikes"].sum().item(), flt["out.spikes"].sum().item()
    assert abs(n_fixed - n_float) <= 0.1 * n_float


def test_unsupported_networks_are_refused():
    net = lateral_inhibition_net()
    net.connect("inp", "out", np.zeros((8, 20)), rule=LearningRule(dw=0.01 * y0 * x1, traces={"x1": Trace(1.0, 20e-3)}), name="plastic")
    with pytest.raises(FixedPointError, match="scales each product by m"):
        to_fixed_point(net)
    net = lateral_inhibition_net()
    rule = LearningRule(dw=2**-5 * y0 * x1 * y2, traces={"x1": Trace(1.0, 20e-3), "y2": Trace(driven_by="v")}, w_max=math.inf)
    net.connect("inp", "out", np.zeros((8, 20)), rule=rule, name="plastic")
    with pytest.raises(FixedPointError, match="3-factor"):
        to_fixed_point(net)
    net = Network(dt=DT)
    net.input("inp", 2)
    net.population("out", 2, LIF(v_reset=-0.1))
    with pytest.raises(FixedPointError, match="resets to 0"):
        to_fixed_point(net)


# --- plastic projections: Lava's LearningDense in fixed point (LearningConnectionModelBitApproximate) -------------
def run_lava_fixed(fixed, steps, spikes, probe_weights=True, third_factors=None):
    """Lava graph of a compiled network with the fixed-point models: ``{pop: {"spikes", "u", "v"}}`` as
    ``(steps, N)`` arrays; ``Dense`` for static projections, ``LearningDense`` for plastic ones
    (``lif.s_out -> s_in_bap``), which also return ``{proj: {"weights", "tag_1"?, "tag_2"?: (steps, Npost, Npre)}}`` Lava integers (tags
    when the rule writes them). A 3-factor post population is a ``FactorLIF`` (its ``fixed_pt`` model) whose
    ``s_out_bap`` and ``s_out_y1..3`` feed the ``LearningDense``; ``third_factors[pop]``: ``(steps, N)``
    integers from a ``RingBuffer`` into ``a_third_factor_in``."""
    _prepare_lava_import()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense, LearningDense
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF as LavaLIF
    from lava.proc.monitor.process import Monitor

    procs = {name: RingBuffer(data=spikes[name].T.astype(np.int32).copy()) for name in fixed.inputs}
    from export.lava_procs import FactorLIF

    third_factors = dict(third_factors or {})
    for name, p in fixed.populations.items():
        if p.factor_traces is None:
            procs[name] = LavaLIF(name=name, **p.lava_kwargs())
            continue
        uses_tf = ("driven", "third_factor") in p.factor_traces.values()
        procs[name] = FactorLIF(name=name, traces=p.factor_traces, v_scale=1.0, third_factor=uses_tf, **p.lava_kwargs())
        if uses_tf:
            src = RingBuffer(data=np.asarray(third_factors.pop(name)).T.astype(np.int32).copy())
            src.s_out.connect(procs[name].a_third_factor_in)
    assert not third_factors
    conns = {}
    for proj in fixed.projections.values():
        cls = Dense if proj.learning is None else LearningDense
        conn = cls(name=proj.name, **proj.lava_kwargs())
        procs[proj.pre].s_out.connect(conn.s_in)
        conn.a_out.connect(procs[proj.post].a_in)
        if proj.learning is not None:
            post = procs[proj.post]
            (post.s_out_bap if isinstance(post, FactorLIF) else post.s_out).connect(conn.s_in_bap)
            if proj.learning.three_factor:
                for k in ("y1", "y2", "y3"):
                    getattr(post, f"s_out_{k}").connect(getattr(conn, f"s_in_{k}"))
            conns[proj.name] = conn
    monitors = {}
    for name in fixed.populations:
        for var in ("s_out", "u", "v"):
            mon = Monitor()
            mon.probe(getattr(procs[name], var), steps)
            monitors[name, var] = mon
    if probe_weights:
        for name, conn in conns.items():
            rule = fixed.projections[name].learning
            for var in ["weights"] + [v for v, target in (("tag_1", "dt"), ("tag_2", "dd")) if target in rule.products]:
                mon = Monitor()
                mon.probe(getattr(conn, var), steps)
                monitors[name, var] = mon
    anchor = procs[next(iter(fixed.populations))]
    out = {name: {} for name in list(fixed.populations) + list(conns)}
    try:
        anchor.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        for (name, var), mon in monitors.items():
            out[name]["spikes" if var == "s_out" else var] = np.asarray(mon.get_data()[name][var])
    finally:
        anchor.stop()
    return out


def stdp_net(rule, n_in=20, n_out=8, w_max=0.6, rate=150.0, inh=-0.5):
    rng = np.random.default_rng(0)
    net = Network(dt=DT)
    net.input("inp", n_in, encoder=None if rate is None else PoissonEncoder(max_rate=rate))
    net.population("out", n_out, LIF(tau_mem=10e-3, tau_syn=5e-3, v_th=1.0))
    net.connect("inp", "out", rng.uniform(0.0, w_max, (n_out, n_in)), name="ff", rule=rule)
    net.connect("out", "out", inh * (1 - np.eye(n_out)), name="inh")
    return net


def compare_plastic(net, steps=STEPS, seed=4, rng_seed=7, third_factors=None, **quantization):
    """Ours vs Lava: spikes, u, v and the plastic weights (and tags) equal at every step; returns both runs.
    ``third_factors``: float ``(steps, N)`` by population, as integers ``third_factor_integers`` on both sides."""
    fixed = to_fixed_point(net, rng_seed=rng_seed, **quantization)
    third_factors = dict(third_factors or {})
    tf_int = {k: fixed.populations[k].third_factor_integers(v) for k, v in third_factors.items()}
    values = {"inp": np.random.default_rng(1).uniform(0, 1, net.populations["inp"].n)}
    pops, plastic = list(fixed.populations), [k for k, p in fixed.projections.items() if p.learning is not None]
    syn = {
        k: ["weights"] + [v for v, d in (("tag_1", "dt"), ("tag_2", "dd")) if d in fixed.projections[k].learning.products]
        for k in plastic
    }
    monitors = [f"{p}.{v}" for p in pops for v in ("spikes", "u", "v")] + [f"{k}.{v}" for k in plastic for v in syn[k]]
    ours = FixedPointSimulator(fixed, seed=seed).run(steps, values, monitors=monitors, third_factors=third_factors)
    spikes = encoded_inputs(net, steps, values, seed=seed)
    lava = run_lava_fixed(fixed, steps, spikes, third_factors=tf_int)
    for p in pops:
        for var in ("spikes", "u", "v"):
            a, b = ours[f"{p}.{var}"][:, 0].numpy(), lava[p][var]
            assert a.shape == b.shape == (steps, fixed.populations[p].n)
            assert np.array_equal(a, b), f"{p}.{var}: first difference at step {np.argwhere(a != b)[0]}"
    for k in plastic:
        for var in syn[k]:
            a, b = ours[f"{k}.{var}"][:, 0].numpy(), lava[k][var]
            assert a.shape == b.shape
            assert np.array_equal(a, b), f"{k}.{var}: first difference at (step, post, pre) {np.argwhere(a != b)[0]}"
        a = ours[f"{k}.weights"][:, 0].numpy()
        changed = (a[-1] != a[0]).sum()
        assert changed >= a[0].size // 2, f"{k}: only {changed} weights changed"
        assert len({a[t].tobytes() for t in range(0, steps, 50)}) == len(range(0, steps, 50)), "weights stalled"
    return fixed, ours, lava, spikes


def test_additive_stdp_t_epoch_1_is_bit_exact_with_lava_learning_dense():
    rule = dataclasses.replace(stdp(a_plus=2**-5, a_minus=5 * 2**-7), w_max=math.inf)
    fixed, ours, lava, _ = compare_plastic(stdp_net(rule))
    L = fixed.projections["ff"].learning
    # The integer mapping: power-of-two weight unit and trace scale, taus in steps, same lowered string.
    assert fixed.populations["out"].scale == L.weight_unit * 2 ** fixed.projections["ff"].weight_exp
    assert (L.weight_unit, L.trace_scale) == (128.0, 16.0)
    assert L.impulses == {"x1": 16.0, "y1": 16.0} and L.taus == {"x1": 20, "y1": 20}
    assert L.strings == {"dw": "2^-2 * y0 * x1 - 5*2^-4 * x0 * y1"}
    assert ours["out.spikes"].sum() > 100
    # Negative control: the same run with another learning rng_seed (trace rounding) is not Lava's.
    other = FixedPointSimulator(to_fixed_point(stdp_net(rule), rng_seed=8), seed=4).run(
        STEPS, {"inp": np.random.default_rng(1).uniform(0, 1, 20)}, monitors=["ff.weights"]
    )
    assert not np.array_equal(other["ff.weights"][:, 0].numpy(), lava["ff"]["weights"])


@pytest.mark.parametrize("t_epoch", [1, 4, 8])
def test_multiplicative_stdp_with_fractional_impulses_is_bit_exact_with_lava(t_epoch):
    # (128 - w) brackets, factor-width right shifts (x1 * w: 7 + 9 + 4 bits -> >> 5), impulses of 20.8
    # (stochastic rounding of the 1/256 fraction), two taus and, for t_epoch > 1, several spikes per epoch.
    rule = stdp(a_plus=2**-3, a_minus=3 * 2**-3, multiplicative=True, impulse=1.3, tau_plus=15e-3,
                tau_minus=30e-3, t_epoch=t_epoch)
    rule = dataclasses.replace(rule, w_max=math.inf)
    net = stdp_net(rule, n_in=16, n_out=6, w_max=0.7, rate=300.0, inh=-0.3)
    fixed, ours, _, spikes = compare_plastic(net, rng_seed=11)
    L = fixed.projections["ff"].learning
    assert L.strings == {"dw": "2^-7 * y0 * x1 * (128 - w) - 3*2^-7 * x0 * y1 * w"}
    assert [p.shift for p in L.lava_products["dw"]] == [5, 5]
    assert ours["out.spikes"].sum() > 200
    if t_epoch > 1:
        pre = spikes["inp"][: STEPS // t_epoch * t_epoch].reshape(-1, t_epoch, 16).sum(1)
        post = ours["out.spikes"][:, 0].numpy()[: STEPS // t_epoch * t_epoch].reshape(-1, t_epoch, 6).sum(1)
        assert pre.max() > 1 and post.max() > 1, "no epoch with several spikes of one neuron"


def test_lava_product_is_what_lavas_parser_makes_of_the_lowered_string():
    from lava.magma.core.learning.learning_rule import Loihi2FLearningRule

    products = (
        LoihiProduct(2**-7, "y0", (LoihiFactor("x1"), LoihiFactor("w", -128.0))),
        LoihiProduct(-3 * 2**-7, "x0", (LoihiFactor("y1"), LoihiFactor("w", -5.0, sgn=True))),
        LoihiProduct(12.0, "u", (LoihiFactor("y2"), LoihiFactor("x1", 3 * 2**-5))),
        LoihiProduct(-1.0, "y0", (LoihiFactor("x2"), LoihiFactor("y1"), LoihiFactor("y3"), LoihiFactor("t"))),
        LoihiProduct(-48.0, "x0", (LoihiFactor("d", 7.0),)),
        LoihiProduct(5 * 2**-4, "y0", ()),
    )
    rule = Loihi2FLearningRule(dw=format_products(products, 2), t_epoch=2)
    for ours, theirs in zip(products, rule.dw.products):
        lp = lava_product(ours)
        assert (lp.dependency, lp.s_mantissa, lp.s_exp) == (theirs.dependency, theirs.s_mantissa, theirs.s_exp)
        assert [(v, c) for v, c, _ in lp.factors] == [(f.state_var, f.const or 0.0) for f in theirs.factors]
        assert [s for *_, s in lp.factors] == [f.is_sgn for f in theirs.factors]


def test_plastic_replicas_run_independent_copies():
    rule = dataclasses.replace(stdp(a_plus=2**-5, a_minus=5 * 2**-7), w_max=math.inf)
    net = stdp_net(rule, rate=None)
    spikes = (torch.rand(200, 2, 20, generator=torch.Generator().manual_seed(0)) < 0.2).double()
    mons = ["ff.weights", "out.spikes"]
    batched = FixedPointSimulator(net, replicas=2).run(200, {"inp": spikes}, monitors=mons)
    for r in range(2):
        single = FixedPointSimulator(net).run(200, {"inp": spikes[:, r]}, monitors=mons)
        for m in mons:
            assert torch.equal(batched[m][:, r], single[m][:, 0])
    assert not torch.equal(batched["ff.weights"][-1, 0], batched["ff.weights"][0, 0])


def test_unrepresentable_rescaled_coefficient_is_refused():
    rule = stdp(a_plus=2**-3, a_minus=3 * 2**-5, multiplicative=True)
    net = stdp_net(dataclasses.replace(rule, w_max=math.inf))
    with pytest.raises(FixedPointError, match=r"becomes '-3\*2\^-9 \* x0 \* y1 \* w' in integer units"):
        to_fixed_point(net)


def tag_rule(w_min=-math.inf, w_max=math.inf):
    """Eligibility tag with u dependency: ``dt = a*y0*x1 - a*x0*y1 - b*u*t``, ``dw = c*u*t``, ``t_epoch = 2``
    (``CASES["tag_eligibility_epoch2"]`` of ``test_lava_reference.py``)."""
    from neuro import t, u, x0, y1

    return LearningRule(
        dt=2**-3 * y0 * x1 - 2**-3 * x0 * y1 - 2**-2 * u * t, dw=2**-2 * u * t,
        traces={"x1": Trace(1.0, 10e-3), "y1": Trace(1.0, 10e-3)}, t_epoch=2, w_min=w_min, w_max=w_max,
    )


def test_tag_with_u_dependency_mixed_and_inhibitory_is_bit_exact_with_lava():
    # Two LearningDense into one LIF: a MIXED one (excitatory start, weights may cross 0) and an
    # INHIBITORY one (w <= 0 clamp); tag_1 (in [-257, 255]) and the weights identical at every step.
    net = stdp_net(tag_rule(), w_max=0.6, rate=250.0)
    rng = np.random.default_rng(3)
    net.connect("inp", "out", rng.uniform(-0.1, 0.0, (8, 20)), name="ffi", rule=tag_rule(w_max=0.0))
    fixed, ours, lava, _ = compare_plastic(net, rng_seeds={"ffi": 9})
    assert fixed.projections["ff"].sign_mode == SignMode.MIXED
    assert fixed.projections["ffi"].sign_mode == SignMode.INHIBITORY
    L = fixed.projections["ff"].learning
    assert L.strings == {"dt": "y0 * x1 - x0 * y1 - 2^-2 * u0 * t", "dw": "2^-2 * u0 * t"}
    assert ours["out.spikes"].sum() > 100
    for k in ("ff", "ffi"):
        tag = ours[f"{k}.tag_1"][:, 0].numpy()
        assert (tag != 0).mean() > 0.2 and tag.min() < 0 < tag.max()
    w = ours["ff.weights"][:, 0].numpy()
    assert w.min() < 0, "expected MIXED weights to cross zero"
    wi = ours["ffi.weights"][:, 0].numpy()
    assert wi.max() == 0 and (wi[-1] == 0).sum() > (wi[0] == 0).sum(), "expected the INHIBITORY clamp at 0"
    # saturation of tag_1 at Lava's 9-bit range [-256, 255] (clip -257 never reached: acc >= -2**15 - 1)
    assert ours["ffi.tag_1"].min() == -256 and ours["ffi.tag_1"].max() == 255
    assert fixed.projections["ffi"].lava_weights.min() < -16, "inhibitory weights must use the 8-bit range"


def test_three_factor_modulated_stdp_through_y2_is_bit_exact_with_lava():
    # Loihi3FLearningRule: the post FactorLIF (fixed_pt model) sends s_out_bap, its integer spike trace y1
    # and the third factor as y2 = round(reward * trace_scale); Lava decays the received y with tau 65535.
    from neuro import standard_rules

    rule = standard_rules.modulated_stdp(a_plus=2**-3, a_minus=2**-4)
    reward = np.where(np.arange(STEPS)[:, None] % 200 < 100, 1.0, -0.5) * np.ones((1, 8))
    fixed, ours, lava, _ = compare_plastic(stdp_net(rule), third_factors={"out": reward})
    L = fixed.projections["ff"].learning
    assert L.three_factor and L.lava_rule().__class__.__name__ == "Loihi3FLearningRule"
    y1_spec = ("spike", round(4096 * math.exp(-1 / 20)), 16)  # tau 20 ms at dt 1 ms, impulse 1.0 * trace_scale 16
    assert fixed.populations["out"].factor_traces == {"y1": y1_spec, "y2": ("driven", "third_factor")}
    assert fixed.populations["out"].third_factor_integers([1.0, -0.5]).tolist() == [16, -8]
    assert L.strings == {"dw": "2^-4 * y0 * x1 * y2 - 2^-5 * x0 * y1 * y2"}
    w = ours["ff.weights"][:, 0].numpy()
    assert (w[-1].astype(int) - w[0]).max() > 5 and (np.diff(w, axis=0) < 0).any() and ours["out.spikes"].sum() > 100


def test_bracket_constants_that_loihi_cannot_hold_are_noted():
    """Lava's bit-approximate engine adds a float bracket constant and truncates; Loihi 2's constants are
    integers of W_CONST bits: the fixed-point form says so for each such constant, and not for others."""
    from neuro import LearningRule, Trace, w, x0, x1, y0, y1

    from hardware.fixed_point import fixed_point_rule

    traces = {"x1": Trace(1.0, 20e-3), "y1": Trace(1.0, 20e-3)}
    clean = fixed_point_rule(LearningRule(dw=2**-5 * y0 * (x1 - 0.25) - 2**-6 * x0 * y1, traces=traces),
                             1e-3, weight_unit=64.0, trace_scale=32.0)
    assert not [n for n in clean.notes if "constant" in n]  # 0.25 * 32 = 8: an integer
    fractional = fixed_point_rule(LearningRule(dw=2**-5 * y0 * (x1 + 0.3), traces=traces), 1e-3,
                                  weight_unit=64.0, trace_scale=32.0)
    assert any("9.6 in integer units" in n and "truncates" in n for n in fractional.notes), fractional.notes
    wide = fixed_point_rule(LearningRule(dw=2**-1 * y0 * x1 * (8.0 - w), traces=traces), 1e-3,
                            weight_unit=64.0, trace_scale=32.0)
    assert any("beyond the 8-bit constants" in n for n in wide.notes), wide.notes

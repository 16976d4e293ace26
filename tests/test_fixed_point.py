"""Equivalence contract (DESIGN.md): torch engine in fixed-point mode vs Lava ``fixed_pt``, bit-exact.

The Lava graph is built here by hand from Lava's own processes (RingBuffer ->
Dense -> LIF) with the integer parameters of :func:`hardware.fixed_point.to_fixed_point`,
and run with ``Loihi2SimCfg(select_tag="fixed_pt")`` (``PySendModelFixed``,
``PyDenseModelBitAcc``, ``PyLifModelBitAcc``). Spikes, ``u`` and ``v`` must be
identical (``np.array_equal``) at every step.
"""
import numpy as np
import pytest
import torch

from neuro import IAF, LIF, LearningRule, Network, PoissonEncoder, Trace, x1, y0

pytest.importorskip("lava")
from export.lava import _prepare_lava_import, encoded_inputs  # noqa: E402
from hardware.fixed_point import FixedPointError, FixedPointSimulator, to_fixed_point  # noqa: E402
from lava.utils.weightutils import SignMode  # noqa: E402

DT = 1e-3
STEPS = 600


def run_lava_fixed(fixed, steps, spikes):
    """Lava graph of a compiled network; returns {pop: {"spikes", "u", "v"}} as (steps, N) arrays."""
    _prepare_lava_import()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF as LavaLIF
    from lava.proc.monitor.process import Monitor

    procs = {name: RingBuffer(data=spikes[name].T.astype(np.int32).copy()) for name in fixed.inputs}
    procs.update({name: LavaLIF(name=name, **p.lava_kwargs()) for name, p in fixed.populations.items()})
    for proj in fixed.projections.values():
        conn = Dense(name=proj.name, **proj.lava_kwargs())
        procs[proj.pre].s_out.connect(conn.s_in)
        conn.a_out.connect(procs[proj.post].a_in)
    monitors = {}
    for name in fixed.populations:
        for var in ("s_out", "u", "v"):
            mon = Monitor()
            mon.probe(getattr(procs[name], var), steps)
            monitors[name, var] = mon
    anchor = procs[next(iter(fixed.populations))]
    out = {name: {} for name in fixed.populations}
    try:
        anchor.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        for (name, var), mon in monitors.items():
            out[name]["spikes" if var == "s_out" else var] = np.asarray(mon.get_data()[name][var])
    finally:
        anchor.stop()
    return out


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
    with pytest.raises(FixedPointError, match="plastic"):
        to_fixed_point(net)
    net = Network(dt=DT)
    net.input("inp", 2)
    net.population("out", 2, LIF(v_reset=-0.1))
    with pytest.raises(FixedPointError, match="resets to 0"):
        to_fixed_point(net)

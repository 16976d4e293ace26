"""The torch engine reproduces Lava's floating-point learning engine (epoch semantics).

The Lava side is built by hand here from Lava's own processes and rule strings
(no code of ours generates it), so it is an independent reference for: the
Dense one-step delay, LIF dynamics, trace impulses and decays, multi-spike
epochs, dependency sampling times (x0, y0, u), tags and the order of updates.
"""
import numpy as np
import pytest
import torch

from neuro import LIF, LearningRule, Network, Simulator, Trace, t, u, w, x0, x1, x2, y0, y1, y2

lava = pytest.importorskip("lava")
from lava.magma.core.learning.learning_rule import Loihi2FLearningRule  # noqa: E402
from lava.magma.core.run_conditions import RunSteps  # noqa: E402
from lava.magma.core.run_configs import Loihi2SimCfg  # noqa: E402
from lava.proc.dense.process import LearningDense  # noqa: E402
from lava.proc.io.source import RingBuffer  # noqa: E402
from lava.proc.lif.process import LIF as LavaLIF  # noqa: E402
from lava.proc.monitor.process import Monitor  # noqa: E402

DT = 1e-3
DV, DU = 0.1, 0.2
STEPS = 600
N_IN, N_OUT = 16, 6


def run_lava(lava_rule, spikes, w0, tag=False):
    src = RingBuffer(data=spikes.T.copy())
    dense = LearningDense(weights=w0.copy(), learning_rule=lava_rule, name="dense")
    # Lava's LIF: u = u (1 - du) + a_in; v = v (1 - dv) + u. Ours is Norse's, v += dv * i_new,
    # so v_lava = v_ours / dv: the same weights and a threshold divided by dv.
    lif = LavaLIF(shape=(N_OUT,), du=DU, dv=DV, vth=1.0 / DV, u=0, v=0, name="lif")
    src.s_out.connect(dense.s_in)
    dense.a_out.connect(lif.a_in)
    lif.s_out.connect(dense.s_in_bap)
    monitors = {"s": Monitor(), "w": Monitor()}
    monitors["s"].probe(lif.s_out, STEPS)
    monitors["w"].probe(dense.weights, STEPS)
    if tag:
        monitors["t"] = Monitor()
        monitors["t"].probe(dense.tag_1, STEPS)
    try:
        lif.run(condition=RunSteps(num_steps=STEPS), run_cfg=Loihi2SimCfg(select_tag="floating_pt"))
        out = {
            "spikes": monitors["s"].get_data()["lif"]["s_out"],
            "w": monitors["w"].get_data()["dense"]["weights"],
        }
        if tag:
            out["t"] = monitors["t"].get_data()["dense"]["tag_1"]
    finally:
        lif.stop()
    return out


def run_ours(rule, spikes, w0):
    net = Network(dt=DT)
    net.input("inp", N_IN)
    net.population("lif", N_OUT, LIF(tau_mem=DT / DV, tau_syn=DT / DU, v_th=1.0))
    net.connect("inp", "lif", w0, rule=rule, name="dense")
    monitors = ["lif.spikes", "dense.w"] + (["dense.t"] if rule.dt is not None else [])
    rec = Simulator(net, dtype=torch.float64).run(STEPS, {"inp": spikes}, monitors=monitors)
    out = {"spikes": rec["lif.spikes"][:, 0].numpy(), "w": rec["dense.w"][:, 0].numpy()}
    if rule.dt is not None:
        out["t"] = rec["dense.t"][:, 0].numpy()
    return out


CASES = {
    "stdp_epoch1": (
        dict(dw="2^-4 * y0 * x1 - 2^-4 * x0 * y1", x1_impulse=1.0, x1_tau=20, y1_impulse=1.0, y1_tau=15, t_epoch=1),
        LearningRule(
            dw=2**-4 * y0 * x1 - 2**-4 * x0 * y1,
            traces={"x1": Trace(1.0, 20 * DT), "y1": Trace(1.0, 15 * DT)},
        ),
        0.12,
    ),
    # Long epochs with high rates: several spikes per epoch exercise Loihi's
    # multi-spike approximation and sampling at the last spike time.
    "stdp_two_traces_epoch4": (
        dict(
            dw="2^-4 * y0 * x1 - 2^-5 * x0 * y1 + 2^-6 * y0 * x2 * w - 2^-6 * u0 * y2",
            x1_impulse=1.0, x1_tau=20, x2_impulse=0.5, x2_tau=6,
            y1_impulse=1.0, y1_tau=15, y2_impulse=0.25, y2_tau=40, t_epoch=4,
        ),
        LearningRule(
            dw=2**-4 * y0 * x1 - 2**-5 * x0 * y1 + 2**-6 * y0 * x2 * w - 2**-6 * u * y2,
            traces={
                "x1": Trace(1.0, 20 * DT),
                "x2": Trace(0.5, 6 * DT),
                "y1": Trace(1.0, 15 * DT),
                "y2": Trace(0.25, 40 * DT),
            },
            t_epoch=4,
        ),
        0.3,
    ),
    # A tag as eligibility trace, consumed by the weight every epoch (reward-free R-STDP core).
    "tag_eligibility_epoch2": (
        dict(
            dt="2^-3 * y0 * x1 - 2^-3 * x0 * y1 - 2^-2 * u0 * t",
            dw="2^-2 * u0 * t",
            x1_impulse=1.0, x1_tau=10, y1_impulse=1.0, y1_tau=10, t_epoch=2,
        ),
        LearningRule(
            dt=2**-3 * y0 * x1 - 2**-3 * x0 * y1 - 2**-2 * u * t,
            dw=2**-2 * u * t,
            traces={"x1": Trace(1.0, 10 * DT), "y1": Trace(1.0, 10 * DT)},
            t_epoch=2,
        ),
        0.15,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_engine_matches_lava_floating_point_learning(case):
    lava_kwargs, rule, rate = CASES[case]
    rng = np.random.default_rng(11)
    spikes = (rng.random((STEPS, N_IN)) < rate).astype(np.float64)
    w0 = rng.uniform(0.0, 0.6, (N_OUT, N_IN))
    ref = run_lava(Loihi2FLearningRule(**lava_kwargs), spikes, w0, tag=rule.dt is not None)
    ours = run_ours(rule, spikes, w0)

    assert ref["spikes"].sum() > 100, "too little post activity for a meaningful comparison"
    np.testing.assert_array_equal(ours["spikes"], ref["spikes"])
    np.testing.assert_allclose(ours["w"], ref["w"], rtol=1e-5, atol=1e-9)
    assert np.abs(ref["w"][-1] - w0).max() > 0.1, "weights barely moved"
    if rule.dt is not None:
        np.testing.assert_allclose(ours["t"], ref["t"], rtol=1e-5, atol=1e-9)
        assert np.abs(ref["t"]).max() > 0.05


def test_reference_comparison_can_fail():
    """Negative control: a trace tau off by one step is caught."""
    lava_kwargs, rule, rate = CASES["stdp_epoch1"]
    rng = np.random.default_rng(11)
    spikes = (rng.random((STEPS, N_IN)) < rate).astype(np.float64)
    w0 = rng.uniform(0.0, 0.6, (N_OUT, N_IN))
    ref = run_lava(Loihi2FLearningRule(**{**lava_kwargs, "x1_tau": 21}), spikes, w0)
    ours = run_ours(rule, spikes, w0)
    assert not np.allclose(ours["w"], ref["w"], rtol=1e-5, atol=1e-9)

"""The Triton kernel of the CUDA engine (``neuro.kernels``), run by Triton's interpreter on the CPU.

``outer_update_`` must equal ``clamp(w + A @ B)`` for any shapes (tiles cut at the edges, inner sizes
that are not a multiple of the tile), bounds and groups, and the engine must give the same spikes and
weights through it as through torch's ``addmm`` + ``clamp_``. The interpreter needs its environment
variable before Triton is imported, so each check runs in a fresh interpreter.
"""
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")


def _interpret(code: str) -> str:
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.getcwd())
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_outer_update_equals_clamped_addmm():
    out = _interpret("""
        import math, torch
        from neuro.kernels import outer_update_
        g = torch.Generator().manual_seed(0)
        for groups, m, n, k, lo, hi in [(1, 70, 130, 2, 0.0, 1.0), (3, 64, 64, 17, -math.inf, math.inf),
                                        (2, 5, 200, 40, 0.2, math.inf), (1, 129, 3, 1, -0.5, 0.5)]:
            w = torch.rand(groups, m, n, generator=g)
            a, b = torch.randn(groups, m, k, generator=g), torch.randn(groups, k, n, generator=g)
            ref = (w + a @ b).clamp(lo, hi)
            got = outer_update_(w, a, b, lo, hi)
            assert got is w  # in place
            torch.testing.assert_close(w, ref, rtol=1e-5, atol=1e-5)
            assert not torch.equal(ref, torch.rand(groups, m, n, generator=g).clamp(lo, hi))
        w = torch.zeros(1, 3, 3); w[0, 1, 1] = float("nan")
        outer_update_(w, torch.ones(1, 3, 1), torch.ones(1, 1, 3), 0.0, 0.5)
        assert torch.isnan(w[0, 1, 1]) and w[0, 0, 0] == 0.5  # NaN stays NaN, as with torch.clamp
        for bad in (torch.zeros(1, 3, 3, dtype=torch.float64), torch.zeros(1, 3, 6)[:, :, ::2]):
            try:
                outer_update_(bad, torch.ones(1, 3, 1), torch.ones(1, 1, 3))
            except ValueError as e:
                assert "contiguous float32" in str(e)
            else:
                raise AssertionError("accepted " + str(bad.dtype))
        print("ok")
    """)
    assert out.strip() == "ok"


def test_engine_learns_the_same_through_the_fused_kernel():
    """STDP with shared and per-replica weights, and a rule whose delay target is clipped at 0: the
    kernel (forced on for CPU tensors) against torch's addmm and clamp."""
    out = _interpret("""
        import numpy as np, torch
        import neuro.plasticity as pl
        from neuro import LIF, LearningRule, Network, Simulator, Trace, x0, x1, y0, y1
        from neuro.expr import d
        from neuro.standard_rules import stdp
        delay_rule = LearningRule(dw=0.02 * y0 * x1 - 0.021 * x0 * y1, dd=0.05 * x0 * y1 - 0.03 * y0 * x1,
                                  traces={"x1": Trace(1.0, 20e-3), "y1": Trace(1.0, 10e-3)}, w_min=0.0, w_max=0.6)
        for rule, shape, replicas in [(stdp(a_plus=0.02, a_minus=0.021, w_max=0.6), (20, 30), 4),
                                      (stdp(a_plus=0.02, a_minus=0.021), (3, 20, 30), 3),  # per replica
                                      (delay_rule, (20, 30), 2)]:
            net = Network(dt=1e-3)
            net.input("inp", 30)
            net.population("out", 20, LIF(tau_mem=20e-3, tau_syn=5e-3, v_th=0.5))
            net.connect("inp", "out", np.random.default_rng(0).uniform(0, 0.7, shape), rule=rule, name="ff")
            spikes = (torch.rand(60, replicas, 30, generator=torch.Generator().manual_seed(1)) < 0.15).float()
            runs, calls = [], []
            for fused in (False, True):
                pl._fusable = lambda w, on=fused: on and w.dtype == torch.float32
                import neuro.kernels as k
                original = k.outer_update_
                k.outer_update_ = lambda *a, **kw: (calls.append(1), original(*a, **kw))[1]
                sim = Simulator(net, replicas=replicas, event_driven=False)
                rec = sim.run(60, {"inp": spikes}, monitors=["out.spikes"])
                runs.append((rec["out.spikes"], {v: sim.syn["ff"][v].clone() for v in sim.syn["ff"]}))
                k.outer_update_ = original
            assert calls, "the kernel was not used"
            assert runs[0][0].sum() > 20 and torch.equal(runs[0][0], runs[1][0])
            for v in runs[0][1]:
                torch.testing.assert_close(runs[1][1][v], runs[0][1][v], rtol=1e-5, atol=1e-6)
            assert not torch.equal(runs[0][1]["w"], torch.as_tensor(net.projections["ff"].weights, dtype=torch.float32).reshape(runs[0][1]["w"].shape))
            if "d" in runs[0][1]:
                assert runs[1][1]["d"].min() == 0 and runs[1][1]["d"].max() > 0
        print("ok")
    """)
    assert out.strip() == "ok"

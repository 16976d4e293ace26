"""W1's plasticity step against the memory-bandwidth bound (CUDA).

One learning epoch of W1's pair-based STDP (``t_epoch = 1``) on ``N`` post x 784 pre float32 weights,
shared by ``R`` replicas, changes every weight: it must read and write each once, ``2 * 784 * N * 4``
bytes (25.7 MB at N = 4,096; the traces and spikes add ``O((N + 784) R)``). At the bandwidth of a
device-to-device copy measured in the same run, that is the bound; the issue's target is half of it.

Timed, each as CUDA-graph replays of 20 calls (so that launch overhead stays out) with CUDA events:

* the weight update alone, ``w = clamp(w + A @ B, 0, 1)`` with ``A`` ``(N, 2R)``, ``B`` ``(2R, 784)``
  (the post and pre factors of both STDP products and all replicas): neuro's fused Triton kernel
  (``neuro.kernels.outer_update_``, float32 products or TF32x3 tensor cores) against torch's
  ``addmm_`` + ``clamp_`` (two passes over the weights);
* the engine's whole learning step (``CompiledRule.learn``: traces at the epoch's end, the update,
  the trace roll), with the fused kernel and with torch's.

    python benchmarks/w1_plasticity.py --sizes 4096,16384 --replicas 1,32
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speedlib import device_line, save_json, table, versions  # noqa: E402
from w1_stdp import W1Config, build, inputs  # noqa: E402

import neuro.plasticity as plasticity  # noqa: E402
from neuro import Simulator  # noqa: E402
from neuro.kernels import outer_update_  # noqa: E402


def graph_seconds(fn: Callable[[], object], calls: int = 20, replays: int = 10) -> float:
    """Seconds per call of ``fn``: ``calls`` calls captured in one CUDA graph, replayed ``replays`` times."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # compile Triton kernels, make library handles
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / (calls * replays)


def copy_bandwidth(gib: float = 1.0) -> float:
    """Bytes per second of a device-to-device copy (bytes read plus bytes written)."""
    x = torch.rand(int(gib * 2**28), device="cuda")
    y = torch.empty_like(x)
    seconds = graph_seconds(lambda: y.copy_(x), calls=5, replays=4)
    return 2 * x.numel() * 4 / seconds


def update_rows(n: int, r: int, bound_bw: float) -> List[Dict[str, object]]:
    g = torch.Generator(device="cuda").manual_seed(0)
    w = torch.rand(1, n, 784, device="cuda", generator=g) * 0.04
    # post factors: 0/1 spikes and traces; pre factors likewise (W1's STDP: a_plus y0 x1 - a_minus y1 x0)
    a = torch.rand(n, 2 * r, device="cuda", generator=g) * 1e-4
    b = torch.rand(2 * r, 784, device="cuda", generator=g)
    variants = {
        "fused kernel, float32 products": lambda: outer_update_(w, a[None], b[None], 0.0, 1.0, "ieee"),
        "fused kernel, TF32x3 products": lambda: outer_update_(w, a[None], b[None], 0.0, 1.0, "tf32x3"),
        "torch addmm_ + clamp_": lambda: w[0].addmm_(a, b).clamp_(0.0, 1.0),
    }
    ref = (w + a @ b).clamp(0.0, 1.0)
    check = w.clone()
    outer_update_(check, a[None], b[None], 0.0, 1.0, "ieee")
    error = float((check - ref).abs().max() / ref.abs().max())
    return [_row("weight update", name, n, r, graph_seconds(fn), bound_bw, error if "float32" in name else None)
            for name, fn in variants.items()]


def learn_rows(n: int, r: int, bound_bw: float) -> List[Dict[str, object]]:
    cfg = W1Config(n=n, replicas=r, steps=20)
    sim = Simulator(build(cfg), replicas=r, device="cuda", event_driven=False)
    sim.run(cfg.steps, {"inp": inputs(cfg, "cuda")})  # traces and spike times as in a running layer
    rule, state, syn, params = sim.rules["ff"], sim.plastic["ff"], sim.syn["ff"], sim.params["ff"]
    rows = []
    for fused in (True, False):
        plasticity.FUSED_UPDATES = fused
        try:
            seconds = graph_seconds(lambda: rule.learn(state, syn, params, cfg.steps, event_fraction=0.0,
                                                       clamp_all=False))
        finally:
            plasticity.FUSED_UPDATES = True
        rows.append(_row("engine learning step", "fused kernel" if fused else "torch addmm + clamp_", n, r, seconds,
                         bound_bw))
    return rows


def _row(what: str, variant: str, n: int, r: int, seconds: float, bound_bw: float,
         error: Optional[float] = None) -> Dict[str, object]:
    moved = 2 * n * 784 * 4
    return {"what": what, "variant": variant, "n": n, "replicas": r, "us": seconds * 1e6,
            "weights GB/s": moved / seconds / 1e9, "bound us": moved / bound_bw * 1e6,
            "fraction of bound": moved / bound_bw / seconds, "max rel. error": error}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4096,16384")
    parser.add_argument("--replicas", default="1,32")
    parser.add_argument("--out", default="out/bench_plasticity")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("w1_plasticity measures a CUDA device; none here")
        return 0
    bw = copy_bandwidth()
    print(f"device-to-device copy: {bw / 1e12:.2f} TB/s (read + written)")
    rows: List[Dict[str, object]] = []
    for n in map(int, args.sizes.split(",")):
        for r in map(int, args.replicas.split(",")):
            rows += update_rows(n, r, bw) + learn_rows(n, r, bw)
            print(table([x for x in rows if x["n"] == n and x["replicas"] == r],
                        ["what", "variant", "n", "replicas", "us", "bound us", "fraction of bound", "weights GB/s"]))
    print(f"W1 plasticity step on {device_line('cuda', 1)}")
    print(table(rows, ["what", "variant", "n", "replicas", "us", "bound us", "fraction of bound", "weights GB/s",
                       "max rel. error"]))
    save_json(Path(args.out) / "plasticity.json", {"rows": rows, "copy_bytes_per_s": bw, "device": device_line("cuda", 1),
                                                   "versions": versions(["torch", "triton", "norse"])})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Where a W1 step's GPU time goes: the kernels of one step, eager and compiled (torch.profiler).

    python benchmarks/profile_step.py --n 4096 --replicas 32
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from w1_stdp import W1Config, build, inputs  # noqa: E402

from neuro import Simulator  # noqa: E402


def kernels_per_step(sim: Simulator, x: torch.Tensor, steps: int = 10) -> None:
    for k in range(20):  # warm-up (compiling)
        sim.step({"inp": x[k]})
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for k in range(20, 20 + steps):
            sim.step({"inp": x[k]})
        torch.cuda.synchronize()
    events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    total = sum(e.device_time for e in events)
    print(f"{len(events) / steps:.1f} kernels per step, {total / steps:.1f} us of kernel time per step")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=70))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--replicas", type=int, default=32)
    args = parser.parse_args()
    cfg = W1Config(n=args.n, replicas=args.replicas, steps=40)
    x = inputs(cfg, "cuda").float()
    for compiled in (False, True):
        print(f"=== {'compiled' if compiled else 'eager'} step, N = {cfg.n}, R = {cfg.replicas}")
        kernels_per_step(Simulator(build(cfg), replicas=cfg.replicas, device="cuda", event_driven=False,
                                   compile=compiled), x)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

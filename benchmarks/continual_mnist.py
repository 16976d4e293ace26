"""Continual learning side by side: naive, MAS (gradient and Hebbian), the Loihi-compatible gated variant, EWC, joint.

One MLP (pixels -> 256 ReLU -> outputs, Adam, 5 epochs per task) learns each stream
with every method in the same run; reported: average accuracy over all tasks after
the last one and average forgetting (best earlier accuracy minus final, Chaudhry et al.).

Streams: split MNIST-5k and split digits (5 tasks of 2 classes; task-incremental:
the outputs of the task's classes compete; domain-incremental: two shared outputs,
"first or second digit of the pair") and permuted MNIST-5k (5 tasks, 10 shared outputs).
Last, an unsupervised SoftHebb layer learns split MNIST-5k without labels (naive, MAS
penalty, importance gating), read out per task by readouts fitted when each task was
learned and then kept fixed.

    python benchmarks/continual_mnist.py            # all streams (~3 min on 2 cores)
    python benchmarks/continual_mnist.py --quick    # split digits only (~10 s)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from neuro.datasets import load_digits, load_mnist5k
from neuro.plotting import curves
from neuro.streams import average_accuracy, average_forgetting, permuted_tasks, split_tasks
from networks.mas import METHODS, ContinualConfig, run_stream, softhebb_stream
from networks.softhebb import SoftHebbConfig

# Strengths chosen once on domain-incremental split MNIST-5k (see benchmarks/README.md).
STRENGTH = {"mas": {"lam": 3.0}, "mas_hebbian": {"lam": 3.0}, "ewc": {"lam": 1e5}, "gated": {"gamma": 0.1}}


SOFTHEBB_STRENGTH = {"naive": {}, "mas": {"lam": 10.0, "gamma": 1.0}, "gated": {"gamma": 0.1}}


def streams(quick: bool) -> Dict[str, tuple]:
    """name -> (tasks, setting)."""
    digits = load_digits()
    out = {
        "split digits, task-IL": (split_tasks(digits), "task"),
        "split digits, domain-IL": (split_tasks(digits), "domain"),
    }
    if not quick:
        mnist = load_mnist5k()
        out.update({
            "split MNIST-5k, task-IL": (split_tasks(mnist), "task"),
            "split MNIST-5k, domain-IL": (split_tasks(mnist), "domain"),
            "permuted MNIST-5k (5 tasks)": (permuted_tasks(mnist, 5), "domain"),
        })
    return out


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="split digits only")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--epochs", type=int, default=5, help="epochs per task")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="out/bench_continual")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",")]
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown method(s) {sorted(unknown)}; known: {', '.join(METHODS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: Dict[str, Dict[str, object]] = {}
    for stream, (tasks, setting) in streams(args.quick).items():
        print(f"\n{stream}: {len(tasks)} tasks, {sum(len(t.x_train) for t in tasks)} training images")
        print(f"{'method':12s} {'avg acc':>8s} {'forgetting':>10s} {'seconds':>8s}")
        rows = results.setdefault(stream, {})
        final_curves = {}
        for method in methods:
            cfg = ContinualConfig(setting=setting, epochs=args.epochs, seed=args.seed, **STRENGTH.get(method, {}))
            t0 = time.perf_counter()
            acc = run_stream(tasks, method, cfg)
            rows[method] = {
                "average_accuracy": average_accuracy(acc), "average_forgetting": average_forgetting(acc),
                "accuracy_matrix": acc.tolist(), "seconds": time.perf_counter() - t0, "config": asdict(cfg),
            }
            final_curves[method] = [float(np.mean(acc[i, : i + 1])) for i in range(len(tasks))]
            print(f"{method:12s} {rows[method]['average_accuracy']:8.3f} {rows[method]['average_forgetting']:10.3f} "
                  f"{rows[method]['seconds']:8.1f}")
        if "naive" in rows:
            naive = rows["naive"]["average_forgetting"]
            for m in ("mas", "mas_hebbian", "gated", "ewc"):
                if m in rows and naive > 0:
                    print(f"  {m}: forgetting {rows[m]['average_forgetting'] / naive:.2f} of naive's")
        if "joint" in rows:
            for m in ("mas", "mas_hebbian", "gated", "ewc"):
                if m in rows:
                    gap = rows["joint"]["average_accuracy"] - rows[m]["average_accuracy"]
                    print(f"  {m}: {100 * gap:.1f} points below joint")
        slug = "".join(c if c.isalnum() else "_" for c in stream).strip("_")
        curves(list(range(1, len(tasks) + 1)), final_curves, out / f"continual_{slug}.png", xlabel="tasks learned",
               ylabel="mean accuracy on the tasks so far", title=stream)
    # An unsupervised SoftHebb layer (no labels) learning split MNIST-5k (split digits with --quick),
    # each task's readout fitted when the task is learned and then kept fixed.
    data = load_digits() if args.quick else load_mnist5k()
    tasks = split_tasks(data)
    cfg = SoftHebbConfig(n_neurons=100 if args.quick else 400, seed=args.seed)
    print(f"\nunsupervised SoftHebb ({cfg.n_neurons} neurons) on split {data.name}, fixed per-task readouts")
    print(f"{'method':12s} {'avg acc':>8s} {'forgetting':>10s} {'seconds':>8s}")
    unsupervised = results.setdefault(f"SoftHebb (unsupervised), split {data.name}", {})
    for method, extra in SOFTHEBB_STRENGTH.items():
        t0 = time.perf_counter()
        acc = softhebb_stream(tasks, method, cfg, **extra)
        unsupervised[method] = {"average_accuracy": average_accuracy(acc), "average_forgetting": average_forgetting(acc),
                                "accuracy_matrix": acc.tolist(), "seconds": time.perf_counter() - t0, **extra}
        print(f"{method:12s} {average_accuracy(acc):8.3f} {average_forgetting(acc):10.3f} {time.perf_counter() - t0:8.1f}")
        curves(list(range(1, len(tasks) + 1)),
               {f"task {j + 1} ({'/'.join(map(str, t.classes))})": [acc[i, j] if i >= j else np.nan for i in range(len(tasks))]
                for j, t in enumerate(tasks)},
               out / f"softhebb_stream_{method}.png", xlabel="tasks learned", ylabel="fixed readout test accuracy",
               title=f"unsupervised SoftHebb ({method}) on split {data.name}")
    (out / "results.json").write_text(json.dumps({"streams": results, "strength": STRENGTH, "argv": sys.argv[1:],
                                                  "torch": torch.__version__}, indent=2, sort_keys=True))
    print(f"\nresults written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

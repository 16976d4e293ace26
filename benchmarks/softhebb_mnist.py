"""SoftHebb side by side on one split: frozen random features, SoftHebb (rate and spiking), backprop.

Every method starts from the same random weights and is read out the same way: a logistic regression
on the layer's k-winners-take-all output (``networks.softhebb.features``; the
"triangle" readout is reported beside it). Backprop trains the same architecture
(pixels -> hidden with the same activation -> 10 classes) end to end.

    python benchmarks/softhebb_mnist.py            # MNIST-5k (4,000/1,000), 2,000 neurons (~6 min on 2 cores)
    python benchmarks/softhebb_mnist.py --quick    # a 1,000-image subset and 400 neurons (~1 min)
    python benchmarks/softhebb_mnist.py --dataset digits
    python benchmarks/softhebb_mnist.py --dataset folder --folder ~/data/fashion   # IDX or .npz files

Prints a table and writes results.json and softhebb_convergence.png to --out.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Dict, List

import torch

from neuro import Simulator
from neuro.datasets import load_dataset
from neuro.plotting import curves
from neuro.readout import readout_accuracy
from networks import softhebb
from networks.baselines import backprop_mlp_accuracy
from networks.softhebb import READOUTS, SoftHebbConfig, SpikingConfig


def readouts(weights: torch.Tensor, data) -> Dict[str, float]:
    """Test accuracy of every readout activation for these hidden weights."""
    return {
        kind: readout_accuracy(
            softhebb.features(weights, data.x_train, kind), data.y_train, softhebb.features(weights, data.x_test, kind), data.y_test
        )
        for kind in READOUTS
    }


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k", choices=["mnist5k", "digits", "folder"])
    parser.add_argument("--folder", help="folder with MNIST / Fashion-MNIST IDX files or an .npz (with --dataset folder)")
    parser.add_argument("--quick", action="store_true", help="1,000 training images, 400 neurons, fewer epochs")
    parser.add_argument("--epochs", default="1,2,3,5", help="SoftHebb epochs at which to measure (convergence)")
    parser.add_argument("--backprop-epochs", type=int, default=20)
    parser.add_argument("--replicas", type=int, default=32, help="images simulated at once by the spiking layer")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="out/bench_softhebb")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    data = load_dataset(args.dataset, args.folder)
    cfg = SoftHebbConfig(seed=args.seed)
    spk = SpikingConfig()
    epochs = sorted({1, *(int(e) for e in args.epochs.split(","))})  # epoch 1 is always reported
    bp_epochs = args.backprop_epochs
    if args.quick:
        data = replace(data, x_train=data.x_train[:1000], y_train=data.y_train[:1000],
                       x_test=data.x_test[:300], y_test=data.y_test[:300])
        cfg = replace(cfg, n_neurons=400)
        epochs, bp_epochs = [1, 2], 5
    n_in = data.x_train.shape[1]
    print(f"{data.name}: {len(data.x_train)} train / {len(data.x_test)} test images, {cfg.n_neurons} neurons")
    rows: Dict[str, Dict[str, object]] = {}

    net = softhebb.build_rate(n_in, cfg)
    w0 = torch.as_tensor(net.projections["ff1"].weights, dtype=torch.float32)
    rows["frozen random"] = {**readouts(w0, data), "seconds": 0.0}

    # SoftHebb, rate: epoch by epoch, measured at the listed epochs.
    sim = softhebb.rate_simulator(net, cfg)
    convergence: Dict[int, Dict[str, float]] = {}
    seconds = 0.0
    for epoch in range(1, max(epochs) + 1):
        t0 = time.perf_counter()
        softhebb.train_rate(sim, data.x_train, cfg.batch, seed=args.seed + epoch - 1, progress=f"SoftHebb rate, epoch {epoch}")
        seconds += time.perf_counter() - t0
        if epoch in epochs:
            convergence[epoch] = {**readouts(sim.weights("ff1"), data), "seconds": seconds}
            print(f"SoftHebb rate after {epoch} epoch(s): {convergence[epoch]}")
    rows["SoftHebb rate, 1 epoch"] = convergence[1]

    # SoftHebb, spiking: the hardware form (Loihi rule), the same start.
    spiking = Simulator(softhebb.build_spiking(n_in, cfg, spk), replicas=args.replicas, seed=args.seed)
    t0 = time.perf_counter()
    stats = softhebb.train_spiking(spiking, data.x_train, spk, seed=args.seed, progress="SoftHebb spiking, epoch 1")
    rows["SoftHebb spiking, 1 epoch"] = {**readouts(spiking.weights("ff"), data), "seconds": time.perf_counter() - t0, **stats}
    # The same trained layer read by its spikes: counts over 100 steps (a sparse winner-take-all code).
    counts = {part: softhebb.spike_counts(spiking, getattr(data, f"x_{part}"), spk, steps=100) for part in ("train", "test")}
    spike_readout = readout_accuracy(counts["train"], data.y_train, counts["test"], data.y_test)

    # Backprop: the same architecture and start, trained end to end.
    row = rows.setdefault(f"backprop, {bp_epochs} epochs", {})
    for kind in READOUTS:
        t0 = time.perf_counter()
        row[kind], _ = backprop_mlp_accuracy(data.x_train, data.y_train, data.x_test, data.y_test, w0.numpy(),
                                             epochs=bp_epochs, seed=args.seed, readout=kind)
        row.setdefault("seconds", time.perf_counter() - t0)  # the time of one training (kwta)

    print()
    print(f"{'method':28s} " + " ".join(f"{k:>9s}" for k in READOUTS) + f" {'train s':>8s}")
    for name, row in rows.items():
        print(f"{name:28s} " + " ".join(f"{row[k]:9.3f}" for k in READOUTS) + f" {row['seconds']:8.1f}")
    rate, rnd = rows["SoftHebb rate, 1 epoch"], rows["frozen random"]
    spiking_row, bp = rows["SoftHebb spiking, 1 epoch"], rows[f"backprop, {bp_epochs} epochs"]
    print()
    for kind in READOUTS:
        print(f"[{kind}] SoftHebb - random: {100 * (rate[kind] - rnd[kind]):+.1f} points; "
              f"SoftHebb - backprop: {100 * (rate[kind] - bp[kind]):+.1f}; "
              f"spiking - rate: {100 * (spiking_row[kind] - rate[kind]):+.1f}")
    print(f"spiking layer: {spiking_row['spikes_per_image']:.1f} spikes per image, "
          f"{100 * spiking_row['images_with_spikes']:.1f}% of images answered while learning; read by its "
          f"spike counts (100 steps, learning off): {spike_readout:.3f}")
    print(f"training time, same run: SoftHebb rate 1 epoch {rate['seconds']:.1f} s, spiking 1 epoch "
          f"{spiking_row['seconds']:.1f} s, backprop {bp_epochs} epochs {bp['seconds']:.1f} s "
          f"(backprop / SoftHebb rate = {bp['seconds'] / rate['seconds']:.1f}x)")
    print(f"device cpu ({platform.processor() or platform.machine()}), torch {torch.__version__}, {args.threads} thread(s)")

    xs = sorted(convergence)
    curves(xs, {f"SoftHebb ({k})": [convergence[e][k] for e in xs] for k in READOUTS}
           | {f"frozen random ({k})": [rnd[k]] * len(xs) for k in READOUTS},
           out / "softhebb_convergence.png", xlabel="unsupervised epochs", ylabel="readout test accuracy",
           title=f"SoftHebb convergence on {data.name}")
    results = {
        "dataset": data.name, "n_train": len(data.x_train), "n_test": len(data.x_test),
        "methods": rows, "spiking_spike_count_readout": spike_readout, "convergence": {str(k): v for k, v in convergence.items()},
        "config": asdict(cfg), "spiking_config": asdict(spk), "backprop_epochs": bp_epochs,
        "torch": torch.__version__, "threads": args.threads, "argv": sys.argv[1:],
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True))
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Predictive coding (rate, error units) against the same MLP trained with backprop, in one run.

Both start from the same weights, use the same activation, biases, squared-error loss,
SGD learning rate, mini-batches and epochs; reported: test accuracy, accuracy against
the number of inference steps T (with the label clamped, and with the top nudged
10 % of the way to the label at a 10x learning rate), the training time ratio PC / backprop, a plot of
the energy falling over inference steps, and the images a generative PC network
(label at the bottom, image on top) produces for each class. Then the spiking network
(:mod:`networks.pc_spiking`: paired value and error units, spikes between all units) on the same data:
its accuracy read from spike counts, the rate forward pass of its learned weights, its time
ratio to backprop, a raster and its energy falling during one clamped presentation.

    python benchmarks/pc_mnist.py            # MNIST-5k (4,000/1,000) and digits (~20-30 min on 2 cores)
    python benchmarks/pc_mnist.py --quick    # digits only, fewer steps and epochs (~1 min)
    python benchmarks/pc_mnist.py --spiking-seeds 0,1,2,3,4,5   # the spiking network's mean over six seeds
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import List

import numpy as np
import torch

from neuro.datasets import load_digits, load_mnist5k
from neuro.plotting import curves, raster, receptive_fields
from networks.pc import PCConfig, PCNetwork, accuracy, backprop_mlp, build, generate, train
from networks.pc_spiking import SpikingPC, SpikingPCConfig

CONFIG = PCConfig(hidden=(256,), steps=8, gamma=0.2, eta=0.05, epochs=20, activation="relu")
# PC nudges the top 10 % of the way to the label and learns 10x faster: the same step size as backprop's.
NUDGED = replace(CONFIG, nudge=0.1, eta=0.5)
# 128 steps (ms) per sample with the label clamped, learning once at the end; the same hidden layer.
SPIKING = SpikingPCConfig(hidden=CONFIG.hidden)


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", default="1,2,4,8,16", help="inference steps T to compare")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="out/bench_pc")
    parser.add_argument("--spiking-seeds", default="0",
                        help="seeds of the spiking network, comma-separated: it is trained once per seed and its "
                             "accuracy reported per seed and as their mean (each MNIST-5k seed ~25 min on 2 cores)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = sorted({int(s) for s in args.steps.split(",")})
    spiking_seeds = [int(s) for s in args.spiking_seeds.split(",")]
    if len(set(spiking_seeds)) != len(spiking_seeds):
        parser.error(f"--spiking-seeds repeats a seed: {args.spiking_seeds}")
    sets = {"digits": load_digits()} if args.quick else {"mnist5k": load_mnist5k(), "digits": load_digits()}
    cfg = replace(CONFIG, epochs=5, hidden=(64,)) if args.quick else CONFIG
    if args.quick:
        steps = [s for s in steps if s <= 8]
    results = {}
    for name, data in sets.items():
        n_in, n_classes = data.x_train.shape[1], data.n_classes
        model, bp_seconds = backprop_mlp(data.x_train, data.y_train, n_classes, cfg)
        with torch.no_grad():
            bp = float((model(torch.as_tensor(data.x_test)).argmax(dim=1).numpy() == data.y_test).mean())
        row = {"backprop": bp, "backprop_seconds": bp_seconds, "pc": {}}
        print(f"\n{name}: {len(data.x_train)} train / {len(data.x_test)} test; backprop {bp:.3f} ({bp_seconds:.1f} s)")
        print(f"{'T':>4s} {'PC acc':>7s} {'PC - BP':>8s} {'PC s':>7s} {'PC/BP time':>10s} "
              f"{'nudged':>7s} {'- BP':>8s}")
        for t in steps:
            pc = PCNetwork(build(n_in, n_classes, replace(cfg, steps=t)), replace(cfg, steps=t))
            seconds = train(pc, data.x_train, data.y_train, n_classes, seed=cfg.seed)
            acc = accuracy(pc, data.x_test, data.y_test)
            nudged_cfg = replace(cfg, steps=t, nudge=NUDGED.nudge, eta=cfg.eta / NUDGED.nudge)
            nudged = PCNetwork(build(n_in, n_classes, nudged_cfg), nudged_cfg)
            train(nudged, data.x_train, data.y_train, n_classes, seed=cfg.seed)
            acc_nudged = accuracy(nudged, data.x_test, data.y_test)
            row["pc"][t] = {"accuracy": acc, "seconds": seconds, "accuracy_nudged": acc_nudged}
            print(f"{t:4d} {acc:7.3f} {100 * (acc - bp):+7.1f}p {seconds:7.1f} {seconds / bp_seconds:9.1f}x "
                  f"{acc_nudged:7.3f} {100 * (acc_nudged - bp):+7.1f}p")
            if t == max(steps):
                # Energy over inference steps on test images with their labels clamped.
                x = torch.as_tensor(data.x_test[:200])
                target = torch.nn.functional.one_hot(torch.as_tensor(data.y_test[:200]), n_classes).float()
                with torch.no_grad():
                    _, _, energies = pc.infer(x, target, steps=4 * t)
                row["energy"] = energies
                curves(list(range(len(energies))), {f"trained, T={t}": energies}, out / f"pc_energy_{name}.png",
                       xlabel="inference step", ylabel="energy (batch mean)", title=f"PC energy falls during inference ({name})")
        # Generative use: label at the bottom, image on top; each class's generated image.
        gen = PCNetwork(build(n_classes, n_in, cfg), cfg)
        train(gen, data.x_train, data.y_train, n_classes, seed=cfg.seed, generative=True)
        images = generate(gen, n_classes)
        receptive_fields(images, data.image_shape, out / f"pc_generated_{name}.png", per_field=True,
                         title=f"PC-generated images, classes 0-{n_classes - 1} ({name})")
        means = np.stack([data.x_train[data.y_train == c].mean(axis=0) for c in range(n_classes)])
        row["generated_vs_class_mean_correlation"] = float(np.mean(
            [np.corrcoef(images[c], means[c])[0, 1] for c in range(n_classes)]))
        print(f"generated images: mean correlation with their class's mean image "
              f"{row['generated_vs_class_mean_correlation']:.3f}")
        quick_spiking = dict(epochs=2, steps=128) if args.quick else {}
        row["spiking"] = spiking(data, replace(SPIKING, hidden=cfg.hidden, **quick_spiking), spiking_seeds,
                                 row, bp_seconds, out / name)
        results[name] = row
        accs = [row["pc"][t]["accuracy"] for t in steps]
        nudged_accs = [row["pc"][t]["accuracy_nudged"] for t in steps]
        curves(steps, {"predictive coding": accs, f"PC, nudge {NUDGED.nudge}": nudged_accs, "backprop": [bp] * len(steps)},
               out / f"pc_accuracy_vs_T_{name}.png",
               xlabel="inference steps T", ylabel="test accuracy", title=f"PC vs backprop ({name})")
    (out / "results.json").write_text(json.dumps({"results": {k: {**v, "pc": {str(t): r for t, r in v["pc"].items()}}
                                                              for k, v in results.items()},
                                                  "config": asdict(cfg),
                                                  "torch": torch.__version__,
                                                  "argv": sys.argv[1:]}, indent=2, sort_keys=True, default=float))
    print(f"\nresults written to {out}")
    return 0


def spiking(data, cfg: SpikingPCConfig, seeds: List[int], row: dict, bp_seconds: float, prefix: Path) -> dict:
    """Train the spiking PC network once per seed; print the mean accuracy beside the rate network's row and
    plot the first seed's network."""
    n_in, n_classes = data.x_train.shape[1], data.n_classes
    runs, first = [], None
    for seed in seeds:
        pc = SpikingPC(n_in, n_classes, replace(cfg, seed=seed))
        seconds = pc.train(data.x_train, data.y_train, progress=True)
        runs.append({"seed": seed, "accuracy": pc.accuracy(data.x_test, data.y_test),
                     "rate_forward_accuracy": pc.rate_accuracy(data.x_test, data.y_test), "seconds": seconds})
        print(f"spiking PC, seed {seed}: {runs[-1]['accuracy']:.3f} "
              f"(its weights' rate forward pass {runs[-1]['rate_forward_accuracy']:.3f}), {seconds:.0f} s")
        if first is None:
            first = pc
    pc, cfg = first, first.cfg
    acc, forward, seconds = (float(np.mean([r[k] for r in runs])) for k in ("accuracy", "rate_forward_accuracy", "seconds"))
    rate_best = max(max(r["accuracy"], r["accuracy_nudged"]) for r in row["pc"].values())
    rate_t8 = row["pc"].get(8, {}).get("accuracy_nudged")
    print(f"spiking PC ({cfg.steps} steps/sample, {cfg.epochs} epochs, hidden {cfg.hidden}, eta {cfg.eta:.3g}), "
          f"mean of {len(runs)} seed{'s' * (len(runs) > 1)}: {acc:.3f} from spike counts "
          f"over the last {cfg.test_steps - cfg.test_steps // 2} of {cfg.test_steps} steps (the rate forward pass of its weights: {forward:.3f}); "
          f"{100 * (acc - rate_best):+.1f}p vs the best rate PC ({rate_best:.3f})"
          + (f", {100 * (acc - rate_t8):+.1f}p vs nudged rate PC at T=8" if rate_t8 is not None else "")
          + f", {100 * (acc - row['backprop']):+.1f}p vs backprop; {seconds:.0f} s = {seconds / bp_seconds:.0f}x backprop")
    energy, rec = pc.clamped_run(data.x_test[:100], data.y_test[:100],
                                 monitors=["x1.spikes", f"e{pc.L}p.spikes", f"e{pc.L}n.spikes"])
    curves(list(range(1, len(energy) + 1)), {"spiking PC, trained": energy}, f"{prefix}_spiking_energy.png",
           xlabel="step (ms) of a clamped presentation", ylabel="energy (batch mean, from error currents)",
           title="Spiking PC: energy during inference")
    cols = [rec["x1.spikes"][:, 0, :40], rec[f"e{pc.L}p.spikes"][:, 0], rec[f"e{pc.L}n.spikes"][:, 0]]
    raster(torch.cat(cols, dim=1).numpy(), f"{prefix}_spiking_raster.png", dt=cfg.dt,
           title=f"x1 (40 of {cfg.hidden[0]}), e{pc.L}p, e{pc.L}n: one test image, label clamped")
    peak = int(np.argmax(energy))
    print(f"  energy during a clamped presentation: peak {energy[peak]:.3f} at step {peak + 1}, "
          f"{energy[-1]:.3f} at step {len(energy)}")
    return {"config": asdict(cfg), "accuracy": acc, "rate_forward_accuracy": forward, "seconds": seconds, "runs": runs,
            "energy_peak": float(energy[peak]), "energy_end": float(energy[-1])}


if __name__ == "__main__":
    sys.exit(main())

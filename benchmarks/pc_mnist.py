"""Predictive coding (rate, error units) against the same MLP trained with backprop, in one run.

Both start from the same weights, use the same activation, biases, squared-error loss,
SGD learning rate, mini-batches and epochs; reported: test accuracy, accuracy against
the number of inference steps T (with the label clamped, and with the top nudged
10 % of the way to the label at a 10x learning rate), the training time ratio PC / backprop, a plot of
the energy falling over inference steps, and the images a generative PC network
(label at the bottom, image on top) produces for each class.

    python benchmarks/pc_mnist.py            # MNIST-5k (4,000/1,000) and digits (~3 min on 2 cores)
    python benchmarks/pc_mnist.py --quick    # digits only, fewer steps (~15 s)
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
from neuro.plotting import curves, receptive_fields
from networks.pc import PCConfig, PCNetwork, accuracy, backprop_mlp, build, generate, train

CONFIG = PCConfig(hidden=(256,), steps=8, gamma=0.2, eta=0.05, epochs=20, activation="relu")
# PC nudges the top 10 % of the way to the label and learns 10x faster: the same step size as backprop's.
NUDGED = replace(CONFIG, nudge=0.1, eta=0.5)


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", default="1,2,4,8,16", help="inference steps T to compare")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="out/bench_pc")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = sorted({int(s) for s in args.steps.split(",")})
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
        results[name] = row
        accs = [row["pc"][t]["accuracy"] for t in steps]
        nudged_accs = [row["pc"][t]["accuracy_nudged"] for t in steps]
        curves(steps, {"predictive coding": accs, f"PC, nudge {NUDGED.nudge}": nudged_accs, "backprop": [bp] * len(steps)},
               out / f"pc_accuracy_vs_T_{name}.png",
               xlabel="inference steps T", ylabel="test accuracy", title=f"PC vs backprop ({name})")
    (out / "results.json").write_text(json.dumps({"results": {k: {**v, "pc": {str(t): r for t, r in v["pc"].items()}}
                                                              for k, v in results.items()},
                                                  "config": asdict(cfg), "torch": torch.__version__,
                                                  "argv": sys.argv[1:]}, indent=2, sort_keys=True, default=float))
    print(f"\nresults written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Experiments runnable with ``neuro run NAME`` (registered as ``neuro.experiments`` entry points)."""
from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Dict

import numpy as np
import torch

from neuro import Simulator
from neuro.datasets import load_digits, load_mnist5k
from neuro.io import save
from neuro.plotting import curves, raster, receptive_fields
from neuro.readout import readout_accuracy
from networks import softhebb
from networks.softhebb import SoftHebbConfig
from networks.stdp_wta import STDPWTAConfig, build, present


def stdp_wta_digits(out: Path, quick: bool = False, seed: int = 0) -> Dict[str, object]:
    """Unsupervised STDP winner-take-all on scikit-learn digits vs the same net with frozen random weights."""
    out = Path(out)
    data = load_digits(seed=seed)
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    if quick:
        x_train, y_train, x_test, y_test = x_train[:240], y_train[:240], x_test[:120], y_test[:120]
    cfg = STDPWTAConfig(seed=seed)
    feature_steps = 100
    t0 = time.perf_counter()

    def accuracy(network_weights: torch.Tensor) -> float:
        # Spike-count features with learning off, many images at once (replicas),
        # thresholds starting from rest, so learned and random nets are measured alike.
        sim = Simulator(build(x_train.shape[1], cfg), replicas=cfg.batch, seed=seed + 1)
        sim.set_weights("ff", network_weights)
        f_train = present(sim, x_train, feature_steps, learn=False)
        f_test = present(sim, x_test, feature_steps, learn=False)
        return readout_accuracy(f_train, y_train, f_test, y_test)

    net = build(x_train.shape[1], cfg)
    learner = Simulator(net, replicas=1, seed=seed)
    initial = learner.weights("ff").clone()
    random_accuracy = accuracy(initial)
    print(f"frozen random weights: readout accuracy {random_accuracy:.3f}")

    # One unsupervised epoch, one image at a time, with a learning curve.
    checkpoints = np.linspace(0, len(x_train), 5 if not quick else 3).astype(int)
    seen, curve = [0], [random_accuracy]
    for a, b in zip(checkpoints[:-1], checkpoints[1:]):
        present(learner, x_train[a:b], cfg.presentation_steps, learn=True, progress=f"STDP training {a}-{b}")
        seen.append(int(b))
        curve.append(accuracy(learner.weights("ff")))
        print(f"after {b} images: readout accuracy {curve[-1]:.3f}")
    learned_accuracy = curve[-1]
    train_seconds = time.perf_counter() - t0

    learned = learner.weights("ff").cpu().numpy()
    receptive_fields(learned, data.image_shape, out / "receptive_fields.png", title="STDP-learned receptive fields")
    receptive_fields(initial.cpu().numpy(), data.image_shape, out / "receptive_fields_initial.png", title="initial (random)")
    curves(
        seen,
        {"STDP (learning)": curve, "frozen random": [random_accuracy] * len(seen)},
        out / "learning_curve.png",
        xlabel="training images seen",
        ylabel="readout test accuracy",
        title="STDP WTA on digits",
    )
    learner.reset_neurons()
    learner.learning = False
    rec = learner.run(cfg.presentation_steps * 4, {"pixels": x_test[0]}, monitors=["exc.spikes", "pixels.spikes"])
    learner.learning = True
    raster(rec["exc.spikes"][:, 0].cpu().numpy(), out / "raster_exc.png", dt=cfg.dt, title=f"exc spikes, test digit {y_test[0]}")
    raster(rec["pixels.spikes"][:, 0].cpu().numpy(), out / "raster_input.png", dt=cfg.dt, title=f"input spikes, test digit {y_test[0]}")
    save(out / "model.h5", learner, metadata={"experiment": "stdp-wta-digits", "config": asdict(cfg)})

    print(f"readout accuracy: STDP-learned {learned_accuracy:.3f} vs frozen random {random_accuracy:.3f} "
          f"(chance 0.100) on {len(x_test)} test digits")
    return {
        "dataset": data.name,
        "n_train": int(len(x_train)),
        "n_test": int(len(x_test)),
        "accuracy_learned": learned_accuracy,
        "accuracy_random": random_accuracy,
        "learning_curve": {"images_seen": seen, "accuracy": curve},
        "seconds": train_seconds,
        "config": asdict(cfg),
    }


def softhebb_mnist5k(out: Path, quick: bool = False, seed: int = 0) -> Dict[str, object]:
    """SoftHebb (rate, 2,000 soft-WTA neurons) on MNIST-5k, one unsupervised epoch, vs frozen random weights."""
    out = Path(out)
    data = load_mnist5k()
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    cfg = SoftHebbConfig(seed=seed)
    if quick:
        x_train, y_train, x_test, y_test = x_train[:1000], y_train[:1000], x_test[:300], y_test[:300]
        cfg = replace(cfg, n_neurons=400)
    net = softhebb.build_rate(x_train.shape[1], cfg)
    sim = softhebb.rate_simulator(net, cfg)
    initial = sim.weights("ff1").clone()

    def accuracy(weights: torch.Tensor) -> float:
        return readout_accuracy(
            softhebb.features(weights, x_train), y_train, softhebb.features(weights, x_test), y_test
        )

    t0 = time.perf_counter()
    seen, curve = [0], [accuracy(initial)]
    print(f"frozen random weights: readout accuracy {curve[0]:.3f}")

    def checkpoint(n: int) -> None:
        seen.append(n)
        curve.append(accuracy(sim.weights("ff1")))
        print(f"after {n} images: readout accuracy {curve[-1]:.3f}")

    every = len(x_train) // 4
    softhebb.train_rate(sim, x_train, cfg.batch, seed=seed, progress="SoftHebb epoch 1",
                        callback=checkpoint, callback_every=every)
    if seen[-1] != len(x_train):
        checkpoint(len(x_train))
    seconds = time.perf_counter() - t0
    learned = sim.weights("ff1").cpu()
    norms = learned.norm(dim=1)
    # 100 neurons evenly spaced in how far they moved from their random start.
    cos = (learned * initial).sum(1) / (norms * initial.norm(dim=1))
    shown = torch.argsort(cos)[torch.linspace(0, len(cos) - 1, 100).long()].numpy()
    receptive_fields(learned[shown].numpy(), data.image_shape, out / "receptive_fields.png", per_field=True,
                     title="SoftHebb receptive fields (100 neurons, most to least changed)")
    curves(seen, {"SoftHebb": curve, "frozen random": [curve[0]] * len(seen)}, out / "learning_curve.png",
           xlabel="training images seen", ylabel="readout test accuracy", title="SoftHebb on MNIST-5k (1 epoch)")
    model = Simulator(net)
    model.set_weights("ff1", learned)
    save(out / "model.h5", model, metadata={"experiment": "softhebb-mnist5k", "config": asdict(cfg)})
    print(f"readout accuracy: SoftHebb {curve[-1]:.3f} vs frozen random {curve[0]:.3f} (chance 0.100) "
          f"on {len(x_test)} test images; weight norms {float(norms.mean()):.2f} +- {float(norms.std()):.2f}")
    return {
        "dataset": data.name,
        "n_train": int(len(x_train)),
        "n_test": int(len(x_test)),
        "accuracy_learned": curve[-1],
        "accuracy_random": curve[0],
        "learning_curve": {"images_seen": seen, "accuracy": curve},
        "weight_norm_mean": float(norms.mean()),
        "seconds": seconds,
        "config": asdict(cfg),
    }

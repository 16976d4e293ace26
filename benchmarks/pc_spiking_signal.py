"""How noisy is the spiking PC network's learning signal? Snapshots of the error against its average.

The rule of :mod:`networks.pc_spiking` reads each error unit's current once, at the last step of a
presentation (``dW_l ~ e_l(T) a_{l-1}^T``). After a short training, this script shows a batch of
samples with the label clamped for ``--steps`` steps, learning off, and compares the update direction
made from the error current of one step, ``e_l(t) a_{l-1}(t)^T``, with the direction made from the
errors averaged over the last quarter of the presentation (the settled state): cosine per layer
against ``t``, and between snapshots a few steps apart. A cosine well below 1 between snapshots two
steps apart is jitter, not settling: the error currents filter the value and input units' regular
spike trains (20 ms), whose phases move from step to step. Each direction is also compared with
backprop's (minus the gradient of the squared error of the feed-forward pass of the same weights,
``1/2 ||onehot - W_L f(...)||^2``), the update the rate network approximates when its errors are small.

    python benchmarks/pc_spiking_signal.py            # MNIST-5k, 1 epoch of training (~2 min on one core)
    python benchmarks/pc_spiking_signal.py --quick    # digits, 16 hidden units (~20 s)
    python benchmarks/pc_spiking_signal.py --config '{"error_floor": true, "tau_value": 100}'   # another network

Writes ``results.json`` and ``pc_spiking_signal.png`` (cosine against the step) to ``--out``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List

import torch

from neuro.datasets import load_digits, load_mnist5k
from neuro.plotting import curves
from networks.pc_spiking import SpikingPC, SpikingPCConfig


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.flatten() @ b.flatten()) / (a.norm() * b.norm()))


def directions(pc: SpikingPC, x, labels, steps: int) -> Dict[str, torch.Tensor]:
    """Per layer ``l``, the update direction ``e_l(t)^T a_{l-1}(t)`` at every step ``t``: ``(steps, n_l, n_{l-1})``,
    batch summed; ``a_0`` the pixels, ``a_l = clip(x_l, 0, 1)`` the hidden values' currents."""
    values = [f"x{l}.i" for l in range(1, pc.L)]
    _, rec = pc.clamped_run(x, labels, monitors=[f"e{l}p.i" for l in range(1, pc.L + 1)] + values, steps=steps)
    pixels = torch.as_tensor(x, dtype=pc.dtype).expand(steps, *x.shape)
    pre = [pixels] + [rec[v].clamp(0.0, 1.0) for v in values]
    gain = pc.cfg.current_gain
    return {f"W{l}": torch.einsum("tbn,tbm->tnm", rec[f"e{l}p.i"] / gain, pre[l - 1]) for l in range(1, pc.L + 1)}


def backprop(pc: SpikingPC, x, labels) -> Dict[str, torch.Tensor]:
    """Per layer, minus the gradient of ``1/2 sum_b ||onehot_b - W_L f(... f(W_1 x_b + b_1) ...) - b_L||^2``
    with respect to ``W_l`` (rate units), ``f = clip(., 0, 1)`` (the values' clip to [-1, 1] does not
    change ``f``'s output or slope): ``(n_l, n_{l-1})``, batch summed like :func:`directions`."""
    params = [(w.detach().clone().requires_grad_(True), b.detach()) for w, b in pc.rate_weights(numpy=False)]
    a = torch.as_tensor(x, dtype=params[0][0].dtype)
    for l, (w, b) in enumerate(params, start=1):
        h = a @ w.T + b
        a = h if l == len(params) else h.clamp(0.0, 1.0)
    target = torch.nn.functional.one_hot(torch.as_tensor(labels), a.shape[1]).to(a.dtype)
    loss = 0.5 * ((target - a) ** 2).sum()
    grads = torch.autograd.grad(loss, [w for w, _ in params])
    return {f"W{l}": -g for l, g in enumerate(grads, start=1)}


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=512, help="steps of the clamped presentation examined")
    parser.add_argument("--samples", type=int, default=32, help="samples in the examined batch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--config", default="{}", help="SpikingPCConfig fields as JSON, e.g. '{\"tau_value\": 100}'")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of training before the examination")
    parser.add_argument("--out", default="out/bench_pc_signal")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        fields = json.loads(args.config)
        cfg = SpikingPCConfig(**{"epochs": args.epochs, "hidden": (16,) if args.quick else (256,),
                                 **{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}})
    except (ValueError, TypeError) as e:
        parser.error(f"--config: {e}")
    if args.steps < 2 * cfg.steps:
        parser.error(f"--steps must be at least twice the training presentation ({2 * cfg.steps}): "
                     f"the rule's step is compared with the step {cfg.steps} later, got {args.steps}")
    data = load_digits() if args.quick else load_mnist5k()
    pc = SpikingPC(data.x_train.shape[1], data.n_classes, cfg)
    pc.train(data.x_train, data.y_train, progress=True)
    x, labels = data.x_train[: args.samples], data.y_train[: args.samples]
    steps, T = args.steps, cfg.steps
    late = directions(pc, x, labels, steps)
    bp = backprop(pc, x, labels)
    results = {"config": {"steps": steps, "samples": args.samples, "train_epochs": cfg.epochs, "network": fields,
                          "hidden": list(cfg.hidden), "data": "digits" if args.quick else "mnist5k"}, "layers": {}}
    print(f"update directions from one step's error currents, {args.samples} samples, label clamped; "
          f"'settled' = averaged over steps {3 * steps // 4}..{steps}")
    print(f"{'layer':>5s} {'snap T vs T+2':>14s} {'snap T vs 2T':>13s} {'snap T vs settled':>18s} "
          f"{'avg last T/4 vs settled':>24s} {'snap T vs BP':>13s} {'avg last T/4 vs BP':>19s} {'settled vs BP':>14s} "
          f"{'|snap T|/|BP|':>14s}")
    series = {}
    for name, d in late.items():
        settled = d[3 * steps // 4:].mean(dim=0)
        row = {
            "snapshot_T_vs_T_plus_2": cosine(d[T - 1], d[T + 1]),
            "snapshot_T_vs_2T": cosine(d[T - 1], d[2 * T - 1]),
            "snapshot_T_vs_settled": cosine(d[T - 1], settled),
            "average_last_quarter_of_T_vs_settled": cosine(d[T - T // 4: T].mean(dim=0), settled),
            "snapshot_T_vs_backprop": cosine(d[T - 1], bp[name]),
            "average_last_quarter_of_T_vs_backprop": cosine(d[T - T // 4: T].mean(dim=0), bp[name]),
            "settled_vs_backprop": cosine(settled, bp[name]),
            "snapshot_T_norm_over_backprop": float(d[T - 1].norm() / bp[name].norm()),
            "cosine_vs_settled": [cosine(d[t], settled) for t in range(steps)],
            "cosine_vs_backprop": [cosine(d[t], bp[name]) for t in range(steps)],
        }
        results["layers"][name] = row
        series[f"{name}, one step vs settled"] = row["cosine_vs_settled"]
        series[f"{name}, one step vs backprop"] = row["cosine_vs_backprop"]
        print(f"{name:>5s} {row['snapshot_T_vs_T_plus_2']:14.3f} {row['snapshot_T_vs_2T']:13.3f} "
              f"{row['snapshot_T_vs_settled']:18.3f} {row['average_last_quarter_of_T_vs_settled']:24.3f} "
              f"{row['snapshot_T_vs_backprop']:13.3f} {row['average_last_quarter_of_T_vs_backprop']:19.3f} "
              f"{row['settled_vs_backprop']:14.3f} {row['snapshot_T_norm_over_backprop']:14.3f}")
    curves(list(range(1, steps + 1)), series, out / "pc_spiking_signal.png", "step of the clamped presentation",
           "cosine of the update direction", f"spiking PC after {cfg.epochs} epoch: the rule reads step {T}")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

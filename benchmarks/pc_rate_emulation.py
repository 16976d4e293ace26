"""The spiking PC network's departures from the rate network, put one at a time into the rate network.

:mod:`networks.pc_spiking` differs from :mod:`networks.pc` in more than spikes: its activation is
``f = clip(., 0, 1)`` (a value unit fires at most once a step), its values are bounded to [-1, 1], they
start each presentation at 0 and, above all, they leak (``tau_value``): a value settles where its
leak balances its error, a standing error of ``dt / (tau_value * feedback)`` of the value (4 % at
1 s, 2 % at the default 2 s, where only positive values leak). This script trains the rate network with each of these (10 epochs at eta 0.1, the
spiking network's budget) and prints the test accuracy of each, so what each costs is measured
without spike noise.

    python benchmarks/pc_rate_emulation.py            # MNIST-5k, 11 variants (~3 min on one core)
    python benchmarks/pc_rate_emulation.py --quick    # digits, 3 variants, 2 epochs (~5 s)

Writes ``results.json`` to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import List

import torch

from neuro.datasets import load_digits, load_mnist5k
from networks.pc import PCConfig, PCNetwork, accuracy, build, train
from networks.pc_spiking import SpikingPCConfig

CLIP = "clip"  # f = clip(x, 0, 1), the spiking value unit's output (networks.pc.ACTIVATIONS)


@dataclass(frozen=True)
class Departure:
    """What the rate network is given of the spiking one.

    Attributes:
        leak: per unit of ``gamma``, the fraction of a value it loses a step (the standing error it leaves,
            as a fraction of the value, at equilibrium): the spiking network's ``dt / (tau_value * feedback)``.
        leak_side: ``"both"`` or ``"positive"`` (only positive values leak: ``value_leak="positive"``).
        start: ``"forward"`` (the rate network's) or ``"zero"`` (the spiking network's default).
        bound: values clipped to [-1, 1] after each step.
    """

    leak: float = 0.0
    leak_side: str = "both"
    start: str = "forward"
    bound: bool = False


class EmulatedPC(PCNetwork):
    """The rate network with a :class:`Departure`."""

    def __init__(self, network, cfg: PCConfig, departure: Departure, dtype: torch.dtype = torch.float32) -> None:
        super().__init__(network, cfg, dtype)
        self.departure = departure

    def start_values(self, x: torch.Tensor) -> List[torch.Tensor]:
        values = super().start_values(x)
        if self.departure.start == "zero":
            values[1:-1] = [torch.zeros_like(v) for v in values[1:-1]]
        return values

    def relax(self, l: int, value: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
        d = self.departure
        leak = d.leak * value
        if d.leak_side == "positive":
            leak = leak * (value > 0)
        out = super().relax(l, value, drive - leak)
        return out.clamp(-1.0, 1.0) if d.bound else out


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="out/bench_pc_emulation")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spiking = SpikingPCConfig()

    def leak_of(tau_value: float) -> float:
        return spiking.dt / (tau_value * spiking.feedback)

    # The leak variants use 1 s, the spiking network's earlier two-sided default, to compare the sides.
    leak = leak_of(1.0)
    cfg = PCConfig(hidden=(256,), steps=8, gamma=0.2, eta=spiking.eta, epochs=spiking.epochs, activation=CLIP)
    variants = {
        "rate network (f = clip)": (cfg, Departure()),
        "values bounded to [-1, 1]": (cfg, Departure(bound=True)),
        f"leak ({100 * leak:.1f} % standing error)": (cfg, Departure(leak=leak)),
        "leak on positive values only": (cfg, Departure(leak=leak, leak_side="positive")),
        "start at 0, T = 32": (replace(cfg, steps=32), Departure(start="zero")),
        "start at 0, T = 32, leak": (replace(cfg, steps=32), Departure(start="zero", leak=leak)),
        "start at 0, T = 32, leak on positive values": (replace(cfg, steps=32),
                                                         Departure(start="zero", leak=leak, leak_side="positive")),
        "start at 0, T = 16": (replace(cfg, steps=16), Departure(start="zero")),
        "start at 0, T = 16, leak": (replace(cfg, steps=16), Departure(start="zero", leak=leak)),
        f"leak of tau_value {spiking.tau_value:g} s on positive values (the default)": (
            cfg, Departure(leak=leak_of(spiking.tau_value), leak_side=spiking.value_leak)),
        "rate network, relu (benchmarks/pc_mnist.py's)": (replace(cfg, activation="relu"), Departure()),
    }
    if args.quick:
        variants = {k: (replace(c, epochs=2, hidden=(64,)), d) for k, (c, d) in list(variants.items())[:3]}
    data = load_digits() if args.quick else load_mnist5k()
    n_in, n_classes = data.x_train.shape[1], data.n_classes
    results = {}
    print(f"{'variant':48s} {'test acc':>8s} {'s':>5s}")
    for name, (c, departure) in variants.items():
        net = EmulatedPC(build(n_in, n_classes, c), c, departure)
        t0 = time.perf_counter()
        train(net, data.x_train, data.y_train, n_classes, seed=c.seed)
        acc = accuracy(net, data.x_test, data.y_test)
        results[name] = {"accuracy": acc, "seconds": time.perf_counter() - t0, "steps": c.steps,
                         "departure": asdict(departure)}
        print(f"{name:48s} {acc:8.3f} {results[name]['seconds']:5.0f}", flush=True)
    (out / "results.json").write_text(json.dumps({"data": "digits" if args.quick else "mnist5k", "eta": cfg.eta,
                                                  "epochs": cfg.epochs, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``neuro export``: run a saved model on Lava's or Brian2's simulator, or write its NIR graph.

Registered as a ``neuro.commands`` entry point, so the core CLI never imports ``export/``.

* ``neuro export --to lava MODEL.h5 --steps N`` continues the saved run on Lava
  (floating point) and, side by side, in the torch engine, from the same state,
  and reports whether spikes and weights agree; ``--to brian2`` does the same on Brian2
  (:mod:`export.brian2`, numpy runtime). Inputs of input populations
  are constant values (``--input NAME=VALUE`` or ``NAME=FILE.npy`` holding
  ``(N,)`` values for an encoder, ``(steps, N)`` spikes without one).
* ``neuro export --to nir MODEL.h5 -o GRAPH.nir`` writes the inference graph
  with the current weights (NIR has no plasticity: the rules stay in MODEL.h5);
  ``--replica``, ``--delays`` and ``--freeze-theta`` are :func:`export.nir.to_nir`'s options.

Every problem of the file, the inputs or the export is one line on stderr and exit status 1.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import torch


def _parse_inputs(items, network) -> Dict[str, np.ndarray]:
    inputs = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or name not in network.populations:
            raise ValueError(f"--input {item!r}: use NAME=VALUE or NAME=FILE.npy with an input population name")
        if value.endswith(".npy"):
            try:
                inputs[name] = np.load(value, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise ValueError(f"--input {item!r}: cannot read {value!r}: {e}") from None
        else:
            try:
                inputs[name] = np.full(network.populations[name].n, float(value))
            except ValueError:
                raise ValueError(f"--input {item!r}: {value!r} is neither a number nor a .npy file") from None
    return inputs


def export_command(args: argparse.Namespace) -> int:
    from neuro.io import ModelFileError, load

    try:
        sim = load(args.model, dtype=torch.float64)
    except ModelFileError as e:
        print(f"neuro export: {e}", file=sys.stderr)
        return 1
    net = sim.network
    if args.to == "nir":
        from export.nir import NIRExportError, write_nir

        out = Path(args.output or Path(args.model).with_suffix(".nir"))
        try:
            write_nir(out, sim, replica=args.replica, delays=args.delays, freeze_theta=args.freeze_theta)
        except (NIRExportError, OSError) as e:
            print(f"neuro export: {e}", file=sys.stderr)
            return 1
        print(f"wrote NIR graph {out} (inference only; the plasticity rules stay in {args.model})")
        return 0
    if args.steps < 1:
        print(f"neuro export: --steps must be at least 1, got {args.steps}", file=sys.stderr)
        return 1

    if args.to == "lava":
        from export.lava import LavaExportError as ExportError, run_lava as run_other
        label = "Lava floating_pt"
    else:
        from export.brian2 import Brian2ExportError as ExportError, run_brian2 as run_other
        label = "Brian2 (numpy runtime)"

    try:
        inputs = _parse_inputs(args.input, net)
        monitors = [f"{p}.spikes" for p in net.populations] + [f"{p}.w" for p in net.projections]
        # Torch first on a copy of the state, then the other simulator from the state the file holds.
        reference = load(args.model, dtype=torch.float64)
        ours = reference.run(args.steps, inputs, monitors=monitors)
        other = run_other(net, args.steps, inputs, monitors=monitors, seed=sim.seed, initial=sim)
    except (ExportError, ValueError) as e:
        print(f"neuro export: {e}", file=sys.stderr)
        return 1
    agrees = True
    for m in monitors:
        a, b = ours[m].numpy(), other[m].numpy()
        if m.endswith(".spikes"):
            mismatches = int(np.abs(a - b).sum())
            print(f"{m:30s} spike mismatches: {mismatches}")
            agrees &= mismatches == 0
        else:
            diff = float(np.abs(a - b).max())
            print(f"{m:30s} max |weight difference|: {diff:g}")
            agrees &= diff <= 1e-5 * max(float(np.abs(b).max()), 1e-12)
    print(f"{label} ran {args.steps} steps from step {sim.time_step}: "
          + ("agrees with the torch engine" if agrees else "DIFFERS from the torch engine"))
    return 0 if agrees else 1


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="run a model on Lava or Brian2 (compared with torch) or write it as NIR")
    p.add_argument("model", help="model file (.h5) written by neuro")
    p.add_argument("--to", choices=("lava", "brian2", "nir"), required=True)
    p.add_argument("--steps", type=int, default=500, help="steps to run on Lava or Brian2 (default 500)")
    p.add_argument("--input", action="append", help="NAME=VALUE or NAME=FILE.npy (repeatable)")
    p.add_argument("-o", "--output", help="output file for --to nir")
    p.add_argument("--replica", type=int, help="--to nir: the replica whose weights (thresholds) to export, "
                                               "where replicas differ")
    p.add_argument("--delays", choices=("implicit", "explicit"), default="implicit",
                   help="--to nir: no Delay nodes (layered networks only) or a Delay(dt) per projection")
    p.add_argument("--freeze-theta", action="store_true",
                   help="--to nir: export adaptive thresholds at their current value")
    p.set_defaults(handler=export_command)

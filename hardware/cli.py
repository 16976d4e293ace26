"""``neuro check``: does a saved model fit a target?

Registered through the ``neuro.commands`` entry point group
(``check = "hardware.cli:register"``), so the core never imports ``hardware``.

    neuro check --target loihi2 model.h5 [--rate 10] [--chips 1] [--replicas R] [--figures]

Exit status: 0 if the model fits and can run, 1 if not (the report says why),
2 if the file cannot be read.
"""
from __future__ import annotations

import argparse
import sys

from hardware.targets import TARGETS, get_target


def main_check(args: argparse.Namespace) -> int:
    """Run the check described by parsed ``args``; print the report; return the exit status."""
    from neuro.io import ModelFileError, load

    target = get_target(args.target)
    if getattr(args, "chips", 1) != 1:
        target = target.with_chips(args.chips)
    if getattr(args, "figures", False):
        print(target.describe())
        print()
    try:
        sim = load(args.model)
    except ModelFileError as e:
        print(f"neuro check: {e}", file=sys.stderr)
        return 2
    from hardware.check import check

    try:
        report = check(sim, target, replicas=getattr(args, "replicas", None), rate_hz=args.rate)
    except ValueError as e:
        print(f"neuro check: {e}", file=sys.stderr)
        return 2
    print(report.summary())
    if report.fits:
        print(f"\n{args.model} fits {target.name}.")
        return 0
    n = len(report.reasons)
    print(f"\n{args.model} does not fit {target.name}: {n} reason{'s' * (n != 1)} listed above.")
    return 1


def _positive_float(text: str) -> float:
    v = float(text)
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return v


def _positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return v


def register(subparsers) -> None:
    """Add ``check`` to the ``neuro`` command's sub-parsers."""
    p = subparsers.add_parser(
        "check",
        help="does a model file fit a target chip? (resources, energy, reasons it cannot run)",
        description="Map a saved model onto a target (Loihi 2 or a generic float machine): cores, synaptic "
        "memory, operations and energy per step, and every reason it does not fit or cannot run. "
        "Exit status 0 if it fits, 1 if not, 2 if the file cannot be read.",
    )
    p.add_argument("model", help="model file (.h5) written by neuro.io.save")
    p.add_argument("--target", choices=sorted(TARGETS), default="loihi2", help="target (default loihi2)")
    p.add_argument("--rate", type=_positive_float, default=10.0,
                   help="assumed firing rate of every population in Hz (default 10)")
    p.add_argument("--chips", type=_positive_int, default=1, help="number of chips (default 1)")
    p.add_argument("--replicas", type=_positive_int, default=None,
                   help="replicas to run (default: the file's); each needs its own copy on chip")
    p.add_argument("--figures", action="store_true", help="also print the target's figures with their sources")
    p.set_defaults(handler=main_check)


__all__ = ["register", "main_check"]

"""The ``neuro`` command.

``neuro run EXPERIMENT`` runs a registered experiment (``neuro run --list``;
``neuro run --demo`` runs the main demo), ``neuro info FILE`` describes a
model file. Experiments and further commands come from the packages that
define them, through the entry point groups ``neuro.experiments`` (a function
``(out_dir: Path, quick: bool, seed: int) -> dict``) and ``neuro.commands`` (a
function ``(subparsers) -> None`` that adds a sub-command), so the core never
imports ``networks/``, ``export/`` or ``hardware/``.
"""
from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable, Dict, List, Optional

DEMO = "softhebb-mnist5k"


def _group(name: str):
    return {ep.name: ep for ep in entry_points(group=name)}


def experiments() -> Dict[str, Callable]:
    """Registered experiments by name (loaded lazily)."""
    return _group("neuro.experiments")


def _run(args: argparse.Namespace) -> int:
    registry = experiments()
    if args.list:
        for name, ep in sorted(registry.items()):
            doc = (ep.load().__doc__ or "").strip().splitlines()
            print(f"{name:24s} {doc[0] if doc else ''}")
        return 0
    name = DEMO if args.demo else args.experiment
    if name is None:
        print("neuro run: name an experiment or use --demo (see --list)", file=sys.stderr)
        return 2
    if name not in registry:
        print(f"neuro run: unknown experiment {name!r}; known: {', '.join(sorted(registry))}", file=sys.stderr)
        return 2
    import torch

    # The demo's tensors are small: more threads only add OpenMP spin-waiting, which
    # slows a step by 10-100x when another process shares the cores.
    torch.set_num_threads(args.threads)
    out = Path(args.out or Path("out") / name)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"neuro run: cannot make the output folder {str(out)!r}: {e.strerror or e}", file=sys.stderr)
        return 2
    results = registry[name].load()(out, quick=args.quick, seed=args.seed)
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True))
    print(f"results written to {out}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from neuro.io import ModelFileError, describe

    try:
        print(describe(args.file))
    except ModelFileError as e:
        print(f"neuro info: {e}", file=sys.stderr)
        return 1
    return 0


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum`` (argparse turns the ValueError into a usage error)."""
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise ValueError(text)
        return value
    parse.__name__ = f"integer >= {minimum}"  # what argparse names in "invalid ... value"
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neuro", description="Spiking networks with local plasticity rules written once."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run an experiment (training, evaluation, plots, model file)")
    run.add_argument("experiment", nargs="?", help="experiment name (see --list)")
    run.add_argument("--demo", action="store_true", help=f"run the main demo ({DEMO})")
    run.add_argument("--list", action="store_true", help="list the experiments")
    run.add_argument("--out", help="output folder (default out/EXPERIMENT)")
    run.add_argument("--quick", action="store_true", help="a small, fast version (for smoke tests)")
    run.add_argument("--seed", type=_count(0), default=0, help="random seed, an integer >= 0 (default 0)")
    run.add_argument("--threads", type=_count(1), default=1, help="torch CPU threads (default 1)")
    run.set_defaults(handler=_run)
    info = sub.add_parser("info", help="describe a model file (.h5)")
    info.add_argument("file")
    info.set_defaults(handler=_info)
    for ep in _group("neuro.commands").values():
        ep.load()(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 0
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())

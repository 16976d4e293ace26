"""What the speed benchmarks share: timing, the versions and device they ran on, the results table."""
from __future__ import annotations

import importlib.metadata
import json
import platform
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: str = "cpu") -> float:
    """Wall seconds of one call of ``fn`` (the device synchronised before and after)."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def versions(names: Sequence[str]) -> Dict[str, str]:
    """Installed versions of the distributions ``names`` (``"lava-nc"``, ``"spikingjelly"`` ...),
    ``"not installed"`` where one is missing."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_line(device: str, threads: int) -> str:
    if str(device).startswith("cuda"):
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    return f"CPU {platform.processor() or platform.machine()}, {threads} thread(s), torch {torch.__version__}"


def table(rows: List[Dict[str, object]], columns: Sequence[str]) -> str:
    """A markdown table of ``rows`` (dicts) with ``columns``; floats to 4 significant digits."""
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def save_json(path: Path, payload: Dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(path)


def ratio(seconds: Optional[float], reference: Optional[float]) -> Optional[float]:
    return None if seconds is None or reference is None else seconds / reference

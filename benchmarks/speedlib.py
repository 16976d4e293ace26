"""What the speed benchmarks share: timing, the versions and device they ran on, the results table."""
from __future__ import annotations

import importlib.metadata
import json
import platform
import tempfile
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


# --- Brian2 as a peer: the same LIF and pair-STDP models, and its timing, for every workload -----------
def brian2_select(target: str, threads: int) -> Optional[str]:
    """Start a Brian2 scope on ``target``: ``"cpp_standalone"`` (generated C++ with ``threads`` OpenMP
    threads; returns its build directory) or a runtime code target such as ``"numpy"`` (returns None)."""
    import brian2 as b2

    b2.start_scope()
    if target == "cpp_standalone":
        workdir = tempfile.mkdtemp(prefix="brian2_")
        b2.set_device("cpp_standalone", directory=workdir, build_on_run=False)
        b2.prefs.devices.cpp_standalone.openmp_threads = threads
        return workdir
    b2.set_device("runtime")
    b2.prefs.codegen.target = target
    return None


def brian2_lif(n: int, tau_mem: float, tau_syn: float, v_leak: float = 0.0):
    """neuro's LIF (threshold 1, reset 0, one current ``isyn``; times in seconds) as a Brian2 group."""
    import brian2 as b2

    ns = {"tau_mem": tau_mem * b2.second, "tau_syn": tau_syn * b2.second, "v_leak": v_leak}
    return b2.NeuronGroup(n, "dv/dt = (v_leak - v + isyn) / tau_mem : 1\ndisyn/dt = -isyn / tau_syn : 1",
                          threshold="v > 1", reset="v = 0", method="euler", namespace=ns)


def brian2_stdp(source, target, tau: float, a_plus: float, a_minus: float, w_max: float):
    """Synapses that add ``w`` to the post current and learn additive pair-based STDP with all-to-all
    traces (impulse 1, ``tau`` seconds), weights clipped to ``[0, w_max]``: neuro's ``standard_rules.stdp``."""
    import brian2 as b2

    ns = {"tau": tau * b2.second, "a_plus": a_plus, "a_minus": a_minus, "w_max": w_max}
    return b2.Synapses(source, target, """w : 1
        dapre/dt = -apre / tau : 1 (event-driven)
        dapost/dt = -apost / tau : 1 (event-driven)""",
                       on_pre="isyn_post += w\napre += 1\nw = clip(w - a_minus * apost, 0, w_max)",
                       on_post="apost += 1\nw = clip(w + a_plus * apre, 0, w_max)", namespace=ns)


def brian2_timed_run(net, seconds: float, workdir: Optional[str], read: Callable[[], Dict[str, object]]) -> Dict[str, object]:
    """Run Brian2 network ``net`` for ``seconds`` of network time; ``{"seconds": wall seconds of the
    simulation}`` (for C++ standalone without its compilation, given as ``compile_seconds``) plus what
    ``read()`` (e.g. monitors) returns; standalone then hands Brian2 back to its runtime device."""
    import brian2 as b2

    if workdir is None:
        return {"seconds": timed(lambda: net.run(seconds * b2.second)), **read()}
    net.run(seconds * b2.second)
    total = timed(lambda: b2.device.build(directory=workdir, compile=True, run=True))
    out = {"seconds": float(b2.device._last_run_time), **read()}
    out["compile_seconds"] = total - out["seconds"]
    b2.device.reinit()
    b2.device.activate("runtime")
    b2.set_device("runtime")
    return out

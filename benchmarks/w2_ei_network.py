"""W2: a recurrent excitatory/inhibitory LIF network with STDP on its excitatory synapses, against Brian2.

The workload is Brian2's classic CUBA benchmark (Vogels & Abbott 2005; Brunette et al. 2007) with pair-based
STDP added on every excitatory synapse: 3,200 excitatory and 800 inhibitory LIF neurons, each pair
connected with probability 2 %, membrane time constant 20 ms, a resting potential above threshold that
keeps the network active on its own, started from random membrane potentials; dt = 0.1 ms, 1 s of
network time (10,000 steps). Units are normalised: threshold 1, reset 0 (Brian2's example uses -50 mV
and -60 mV, so 1 = 10 mV). One synaptic current per neuron (tau_syn 5 ms), so the inhibitory weight is
doubled against the example's 10 ms inhibitory synapses to keep its charge.

Both simulators run the same model on the same connectivity (the masks are handed to Brian2 as
``connect(i=..., j=...)``) from the same membrane potentials, and report their spike counts so the
workloads can be compared. neuro runs its dense engine and its event-driven one (``Simulator(...,
event_driven=...)``) and as its generated C++ loop (``Simulator(..., native=True)``, timed without its
compilation, reported on its own); Brian2 runs as generated C++ (``cpp_standalone``, timed without its compilation,
which is reported on its own) and, with ``--brian-numpy``, on its numpy runtime.

    python benchmarks/w2_ei_network.py            # the full workload (~3 min on 2 cores, Brian2 compiles ~30 s)
    python benchmarks/w2_ei_network.py --quick    # 500 neurons, 50 ms, Brian2's numpy runtime (~20 s)
    python benchmarks/w2_ei_network.py --sweep    # event-driven vs dense cost against the number of spikes
    python benchmarks/w2_ei_network.py --export-brian2 cython   # also the network compiled by export.brian2
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speedlib import (brian2_lif, brian2_select, brian2_stdp, brian2_timed_run, device_line, ratio,  # noqa: E402
                      save_json, table, timed, versions)

from neuro import LIF, Network, Simulator, random_mask  # noqa: E402
from neuro.native import compiler  # noqa: E402
from neuro.standard_rules import stdp  # noqa: E402


@dataclass(frozen=True)
class W2Config:
    """The W2 network. Times in seconds; weights, potentials and STDP amplitudes dimensionless
    (threshold 1 = 10 mV); ``a_plus`` / ``a_minus`` per pair of spikes."""

    n_exc: int = 3200
    n_inh: int = 800
    p: float = 0.02
    dt: float = 1e-4
    duration: float = 1.0
    tau_mem: float = 20e-3
    tau_syn: float = 5e-3
    v_leak: float = 1.1  # -49 mV in Brian2's CUBA: above threshold, the network drives itself
    w_exc: float = 0.162  # 1.62 mV
    w_inh: float = -1.8  # -9 mV with 10 ms synapses, doubled for 5 ms
    w_max: float = 0.324
    a_plus: float = 0.01 * 0.324
    a_minus: float = 0.0105 * 0.324
    tau_stdp: float = 20e-3
    seed: int = 0

    @property
    def steps(self) -> int:
        return int(round(self.duration / self.dt))


def connectivity(cfg: W2Config) -> Dict[str, np.ndarray]:
    """Masks ``(post, pre)`` of the four projections; no neuron connects to itself."""
    ne, ni = cfg.n_exc, cfg.n_inh
    return {
        "EE": random_mask(ne, ne, cfg.p, seed=cfg.seed, autapses=False),
        "EI": random_mask(ni, ne, cfg.p, seed=cfg.seed + 1),
        "IE": random_mask(ne, ni, cfg.p, seed=cfg.seed + 2),
        "II": random_mask(ni, ni, cfg.p, seed=cfg.seed + 3, autapses=False),
    }


def initial_v(cfg: W2Config) -> np.ndarray:
    """Membrane potentials at the start, uniform in [0, 1) (Brian2's ``Vr + rand() * (Vt - Vr)``): E then I."""
    return np.random.default_rng(cfg.seed + 10).random(cfg.n_exc + cfg.n_inh)


def set_initial_v(sim: Simulator, cfg: W2Config) -> None:
    """Start ``sim``'s E and I membranes at :func:`initial_v`."""
    v0 = torch.as_tensor(initial_v(cfg), dtype=sim.dtype, device=sim.device)
    sim.state["E"]["v"] = v0[None, : cfg.n_exc].clone()
    sim.state["I"]["v"] = v0[None, cfg.n_exc:].clone()


def build(cfg: W2Config) -> Network:
    lif = LIF(tau_mem=cfg.tau_mem, tau_syn=cfg.tau_syn, v_th=1.0, v_reset=0.0, v_leak=cfg.v_leak)
    rule = stdp(a_plus=cfg.a_plus, a_minus=cfg.a_minus, tau_plus=cfg.tau_stdp, tau_minus=cfg.tau_stdp,
                w_min=0.0, w_max=cfg.w_max)
    net = Network(dt=cfg.dt, name="w2_cuba_stdp")
    net.population("E", cfg.n_exc, lif)
    net.population("I", cfg.n_inh, lif)
    m = connectivity(cfg)
    net.connect("E", "E", cfg.w_exc, rule=rule, mask=m["EE"], name="EE")
    net.connect("E", "I", cfg.w_exc, rule=rule, mask=m["EI"], name="EI")
    net.connect("I", "E", cfg.w_inh, mask=m["IE"], name="IE")
    net.connect("I", "I", cfg.w_inh, mask=m["II"], name="II")
    return net


#: neuro's ways to run W2: Simulator arguments by mode.
MODES = {"event": dict(event_driven=True), "dense": dict(event_driven=False), "native": dict(native=True)}


def run_neuro(cfg: W2Config, mode: str, device: str = "cpu", progress: bool = True) -> Dict[str, object]:
    """``mode``: ``"event"`` (event-driven torch steps), ``"dense"`` or ``"native"`` (the generated C++ loop,
    compiled before the clock starts: ``compile_seconds``)."""
    net = build(cfg)
    start = time.perf_counter()
    sim = Simulator(net, device=device, **MODES[mode])
    compile_seconds = time.perf_counter() - start if mode == "native" else None
    set_initial_v(sim, cfg)
    rec = {}
    seconds = timed(lambda: rec.update(sim.run(cfg.steps, monitors=["E.count", "I.count"], every=cfg.steps,
                                               progress=progress).data), device)
    w = sim.weights("EE")[torch.as_tensor(net.projections["EE"].mask, device=sim.device)]
    return {"seconds": seconds, "spikes": int((rec["E.count"].sum() + rec["I.count"].sum()).item()),
            "mean_w_ee": float(w.mean()), "compile_seconds": compile_seconds}


def run_brian2(cfg: W2Config, target: str, threads: int) -> Dict[str, object]:
    """The same network written in Brian2's vocabulary; ``target``: ``"cpp_standalone"`` or ``"numpy"``."""
    import brian2 as b2

    workdir = brian2_select(target, threads)
    b2.defaultclock.dt = cfg.dt * b2.second
    P = brian2_lif(cfg.n_exc + cfg.n_inh, cfg.tau_mem, cfg.tau_syn, cfg.v_leak)
    P.v = initial_v(cfg)
    Pe, Pi = P[: cfg.n_exc], P[cfg.n_exc:]
    m = connectivity(cfg)
    plastic = brian2_stdp(Pe, P, cfg.tau_stdp, cfg.a_plus, cfg.a_minus, cfg.w_max)
    post_e, pre_e = np.nonzero(np.concatenate([m["EE"], m["EI"]]))  # post index over P: E then I
    plastic.connect(i=pre_e, j=post_e)
    plastic.w = cfg.w_exc
    static = b2.Synapses(Pi, P, "w : 1", on_pre="isyn_post += w")
    post_i, pre_i = np.nonzero(np.concatenate([m["IE"], m["II"]]))
    static.connect(i=pre_i, j=post_i)
    static.w = cfg.w_inh
    mon = b2.SpikeMonitor(P, record=False)
    net = b2.Network(P, plastic, static, mon)
    return brian2_timed_run(net, cfg.duration, workdir, lambda: {"spikes": int(np.sum(mon.count[:]))})


def run_exported(cfg: W2Config, target: str) -> Dict[str, object]:
    """The network as ``export.brian2`` compiles it (``target``: Brian2's ``"numpy"`` or ``"cython"`` runtime),
    from the same potentials, and neuro's event-driven engine in float64 on it: the exported network should
    give neuro's spikes exactly, where the hand-written one agrees only in activity."""
    from export.brian2 import run_brian2

    net = build(cfg)
    sim = Simulator(net, dtype=torch.float64, event_driven=True)
    set_initial_v(sim, cfg)
    out: Dict[str, object] = {}
    seconds = timed(lambda: out.update(run_brian2(net, cfg.steps, monitors=["E.spikes", "I.spikes"], initial=sim,
                                                  target=target).data))
    spikes = int(sum(v.sum() for v in out.values()))
    rec = sim.run(cfg.steps, monitors=["E.spikes", "I.spikes"])
    same = all(torch.equal(rec[m], out[m]) for m in out)
    return {"seconds": seconds, "spikes": spikes, "spikes_neuro_float64": int(sum(rec[m].sum() for m in out)),
            "identical_spike_trains": same}


def best_of(run: Callable[[], Dict[str, object]], repeat: int) -> Dict[str, object]:
    """The fastest of ``repeat`` runs, with every run's seconds under ``all_seconds``."""
    results = [run() for _ in range(max(repeat, 1))]
    best = min(results, key=lambda r: r["seconds"])
    return {**best, "all_seconds": [r["seconds"] for r in results]}


def sweep(cfg: W2Config, dense_duration: float) -> List[Dict[str, object]]:
    """Event-driven and dense cost against the number of spikes: the resting potential sets the activity.
    The dense engine runs ``dense_duration`` seconds of network time per level."""
    rows = []
    for v_leak in (1.02, 1.1, 1.3, 1.6):
        for mode in ("event", "dense", "native"):
            c = replace(cfg, v_leak=v_leak, duration=cfg.duration if mode != "dense" else min(cfg.duration, dense_duration))
            r = run_neuro(c, mode, progress=False)
            rows.append({"v_leak": v_leak, "mode": mode, "spikes": r["spikes"],
                         "spikes_per_step": r["spikes"] / c.steps, "seconds": r["seconds"],
                         "us_per_step": 1e6 * r["seconds"] / c.steps})
    return rows


def linear_fit(rows: List[Dict[str, object]], mode: str) -> Dict[str, float]:
    """Least-squares ``us_per_step = intercept + slope * spikes_per_step`` over the sweep, with R^2."""
    x = np.array([r["spikes_per_step"] for r in rows if r["mode"] == mode])
    y = np.array([r["us_per_step"] for r in rows if r["mode"] == mode])
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    r2 = 1.0 - float(residual @ residual) / max(float(((y - y.mean()) ** 2).sum()), 1e-30)
    return {"us_per_spike": float(slope), "us_per_step_at_no_spikes": float(intercept), "r2": r2}


def plot_sweep(rows: List[Dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for mode, marker in (("event", "o"), ("dense", "s"), ("native", "^")):
        pts = sorted((r["spikes_per_step"], r["us_per_step"]) for r in rows if r["mode"] == mode)
        ax.plot(*zip(*pts), marker=marker, label=f"neuro, {mode}")
    ax.set_xlabel("spikes per step (whole network)")
    ax.set_ylabel("wall time per step (µs)")
    ax.set_yscale("log")
    ax.set_title("W2: cost against activity")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 neurons, 5 %% connectivity, 50 ms, Brian2 numpy")
    parser.add_argument("--sweep", action="store_true", help="also measure cost against activity")
    parser.add_argument("--brian-numpy", action="store_true", help="also run Brian2's numpy runtime")
    parser.add_argument("--export-brian2", choices=("numpy", "cython"),
                        help="also run the network as export.brian2 compiles it, on this Brian2 runtime target "
                             "(timed with building and code generation), against neuro in float64")
    parser.add_argument("--dense-duration", type=float, default=0.1,
                        help="network seconds the dense engine runs (its cost per step does not depend on activity)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of neuro's native loop and of Brian2 C++ standalone; the best is reported "
                             "(this machine's run-to-run spread is up to 2x)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="out/bench_w2")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = W2Config(n_exc=400, n_inh=100, p=0.05, duration=0.05) if args.quick else W2Config()
    rows: List[Dict[str, object]] = []
    dense_cfg = replace(cfg, duration=min(cfg.duration, args.dense_duration))
    modes = [("event", cfg), ("dense", dense_cfg)] + ([("native", cfg)] if args.device == "cpu" and compiler() else [])
    labels = {"event": "event-driven", "dense": "dense", "native": "native C++ loop"}
    for mode, c in modes:
        r = best_of(lambda: run_neuro(c, mode, args.device), args.repeat if mode == "native" else 1)
        rows.append({"simulator": f"neuro, {labels[mode]} ({args.device})",
                     "simulated_s": c.duration, "us_per_step": 1e6 * r["seconds"] / c.steps, **r})
    runs = [("numpy", args.threads)] if args.quick else (
        [("cpp_standalone", t) for t in sorted({1, args.threads})] + ([("numpy", args.threads)] if args.brian_numpy else []))
    for target, threads in runs:
        r = best_of(lambda: run_brian2(cfg, target, threads), args.repeat if target == "cpp_standalone" else 1)
        label = f"Brian2 {target} (CPU)" if target == "numpy" else f"Brian2 cpp_standalone (CPU, {threads} OpenMP thread{'s' * (threads > 1)})"
        rows.append({"simulator": label, "simulated_s": cfg.duration, "us_per_step": 1e6 * r["seconds"] / cfg.steps, **r})
    if args.export_brian2:
        r = run_exported(cfg, args.export_brian2)
        rows.append({"simulator": f"Brian2 {args.export_brian2}, exported by neuro (CPU)", "simulated_s": cfg.duration,
                     "us_per_step": 1e6 * r["seconds"] / cfg.steps, **r})
    event = rows[0]["us_per_step"]
    for r in rows:
        r["time / neuro event-driven"] = ratio(r["us_per_step"], event)
    print(f"W2: {cfg.n_exc}+{cfg.n_inh} LIF, p = {cfg.p}, STDP on E synapses, dt = {cfg.dt * 1e3:g} ms, "
          f"{cfg.duration:g} s = {cfg.steps} steps; {device_line(args.device, args.threads)}")
    print(table(rows, ["simulator", "simulated_s", "seconds", "us_per_step", "time / neuro event-driven", "spikes",
                       "compile_seconds"] + (["spikes_neuro_float64", "identical_spike_trains"] if args.export_brian2 else [])))
    payload = {"config": asdict(cfg), "rows": rows, "device": device_line(args.device, args.threads),
               "versions": versions(["torch", "norse", "brian2", "numpy"]), "argv": sys.argv[1:]}
    if args.sweep:
        payload["sweep"] = sweep(cfg, args.dense_duration)
        payload["sweep_fit_event"] = linear_fit(payload["sweep"], "event")
        payload["sweep_fit_native"] = linear_fit(payload["sweep"], "native")
        print(table(payload["sweep"], ["v_leak", "mode", "spikes", "spikes_per_step", "seconds", "us_per_step"]))
        print(f"event-driven: us/step = {payload['sweep_fit_event']['us_per_step_at_no_spikes']:.4g} + "
              f"{payload['sweep_fit_event']['us_per_spike']:.4g} x spikes/step (R^2 = {payload['sweep_fit_event']['r2']:.3f})")
        fit = payload["sweep_fit_native"]
        print(f"native: us/step = {fit['us_per_step_at_no_spikes']:.4g} + {fit['us_per_spike']:.4g} x spikes/step "
              f"(R^2 = {fit['r2']:.3f})")
        plot_sweep(payload["sweep"], Path(args.out) / "w2_sweep.png")
    save_json(Path(args.out) / "w2.json", payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

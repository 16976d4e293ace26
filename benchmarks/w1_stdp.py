"""W1: a layer of N LIF neurons learning with pair-based STDP from 784 Poisson inputs, against the peers.

Workload: 784 inputs firing at 20 Hz (a fresh Poisson draw per step, made before the clock starts and
shared by every simulator), a dense 784 -> N projection with additive pair-based STDP (traces with
20 ms time constants, weights clipped to [0, 1]), LIF neurons with Norse's default parameters
(tau_mem 10 ms, tau_syn 5 ms, threshold 1), dt = 1 ms, T = 1,000 steps, R replicas that share
the weights and add their updates (a mini-batch, as Norse's ``stdp_step_linear`` does with a
batch). Timed: the T steps after a 50-step warm-up run, the device synchronised.

Peers, each with its own idiomatic loop:
* neuro itself several ways (``--rows``): event-driven, dense, dense compiled (``Simulator(compile=...)``:
  torch.compile: C++ kernels on CPU, Triton on a GPU),
  and on a GPU in CUDA graphs of ``--graph-steps`` steps (``Simulator(graph_steps=...)``), eager or
  compiled kernels inside; compiling and capturing are part of the warm-up run, reported apart;
* Norse: ``lif_feed_forward_step`` + ``stdp_step_linear``, the weights updated every step;
* SpikingJelly (``pip install -e .[peers]``): ``layer.Linear`` + ``neuron.LIFNode`` +
  ``learning.STDPLearner`` with an SGD step per time step (its LIF has no synaptic current);
* Brian2 as generated C++ (``cpp_standalone``, R = 1, timed without compilation) and Lava's CPU
  simulator (``export.lava.run_lava`` of the same network, R = 1, 100 steps), for small sizes;
* BindsNET is not run: its newest release here (0.2.7) installs numpy 2 and networkx 3, which break
  lava-nc (a pinned dependency of this project).

    python benchmarks/w1_stdp.py                      # CPU: N 1,024 and 4,096, R 1 and 32 (~5 min on 2 cores)
    python benchmarks/w1_stdp.py --quick              # N 256, R 2, 100 steps (~15 s)
    python benchmarks/w1_stdp.py --device cuda --sizes 1024,4096,16384 --replicas 1,32,256

Every simulator counts the layer's spikes on the device (neuro: ``"out.count"`` monitors) and reads
the count once at the end.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import shutil
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speedlib import (brian2_lif, brian2_select, brian2_stdp, brian2_timed_run, device_line, ratio,  # noqa: E402
                      save_json, table, timed, versions)

from neuro import LIF, LearningRule, Network, Simulator, Trace, x0, x1, y0, y1  # noqa: E402
from neuro.standard_rules import stdp  # noqa: E402


@dataclass(frozen=True)
class W1Config:
    """``n`` LIF neurons, ``replicas`` copies, ``steps`` steps of ``dt`` seconds; ``rate`` in Hz."""

    n: int = 1024
    replicas: int = 1
    steps: int = 1000
    n_in: int = 784
    rate: float = 20.0
    dt: float = 1e-3
    w_init: float = 0.04  # weights uniform in [0, w_init): the layer fires at a few Hz to tens of Hz
    a_plus: float = 1e-4
    a_minus: float = 1.05e-4
    tau: float = 20e-3
    seed: int = 0


def inputs(cfg: W1Config, device: str) -> torch.Tensor:
    """Input spikes ``(steps, R, n_in)`` (bool, to keep R = 256 in memory)."""
    g = torch.Generator(device=device).manual_seed(cfg.seed)
    return torch.rand(cfg.steps, cfg.replicas, cfg.n_in, generator=g, device=device) < cfg.rate * cfg.dt


def initial_weights(cfg: W1Config) -> np.ndarray:
    return np.random.default_rng(cfg.seed + 1).uniform(0, cfg.w_init, (cfg.n, cfg.n_in))


def build(cfg: W1Config, loihi: bool = False) -> Network:
    """The W1 network. ``loihi=True``: the same rule in the form Lava's learning engine runs -- coefficients
    2^-7 with the learning rates moved into the trace impulses, and only the weights' sign kept (at W1's
    learning rates no weight comes near 1 within the run, so the two behave the same)."""
    net = Network(dt=cfg.dt, name="w1_stdp")
    net.input("inp", cfg.n_in)
    net.population("out", cfg.n, LIF(tau_mem=10e-3, tau_syn=5e-3))
    if loihi:
        k = 2.0 ** -7
        rule = LearningRule(dw=k * y0 * x1 - k * x0 * y1, w_min=0.0, w_max=math.inf, name="stdp_loihi",
                            traces={"x1": Trace(cfg.a_plus / k, cfg.tau), "y1": Trace(cfg.a_minus / k, cfg.tau)})
    else:
        rule = stdp(a_plus=cfg.a_plus, a_minus=cfg.a_minus, tau_plus=cfg.tau, tau_minus=cfg.tau)
    net.connect("inp", "out", initial_weights(cfg), name="ff", rule=rule)
    return net


#: neuro's ways to run W1 (``--rows``): label and Simulator arguments.
NEURO_ROWS = {
    "event": ("neuro event-driven", dict(event_driven=True)),
    "dense": ("neuro dense", dict(event_driven=False)),
    "compiled": ("neuro dense, compiled", dict(event_driven=False, compile=True)),
    "graphs": ("neuro CUDA graphs", dict(graph_steps=True)),
    "graphs-compiled": ("neuro CUDA graphs, compiled", dict(graph_steps=True, compile=True)),
}


def neuro_runner(cfg: W1Config, x: torch.Tensor, device: str, every: int = 100, **kwargs) -> Callable[[int], int]:
    """``kwargs``: Simulator arguments. ``every``: steps between spike-count records (a whole number of
    CUDA graph chunks)."""
    net = build(cfg)
    # One simulator, restarted for each run: a compiled one keeps its kernels, a graph one its graphs
    # (compiling and capturing are the warm-up's).
    sim = Simulator(net, replicas=cfg.replicas, device=device, **kwargs)

    def run(steps: int) -> int:
        sim.reset()
        sim.set_weights("ff", net.projections["ff"].weights)
        sim.time_step = 0
        rec = sim.run(steps, {"inp": x[:steps]}, monitors=["out.count"], every=min(every, steps))
        return int(rec["out.count"].sum().item())

    return run


def norse_runner(cfg: W1Config, x: torch.Tensor, device: str) -> Callable[[int], int]:
    from norse.torch.functional.lif import LIFFeedForwardState, LIFParameters, lif_feed_forward_step
    from norse.torch.functional.stdp import STDPParameters, STDPState, stdp_step_linear

    w0 = torch.as_tensor(initial_weights(cfg), dtype=torch.float32, device=device)
    # Norse's traces jump by dt/tau per spike where ours jump by 1: the same updates need eta * tau/dt.
    scale = cfg.tau / cfg.dt
    p = LIFParameters()
    p_stdp = STDPParameters(tau_pre_inv=torch.tensor(1 / cfg.tau), tau_post_inv=torch.tensor(1 / cfg.tau),
                            eta_plus=cfg.a_plus * scale, eta_minus=cfg.a_minus * scale, w_min=0.0, w_max=1.0)

    def run(steps: int) -> int:
        w = w0.clone()
        r, n = cfg.replicas, cfg.n
        s = LIFFeedForwardState(v=torch.zeros(r, n, device=device), i=torch.zeros(r, n, device=device))
        st = STDPState(t_pre=torch.zeros(r, cfg.n_in, device=device), t_post=torch.zeros(r, n, device=device))
        count = torch.zeros((), device=device)
        with torch.no_grad():
            for k in range(steps):
                z_in = x[k].float()
                z, s = lif_feed_forward_step(z_in @ w.T, s, p, cfg.dt)
                w, st = stdp_step_linear(z_in, z, w, st, p_stdp, cfg.dt)
                count = count + z.sum()
        return int(count.item())

    return run


def spikingjelly_runner(cfg: W1Config, x: torch.Tensor, device: str) -> Callable[[int], int]:
    from spikingjelly.activation_based import functional, layer, learning, neuron

    w0 = torch.as_tensor(initial_weights(cfg), dtype=torch.float32, device=device)

    def run(steps: int) -> int:
        fc = layer.Linear(cfg.n_in, cfg.n, bias=False, step_mode="s").to(device)
        with torch.no_grad():
            fc.weight.copy_(w0)
        # tau in steps: 10 ms membrane at 1 ms steps (SpikingJelly's LIF has no synaptic current)
        sn = neuron.LIFNode(tau=10.0, decay_input=False, v_threshold=1.0, step_mode="s").to(device)
        tau = cfg.tau / cfg.dt
        learner = learning.STDPLearner("s", fc, sn, tau_pre=tau, tau_post=tau,
                                       f_pre=lambda w: cfg.a_minus * torch.ones_like(w),
                                       f_post=lambda w: cfg.a_plus * torch.ones_like(w))
        opt = torch.optim.SGD(fc.parameters(), lr=1.0)
        count = torch.zeros((), device=device)
        with torch.no_grad():
            for k in range(steps):
                opt.zero_grad()
                count = count + sn(fc(x[k].float())).sum()
                learner.step(on_grad=True)
                opt.step()
                fc.weight.clamp_(0.0, 1.0)
        functional.reset_net(sn)
        learner.reset()
        return int(count.item())

    return run


def brian2_run(cfg: W1Config, x: torch.Tensor, threads: int) -> Dict[str, float]:
    """The network in Brian2's vocabulary as generated C++; R = 1."""
    import brian2 as b2

    workdir = brian2_select("cpp_standalone", threads)
    b2.defaultclock.dt = cfg.dt * b2.second
    rows, idx = np.nonzero(x[:, 0].cpu().numpy())
    inp = b2.SpikeGeneratorGroup(cfg.n_in, idx, rows * cfg.dt * b2.second)
    G = brian2_lif(cfg.n, 10e-3, 5e-3)
    S = brian2_stdp(inp, G, cfg.tau, cfg.a_plus, cfg.a_minus, w_max=1.0)
    post, pre = np.divmod(np.arange(cfg.n * cfg.n_in), cfg.n_in)  # all-to-all, in an order known before the run
    S.connect(i=pre, j=post)
    S.w = initial_weights(cfg)[post, pre]
    mon = b2.SpikeMonitor(G, record=False)
    net = b2.Network(inp, G, S, mon)
    return brian2_timed_run(net, cfg.steps * cfg.dt, workdir, lambda: {"spikes": int(np.sum(mon.count[:]))})


def lava_run(cfg: W1Config, x: torch.Tensor) -> Dict[str, float]:
    from export.lava import run_lava

    net = build(cfg, loihi=True)
    spikes = x[:, 0].float().cpu().numpy()
    seconds = timed(lambda: run_lava(net, cfg.steps, inputs={"inp": spikes}, monitors=["out.spikes"]))
    return {"seconds": seconds}


def measure(name: str, runner: Callable[[int], int], steps: int, device: str, warmup: int = 50) -> Dict[str, object]:
    """Time ``runner(steps)`` after a warm-up run of ``warmup`` steps (allocations, kernels, lazy imports;
    compiling, capturing)."""
    warmup = timed(lambda: runner(min(steps, warmup)), device)
    spikes = []
    seconds = timed(lambda: spikes.append(runner(steps)), device)
    return {"simulator": name, "seconds": seconds, "spikes": spikes[0], "warmup_seconds": warmup}


def attempt(rows: List[Dict[str, object]], label: str, fn: Callable[[], Dict[str, object]]) -> None:
    """Append ``fn()``'s row; a failure (out of memory, say) is printed and costs only this row."""
    try:
        rows.append(fn())
    except Exception as e:  # noqa: BLE001 -- a GPU run is rationed: one failing path must not lose the others
        print(f"{label} failed: {type(e).__name__}: {str(e)[:300]}")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def one_size(cfg: W1Config, args) -> List[Dict[str, object]]:
    x = inputs(cfg, args.device)
    t = cfg.steps
    rows = []
    for key in args.rows.split(","):
        if key not in NEURO_ROWS:
            raise SystemExit(f"unknown row {key!r}; known: {', '.join(NEURO_ROWS)}")
        label, kwargs = NEURO_ROWS[key]
        kwargs = dict(kwargs)
        if "compile" in kwargs:
            if args.device == "cpu" and not (shutil.which("c++") or shutil.which("g++")):
                print(f"no C++ compiler (inductor's CPU kernels are C++): {label!r} skipped")
                continue
            kwargs["compile"] = True if args.compile == "default" else args.compile
        warmup = 50
        if "graph_steps" in kwargs:
            kwargs["graph_steps"] = args.graph_steps
            warmup = 2 * args.graph_steps  # a first chunk eagerly, then captured, then one replayed
        attempt(rows, label, lambda: measure(label, neuro_runner(cfg, x, args.device, every=args.graph_steps, **kwargs),
                                             t, args.device, warmup))
    attempt(rows, "Norse", lambda: measure("Norse loop + stdp_step_linear", norse_runner(cfg, x, args.device), t,
                                           args.device))
    try:
        import spikingjelly  # noqa: F401
    except ImportError:
        print("SpikingJelly not installed (pip install -e .[peers]): skipped")
    else:
        attempt(rows, "SpikingJelly", lambda: measure("SpikingJelly STDPLearner", spikingjelly_runner(cfg, x, args.device),
                                                      t, args.device))
    cpu_peers = all(importlib.util.find_spec(m) is not None for m in ("brian2", "lava"))
    if not cpu_peers and cfg.replicas == 1 and cfg.n <= args.small:
        print("Brian2 or lava-nc not installed here: their rows are skipped")
    if cpu_peers and not args.quick and cfg.replicas == 1 and cfg.n <= args.small:
        rows.append({"simulator": "Brian2 cpp_standalone (CPU)", **brian2_run(cfg, x, args.threads)})
        small = replace(cfg, steps=100)
        r = lava_run(small, inputs(small, "cpu"))
        rows.append({"simulator": "Lava floating_pt (CPU), 100 steps", "seconds": r["seconds"] * cfg.steps / small.steps,
                     "note": f"{r['seconds']:.3g} s for 100 steps, scaled to {cfg.steps}"})
    best = min(r["seconds"] for r in rows if r["simulator"].startswith("neuro"))
    for r in rows:
        r.update(n=cfg.n, replicas=cfg.replicas, steps=cfg.steps)
        r["ms_per_step"] = 1e3 * r["seconds"] / cfg.steps
        r["time / neuro's best"] = ratio(r["seconds"], best)
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", default="1024,4096", help="N, comma-separated")
    parser.add_argument("--replicas", default="1,32", help="R, comma-separated")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--small", type=int, default=1024, help="largest N also run on Brian2 and Lava (R = 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", default="default",
                        help="torch.compile mode of the compiled rows (default, max-autotune-no-cudagraphs, ...)")
    parser.add_argument("--rows", default=None,
                        help=f"neuro's rows, comma-separated, of {', '.join(NEURO_ROWS)} "
                             "(default: event,dense,compiled on CPU; dense,graphs,compiled,graphs-compiled on CUDA)")
    parser.add_argument("--graph-steps", type=int, default=100, help="steps per CUDA graph of the graph rows")
    parser.add_argument("--out", default="out/bench_w1")
    args = parser.parse_args(argv)
    if args.rows is None:
        args.rows = "event,dense,compiled" if args.device == "cpu" else "dense,graphs,compiled,graphs-compiled"
    torch.set_num_threads(args.threads)
    # One compiled step per grid point and replica count: more than dynamo's default cache holds, past
    # which it would silently run the "compiled" row eagerly.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    if args.quick:
        grid = [W1Config(n=256, replicas=2, steps=100)]
    else:
        grid = [W1Config(n=int(n), replicas=int(r), steps=args.steps)
                for n in args.sizes.split(",") for r in args.replicas.split(",")]
    rows: List[Dict[str, object]] = []
    for cfg in grid:
        rows += one_size(cfg, args)
        print(table([r for r in rows if r["n"] == cfg.n and r["replicas"] == cfg.replicas],
                    ["simulator", "n", "replicas", "seconds", "ms_per_step", "time / neuro's best", "spikes"]))
    print(f"W1 on {device_line(args.device, args.threads)}")
    print(table(rows, ["simulator", "n", "replicas", "steps", "seconds", "ms_per_step", "time / neuro's best",
                       "spikes", "warmup_seconds", "compile_seconds", "note"]))
    save_json(Path(args.out) / "w1.json", {
        "rows": rows, "configs": [asdict(c) for c in grid], "device": device_line(args.device, args.threads),
        "versions": versions(["torch", "norse", "spikingjelly", "brian2", "lava-nc", "numpy"]), "argv": sys.argv[1:]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

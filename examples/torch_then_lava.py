"""Learn on-line in the torch engine, move the network to Lava, keep learning there (and in Brian2).

One rule, written once, runs first in torch (fast, batched, GPU-ready), then on
Lava's Loihi 2 simulator, which continues from the exact state torch stopped in
(weights, traces, membrane potentials, in-flight spikes, input generator). Brian2,
the independent reference simulator, continues from the same state through
``export.brian2``, and a torch run of the same continuation is drawn beside both:
the curves coincide.

    python examples/torch_then_lava.py [--out out/examples/torch_then_lava]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from neuro import LIF, LearningRule, Network, PoissonEncoder, Simulator, Trace, load, save, w, x0, x1, y0, y1
from export.brian2 import run_brian2
from export.lava import run_lava
from export.loihi_rules import to_loihi_strings

STEPS = 1000


def build() -> Network:
    # Powers of two keep every constant exact on Loihi's learning engine.
    rule = LearningRule(
        dw=2**-5 * y0 * x1 - 2**-5 * x0 * y1 - 2**-7 * y0 * x1 * w,
        traces={"x1": Trace(1.0, 20e-3), "y1": Trace(1.0, 15e-3)},
        w_min=0.0,
        name="soft_bounded_stdp",
    )
    rng = np.random.default_rng(0)
    net = Network(dt=1e-3, name="torch_then_lava")
    net.input("inp", 20, encoder=PoissonEncoder(max_rate=150.0))
    net.population("out", 8, LIF(tau_mem=10e-3, tau_syn=5e-3, v_th=1.0))
    net.connect("inp", "out", rng.uniform(0.0, 0.6, (8, 20)), rule=rule, name="ff")
    net.connect("out", "out", -0.5 * (1 - np.eye(8)), name="inh")
    return net


def main(out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    net = build()
    print("Loihi 2 learning rule:", to_loihi_strings(net.projections["ff"].rule)["dw"])
    rates = np.random.default_rng(1).uniform(0, 1, 20)

    sim = Simulator(net, dtype=torch.float64, seed=4)
    first = sim.run(STEPS, {"inp": rates}, monitors=["ff.w"], progress=True)
    save(out / "model.h5", sim)

    lava = run_lava(net, STEPS, {"inp": rates}, monitors=["ff.w", "out.spikes"], initial=sim)
    brian = run_brian2(net, STEPS, {"inp": rates}, monitors=["ff.w", "out.spikes"], initial=sim)
    twin = load(out / "model.h5", dtype=torch.float64)  # the same state, continued in torch
    twin_rec = twin.run(STEPS, {"inp": rates}, monitors=["ff.w", "out.spikes"])

    w_torch = first["ff.w"][:, 0].numpy()
    w_lava, w_twin = lava["ff.w"][:, 0].numpy(), twin_rec["ff.w"][:, 0].numpy()
    max_diff = float(np.abs(w_lava - w_twin).max())
    spike_mismatch = int(np.abs(lava["out.spikes"].numpy() - twin_rec["out.spikes"].numpy()).sum())
    w_brian = brian["ff.w"][:, 0].numpy()
    brian_diff = float(np.abs(w_brian - w_twin).max())
    brian_mismatch = int(np.abs(brian["out.spikes"].numpy() - twin_rec["out.spikes"].numpy()).sum())

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    t1 = np.arange(1, STEPS + 1) * net.dt
    t2 = t1 + STEPS * net.dt
    synapses = [(0, 0), (1, 5), (3, 12), (6, 17)]
    for k, (i, j) in enumerate(synapses):
        color = f"C{k}"
        ax.plot(t1, w_torch[:, i, j], color=color, lw=1.5, label=f"w[{i},{j}] torch" if k == 0 else None)
        ax.plot(t2, w_lava[:, i, j], color=color, lw=3, alpha=0.4, label="Lava (Loihi 2 sim)" if k == 0 else None)
        ax.plot(t2[::50], w_brian[::50, i, j], color=color, ls="none", marker="o", ms=3,
                label="Brian2 (export.brian2)" if k == 0 else None)
        ax.plot(t2, w_twin[:, i, j], color=color, lw=1, ls="--", label="torch, same continuation" if k == 0 else None)
    ax.axvline(STEPS * net.dt, color="gray", ls=":")
    ax.text(STEPS * net.dt, ax.get_ylim()[1], " exported to Lava and Brian2", va="top", color="gray")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("weight")
    ax.set_title(f"one rule, three back-ends: max |w - w_torch| Lava {max_diff:.1e}, Brian2 {brian_diff:.1e}")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "weights_torch_then_lava.png", dpi=100)
    plt.close(fig)
    print(f"Lava continued {STEPS} steps: {spike_mismatch} spike mismatches, max weight difference {max_diff:.2e}")
    print(f"Brian2 continued {STEPS} steps: {brian_mismatch} spike mismatches, max weight difference {brian_diff:.2e}")
    print(f"wrote {out / 'weights_torch_then_lava.png'}")
    return {"max_weight_difference": max_diff, "spike_mismatches": spike_mismatch,
            "brian2_max_weight_difference": brian_diff, "brian2_spike_mismatches": brian_mismatch}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/examples/torch_then_lava")
    torch.set_num_threads(1)
    main(Path(parser.parse_args().out))

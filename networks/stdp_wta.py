"""Classic unsupervised STDP winner-take-all network (after Diehl & Cook 2015).

Poisson-coded pixels drive a layer of LIF neurons with adaptive thresholds
through plastic synapses (STDP written in the rule language); static lateral
inhibition makes the layer compete, so each neuron comes to prefer a
prototype. The neurons' spike counts are the features a linear readout is
trained on.

Images are presented ``batch`` at a time along the replica dimension, with
one shared weight matrix: the replicas' updates are summed (mini-batch STDP).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from tqdm.auto import tqdm

from neuro import LIF, LearningRule, Network, Param, PoissonEncoder, Simulator, Trace, w, x1, y0


@dataclass(frozen=True)
class STDPWTAConfig:
    """Parameters of the network and of its training.

    Parameters:
        n_neurons: size of the competing layer.
        dt: simulation step (s).
        presentation_steps: steps each image is shown (learning on).
        max_rate: input rate of a white pixel (Hz).
        inhibition: weight of the lateral inhibition between different neurons.
        w_init_max: initial input weights are uniform in [0, w_init_max].
        w_max: upper weight bound of the multiplicative STDP.
        eta: learning rate per post spike.
        x_scale: scales the pre trace (impulse 1, ``tau_trace``) to the weight range.
        tau_trace: pre trace time constant (s).
        tau_mem: membrane time constant of the layer (s).
        theta_plus, tau_theta: threshold adaptation per spike (dimensionless) and its decay (s).
        batch: images simulated at once (replicas).
        seed: initial weights and Poisson spikes.
    """

    n_neurons: int = 100
    dt: float = 1e-3
    presentation_steps: int = 60
    max_rate: float = 200.0
    inhibition: float = 6.0
    w_init_max: float = 0.3
    w_max: float = 1.0
    eta: float = 0.05
    x_scale: float = 0.25
    tau_trace: float = 20e-3
    tau_mem: float = 20e-3
    theta_plus: float = 0.3
    tau_theta: float = 100.0
    batch: int = 32
    seed: int = 0


def wta_rule(cfg: STDPWTAConfig) -> LearningRule:
    """Competitive STDP (instar): on each post spike, ``w`` moves toward the scaled pre trace.

    ``dw = eta * y0 * (x_scale * x1 - w)``: synapses whose inputs fired just
    before the post spike grow, the others decay, so a neuron's weights track
    the inputs that make it win. Weight norms stay bounded without
    normalization, and every product has a Loihi form (``y0*x1``, ``y0*w``).
    """
    return LearningRule(
        dw=Param("eta") * y0 * (cfg.x_scale * x1 - w),
        traces={"x1": Trace(1.0, cfg.tau_trace)},
        w_min=0.0,
        w_max=cfg.w_max,
        params={"eta": cfg.eta},
        name="competitive_stdp",
    )


def build(n_inputs: int, cfg: STDPWTAConfig = STDPWTAConfig()) -> Network:
    """Input ``pixels`` (Poisson) -> plastic ``ff`` -> LIF ``exc`` with lateral inhibition ``inh``."""
    rng = np.random.default_rng(cfg.seed)
    net = Network(dt=cfg.dt, name="stdp_wta")
    net.input("pixels", n_inputs, encoder=PoissonEncoder(cfg.max_rate))
    net.population(
        "exc", cfg.n_neurons, LIF(tau_mem=cfg.tau_mem, tau_syn=5e-3, v_th=1.0, theta_plus=cfg.theta_plus, tau_theta=cfg.tau_theta)
    )
    net.connect("pixels", "exc", rng.uniform(0.0, cfg.w_init_max, (cfg.n_neurons, n_inputs)), rule=wta_rule(cfg), name="ff")
    net.connect("exc", "exc", -cfg.inhibition * (1.0 - np.eye(cfg.n_neurons)), name="inh")
    return net


def present(
    sim: Simulator,
    images: np.ndarray,
    steps: int,
    learn: bool,
    progress: Optional[str] = None,
    population: str = "exc",
) -> np.ndarray:
    """Show ``images`` ``(n, n_inputs)`` in [0, 1] to the input ``pixels``, ``sim.replicas`` at a time,
    for ``steps`` each.

    Returns the spike counts of ``population``, shape ``(n, neurons)``. Neuron state
    is reset between batches; thresholds keep adapting.
    """
    r = sim.replicas
    n = len(images)
    counts = np.zeros((n, sim.network.populations[population].n), dtype=np.float32)
    was_learning, sim.learning = sim.learning, learn
    bar = tqdm(total=n, desc=progress, disable=progress is None, unit="image")
    try:
        for start in range(0, n, r):
            chunk = images[start : start + r]
            values = np.zeros((r, images.shape[1]), dtype=np.float32)
            values[: len(chunk)] = chunk  # a short last batch is padded with blank images
            sim.reset_neurons()
            rec = sim.run(steps, {"pixels": values}, monitors=[f"{population}.spikes"])
            counts[start : start + len(chunk)] = rec[f"{population}.spikes"].sum(0)[: len(chunk)].cpu().numpy()
            bar.update(len(chunk))
    finally:
        bar.close()
        sim.learning = was_learning
    return counts

"""SoftHebb: soft winner-take-all Hebbian learning (Moraitis et al. 2022; Journé et al., ICLR 2023).

A layer computes ``u = W x``; its neurons compete through a soft winner-take-all
``y = softmax(u / T)``; each weight follows ``dw_ik = eta * y_k * (x_i - u_k * w_ik)``,
which drives every neuron's weight vector to unit norm and towards the inputs it
wins. The reference code also scales each neuron's rate by ``|‖w_k‖ - 1| ** 0.5``.

The rule is written once (:func:`softhebb_rule`) in the rule language:
``eta * y0 * (x1 - y2 * w)`` with ``y2`` driven by the post neuron's synaptic
current. It runs

* as a rate layer (:func:`build_rate` + :class:`neuro.rates.RateSimulator`): ``y0``
  is then the soft-WTA output (the probability that the neuron wins), ``x1`` the
  pixel and ``y2`` the pre-activation ``u``: exactly the paper's mini-batch rule;
* as a spiking layer (:func:`build_spiking` + :class:`neuro.Simulator`): Poisson
  inputs, LIF neurons whose spikes compete through a global inhibitory neuron
  (lateral-inhibition WTA), ``y0`` the post spike (a sample of the winner), ``x1``
  the pre spike trace (a rate estimate) and ``y2`` the synaptic current, which
  estimates ``u`` in the same units as ``x1`` when the trace and the synapse share
  their time constant. Without the adaptive rate and the anti-Hebbian option
  this is the hardware form that lowers to Loihi 2.

Readout features are the layer's k-winners-take-all output, ``relu(u_k - t)`` with
``t`` exceeded by the top 10 % of the neurons (or the "triangle" ``relu(u_k - mean_j u_j)``
of Coates et al. 2011), the same for learned, random and backprop-trained weights.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm.auto import tqdm

from neuro import IAF, LIF, LearningRule, Network, Param, PoissonEncoder, Simulator, Trace
from neuro.expr import abs_, sum_pre, w, winner, x1, y0, y2
from neuro.rates import RateSimulator, SoftWTA
from networks.checks import check_images, check_int, check_number


@dataclass(frozen=True)
class SoftHebbConfig:
    """Parameters of a SoftHebb layer and its training.

    Attributes:
        n_neurons: width of the layer.
        temperature: soft-WTA temperature ``T`` of the rate layer (units of ``u``).
        eta: learning rate per sample (rate layer, the batch mean is applied).
        init_radius: norm of each neuron's initial (non-negative, uniform) weight vector.
        adaptive: scale each neuron's rate by ``|‖w_k‖ - 1| ** 0.5`` (not on chip).
        anti_hebbian: losers learn anti-Hebbian (``y_k -> -y_k`` except the winner; not on chip).
        batch: mini-batch size (rate layer) or replicas (spiking layer).
        seed: seeds the initial weights and the sample order.
    """

    n_neurons: int = 2000
    temperature: float = 0.2
    eta: float = 2.0
    init_radius: float = 4.0
    adaptive: bool = True
    anti_hebbian: bool = False
    batch: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        # Frozen: the checked ints are stored as Python ints, as a dataclass's __init__ would.
        object.__setattr__(self, "n_neurons", check_int("n_neurons", self.n_neurons))
        object.__setattr__(self, "batch", check_int("batch", self.batch))
        object.__setattr__(self, "seed", check_int("seed", self.seed, minimum=0))  # numpy refuses negative seeds
        for name in ("temperature", "eta", "init_radius"):
            check_number(name, getattr(self, name))
        for name in ("adaptive", "anti_hebbian"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class SpikingConfig:
    """The spiking layer's dynamics (times in seconds, rates in Hz).

    Attributes:
        dt: simulation step.
        steps: steps per presented image (a learning epoch of the rule is one step).
        max_rate: Poisson rate of a full-ink pixel.
        tau: time constant of the synaptic current and of the pre trace ``x1``
            (equal, so that the current ``y2`` estimates ``u = w . x1``).
        tau_mem: membrane time constant.
        v_th: firing threshold, in units of the current.
        inhibition: current removed from every excitatory neuron per inhibitory spike.
        eta: learning rate per post spike (power of two for Loihi).
        input_norm: every image is scaled to this L2 norm before encoding (0: off),
            so that a winner's drive does not depend on how much ink the digit has.
        theta_plus, tau_theta: homeostasis (adaptive threshold, per replica): each
            spike raises the neuron's threshold by ``theta_plus``, which decays with
            ``tau_theta`` seconds, so that frequent winners yield to others. Not on
            Lava's LIF: 0 gives the hardware form.
    """

    dt: float = 1e-3
    steps: int = 40
    max_rate: float = 200.0
    tau: float = 20e-3
    tau_mem: float = 10e-3
    v_th: float = 15.0
    inhibition: float = 40.0
    eta: float = 2.0**-7
    input_norm: float = 6.0
    theta_plus: float = 0.0
    tau_theta: float = math.inf


def softhebb_rule(
    eta: float = 1.0,
    adaptive: bool = True,
    anti_hebbian: bool = False,
    tau: float = 20e-3,
    name: str = "softhebb",
) -> LearningRule:
    """SoftHebb's plasticity in the rule language.

    ``dw = eta * y0 * (x1 - y2 * w)`` (per epoch), with the pre trace ``x1``
    (impulse 1, time constant ``tau`` seconds) and ``y2`` driven by the post
    neuron's synaptic current. ``adaptive`` multiplies by ``|‖w_k‖ - 1| ** 0.5``
    (a sum over the pre population, simulator only); ``anti_hebbian`` replaces
    ``y0`` by ``y0 * (2 * winner(y2) - 1)`` (losers unlearn, simulator only).
    """
    post = y0 * (2.0 * winner(y2) - 1.0) if anti_hebbian else y0
    dw = Param("eta") * post * (x1 - y2 * w)
    if adaptive:
        dw = dw * abs_(sum_pre(w * w) ** 0.5 - 1.0) ** 0.5
    return LearningRule(
        dw=dw,
        traces={"x1": Trace(1.0, tau), "y2": Trace(driven_by="i")},
        params={"eta": eta},
        name=name,
    )


def initial_weights(n_post: int, n_pre: int, radius: float, seed: int) -> np.ndarray:
    """Non-negative uniform weights, each neuron's vector scaled to norm ``radius``."""
    rng = np.random.default_rng(seed)
    w0 = rng.uniform(0.0, 1.0, (n_post, n_pre))
    return w0 / np.linalg.norm(w0, axis=1, keepdims=True) * radius


def build_rate(n_inputs: int, cfg: SoftHebbConfig = SoftHebbConfig(), widths: Optional[Sequence[int]] = None) -> Network:
    """Input ``pixels`` -> ``layer1`` (-> ``layer2`` ...), each projection ``ff<k>`` learning with SoftHebb.

    ``widths`` stacks several layers (default one of ``cfg.n_neurons``).
    """
    widths = list(widths or [cfg.n_neurons])
    net = Network(name="softhebb_rate")
    net.input("pixels", n_inputs)
    rule = softhebb_rule(cfg.eta, cfg.adaptive, cfg.anti_hebbian)
    pre, n_pre = "pixels", n_inputs
    for k, n in enumerate(widths, start=1):
        net.population(f"layer{k}", n)
        net.connect(pre, f"layer{k}", initial_weights(n, n_pre, cfg.init_radius, cfg.seed + k - 1), rule=rule, name=f"ff{k}")
        pre, n_pre = f"layer{k}", n
    return net


def rate_simulator(net: Network, cfg: SoftHebbConfig = SoftHebbConfig(), device: str = "cpu") -> RateSimulator:
    """Every layer of ``net`` a soft winner-take-all of temperature ``cfg.temperature``."""
    layers = [name for name in net.populations if name.startswith("layer")]
    return RateSimulator(net, {name: SoftWTA(cfg.temperature) for name in layers}, device=device)


def train_rate(
    sim: RateSimulator,
    images: np.ndarray,
    batch: int,
    seed: int = 0,
    progress: Optional[str] = None,
    callback: Optional[Callable[[int], None]] = None,
    callback_every: int = 0,
) -> None:
    """One unsupervised epoch over ``images`` ``(n, pixels)`` in a seeded random order.

    ``callback(seen)`` is called every ``callback_every`` images (learning curves).
    """
    check_images("train_rate", images, sim.network.populations["pixels"].n)
    x = torch.as_tensor(images, dtype=sim.dtype, device=sim.device)
    for start, idx in epoch_batches(len(images), batch, seed, progress):
        sim.learn({"pixels": x[idx]})
        seen = start + len(idx)
        if callback is not None and callback_every and (seen // callback_every) > (start // callback_every):
            callback(seen)


def epoch_batches(n: int, batch: int, seed: int, progress: Optional[str] = None) -> Iterator[Tuple[int, np.ndarray]]:
    """``(start, indices)`` of one epoch over ``n`` samples in a seeded random order, ``batch`` at a time,
    with a progress bar (images) when ``progress`` names it."""
    check_int("batch", batch)
    order = np.random.default_rng(seed).permutation(n)
    with tqdm(total=n, desc=progress, disable=progress is None, unit="image") as bar:
        for start in range(0, n, batch):
            yield start, order[start : start + batch]
            bar.update(min(batch, n - start))


READOUTS = ("kwta", "triangle")


def activation(u: torch.Tensor, kind: str = "kwta", fraction: float = 0.1) -> torch.Tensor:
    """The layer's output seen by the readout, from pre-activations ``u`` ``(n, neurons)``.

    ``"kwta"``: k-winners-take-all, ``relu(u - t)`` with ``t`` the activation that the
    top ``fraction`` of the neurons exceed (only the winners are active);
    ``"triangle"``: ``relu(u - mean(u))`` (Coates et al. 2011; half the neurons active).
    The number of kWTA winners, ``round(fraction * neurons)``, is kept within [1, neurons - 1]: the
    threshold is the activation of the best loser, so at least one neuron must lose (kWTA needs 2 neurons).
    """
    if u.dim() != 2:
        raise ValueError(f"activation: pre-activations must have shape (n, neurons), got {tuple(u.shape)}")
    if kind == "triangle":
        return torch.relu(u - u.mean(dim=1, keepdim=True))
    if kind == "kwta":
        if not 0 < fraction < 1:
            raise ValueError(f"kwta fraction must lie in (0, 1), got {fraction!r}")
        n = u.shape[1]
        if n < 2:
            raise ValueError(f"kwta needs at least 2 neurons (winners and a loser to set the threshold), got {n}")
        k = min(max(1, int(round(fraction * n))), n - 1)
        threshold = torch.kthvalue(u, n - k, dim=1, keepdim=True).values  # the (n - k)-th smallest: the best loser
        return torch.relu(u - threshold)
    raise ValueError(f"unknown readout activation {kind!r}; known: {', '.join(READOUTS)}")


def features(weights: torch.Tensor, images: np.ndarray, kind: str = "kwta", batch: int = 1000) -> np.ndarray:
    """Readout features ``activation(images @ weights.T)`` of images ``(n, pre)`` and weights ``(post, pre)``;
    shape ``(n, post)``."""
    w = torch.as_tensor(weights).detach().to("cpu", torch.float32)
    check_images("features", images, w.shape[1])
    out = []
    for start in range(0, len(images), batch):
        u = torch.as_tensor(images[start : start + batch], dtype=torch.float32) @ w.T
        out.append(activation(u, kind))
    return torch.cat(out).numpy()


# --------------------------------------------------------------------------------------------
# Spiking layer
# --------------------------------------------------------------------------------------------
def build_spiking(
    n_inputs: int,
    cfg: SoftHebbConfig = SoftHebbConfig(),
    spk: SpikingConfig = SpikingConfig(),
    adaptive: bool = False,
    anti_hebbian: bool = False,
    weights: Optional[np.ndarray] = None,
) -> Network:
    """Poisson ``pixels`` -> plastic ``ff`` -> LIF ``layer1`` <-> one IAF ``inh`` neuron (global inhibition).

    Every ``layer1`` spike excites ``inh``, whose spike inhibits all of ``layer1``: a
    winner-take-all through lateral inhibition in O(n) synapses. ``weights``
    defaults to :func:`initial_weights`. With ``adaptive=anti_hebbian=False`` and a
    power-of-two ``spk.eta`` the network runs on Lava / Loihi 2.
    """
    n = cfg.n_neurons
    net = Network(dt=spk.dt, name="softhebb_spiking")
    net.input("pixels", n_inputs, encoder=PoissonEncoder(spk.max_rate))
    net.population(
        "layer1", n, LIF(tau_mem=spk.tau_mem, tau_syn=spk.tau, v_th=spk.v_th, theta_plus=spk.theta_plus, tau_theta=spk.tau_theta)
    )
    net.population("inh", 1, IAF(v_th=0.5))
    w0 = initial_weights(n, n_inputs, cfg.init_radius, cfg.seed) if weights is None else weights
    net.connect("pixels", "layer1", w0, rule=softhebb_rule(spk.eta, adaptive, anti_hebbian, tau=spk.tau), name="ff")
    net.connect("layer1", "inh", np.ones((1, n)), name="to_inh")
    net.connect("inh", "layer1", -spk.inhibition * np.ones((n, 1)), name="from_inh")
    return net


def scale_inputs(images: np.ndarray, spk: SpikingConfig) -> np.ndarray:
    """Pixel values for the Poisson encoder: optionally scaled to a fixed L2 norm, clipped to [0, 1]."""
    x = np.asarray(images, dtype=np.float32)
    if spk.input_norm > 0:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6) * spk.input_norm
    return np.clip(x, 0.0, 1.0)


def train_spiking(
    sim: Simulator,
    images: np.ndarray,
    spk: SpikingConfig,
    seed: int = 0,
    progress: Optional[str] = None,
) -> Dict[str, float]:
    """One unsupervised epoch: ``sim.replicas`` images at a time, ``spk.steps`` steps each.

    Returns spike statistics: mean ``layer1`` spikes per image and the fraction of
    images that made at least one neuron spike.
    """
    check_images("train_spiking", images, sim.network.populations["pixels"].n)
    x = scale_inputs(images, spk)
    r = sim.replicas
    spikes, answered = 0.0, 0
    for start, idx in epoch_batches(len(images), r, seed, progress):
        values = np.zeros((r, x.shape[1]), dtype=np.float32)
        values[: len(idx)] = x[idx]  # a short last batch is padded with blank images
        sim.reset_neurons()
        rec = sim.run(spk.steps, {"pixels": values}, monitors=["layer1.count"], every=spk.steps)
        counts = rec["layer1.count"][0].sum(dim=1)
        spikes += float(counts[: len(idx)].sum())
        answered += int((counts[: len(idx)] > 0).sum())
        if not torch.isfinite(sim.syn["ff"]["w"]).all():
            raise FloatingPointError(
                f"spiking SoftHebb: the weights of 'ff' became NaN or infinite after {start + len(idx)} images "
                f"(eta * current must stay below 1 for the Oja term to be stable: lower eta={spk.eta:g} or the input rate)"
            )
    return {"spikes_per_image": spikes / len(images), "images_with_spikes": answered / len(images)}


def spike_counts(sim: Simulator, images: np.ndarray, spk: SpikingConfig, steps: int) -> np.ndarray:
    """Inference by spikes: ``layer1`` spike counts ``(n, neurons)`` over ``steps`` steps per image,
    learning off (the neurons are reset between images, thresholds and weights are kept)."""
    from networks.stdp_wta import present

    check_images("spike_counts", images, sim.network.populations["pixels"].n)
    return present(sim, scale_inputs(images, spk), steps, learn=False, population="layer1")

"""Predictive coding with explicit error units (Whittington & Bogacz 2017; Pinchetti et al. 2024, PCX).

Value units ``x_l`` and error units ``e_l = x_l - mu_l`` with predictions
``mu_l = W_l f(x_{l-1}) + b_l``; inference relaxes the hidden values for ``T`` steps
down the energy ``F = 1/2 sum_l ||e_l||^2``::

    x_l <- x_l + gamma * (-e_l + f'(x_l) * W_{l+1}^T e_{l+1})

and learning is local, ``dW_l = eta * e_l f(x_{l-1})^T``: in the rule language
``-eta * u * y2 * x1`` on the negated predictions the error units receive, with ``y2``
the error unit's own input current (its error, a graded third factor) and ``x1`` the
pre-synaptic value unit's activity (:func:`pc_rule`), applied with
the rule language's rate semantics. Biases are synapses from a ``bias`` input
population that is always 1, learning with the same rule.

The graph (:func:`build`) holds the error units as populations of their own
(``e1``, ``e2``, ...), with value -> error connections (``+1``), the plastic
predictions, and error -> value feedback (``-1`` from a unit's own error, ``W^T``
from the layer above, tied to the prediction weights: :class:`neuro.Tie`).
Supervised use: the input is clamped at the bottom and, while learning, the label
(one-hot) at the top; the prediction of a test image is the feed-forward pass.
Generative use: the same network with the label at the bottom and the image on top
(:func:`train` with ``generative=True``): with the label clamped and the image free,
the energy is lowest at the feed-forward pass, which is the generated image
(:func:`generate`).

This module is the rate version; :mod:`networks.pc_spiking` builds the spiking one (paired
error units) from the same rule.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from neuro import IAF, LIF, LearningRule, Network, Param, Trace
from neuro.expr import u, x1, y2
from neuro.plasticity import CompiledRule, RateContext
from networks.checks import check_dataset, check_int, check_number, check_widths

ACTIVATIONS = {
    "tanh": (torch.tanh, lambda x: 1.0 - torch.tanh(x) ** 2),
    "relu": (torch.relu, lambda x: (x > 0).to(x.dtype)),
    # the spiking value unit's output (it fires at most once a step), as :mod:`networks.pc_spiking` uses it
    "clip": (lambda x: x.clamp(0.0, 1.0), lambda x: ((x > 0) & (x < 1)).to(x.dtype)),
}


@dataclass(frozen=True)
class PCConfig:
    """A predictive-coding MLP and its training.

    Attributes:
        hidden: widths of the hidden value layers.
        steps: inference steps ``T`` per sample.
        gamma: inference rate of the value units (per step).
        eta: learning rate (per sample; the batch mean is applied).
        epochs, batch: passes over the training images, mini-batch size.
        activation: ``f`` of the value units feeding a prediction (``tanh``, ``relu`` or ``clip``: ``clip(x, 0, 1)``).
        nudge: while learning, the top layer is clamped this fraction of the way from its
            prediction to the label (1: at the label). Small nudges keep the errors small, where
            PC's update approaches backprop's gradient; scale ``eta`` by ``1 / nudge`` to keep
            the step size.
        seed: initial weights and sample order (:func:`train`'s default seed).
    """

    hidden: Tuple[int, ...] = (256,)
    steps: int = 8
    gamma: float = 0.1
    eta: float = 0.05
    epochs: int = 5
    batch: int = 32
    activation: str = "tanh"
    nudge: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        # Frozen: the checked values (Python ints, hidden a tuple) are stored as a dataclass's __init__ would.
        object.__setattr__(self, "hidden", check_widths("hidden", self.hidden))
        for name in ("steps", "epochs", "batch"):
            object.__setattr__(self, name, check_int(name, getattr(self, name)))
        object.__setattr__(self, "seed", check_int("seed", self.seed, minimum=0))  # numpy refuses negative seeds
        check_number("eta", self.eta)
        check_number("gamma", self.gamma, allow_zero=True)  # 0: the values stay at the feed-forward pass
        if not 0 < self.nudge <= 1:  # NaN fails the comparison too
            raise ValueError(f"nudge must lie in (0, 1], got {self.nudge!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; known: {', '.join(ACTIVATIONS)}")


def pc_rule(eta: float = 0.05, tau: float = 20e-3, u_exponent: int = 0, impulse: float = 1.0) -> LearningRule:
    """``dw = -eta * u * y2 * x1``: the post error (``y2``, driven by the error unit's input current ``i``)
    times the pre value unit's activity (``x1``; in spikes, a trace of time constant ``tau`` seconds).

    The synapses onto an error unit carry the negated prediction (``e = x - W f(x_pre)``), so
    ``dW = eta e f(x_pre)^T`` is ``-eta * y2 * x1`` on them. In rate semantics ``i`` is the
    unit's summed input, which for an error unit is the error itself. A spiking network learns
    once per presented sample of ``2**u_exponent`` steps (``u`` is 1 every ``2**u_exponent`` steps;
    the traces still follow every step). ``impulse``: the pre trace's jump per spike.
    """
    return LearningRule(dw=-Param("eta") * u * y2 * x1,
                        traces={"x1": Trace(impulse, tau), "y2": Trace(driven_by="i")},
                        params={"eta": eta}, u_exponent=u_exponent, name="pc_error_hebbian")


def build(n_inputs: int, n_outputs: int, cfg: PCConfig = PCConfig()) -> Network:
    """The graph: ``x0`` (input), ``bias``, value layers ``x1..xL`` and error layers ``e1..eL``.

    Plastic predictions ``W<l>`` (``x<l-1> -> e<l>``) and ``B<l>`` (``bias -> e<l>``);
    static ``x<l>_to_e<l>`` (+1), ``e<l>_to_x<l>`` (-1) and ``e<l>_to_x<l-1>`` tied to ``W<l>^T``.
    """
    widths = [n_inputs, *cfg.hidden, n_outputs]
    rng = np.random.default_rng(cfg.seed)
    net = Network(name="predictive_coding")
    net.input("x0", n_inputs)
    net.input("bias", 1)
    rule = pc_rule(cfg.eta)
    for l in range(1, len(widths)):
        n, n_pre = widths[l], widths[l - 1]
        # Rate units (PCNetwork runs them; networks.pc_spiking chooses spiking models): error units
        # are LIF, whose current the rule reads as y2.
        net.population(f"x{l}", n, IAF())
        net.population(f"e{l}", n, LIF())
        w = rng.normal(0.0, 1.0 / np.sqrt(n_pre), (n, n_pre))
        net.connect(f"x{l - 1}", f"e{l}", -w, rule=rule, name=f"W{l}")  # e = x - mu: predictions enter negated
        net.connect("bias", f"e{l}", np.zeros((n, 1)), rule=rule, name=f"B{l}")
        net.connect(f"x{l}", f"e{l}", np.eye(n), name=f"x{l}_to_e{l}")
        net.connect(f"e{l}", f"x{l}", -np.eye(n), name=f"e{l}_to_x{l}")
        if l > 1:  # x_{l-1} receives W^T e_l: the transpose of the (negated) stored predictions
            net.tied(f"e{l}", f"x{l - 1}", f"W{l}", transpose=True, scale=-1.0, name=f"e{l}_to_x{l - 1}")
    return net


class PCNetwork:
    """Runs a :func:`build` graph with rate dynamics: inference, prediction and local learning.

    The plastic projections (and their rule) come from the graph; the value/error equations are
    those the static and tied projections describe (the feedback from the layer above is the
    transpose of the current predictions). :meth:`current_network` is the graph with the learned
    weights, e.g. to save or check it.
    Shapes: a batch ``B`` along the leading dimension; values and errors ``(B, n_l)``.
    """

    def __init__(self, network: Network, cfg: PCConfig = PCConfig(), dtype: torch.dtype = torch.float32) -> None:
        self.network, self.cfg, self.dtype = network, cfg, dtype
        self.L = sum(1 for name in network.populations if name.startswith("e"))
        self.f, self.df = ACTIVATIONS[cfg.activation]
        self.syn = {name: {"w": torch.as_tensor(p.weights, dtype=dtype)[None].clone()}
                    for name, p in network.projections.items() if p.rule is not None}
        self.rules = {name: CompiledRule(p.rule, network.dt) for name, p in network.projections.items() if p.rule}
        self.params = {name: {k: torch.tensor(v, dtype=dtype) for k, v in p.rule.params.items()}
                       for name, p in network.projections.items() if p.rule}

    def W(self, l: int) -> torch.Tensor:
        """Prediction weights of layer ``l`` ``(n_l, n_{l-1})`` (the graph stores them negated)."""
        return -self.syn[f"W{l}"]["w"][0]

    def b(self, l: int) -> torch.Tensor:
        return -self.syn[f"B{l}"]["w"][0, :, 0]

    @property
    def widths(self) -> Tuple[int, ...]:
        """Units per value layer ``(n_0, ..., n_L)``: the input (bottom) first, the top last."""
        return (self.W(1).shape[1], *(self.W(l).shape[0] for l in range(1, self.L + 1)))

    def _activity(self, l: int, x: torch.Tensor) -> torch.Tensor:
        return x if l == 0 else self.f(x)  # the input is used as it is

    def _mu(self, l: int, below: torch.Tensor) -> torch.Tensor:
        return self._activity(l - 1, below) @ self.W(l).T + self.b(l)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The feed-forward pass (every error zero): the top layer's values ``(B, n_L)``."""
        v = torch.as_tensor(x, dtype=self.dtype)
        for l in range(1, self.L + 1):
            v = self._mu(l, v)
        return v

    def infer(
        self, x: torch.Tensor, target: Optional[torch.Tensor], steps: int, clamp_input: bool = True
    ) -> Tuple[List[torch.Tensor], List[torch.Tensor], List[float]]:
        """Relax the values for ``steps`` steps with the input (and ``target``, if given) clamped.

        Starts from the feed-forward pass of ``x``. With ``clamp_input=False`` the bottom layer
        relaxes too, from ``x`` (inference of the input). Returns values ``x_0..x_L``, errors
        ``e_1..e_L`` and the batch-mean energy before each step and after the last (``steps + 1``).
        """
        values = self.start_values(torch.as_tensor(x, dtype=self.dtype))
        if target is not None:
            values[-1] = torch.as_tensor(target, dtype=self.dtype)
        energies = []
        first = 1 if clamp_input else 0
        top = self.L if target is not None else self.L + 1  # clamped top layer is not relaxed
        for k in range(steps + 1):
            errors = [values[l] - self._mu(l, values[l - 1]) for l in range(1, self.L + 1)]
            energies.append(float(0.5 * sum((e**2).sum(dim=1) for e in errors).mean()))
            if k == steps:
                break
            for l in range(first, top):
                drive = -errors[l - 1] if l > 0 else torch.zeros_like(values[0])  # the input has no error unit
                if l < self.L:
                    slope = self.df(values[l]) if l > 0 else 1.0  # the input is used as it is
                    drive = drive + slope * (errors[l] @ self.W(l + 1))
                values[l] = self.relax(l, values[l], drive)
        return values, errors, energies

    def start_values(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Where inference starts: the feed-forward pass of ``x`` ``(B, n_0)``, values ``x_0..x_L``."""
        values = [x]
        for l in range(1, self.L + 1):
            values.append(self._mu(l, values[-1]))
        return values

    def relax(self, l: int, value: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
        """One inference step of layer ``l``'s values ``(B, n_l)`` along ``drive`` = minus the energy's
        gradient: ``value + gamma * drive``."""
        return value + self.cfg.gamma * drive

    def learn(self, x: torch.Tensor, target: torch.Tensor) -> List[float]:
        """One mini-batch: infer with the label clamped, then every prediction learns by :func:`pc_rule`
        (rate semantics: ``x1`` the pre value unit's activity, ``y2`` the post error). Returns the energies."""
        values, errors, energies = self.infer(x, target, self.cfg.steps)
        batch = len(values[0])
        ones = torch.ones(batch, 1, dtype=self.dtype)
        for l in range(1, self.L + 1):
            signals = {"i": errors[l - 1]}  # an error unit's summed input is its error
            for name, pre in ((f"W{l}", self._activity(l - 1, values[l - 1])), (f"B{l}", ones)):
                ctx = RateContext(self.rules[name], pre, errors[l - 1], signals, self.syn[name], self.params[name])
                self.rules[name].apply(ctx, self.syn[name], batch, scale=1.0 / batch)
        return energies

    def current_network(self) -> Network:
        """A copy of the graph with the learned weights (tied projections follow them)."""
        weights: Dict[str, np.ndarray] = {}
        for name, proj in self.network.projections.items():
            if name in self.syn:
                weights[name] = self.syn[name]["w"][0].double().numpy().copy()
            elif proj.tie is not None:
                weights[name] = proj.tie.apply(weights[proj.tie.source])
            else:
                weights[name] = proj.weights
        return Network.from_data(self.network.to_data(), weights)


def train(pc: PCNetwork, x: np.ndarray, labels: np.ndarray, n_classes: int, seed: Optional[int] = None,
          generative: bool = False) -> float:
    """``cfg.epochs`` epochs of PC on images ``x`` ``(n, pixels)`` and their labels ``(n,)`` (integers in
    ``[0, n_classes)``); returns seconds spent.

    Supervised: image at the bottom, label on top (``n_classes`` the top layer's width); ``generative``:
    label at the bottom, image on top. ``seed`` orders the samples; None: ``pc.cfg.seed``.
    """
    cfg = pc.cfg
    check_int("n_classes", n_classes)
    widths = pc.widths
    label_layer, image_width = (widths[0], widths[-1]) if generative else (widths[-1], widths[0])
    if n_classes != label_layer:
        where = "bottom" if generative else "top"
        raise ValueError(f"train: n_classes={n_classes}, but the network's {where} layer (the label's) has "
                         f"{label_layer} units")
    labels = check_dataset("train", x, labels, image_width, n_classes)
    xt = torch.as_tensor(x, dtype=pc.dtype)
    onehot = torch.nn.functional.one_hot(torch.as_tensor(labels, dtype=torch.long), n_classes).to(pc.dtype)
    bottom, top = (onehot, xt) if generative else (xt, onehot)
    rng = np.random.default_rng(cfg.seed if seed is None else seed)
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(cfg.epochs):
            order = rng.permutation(len(x))
            for start in range(0, len(x), cfg.batch):
                idx = torch.as_tensor(order[start : start + cfg.batch])
                target = top[idx]
                if cfg.nudge < 1:
                    mu = pc.predict(bottom[idx])
                    target = mu + cfg.nudge * (target - mu)
                pc.learn(bottom[idx], target)
    return time.perf_counter() - t0


def generate(pc: PCNetwork, n_classes: int) -> np.ndarray:
    """A generative network's image for each class: the feed-forward pass of its one-hot label, ``(classes, pixels)``."""
    if n_classes != pc.widths[0]:
        raise ValueError(f"generate: n_classes={n_classes}, but the network's bottom layer (the label's) has "
                         f"{pc.widths[0]} units")
    with torch.no_grad():
        return pc.predict(torch.eye(n_classes, dtype=pc.dtype)).numpy()


def accuracy(pc: PCNetwork, x: np.ndarray, labels: np.ndarray) -> float:
    """Test accuracy of the feed-forward prediction (largest top unit) on images ``x`` ``(n, n_0)`` with
    labels ``(n,)``, integers in ``[0, n_L)``; a fraction in [0, 1]."""
    labels = check_dataset("accuracy", x, labels, pc.widths[0], pc.widths[-1])
    with torch.no_grad():
        return float((pc.predict(torch.as_tensor(x)).argmax(dim=1).numpy() == labels).mean())


def backprop_mlp(x: np.ndarray, labels: np.ndarray, n_classes: int, cfg: PCConfig = PCConfig()) -> Tuple["torch.nn.Module", float]:
    """The same MLP (same initial weights, activation, biases, optimizer and squared-error loss)
    trained with backprop; returns the model (call it on images) and the seconds spent."""
    check_int("n_classes", n_classes)
    labels = check_dataset("backprop_mlp", x, labels, None, n_classes)
    f, _ = ACTIVATIONS[cfg.activation]
    reference = PCNetwork(build(x.shape[1], n_classes, cfg), cfg)
    weights = [torch.nn.Parameter(reference.W(l).clone()) for l in range(1, reference.L + 1)]
    biases = [torch.nn.Parameter(reference.b(l).clone()) for l in range(1, reference.L + 1)]

    def model(inputs: torch.Tensor) -> torch.Tensor:
        v = torch.as_tensor(inputs, dtype=torch.float32)
        for l, (w, b) in enumerate(zip(weights, biases)):
            v = (v if l == 0 else f(v)) @ w.T + b
        return v

    opt = torch.optim.SGD(weights + biases, lr=cfg.eta)
    xt = torch.as_tensor(x, dtype=torch.float32)
    onehot = torch.nn.functional.one_hot(torch.as_tensor(labels, dtype=torch.long), n_classes).float()
    rng = np.random.default_rng(cfg.seed)
    t0 = time.perf_counter()
    for _ in range(cfg.epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), cfg.batch):
            idx = torch.as_tensor(order[start : start + cfg.batch])
            opt.zero_grad()
            loss = 0.5 * ((model(xt[idx]) - onehot[idx]) ** 2).sum(dim=1).mean()
            loss.backward()
            opt.step()
    return model, time.perf_counter() - t0

"""Memory Aware Synapses (Aljundi et al., ECCV 2018): importance-weighted consolidation.

After a task, every parameter gets an importance ``Omega``; while later tasks are
learned, ``lam/2 * sum Omega * (theta - theta*)**2`` holds important parameters near
their values ``theta*`` at the end of the earlier tasks.

Importance, three ways:

* gradient form (:func:`mas_gradient_importance`): ``mean_x |d ||F(x)||^2 / d theta|``
  over a task's inputs (no labels), by per-sample autograd;
* local Hebbian form (:func:`hebbian_importance_rule`): the paper's local version, the
  co-activity ``|x_j * y_i|`` of the two neurons a weight joins, accumulated as the
  synaptic tag ``t`` by a rule in the rule language (``dt = gamma * u * |x1 * y1|``);
* EWC's diagonal Fisher (:func:`ewc_fisher`), the peer method.

Consolidation, two ways, both written in the rule language for local learners:

* exact (:func:`consolidated`): the penalty's gradient ``- lam * u * t * (w - d)`` added
  to ``dw``, the earlier tasks' importance in ``t`` and the anchor ``theta*`` in ``d``
  (:func:`anchor` adds a finished task's importance to ``t`` and copies ``w`` into ``d``).
  It lowers to Loihi 2, where ``d`` is unsigned: anchors must be non-negative there;
* hardware-compatible (:func:`importance_gated`): no anchor; a saturating importance
  ``dd = gamma * u * x1 * y1``, folded into ``t`` in [0, 1] at task boundaries, scales the plasticity,
  ``dw -> dw * (1 - t)``: important synapses learn slowly instead of being pulled back.
  Every product keeps one dependency and the factors Loihi 2 has, so it lowers.

The same importance formula serves the gradient-trained MLP of the benchmark
(:class:`ContinualMLP`), whose layers evaluate the importance rule through the rule
language's rate semantics (:func:`coactivity_step`). Its ``gated`` method applies the
same principle to a gradient learner: each optimizer step of a weight is scaled by ``1 - t``
(the biases have no importance tag and learn ungated), with ``|x * y|`` as the co-activity
because its output layer's activity is signed (the spiking rule's traces are never negative,
so it uses ``x1 * y1``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from neuro import LearningRule, Param, Trace
from neuro.expr import abs_, d, t, u, w, x1, y1
from neuro.plasticity import CompiledRule, RateContext
from neuro.streams import Task
from networks.checks import check_int, check_number

METHODS = ("naive", "mas", "mas_hebbian", "ewc", "gated", "joint")
PENALIZED = ("mas", "mas_hebbian", "ewc")  # the methods with a consolidation penalty in the loss


# --------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------
def coactivity(gamma: str = "gamma"):
    """The local importance of a synapse: ``gamma * u * |x1 * y1|``, the co-activity of the two neurons."""
    return Param(gamma) * u * abs_(x1 * y1)


def hebbian_importance_rule(gamma: float = 1.0, tau: float = 20e-3) -> LearningRule:
    """The importance tag alone: ``dt = gamma * u * |x1 * y1|``.

    ``x1``/``y1`` are the pre/post activity (rate semantics) or spike traces
    (impulse 1, ``tau`` seconds).
    """
    return LearningRule(dt=coactivity(), traces={"x1": Trace(1.0, tau), "y1": Trace(1.0, tau)},
                        params={"gamma": gamma}, name="hebbian_importance")


def consolidated(rule: LearningRule, lam: float) -> LearningRule:
    """``rule`` plus MAS's penalty gradient: ``dw += - lam * u * t * (w - d)``.

    ``t`` holds the importance of the tasks learned before and ``d`` their anchor
    ``theta*``; both are set at a task boundary by :func:`anchor` (so the penalty is
    zero during the first task and never pulls on what the current task makes important).
    On Loihi 2 this runs only where the anchors are non-negative (``d`` is unsigned there).
    """
    if rule.dw is None or rule.dt is not None or rule.dd is not None:
        raise ValueError(f"consolidated: rule {rule.name!r} must learn only w (t and d hold importance and anchor)")
    return replace(rule, dw=rule.dw - Param("lam") * u * t * (w - d), params={**rule.params, "lam": lam},
                   name=f"{rule.name}_mas")


def importance_gated(rule: LearningRule, gamma: float = 1.0) -> LearningRule:
    """The hardware-compatible variant: ``dw * (1 - t)`` with the consolidated importance ``t`` in [0, 1),
    while ``dd = gamma * u * x1 * y1`` accumulates the current task's importance in ``d``
    (:func:`consolidate_gate` folds ``d`` into ``t`` at a task boundary). Spike traces are never
    negative, so the co-activity needs no ``abs`` and every product lowers to Loihi 2."""
    if rule.dw is None or rule.dt is not None or rule.dd is not None:
        raise ValueError(f"importance_gated: rule {rule.name!r} must learn only w (t and d hold importance)")
    traces = {"x1": Trace(1.0, 20e-3), "y1": Trace(1.0, 20e-3), **rule.traces}
    return replace(rule, dw=rule.dw * (1.0 - t), dd=Param("gamma") * u * x1 * y1, traces=traces,
                   params={**rule.params, "gamma": gamma}, name=f"{rule.name}_gated")


def consolidate_gate(syn: Dict[str, torch.Tensor]) -> None:
    """Task boundary of :func:`importance_gated`: ``t <- t + (1 - t) * (1 - exp(-d))``, ``d <- 0``.

    ``t`` grows towards 1 and stays in [0, 1]; it reaches 1 (in floating point) only for a very
    large ``d``, and such a synapse stops learning."""
    syn["t"] = syn["t"] + (1.0 - syn["t"]) * (1.0 - torch.exp(-syn["d"]))
    syn["d"] = torch.zeros_like(syn["d"])


def anchor(syn: Dict[str, torch.Tensor], importance: torch.Tensor) -> None:
    """The consolidation step of :func:`consolidated` at a task boundary: the finished task's
    ``importance`` adds to ``t`` and the anchor ``d`` takes the current weights."""
    syn["t"] = syn["t"] + importance
    syn["d"] = syn["w"].clone()


_IMPORTANCE = CompiledRule(hebbian_importance_rule(1.0), 1.0)


def coactivity_step(tag: torch.Tensor, pre: torch.Tensor, post: torch.Tensor, gamma: float) -> torch.Tensor:
    """``tag`` ``(post, pre)`` after one batch of :func:`hebbian_importance_rule` with rate ``gamma``:
    ``+ gamma * mean_b |post_b x pre_b|`` for activities ``pre`` ``(B, N)`` and ``post`` ``(B, M)``."""
    syn = {"w": torch.zeros_like(tag)[None], "t": tag[None].clone()}
    ctx = RateContext(_IMPORTANCE, pre, post, {}, syn, {"gamma": torch.tensor(gamma, dtype=tag.dtype)})
    _IMPORTANCE.apply(ctx, syn, len(pre), scale=1.0 / len(pre))
    return syn["t"][0]


def rate_importance(sim, projection: str, images: np.ndarray, batch: int = 256) -> torch.Tensor:
    """The Hebbian importance ``mean |x y|`` of ``projection``'s synapses over ``images`` in a rate
    network (:class:`neuro.rates.RateSimulator` with input population ``pixels``)."""
    proj = sim.network.projections[projection]
    tag = torch.zeros_like(sim.weights(projection))
    x = torch.as_tensor(images, dtype=sim.dtype, device=sim.device)
    with torch.no_grad():
        for start in range(0, len(x), batch):
            acts = sim.forward({"pixels": x[start : start + batch]})
            tag = coactivity_step(tag, acts[proj.pre], acts[proj.post], len(acts[proj.pre]) / len(x))
    return tag


# --------------------------------------------------------------------------------------------
# Importance of a torch network's parameters
# --------------------------------------------------------------------------------------------
def _per_sample_grads(model: torch.nn.Module, loss_fn, x: torch.Tensor, y: Optional[torch.Tensor], batch: int):
    params = {k: v.detach() for k, v in model.named_parameters()}

    def one(p, xi, yi):
        out = torch.func.functional_call(model, p, (xi[None],))
        return loss_fn(out, yi)

    grad = torch.func.vmap(torch.func.grad(one), in_dims=(None, 0, 0 if y is not None else None))
    for start in range(0, len(x), batch):
        yield grad(params, x[start : start + batch], None if y is None else y[start : start + batch])


def mas_gradient_importance(model: torch.nn.Module, x: torch.Tensor, batch: int = 256) -> Dict[str, torch.Tensor]:
    """MAS: ``mean_x |d ||F(x)||^2 / d theta|`` per parameter (``F``: the model's output; no labels)."""
    total = {k: torch.zeros_like(v) for k, v in model.named_parameters()}
    for g in _per_sample_grads(model, lambda out, _: (out**2).sum(), x, None, batch):
        for k in total:
            total[k] += g[k].abs().sum(dim=0)
    return {k: v / len(x) for k, v in total.items()}


def ewc_fisher(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> Dict[str, torch.Tensor]:
    """EWC's empirical diagonal Fisher: ``mean (d log p(y|x) / d theta)^2`` with the true labels."""
    total = {k: torch.zeros_like(v) for k, v in model.named_parameters()}

    def nll(out, yi):
        return torch.nn.functional.cross_entropy(out, yi[None])

    for g in _per_sample_grads(model, nll, x, y, batch):
        for k in total:
            total[k] += (g[k] ** 2).sum(dim=0)
    return {k: v / len(x) for k, v in total.items()}


# --------------------------------------------------------------------------------------------
# A gradient-trained MLP learning a task stream
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ContinualConfig:
    """Training of :class:`ContinualMLP`.

    Attributes:
        hidden: hidden ReLU units.
        epochs: passes over each task's training images.
        batch, lr: Adam mini-batches and learning rate.
        lam: strength of the consolidation penalty (``mas``, ``mas_hebbian``, ``ewc``).
        gamma: rate of the saturating importance (``gated``), per sample; it gates the weights only
            (the biases have no importance tag).
        setting: ``"task"`` (task-incremental: outputs restricted to the task's classes)
            or ``"domain"`` (domain-incremental: one shared output per position in the task).
        seed: initial weights and sample order.
    """

    hidden: int = 256
    epochs: int = 5
    batch: int = 64
    lr: float = 1e-3
    lam: float = 1.0
    gamma: float = 1.0
    setting: str = "task"
    seed: int = 0

    def __post_init__(self) -> None:
        # Frozen: the checked ints are stored as Python ints, as a dataclass's __init__ would.
        for name in ("hidden", "epochs", "batch"):
            object.__setattr__(self, name, check_int(name, getattr(self, name)))
        object.__setattr__(self, "seed", check_int("seed", self.seed, minimum=0))
        check_number("lr", self.lr)
        check_number("lam", self.lam, allow_zero=True)  # 0: no penalty
        check_number("gamma", self.gamma, allow_zero=True)  # 0: the gate stays open
        if self.setting not in ("task", "domain"):
            raise ValueError(f"setting must be 'task' or 'domain', got {self.setting!r}")


class ContinualMLP:
    """``pixels -> hidden (ReLU) -> outputs`` learning tasks one after the other with a method of :data:`METHODS`."""

    def __init__(self, n_inputs: int, n_outputs: int, method: str, cfg: ContinualConfig = ContinualConfig()) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown continual-learning method {method!r}; known: {', '.join(METHODS)}")
        self.method, self.cfg, self.n_outputs = method, cfg, n_outputs
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            self.model = torch.nn.Sequential(
                torch.nn.Linear(n_inputs, cfg.hidden), torch.nn.ReLU(), torch.nn.Linear(cfg.hidden, n_outputs)
            )
        self.omega = {k: torch.zeros_like(v) for k, v in self.model.named_parameters()}
        self.star = {k: v.detach().clone() for k, v in self.model.named_parameters()}
        self.layers = {k: m for k, m in self.model.named_modules() if isinstance(m, torch.nn.Linear)}
        # Hebbian importance of the weights accumulates in tags through the rule language's
        # importance rule (rate semantics); "gated" also keeps the consolidated gate.
        self.tags = {k: torch.zeros_like(m.weight) for k, m in self.layers.items()}
        self.gate = {k: torch.zeros_like(m.weight) for k, m in self.layers.items()}

    # --- outputs and targets -------------------------------------------------------------
    def targets(self, task: Task, y: np.ndarray) -> tuple:
        """Per sample: the target output index and the mask of the outputs that compete."""
        mask = torch.zeros(self.n_outputs, dtype=torch.bool)
        if self.cfg.setting == "task":
            mask[list(task.classes)] = True
            target = torch.as_tensor(y)
        else:
            mask[: len(task.classes)] = True
            target = torch.as_tensor(task.in_task(y))
        return target, mask.expand(len(y), -1)

    def _logits(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model(x).masked_fill(~mask, float("-inf"))

    def accuracy(self, task: Task) -> float:
        target, mask = self.targets(task, task.y_test)
        with torch.no_grad():
            pred = self._logits(torch.as_tensor(task.x_test), mask).argmax(dim=1)
        return float((pred == target).float().mean())

    # --- importance ----------------------------------------------------------------------
    def _tag_step(self, x: torch.Tensor, gamma: float) -> None:
        """One batch of the importance rule ``dt = gamma * u * |x1 * y1|`` on every layer (batch mean);
        a layer's post activity is its output after the non-linearity that follows it."""
        h = x
        modules = list(self.model)
        with torch.no_grad():
            for k, module in enumerate(modules):
                if not isinstance(module, torch.nn.Linear):
                    continue
                post = module(h)
                if k + 1 < len(modules) and not isinstance(modules[k + 1], torch.nn.Linear):
                    post = modules[k + 1](post)
                name = next(n for n, m in self.layers.items() if m is module)
                self.tags[name] = coactivity_step(self.tags[name], h, post, gamma)
                h = post

    def _importance(self, task: Task) -> Dict[str, torch.Tensor]:
        """The finished task's importance per parameter, for a method of :data:`PENALIZED`."""
        x = torch.as_tensor(task.x_train)
        target, mask = self.targets(task, task.y_train)
        if self.method in ("mas", "ewc"):
            if self.method == "mas":  # ||F(x)||^2 of the task's outputs
                found = mas_gradient_importance(_Masked(self.model, mask[0], 0.0), x)
            else:
                found = ewc_fisher(_Masked(self.model, mask[0], float("-inf")), x, target)
            return {k.removeprefix("model."): v for k, v in found.items()}
        self.tags = {k: torch.zeros_like(v) for k, v in self.tags.items()}  # mas_hebbian
        for start in range(0, len(x), 256):
            chunk = x[start : start + 256]
            self._tag_step(chunk, len(chunk) / len(x))  # the mean over the task
        return {k: self.tags[k[: -len(".weight")]] if k.endswith(".weight") else torch.zeros_like(v)
                for k, v in self.model.named_parameters()}

    # --- training ------------------------------------------------------------------------
    def learn(self, x: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, seed: int = 0) -> None:
        """``cfg.epochs`` epochs of Adam on ``(x, target, mask)``, with the method's penalty or gate."""
        cfg = self.cfg
        opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        g = torch.Generator().manual_seed(cfg.seed * 1000 + seed)
        penalized = self.method in PENALIZED
        for _ in range(cfg.epochs):
            order = torch.randperm(len(x), generator=g)
            for start in range(0, len(x), cfg.batch):
                idx = order[start : start + cfg.batch]
                loss = torch.nn.functional.cross_entropy(self._logits(x[idx], mask[idx]), target[idx])
                if penalized:
                    loss = loss + 0.5 * cfg.lam * sum(
                        (self.omega[k] * (p - self.star[k]) ** 2).sum() for k, p in self.model.named_parameters()
                    )
                if self.method == "gated":
                    before = {name: layer.weight.detach().clone() for name, layer in self.layers.items()}
                opt.zero_grad()
                loss.backward()
                opt.step()
                if self.method == "gated":
                    # dw -> dw * (1 - t), the consolidated importance of earlier tasks; only the weights have
                    # a tag (a bias joins no pair of neurons), so the biases take the full optimizer step.
                    with torch.no_grad():
                        for name, layer in self.layers.items():
                            w0 = before[name]
                            layer.weight.copy_(w0 + (layer.weight - w0) * (1.0 - self.gate[name]))
                    self._tag_step(x[idx], cfg.gamma)  # dd: this task's importance, on-line

    def learn_task(self, task: Task, seed: int = 0) -> None:
        """Train on ``task``, then consolidate: add its importance and move the anchor."""
        target, mask = self.targets(task, task.y_train)
        self.learn(torch.as_tensor(task.x_train), target, mask, seed)
        if self.method in PENALIZED:
            new = self._importance(task)
            self.omega = {k: self.omega[k] + new[k] for k in self.omega}
            self.star = {k: v.detach().clone() for k, v in self.model.named_parameters()}
        if self.method == "gated":
            for name in self.layers:
                syn = {"t": self.gate[name], "d": self.tags[name]}
                consolidate_gate(syn)
                self.gate[name], self.tags[name] = syn["t"], syn["d"]


class _Masked(torch.nn.Module):
    """A model whose outputs outside ``mask`` (the task's head) read ``fill``, for per-sample gradients."""

    def __init__(self, model: torch.nn.Module, mask: torch.Tensor, fill: float) -> None:
        super().__init__()
        self.model, self.mask, self.fill = model, mask, fill

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).masked_fill(~self.mask, self.fill)


def run_stream(tasks: Sequence[Task], method: str, cfg: ContinualConfig = ContinualConfig()) -> np.ndarray:
    """Accuracy matrix ``acc[i, j]`` on task ``j``'s test images after learning tasks ``0..i``.

    ``joint`` learns, at step ``i``, tasks ``0..i`` together from scratch (the upper bound).
    """
    n_in = tasks[0].x_train.shape[1]
    n_out = (max(max(tk.classes) for tk in tasks) + 1) if cfg.setting == "task" else len(tasks[0].classes)
    learner = ContinualMLP(n_in, n_out, method, cfg)
    acc = np.zeros((len(tasks), len(tasks)))
    for i, task in enumerate(tasks):
        if method == "joint":
            learner = ContinualMLP(n_in, n_out, method, cfg)
            parts = [learner.targets(tk, tk.y_train) for tk in tasks[: i + 1]]
            x = torch.cat([torch.as_tensor(tk.x_train) for tk in tasks[: i + 1]])
            learner.learn(x, torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), seed=i)
        else:
            learner.learn_task(task, seed=i)
        acc[i] = [learner.accuracy(tk) for tk in tasks]
    return acc


# --------------------------------------------------------------------------------------------
# An unsupervised SoftHebb layer learning a task stream (no labels)
# --------------------------------------------------------------------------------------------
def softhebb_stream(tasks: Sequence[Task], method: str = "naive", cfg=None, lam: float = 1.0, gamma: float = 1.0,
                    progress: bool = False) -> np.ndarray:
    """A rate SoftHebb layer learns ``tasks`` one after the other without labels.

    ``method``: ``"naive"`` (plain SoftHebb), ``"mas"`` (:func:`consolidated`; at each
    boundary :func:`anchor` adds ``gamma`` times the task's Hebbian importance to ``t``) or ``"gated"``
    (:func:`importance_gated`, folded at each boundary by :func:`consolidate_gate`).
    When task ``j`` has been learned, a logistic-regression readout for it is fitted
    on its training features and then kept fixed: ``acc[i, j]`` (``i >= j``) is that
    readout's test accuracy on the layer after tasks ``0..i``, so forgetting measures
    how far later tasks moved the features under it (for ``i < j``, a readout fitted
    at step ``i``).
    """
    from neuro.readout import fit_readout
    from networks import softhebb

    if method not in ("naive", "mas", "gated"):
        raise ValueError(f"softhebb_stream: method must be naive, mas or gated, got {method!r}")
    cfg = cfg or softhebb.SoftHebbConfig()
    net = softhebb.build_rate(tasks[0].x_train.shape[1], cfg)
    base = net.projections["ff1"].rule
    if method == "mas":
        net.projections["ff1"].rule = consolidated(base, lam)
    elif method == "gated":
        net.projections["ff1"].rule = importance_gated(base, gamma)
    sim = softhebb.rate_simulator(net, cfg)
    syn = sim.w["ff1"]
    acc = np.zeros((len(tasks), len(tasks)))
    readouts: Dict[int, object] = {}
    for i, task in enumerate(tasks):
        softhebb.train_rate(sim, task.x_train, cfg.batch, seed=cfg.seed + i,
                            progress=f"{method}: task {i + 1}/{len(tasks)}" if progress else None)
        if method == "mas":
            anchor(syn, gamma * rate_importance(sim, "ff1", task.x_train))
        elif method == "gated":
            consolidate_gate(syn)
        w_now = sim.weights("ff1")
        for j, other in enumerate(tasks):
            if j >= i:  # task j's readout as of now; from j on it stays fixed
                readouts[j] = fit_readout(softhebb.features(w_now, other.x_train), other.y_train)
            acc[i, j] = readouts[j].score(softhebb.features(w_now, other.x_test), other.y_test)
    return acc

"""Rate-based execution of a network and its rules (no spikes, no time).

The same :class:`~neuro.graph.Network` and the same :class:`~neuro.rule.LearningRule`
objects that the spiking engine runs can be run as a rate network: each
population's activity is a transfer function of its pre-activation
``u = sum_p W_p x_p`` (the weighted activities of its inputs), and each plastic
projection applies its rule once per sample with the rule's rate semantics
(see :class:`neuro.plasticity.CompiledRule.apply` and ``RateContext``):
``u`` is 1, ``x0`` and pre traces read the pre activity, ``y0`` and spike-counting
post traces read the post activity, and driven post traces (``"v"``, ``"i"``)
read the pre-activation ``u``. With a soft winner-take-all transfer
(:class:`SoftWTA`) the post activity is the probability of being the winner, so
``eta * y0 * (x1 - y2 * w)`` is SoftHebb's update (Moraitis et al. 2022), the
expectation of what the spiking winner-take-all layer does spike by spike.

Shapes: a mini-batch of ``B`` samples along the leading dimension, activities
``(B, n)``; weights are shared by the batch and the update is the batch mean
(the learning rate is per sample).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Union

import torch

from neuro.graph import InputPopulation, Network, Population
from neuro.plasticity import CompiledRule, RateContext


@dataclass(frozen=True)
class SoftWTA:
    """Soft winner-take-all: ``y = softmax(u / temperature)`` across the population.

    ``temperature`` is in the units of the pre-activation ``u``; low values approach a
    hard winner-take-all.
    """

    temperature: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) or not (
                self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"SoftWTA temperature must be positive and finite, got {self.temperature!r}")

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        return torch.softmax(u / self.temperature, dim=-1)


@dataclass(frozen=True)
class ReLU:
    """``y = max(u, 0)``."""

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        return torch.relu(u)


@dataclass(frozen=True)
class Identity:
    """``y = u`` (a linear population)."""

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        return u


Transfer = Union[SoftWTA, ReLU, Identity]


class RateSimulator:
    """A feed-forward network run on activities, learning with its rules' rate semantics.

    Parameters:
        network: the graph (must be feed-forward; weights are copied, shared ``(post, pre)``).
        transfer: the transfer function of each (non-input) population by name.
        device, dtype: where and in which precision the tensors live.
    """

    def __init__(
        self,
        network: Network,
        transfer: Mapping[str, Transfer],
        device: Union[str, torch.device] = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.network = network
        self.device = torch.device(device)
        self.dtype = dtype
        pops = [p for p in network.populations.values() if isinstance(p, Population)]
        missing = [p.name for p in pops if p.name not in transfer]
        if missing:
            raise ValueError(f"rate simulation: give a transfer function for population(s) {missing}")
        unknown = set(transfer) - {p.name for p in pops}
        if unknown:
            raise ValueError(f"rate simulation: {sorted(unknown)} are not (non-input) populations of the network")
        for name, f in transfer.items():
            if not isinstance(f, (SoftWTA, ReLU, Identity)):
                raise TypeError(f"rate simulation: the transfer function of {name!r} must be a SoftWTA, ReLU or "
                                f"Identity instance (e.g. ReLU()), got {f!r}")
        if not any(isinstance(p, InputPopulation) for p in network.populations.values()):
            raise ValueError("rate simulation: the network has no input population to feed")
        self.transfer = dict(transfer)
        self.order = _feed_forward_order(network)
        self.w: Dict[str, Dict[str, torch.Tensor]] = {}
        self.rules: Dict[str, CompiledRule] = {}
        self.params: Dict[str, Dict[str, torch.Tensor]] = {}
        self.masks: Dict[str, torch.Tensor] = {}
        for proj in network.projections.values():
            if not proj.shared:
                raise ValueError(f"rate simulation: projection {proj.name!r} has per-replica weights; give (post, pre)")
            if proj.gated:
                # A gate reads a neuron's current over time; a rate population has only its transfer function.
                raise ValueError(f"rate simulation: projection {proj.name!r} is gated; gates exist in the spiking engine only")
            w = torch.as_tensor(proj.weights, dtype=dtype, device=self.device)[None].clone()
            self.w[proj.name] = {"w": w}
            if proj.mask is not None:
                self.masks[proj.name] = torch.as_tensor(proj.mask, device=self.device)
            if proj.rule is not None:
                rule = CompiledRule(proj.rule, network.dt)
                if rule.uses_tag:
                    self.w[proj.name]["t"] = torch.zeros_like(w)
                if rule.uses_delay:
                    self.w[proj.name]["d"] = torch.zeros_like(w)
                self.rules[proj.name] = rule
                self.params[proj.name] = {
                    k: torch.tensor(v, dtype=dtype, device=self.device) for k, v in proj.rule.params.items()
                }

    def _known(self, projection: str) -> str:
        if projection not in self.w:
            raise KeyError(f"unknown projection {projection!r}; have {sorted(self.w)}")
        return projection

    def weights(self, projection: str) -> torch.Tensor:
        """Current weights ``(post, pre)``."""
        return self.w[self._known(projection)]["w"][0]

    def set_weights(self, projection: str, weights) -> None:
        self._known(projection)
        w = torch.as_tensor(weights, dtype=self.dtype, device=self.device)
        old = self.w[projection]["w"]
        if w.shape != old.shape[1:]:
            raise ValueError(f"set_weights {projection!r}: expected shape {tuple(old.shape[1:])}, got {tuple(w.shape)}")
        if not torch.isfinite(w).all():
            raise ValueError(f"set_weights {projection!r}: weights contain NaN or infinite values")
        self.w[projection]["w"] = w[None].clone()

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Activities of every population for input activities ``inputs[name]`` ``(B, n)``.

        The result also holds each population's pre-activation under ``"<name>.u"``.
        """
        net = self.network
        acts: Dict[str, torch.Tensor] = {}
        batch = None
        for name, pop in net.populations.items():
            if isinstance(pop, InputPopulation):
                if name not in inputs:
                    raise KeyError(f"rate simulation: no activity given for input population {name!r}")
                x = torch.as_tensor(inputs[name], dtype=self.dtype, device=self.device)
                if x.dim() != 2 or x.shape[1] != pop.n:
                    raise ValueError(f"input {name!r}: expected activities (B, {pop.n}), got {tuple(x.shape)}")
                if batch is not None and x.shape[0] != batch:
                    raise ValueError(f"input {name!r}: batch size {x.shape[0]} differs from {batch}")
                if not torch.isfinite(x).all():
                    raise ValueError(f"input {name!r} contains NaN or infinite values")
                batch = x.shape[0]
                acts[name] = x
        unknown = set(inputs) - set(acts)
        if unknown:
            raise KeyError(f"rate simulation: {sorted(unknown)} are not input populations")
        for name in self.order:
            u = None
            for proj in net.incoming(name):
                contribution = acts[proj.pre] @ self.w[proj.name]["w"][0].T
                u = contribution if u is None else u + contribution
            if u is None:
                u = torch.zeros(batch, net.populations[name].n, dtype=self.dtype, device=self.device)
            acts[f"{name}.u"] = u
            acts[name] = self.transfer[name](u)
        return acts

    def learn(self, inputs: Mapping[str, torch.Tensor], third_factors: Optional[Mapping[str, torch.Tensor]] = None) -> Dict[str, torch.Tensor]:
        """One learning step on a mini-batch: forward, then every plastic projection's rule
        (all computed from the activities and weights before this step). ``third_factors[post]``
        is ``(B, n)`` or ``(n,)`` per post population. Returns the activities. On NaN or infinite
        weights nothing is changed and ``FloatingPointError`` names the projection."""
        with torch.no_grad():
            acts = self.forward(inputs)
            batch = next(iter(acts.values())).shape[0]
            if batch == 0:
                raise ValueError("rate learning: the mini-batch is empty")
            factors = self._third_factors(third_factors or {}, batch)
            new: Dict[str, Dict[str, torch.Tensor]] = {}
            for name, rule in self.rules.items():
                proj = self.network.projections[name]
                u = acts[f"{proj.post}.u"]
                signals = {"v": u, "i": u}
                if proj.post in factors:
                    signals["third_factor"] = factors[proj.post]
                syn = dict(self.w[name])
                ctx = RateContext(rule, acts[proj.pre], acts[proj.post], signals, syn, self.params[name])
                rule.apply(ctx, syn, batch, scale=1.0 / batch, mask=self.masks.get(name))
                bad = [k for k, v in syn.items() if not torch.isfinite(v).all()]
                if bad:
                    raise FloatingPointError(
                        f"rate learning: {bad} of {name!r} would become NaN or infinite (learning rate too high?); "
                        "the weights were left as they were"
                    )
                new[name] = syn
            for name, syn in new.items():  # in place: callers may hold a projection's dict
                self.w[name].update(syn)
        return acts

    def _third_factors(self, given: Mapping[str, torch.Tensor], batch: int) -> Dict[str, torch.Tensor]:
        plastic_posts = {self.network.projections[n].post for n in self.rules}
        out = {}
        for name, value in given.items():
            if name not in plastic_posts:
                raise KeyError(f"third factor for {name!r}: not the post population of a plastic projection "
                               f"(those are {sorted(plastic_posts)})")
            n = self.network.populations[name].n
            v = torch.as_tensor(value, dtype=self.dtype, device=self.device)
            if v.shape not in ((n,), (batch, n)):
                raise ValueError(f"third factor for {name!r}: expected shape ({n},) or ({batch}, {n}), got {tuple(v.shape)}")
            if not torch.isfinite(v).all():
                raise ValueError(f"third factor for {name!r} contains NaN or infinite values")
            out[name] = v.expand(batch, n)
        return out


def _feed_forward_order(network: Network) -> List[str]:
    """Non-input populations in an order where every population comes after its inputs."""
    pending = {name for name, p in network.populations.items() if isinstance(p, Population)}
    done = {name for name, p in network.populations.items() if isinstance(p, InputPopulation)}
    order: List[str] = []
    while pending:
        ready = sorted(n for n in pending if all(p.pre in done for p in network.incoming(n)))
        if not ready:
            loop = [p.name for n in sorted(pending) for p in network.incoming(n) if p.pre in pending]
            raise ValueError(
                f"rate simulation needs a feed-forward network; projection(s) {loop} form a loop "
                "(recurrent connections such as lateral inhibition exist only in the spiking engine)"
            )
        order += ready
        done |= set(ready)
        pending -= set(ready)
    return order


__all__ = ["RateSimulator", "SoftWTA", "ReLU", "Identity", "Transfer"]

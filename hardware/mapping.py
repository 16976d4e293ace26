"""Mapping a network onto a target's cores, and activity / energy estimates.

Formulas (all per replica; the chip runs one copy of the network, so ``R``
replicas need ``R`` times the cores, memory, operations and energy):

* bits per synapse ``b``: a static projection stores its weight mantissa
  (``num_weight_bits`` from :func:`hardware.quantize.quantize_weights`, at most
  8); a plastic one stores the learned weight at full width (8 bits for a
  single sign, 9 mixed: Lava's ``W_WEIGHTS_U`` / ``W_WEIGHTS_S``) plus the tag
  ``t`` (9 bits) if the rule learns or reads it and ``d`` (8 bits) likewise.
  On the float target every variable takes 32 bits.
* synaptic memory of a projection: ``n_post * n_pre * b`` bits (dense storage,
  no index or routing overhead);
* a population of ``n`` neurons whose incoming projections have fan-in
  ``n_pre_i`` needs ``B = sum_i n_pre_i * b_i`` bits per neuron; a core holds
  ``k = min(neurons_per_core, floor(M / B))`` of them (``M`` = synaptic memory
  per core: a neuron's whole fan-in lives on its core) and the population needs
  ``ceil(n / k)`` cores. Input populations use no neuro core.
* activity: a population firing at ``r`` Hz emits ``p = r * dt`` spikes per
  neuron per step; a dense projection then performs ``n_pre * p_pre * n_post``
  synaptic operations per step; all non-input neurons are updated every step.
* learning: every ``t_epoch`` steps the engine updates each synapse one of
  whose rule dependencies is active: ``x0`` with probability
  ``1 - (1 - p_pre)**t_epoch``, ``y0`` likewise with ``p_post``, ``u`` in one
  epoch of ``2**u_exponent`` (dependencies independent); per step that is
  ``n_pre * n_post * P(any) / t_epoch`` synaptic updates.
* energy per step: ``synops * E_synop + neuron_updates * E_neuron +
  synaptic_updates * E_update`` with the target's per-operation energies.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from hardware.targets import Target


@dataclass
class ProjectionLoad:
    """Storage and activity of one projection (per replica)."""

    name: str
    pre: str
    post: str
    n_pre: int
    n_post: int
    plastic: bool
    bits_per_synapse: int
    bits_detail: str
    synops_per_step: float
    synaptic_updates_per_step: float

    @property
    def synapses(self) -> int:
        return self.n_pre * self.n_post

    @property
    def memory_bits(self) -> int:
        return self.synapses * self.bits_per_synapse


@dataclass
class PopulationPlacement:
    """How one population lands on cores (per replica); ``cores`` is ``None`` on unlimited targets."""

    name: str
    n: int
    model: str
    synapse_bits_per_neuron: int
    neurons_per_core: Optional[int]
    limited_by: str
    cores: Optional[int]
    fits_one_core: bool


def plastic_bits(rule, target: Target) -> Tuple[int, str]:
    """Bits per synapse of a plastic projection, with the parts spelled out."""
    single, mixed = target.weight_bits_plastic.value
    one_sign = rule.w_min == 0.0 or rule.w_max == 0.0
    bits = single if one_sign else mixed
    parts = [f"w {bits}"]
    if rule.dt is not None or rule.uses("t"):
        bits += target.tag_bits.value
        parts.append(f"t {target.tag_bits.value}")
    if rule.dd is not None or rule.uses("d"):
        bits += target.delay_tag_bits.value
        parts.append(f"d {target.delay_tag_bits.value}")
    return bits, " + ".join(parts) + (" (plastic, single sign)" if one_sign else " (plastic, mixed sign)")


def spike_probability(rate_hz: float, dt: float) -> float:
    """Spikes per neuron per step at ``rate_hz`` (at most 1)."""
    return min(max(rate_hz * dt, 0.0), 1.0)


def rule_dependencies(rule) -> set:
    return {term.dependency for terms in rule.terms().values() for term in terms}


def learning_update_probability(rule, p_pre: float, p_post: float) -> float:
    """Probability that a synapse is updated in one epoch (see the module docstring)."""
    deps = rule_dependencies(rule)
    T = rule.t_epoch
    idle = 1.0
    if "x0" in deps:
        idle *= (1.0 - p_pre) ** T
    if "y0" in deps:
        idle *= (1.0 - p_post) ** T
    if "u" in deps:
        idle *= 1.0 - 2.0 ** (-rule.u_exponent)
    return 1.0 - idle


def place_population(name: str, n: int, model: str, bits_per_neuron: int, target: Target) -> PopulationPlacement:
    """Cores for ``n`` neurons needing ``bits_per_neuron`` synaptic bits each."""
    npc = target.neurons_per_core.value
    mem = target.synaptic_memory_bits_per_core.value
    if npc is None and mem is None:
        return PopulationPlacement(name, n, model, bits_per_neuron, None, "no limit", None, True)
    caps = []
    if npc is not None:
        caps.append((int(npc), "neurons per core"))
    fits_one_core = True
    if mem is not None and bits_per_neuron > 0:
        k_mem = int(mem // bits_per_neuron)
        if k_mem == 0:
            fits_one_core = False
        caps.append((k_mem, "synaptic memory per core"))
    k, limited_by = min(caps)
    if k == 0:
        # One neuron's fan-in does not fit a core: count the memory it would take anyway.
        cores = math.ceil(n * bits_per_neuron / mem)
        return PopulationPlacement(name, n, model, bits_per_neuron, 0, "one neuron's fan-in exceeds a core",
                                   cores, False)
    return PopulationPlacement(name, n, model, bits_per_neuron, k, limited_by, math.ceil(n / k), fits_one_core)


def rates_from_spikes(spikes: Mapping[str, np.ndarray], dt: float) -> Dict[str, float]:
    """Mean firing rates in Hz from recorded spikes.

    ``spikes`` maps a population name (or ``"<name>.spikes"``, as in a
    :class:`neuro.Recording`) to an array ``(steps, [replicas,] n)`` of 0/1.
    """
    rates = {}
    for key, s in spikes.items():
        name = key[: -len(".spikes")] if key.endswith(".spikes") else key
        a = np.asarray(s.cpu().numpy() if hasattr(s, "cpu") else s, dtype=np.float64)
        if a.ndim < 2:
            raise ValueError(f"spikes of {name!r} must be (steps, [replicas,] n), got shape {a.shape}")
        rates[name] = float(a.mean()) / dt
    return rates


__all__ = [
    "ProjectionLoad",
    "PopulationPlacement",
    "plastic_bits",
    "place_population",
    "spike_probability",
    "learning_update_probability",
    "rates_from_spikes",
]

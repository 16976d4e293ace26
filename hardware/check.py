"""Does a network fit a target, and can the target run it? :func:`check` answers with reasons.

:func:`check` maps the populations onto cores (:mod:`hardware.mapping`),
quantizes the weights (:mod:`hardware.quantize`), estimates synaptic
operations and energy per step, and lists **every** reason the network does
not fit or cannot run on the target:

* capacity: cores, neurons and synapses per chip, a neuron's fan-in larger than a core;
* rules: operations the learning engine lacks (found by walking the rule
  expressions: ``softmax``, ``winner``, ``sum_pre``, ``abs``, ``exp``, ``**``, ``clamp``, ``maximum``,
  ``minimum``, division by a non-constant, ``sign`` of anything but ``w``/``t``/``d``),
  ``u`` used as a plain factor, weight bounds other than ``[0, inf)``,
  ``(-inf, 0]`` or unbounded, ``t_epoch`` / ``u_exponent`` / trace time
  constants out of range, negative trace impulses;
* neurons: what Lava's ``LIF`` cannot express (``v_reset != 0``, an adaptive
  threshold, a saturating current, decays faster than one step, a non-positive threshold);
* replicas: plastic weights shared by several replicas (their updates are summed
  like a mini-batch; copies on chips learn on their own);
* ties: weights that must follow a plastic projection's (:class:`~neuro.graph.Tie`, e.g.
  predictive coding's ``W^T`` feedback): no synapse group can read another's weights.

Constant sub-expressions (numbers and :class:`~neuro.Param` s) are folded first:
``exp(-dt / tau)`` as a coefficient is fine, it is computed before upload.
On :data:`~hardware.targets.FLOAT_TARGET` nothing is unsupported.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from hardware.mapping import (
    PopulationPlacement,
    ProjectionLoad,
    learning_update_probability,
    place_population,
    plastic_bits,
    spike_probability,
)
from hardware.quantize import (
    QuantizationError,
    QuantizedWeights,
    lif_fixed_point,
    population_scale,
    quantize_weights,
    sign_mode_for,
)
from hardware.targets import ASSUMED, LOIHI2, Target
from hardware.loihi_rules import lowering_problems
from neuro.graph import InputPopulation, Network
from neuro.neurons import IAF, LIF
from neuro.rule import LearningRule

def rule_problems(rule: LearningRule, target: Target, dt: float, where: str) -> List[str]:
    """Every reason ``rule`` cannot run on ``target``'s learning engine (empty on unrestricted targets)."""
    problems: List[str] = []
    if target.rule_ops is not None:
        # What the learning engine can run is defined once, by the exact lowering.
        problems += [f"{where}: {e}" for e in lowering_problems(rule)]
        lo, hi = target.t_epoch_range.value
        if rule.t_epoch < lo or (hi is not None and rule.t_epoch > hi):
            problems.append(
                f"{where}: t_epoch = {rule.t_epoch} steps is outside the target's range [{lo}, {hi}] "
                f"({target.t_epoch_range.source.split(',')[0]})"
            )
        ulo, uhi = target.u_exponent_range.value
        if any(t.dependency == "u" for ts in rule.terms().values() for t in ts) and uhi is not None and not (
            ulo <= rule.u_exponent <= uhi
        ):
            problems.append(f"{where}: u_exponent = {rule.u_exponent} is outside [{ulo}, {uhi}]")
        tau_max = target.trace_tau_max_steps.value
        for name, tr in sorted(rule.traces.items()):
            if not rule.uses(name):
                continue
            if tau_max is not None and tr.driven_by is None and math.isfinite(tr.tau):
                steps = tr.tau / dt
                if steps > tau_max:
                    problems.append(
                        f"{where}: trace {name} tau = {tr.tau:g} s = {steps:.4g} steps exceeds the "
                        f"{tau_max}-step maximum of an 8-bit trace time constant"
                    )
    return problems


def neuron_problems(name: str, model, target: Target) -> List[str]:
    """Every reason a population's neuron model cannot be expressed as Lava's LIF."""
    if not target.lava_lif_only:
        return []
    where = f"population {name!r}"
    problems = []
    if isinstance(model, (LIF, IAF)):
        if model.v_reset != 0.0:
            problems.append(
                f"{where}: v_reset = {model.v_reset:g}, but Lava's LIF resets v to 0. An equivalent model "
                "shifts all voltages by -v_reset (v_reset=0, v_th - v_reset"
                + (", v_leak - v_reset" if isinstance(model, LIF) else "")
                + "), unless a rule reads v through a driven trace"
            )
        if isinstance(model, LIF):
            problems.extend(
                f"{where}: {what}: on chip this needs a custom (microcode) neuron program (export.lava simulates "
                "it in floating point)"
                for what in model.beyond_lava()
            )
        if isinstance(model, LIF) and model.theta_plus > 0:
            problems.append(
                f"{where}: adaptive threshold (theta_plus = {model.theta_plus:g}) has no counterpart in Lava's "
                "LIF (Lava's ATRLIF adapts its threshold but replaces the reset by a refractory variable, "
                "different dynamics)"
            )
    else:
        problems.append(f"{where}: neuron model {type(model).__name__} has no Lava LIF mapping")
    return problems


def tie_problems(net: Network, name: str, target: Target) -> List[str]:
    """Why a projection tied to a plastic one cannot stay tied on ``target`` (empty if it can)."""
    proj = net.projections[name]
    if target.rule_ops is None or name not in {p.name for p in net.learning_ties()}:
        return []  # a copy of static weights is uploaded once
    src = net.projections[proj.tie.source]
    how = ("the transpose of " if proj.tie.transpose else "") + (
        "" if proj.tie.scale == 1 else f"{proj.tie.scale:g} x ") + repr(src.name)
    return [
        f"projection {name!r}: its weights must stay {how}, which learns (rule {src.rule.name!r}); a Loihi 2 "
        f"synapse group cannot read another group's weights, so this copy goes stale after the first learning "
        f"epoch unless the host rewrites its {proj.weights.shape[-1] * proj.weights.shape[-2]:,} weights every "
        f"{src.rule.update_period} steps (weight transport, which export.lava does in simulation). On chip, learn the "
        f"copy with its own local rule or keep it fixed (feedback alignment)"
    ]


# --- the report ----------------------------------------------------------------------------------------
@dataclass
class FitReport:
    """The answer of :func:`check`: resources, estimates and every reason the network does not fit."""

    network: str
    dt: float
    target: Target
    replicas: int
    fits: bool
    reasons: List[str]
    notes: List[str]
    populations: List[PopulationPlacement]
    projections: List[ProjectionLoad]
    quantized: Dict[str, QuantizedWeights]
    rates_hz: Dict[str, float]
    rate_source: str
    cores_per_replica: Optional[int]
    cores_available: Optional[int]
    synapse_memory_bits_per_replica: int
    neuron_updates_per_step: float
    synops_per_step: float
    synaptic_updates_per_step: float
    energy_per_step_J: Optional[float]
    energy_breakdown_J: Dict[str, float] = field(default_factory=dict)

    @property
    def cores_used(self) -> Optional[int]:
        """Neuro cores for all replicas (the chip runs one copy per replica)."""
        return None if self.cores_per_replica is None else self.cores_per_replica * self.replicas

    @property
    def synapse_memory_bits(self) -> int:
        return self.synapse_memory_bits_per_replica * self.replicas

    def summary(self) -> str:
        t = self.target
        R = self.replicas
        verdict = "FITS" if self.fits else f"DOES NOT FIT ({len(self.reasons)} reason{'s' * (len(self.reasons) != 1)})"
        lines = [
            f"network {self.network!r} (dt = {self.dt * 1e3:g} ms) on target {t.name}: {t.description}"
            + (f", {t.chips} chips" if t.chips > 1 else ""),
            f"result: {verdict}",
            f"replicas: {R}" + (" (the chip runs one copy of the network per replica: cores, memory, operations "
                                "and energy below are multiplied by the replicas)" if R > 1 else ""),
        ]
        if self.cores_per_replica is None:
            lines.append("cores: no limit on this target")
        else:
            pct = f" ({100 * self.cores_used / self.cores_available:.1f}%)" if self.cores_available else ""
            lines.append(
                f"cores: {self.cores_used:,} of {self.cores_available:,} neuro cores{pct}"
                + (f" = {self.cores_per_replica:,} per replica x {R}" if R > 1 else "")
            )
        mem = t.synaptic_memory_bits_per_core.value
        npc = t.neurons_per_core.value
        for p in self.populations:
            if p.cores is None:
                lines.append(f"  {p.name}: {p.n:,} {p.model} neurons, {p.synapse_bits_per_neuron:,} synapse bits each")
                continue
            how = (
                f"min({npc:,} neurons, floor({mem:,} / {p.synapse_bits_per_neuron:,}) = "
                f"{mem // p.synapse_bits_per_neuron if p.synapse_bits_per_neuron else 'inf'})"
                if mem is not None and npc is not None
                else ""
            )
            lines.append(
                f"  {p.name}: {p.n:,} {p.model} neurons x {p.synapse_bits_per_neuron:,} synapse bits each -> "
                f"{p.neurons_per_core:,} per core = {how}, limited by {p.limited_by} -> {p.cores:,} cores"
            )
        mbits = self.synapse_memory_bits
        lines.append(
            f"synaptic memory: {mbits:,} bits = {mbits / 8 / 2**20:.3f} MiB"
            + (f" ({self.synapse_memory_bits_per_replica:,} per replica)" if R > 1 else "")
            + "  [n_post x n_pre x bits per synapse, summed over projections]"
        )
        for pr in self.projections:
            lines.append(
                f"  {pr.name}: {pr.pre} -> {pr.post}, {pr.n_post:,} x {pr.n_pre:,} synapses x "
                f"{pr.bits_per_synapse} bits ({pr.bits_detail}) = {pr.memory_bits:,} bits"
            )
        rates = ", ".join(f"{k} {v:g} Hz" for k, v in self.rates_hz.items())
        lines.append(f"activity ({self.rate_source}: {rates}), per step, all replicas:")
        lines.append(
            f"  synaptic ops {self.synops_per_step:,.1f}; neuron updates {self.neuron_updates_per_step:,.0f}; "
            f"learning (synaptic) updates {self.synaptic_updates_per_step:,.1f}"
        )
        if self.energy_per_step_J is None:
            lines.append("energy: no energy model for this target")
        else:
            b = self.energy_breakdown_J
            lines.append(
                f"energy per step: {self.energy_per_step_J * 1e9:,.3f} nJ = synaptic ops "
                f"{b['synops'] * 1e9:,.3f} nJ ({t.energy_per_synop_J.value * 1e12:g} pJ each) + neuron updates "
                f"{b['neurons'] * 1e9:,.3f} nJ ({t.energy_per_neuron_update_J.value * 1e12:g} pJ each) + learning "
                f"{b['learning'] * 1e9:,.3f} nJ ({t.energy_per_synaptic_update_J.value * 1e12:g} pJ each); "
                f"{self.energy_per_step_J / self.dt * 1e3:,.4g} mW at {self.dt * 1e3:g} ms per step in real time"
            )
            if any(getattr(t, k).status == ASSUMED for k in ("energy_per_synop_J", "energy_per_neuron_update_J")):
                lines.append(
                    "  (per-operation energies: Loihi 1 measurements, Davies et al. 2018, assumed for this target)"
                )
        if self.quantized:
            lines.append("weights in fixed point (Lava's Dense format):")
            for name, q in self.quantized.items():
                lines.append(
                    f"  {name}: {q.sign_mode.name.lower()}, {q.num_weight_bits}-bit mantissa, exponent {q.exponent}, "
                    f"scale {q.scale:.4g}; max error {q.max_error:.3g} (half step {q.lsb / 2:.3g})"
                    + (" SATURATED" if q.saturated else "")
                )
        if self.reasons:
            lines.append("why it does not fit or cannot run:")
            lines.extend(f"  - {r}" for r in self.reasons)
        if self.notes:
            lines.append("notes and assumptions:")
            lines.extend(f"  - {n}" for n in self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _current_weights(model) -> Tuple[Network, int, Dict[str, np.ndarray]]:
    if isinstance(model, Network):
        net = model
        # per-replica (R, post, pre) weights: the network holds R copies
        per_replica = {p.weights.shape[0] for p in net.projections.values() if p.weights.ndim == 3}
        if len(per_replica) > 1:
            raise ValueError(f"the projections hold weights for different numbers of replicas: {sorted(per_replica)}")
        return net, per_replica.pop() if per_replica else 1, {n: p.weights for n, p in net.projections.items()}
    net = getattr(model, "network", None)
    if not isinstance(net, Network):
        raise TypeError(f"check expects a neuro Network or Simulator, got {type(model).__name__}")
    weights = {}
    for name in net.projections:
        w = model.weights(name)
        weights[name] = w.detach().cpu().numpy().astype(np.float64) if hasattr(w, "detach") else np.asarray(w)
    return net, int(model.replicas), weights


def check(
    model,
    target: Target = LOIHI2,
    replicas: Optional[int] = None,
    rate_hz: float = 10.0,
    rates: Optional[Mapping[str, float]] = None,
) -> FitReport:
    """Map ``model`` onto ``target`` and list every reason it does not fit or cannot run.

    Parameters:
        model: a :class:`neuro.Network` or a :class:`neuro.Simulator` (its
            network, replicas and *current* weights are used).
        target: :data:`~hardware.targets.LOIHI2` (default) or
            :data:`~hardware.targets.FLOAT_TARGET`, or a variant
            (``LOIHI2.with_chips(4)``).
        replicas: copies to run (default: the simulator's, or 1); the chip runs
            one copy per replica, so cores, memory and energy multiply.
        rate_hz: assumed firing rate of every population (Hz) for the operation
            and energy estimates.
        rates: measured or expected rates by population name (Hz), overriding
            ``rate_hz`` (see :func:`hardware.mapping.rates_from_spikes`).
    """
    net, sim_replicas, weights = _current_weights(model)
    R = int(replicas if replicas is not None else sim_replicas)
    if R < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas!r}")
    per_replica = [n for n, w in weights.items() if np.ndim(w) == 3 and np.shape(w)[0] > 1]
    if per_replica and R != sim_replicas:
        raise ValueError(f"replicas={R}, but projection {per_replica[0]!r} holds weights for {sim_replicas} replicas")
    if not rate_hz >= 0 or not math.isfinite(rate_hz):
        raise ValueError(f"rate_hz must be a finite rate >= 0 (Hz), got {rate_hz!r}")
    rates = dict(rates or {})
    unknown = set(rates) - set(net.populations)
    if unknown:
        raise ValueError(f"rates given for unknown population(s) {sorted(unknown)}")
    bad = {k: v for k, v in rates.items() if not (isinstance(v, (int, float, np.number)) and 0 <= v < math.inf)}
    if bad:
        raise ValueError(f"rates must be finite rates >= 0 (Hz), got {bad}")
    dt = net.dt
    reasons: List[str] = []
    notes: List[str] = []
    rates_hz = {name: float(rates.get(name, rate_hz)) for name in net.populations}
    rate_source = "measured/given rates" if rates else f"assumed rate {rate_hz:g} Hz for every population"
    p_spike = {name: spike_probability(r, dt) for name, r in rates_hz.items()}

    # Fixed-point weights: one scale per post population, shared with its threshold.
    quantized: Dict[str, QuantizedWeights] = {}
    if target.fixed_point:
        for post, pop in net.populations.items():
            incoming = [p for p in net.projections.values() if p.post == post]
            if not incoming or not isinstance(pop.model, (LIF, IAF)):
                continue
            modes = {}
            for p in incoming:
                rule = p.rule
                modes[p.name] = sign_mode_for(weights[p.name], rule.w_min, rule.w_max) if rule else None
            scale = population_scale(pop.model, dt, [(weights[p.name], modes[p.name]) for p in incoming], target)
            for p in incoming:
                try:
                    quantized[p.name] = q = quantize_weights(weights[p.name], target, scale, modes[p.name])
                    notes.extend(f"projection {p.name!r}: {n}" for n in q.notes)
                except QuantizationError as e:
                    reasons.append(f"projection {p.name!r}: weights cannot be quantized: {e}")
            fx = lif_fixed_point(pop.model, dt, scale, target)
            reasons.extend(f"population {post!r}: {m}" for m in fx.problems)
            notes.extend(f"population {post!r}: {m}" for m in fx.notes)

    # Projections: storage, activity, rule checks.
    loads: List[ProjectionLoad] = []
    for proj in net.projections.values():
        n_pre, n_post = net.populations[proj.pre].n, net.populations[proj.post].n
        where = f"projection {proj.name!r}" + (f" (rule {proj.rule.name!r})" if proj.rule else "")
        if proj.mask is not None and target.rule_ops is not None:
            notes.append(
                f"{where}: sparse ({proj.synapses:,} of {n_pre * n_post:,} synapses); synapse memory is estimated as "
                "dense (an upper bound)" + ("; export.lava refuses it as plastic (it writes LearningDense, which "
                                           "would grow the missing synapses)" if proj.rule is not None else "")
            )
        if proj.rule is not None:
            bits, detail = plastic_bits(proj.rule, target)
            reasons.extend(rule_problems(proj.rule, target, dt, where))
            w = weights[proj.name]
            if target.sign_bounded_weights:
                if proj.rule.w_min == 0.0 and w.size and w.min() < 0:
                    reasons.append(f"{where}: weights bounded to [0, inf) start negative (min {w.min():g})")
                if proj.rule.w_max == 0.0 and w.size and w.max() > 0:
                    reasons.append(f"{where}: weights bounded to (-inf, 0] start positive (max {w.max():g})")
            if target.rule_ops is not None and R > 1 and proj.shared:
                reasons.append(
                    f"{where}: plastic weights shared by {R} replicas; the torch engine sums the replicas' "
                    "updates into one matrix (a mini-batch), but copies on a chip each learn on their own. "
                    "Give each replica its own weights ((R, post, pre)) or run one replica"
                )
            upd = n_pre * n_post * learning_update_probability(proj.rule, p_spike[proj.pre], p_spike[proj.post])
            upd /= proj.rule.t_epoch
        else:
            reasons.extend(tie_problems(net, proj.name, target))
            if proj.name in quantized:
                bits = quantized[proj.name].num_weight_bits
                detail = f"w {bits} (static, {quantized[proj.name].sign_mode.name.lower()})"
            else:
                bits = target.weight_bits.value
                detail = f"w {bits} (static)"
            upd = 0.0
        synops = n_pre * p_spike[proj.pre] * n_post
        loads.append(ProjectionLoad(proj.name, proj.pre, proj.post, n_pre, n_post, proj.rule is not None,
                                    int(bits), detail, synops, upd))

    # Populations: neuron checks and placement.
    placements: List[PopulationPlacement] = []
    for name, pop in net.populations.items():
        if isinstance(pop, InputPopulation):
            continue
        reasons.extend(neuron_problems(name, pop.model, target))
        bits_per_neuron = sum(l.n_pre * l.bits_per_synapse for l in loads if l.post == name)
        pl = place_population(name, pop.n, type(pop.model).__name__, bits_per_neuron, target)
        placements.append(pl)
        if not pl.fits_one_core:
            reasons.append(
                f"population {name!r}: one neuron's fan-in needs {bits_per_neuron:,} bits of synapses, more than "
                f"a core's {target.synaptic_memory_bits_per_core.value:,}; a neuron's synapses must share its core"
            )

    # Capacity.
    cores_per_replica = None
    if all(p.cores is not None for p in placements):
        cores_per_replica = sum(p.cores for p in placements)
    avail = target.cores_available
    if cores_per_replica is not None and avail is not None and cores_per_replica * R > avail:
        reasons.append(
            f"needs {cores_per_replica * R:,} neuro cores ({cores_per_replica:,} per replica x {R} replicas) but "
            f"the target has {avail:,} ({target.chips} chip(s) x {target.neuro_cores_per_chip.value})"
        )
    n_neurons = sum(p.n for p in placements)
    if target.neurons_per_chip.value is not None and n_neurons * R > target.neurons_per_chip.value * target.chips:
        reasons.append(
            f"{n_neurons * R:,} neurons exceed the target's {target.neurons_per_chip.value * target.chips:,}"
        )
    n_syn = sum(l.synapses for l in loads)
    if target.synapses_per_chip.value is not None and n_syn * R > target.synapses_per_chip.value * target.chips:
        reasons.append(
            f"{n_syn * R:,} synapses exceed the target's {target.synapses_per_chip.value * target.chips:,}"
        )
    if R > 1:
        notes.append(f"{R} replicas: the chip runs one copy of the network per replica ({R} x the resources)")
    if any(not isinstance(p, InputPopulation) for p in net.populations.values()) and target.fixed_point:
        notes.extend(target.notes)

    synops = sum(l.synops_per_step for l in loads) * R
    neuron_updates = float(n_neurons * R)
    syn_updates = sum(l.synaptic_updates_per_step for l in loads) * R
    e_syn, e_neu, e_upd = (
        target.energy_per_synop_J.value,
        target.energy_per_neuron_update_J.value,
        target.energy_per_synaptic_update_J.value,
    )
    breakdown: Dict[str, float] = {}
    energy = None
    if None not in (e_syn, e_neu, e_upd):
        breakdown = {"synops": synops * e_syn, "neurons": neuron_updates * e_neu, "learning": syn_updates * e_upd}
        energy = sum(breakdown.values())

    return FitReport(
        network=net.name,
        dt=dt,
        target=target,
        replicas=R,
        fits=not reasons,
        reasons=reasons,
        notes=notes,
        populations=placements,
        projections=loads,
        quantized=quantized,
        rates_hz=rates_hz,
        rate_source=rate_source,
        cores_per_replica=cores_per_replica,
        cores_available=avail,
        synapse_memory_bits_per_replica=sum(l.memory_bits for l in loads),
        neuron_updates_per_step=neuron_updates,
        synops_per_step=synops,
        synaptic_updates_per_step=syn_updates,
        energy_per_step_J=energy,
        energy_breakdown_J=breakdown,
    )


__all__ = ["check", "FitReport", "rule_problems", "neuron_problems", "tie_problems"]

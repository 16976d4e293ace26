"""Descriptions of the chips a network can be mapped onto.

A :class:`Target` is plain data: limits (cores, neurons, synaptic memory),
number formats (weights, traces, neuron state), what the learning engine can
compute, and energies per operation. Every number is a :class:`Figure` that
says where it comes from (``source``) and how much to trust it (``status``):

* ``"measured"``: measured on silicon and published;
* ``"published"``: a specification the vendor published;
* ``"lava"``: read from Lava 0.10's own bit-accurate / fixed-point models, the
  software reference Intel ships for Loihi 2 (the path is given);
* ``"derived"``: computed from published figures (the computation is given);
* ``"assumed"``: a working assumption, with the reason it was chosen.

Two targets are provided: :data:`LOIHI2` (one Intel Loihi 2 chip as Lava
models it) and :data:`FLOAT_TARGET` (a generic float machine without limits,
the reference the torch engine implements, for comparison).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Dict, FrozenSet, Optional

MEASURED, PUBLISHED, LAVA, DERIVED, ASSUMED = "measured", "published", "lava", "derived", "assumed"
STATUSES = (MEASURED, PUBLISHED, LAVA, DERIVED, ASSUMED)

# Sources quoted by several figures.
_BRIEF = (
    "Intel Labs technology brief 'Taking Neuromorphic Computing to the Next Level with Loihi 2' (2021)"
)
_DAVIES = (
    "Davies et al. 2018, 'Loihi: A Neuromorphic Manycore Processor with On-Chip Learning', "
    "IEEE Micro 38(1), Table 2 (Loihi 1, 14 nm, measured at nominal voltage)"
)
_LAVA_CONST = "Lava 0.10 lava/magma/core/learning/constants.py"
_LAVA_LIF = "Lava 0.10 lava/proc/lif/models.py, PyLifModelBitAcc"


@dataclass(frozen=True)
class Figure:
    """One number (or range, or set) of a target with its provenance."""

    value: Any
    unit: str
    source: str
    status: str

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"figure status must be one of {STATUSES}, got {self.status!r}")
        if not self.source.strip():
            raise ValueError("every figure needs a source")

    def __str__(self) -> str:
        if self.value is None:
            v = "unlimited"
        elif isinstance(self.value, (tuple, list)):
            v = "[" + ", ".join(str(x) for x in self.value) + "]"
        elif isinstance(self.value, (frozenset, set)):
            v = ", ".join(sorted(str(x) for x in self.value))
        elif isinstance(self.value, float):
            v = f"{self.value:g}"
        elif isinstance(self.value, int):
            v = f"{self.value:,}"
        else:
            v = str(self.value)
        return f"{v} {self.unit}".rstrip()


# Operations of the rule language (neuro.expr.OPS) that Loihi's learning engine computes on
# variables. Everything else is allowed only inside constant sub-expressions.
LOIHI_RULE_OPS: FrozenSet[str] = frozenset({"add", "sub", "mul", "neg", "div_by_constant", "sign_of_synaptic"})
ALL_RULE_OPS = None  # no restriction


@dataclass(frozen=True)
class Target:
    """What one chip (or a generic machine) offers. ``None`` values mean "no limit".

    Limits and formats are :class:`Figure` s; :meth:`figures` lists them all.
    ``rule_ops`` is the set of operations the learning engine computes on
    variables (``None``: any); ``sign_bounded_weights`` says the engine can only
    saturate weights by their sign (``[0, inf)``, ``(-inf, 0]`` or unbounded);
    ``lava_lif_only`` says neurons must be expressible as Lava's ``LIF``.
    """

    name: str
    description: str
    chips: int
    neuro_cores_per_chip: Figure
    embedded_cpus_per_chip: Figure
    neurons_per_core: Figure
    neurons_per_chip: Figure
    synapses_per_chip: Figure
    synaptic_memory_bits_per_core: Figure
    weight_bits: Figure
    weight_bits_plastic: Figure
    weight_exponent_range: Figure
    tag_bits: Figure
    delay_tag_bits: Figure
    trace_bits: Figure
    trace_fraction_bits: Figure
    trace_tau_max_steps: Figure
    accumulator_bits: Figure
    product_scale: Figure
    t_epoch_range: Figure
    u_exponent_range: Figure
    learning_engine: Figure
    weight_bounds: Figure
    lif_decay_bits: Figure
    lif_vth_bits: Figure
    lif_state_bits: Figure
    lif_bias: Figure
    lif_reset: Figure
    energy_per_synop_J: Figure
    energy_per_neuron_update_J: Figure
    energy_per_synaptic_update_J: Figure
    rule_ops: Optional[FrozenSet[str]] = ALL_RULE_OPS
    sign_bounded_weights: bool = False
    lava_lif_only: bool = False
    fixed_point: bool = False
    notes: tuple = field(default_factory=tuple)

    def figures(self) -> Dict[str, Figure]:
        """Every figure by field name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), Figure)}

    def with_chips(self, chips: int) -> "Target":
        """The same target with ``chips`` chips (limits per chip are multiplied in :func:`hardware.check`)."""
        if int(chips) != chips or chips < 1:
            raise ValueError(f"chips must be a positive integer, got {chips!r}")
        return replace(self, chips=int(chips))

    @property
    def cores_available(self) -> Optional[int]:
        c = self.neuro_cores_per_chip.value
        return None if c is None else c * self.chips

    def describe(self, sources: bool = True) -> str:
        """A table of the figures, with their status and (optionally) sources."""
        lines = [f"target {self.name}: {self.description}" + (f" x {self.chips} chips" if self.chips > 1 else "")]
        for name, fig in self.figures().items():
            lines.append(f"  {name:32s} {str(fig):38s} [{fig.status}]")
            if sources:
                lines.append(f"      source: {fig.source}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


LOIHI2 = Target(
    name="loihi2",
    description="one Intel Loihi 2 chip, learning engine and LIF neurons as Lava 0.10 models them",
    chips=1,
    neuro_cores_per_chip=Figure(
        128, "neuro cores", f"{_BRIEF}: 128 neuromorphic cores per chip (also Orchard et al. 2021, "
        "'Efficient Neuromorphic Signal Processing with Loihi 2', SiPS 2021)", PUBLISHED),
    embedded_cpus_per_chip=Figure(
        6, "x86 cores", f"{_BRIEF}: 6 embedded microprocessor cores (Lakemont x86) per chip, for I/O and "
        "management; not counted as neuro cores", PUBLISHED),
    neurons_per_core=Figure(
        8192, "neurons",
        f"{_BRIEF} gives up to 1 million neurons per chip over 128 cores: 2^20 / 128 = 8,192 per core. "
        "The real number depends on the neuron state size (per-core memory is partitioned flexibly); "
        "we assume Lava's LIF reaches it", DERIVED),
    neurons_per_chip=Figure(1_000_000, "neurons", f"{_BRIEF}: 'up to 1 million neurons' per chip", PUBLISHED),
    synapses_per_chip=Figure(
        120_000_000, "synapses", f"{_BRIEF}: 'up to 120 million synapses' per chip (with the most compact, "
        "low-precision synapse encoding)", PUBLISHED),
    synaptic_memory_bits_per_core=Figure(
        128 * 1024 * 8, "bits (128 KiB)",
        "Assumed 128 KiB of synaptic memory per core. Loihi 1 has 16 MB of synaptic SRAM over 128 cores = "
        f"128 KiB per core ({_DAVIES.split(', Table')[0]}); Intel has not published Loihi 2's per-core split "
        "(its per-core SRAM is partitioned flexibly between synapses, neuron state and routing; launch "
        "coverage quotes 128 KB per core). Cross-check: 120 M one-bit synapses / 128 cores = 0.94 Mbit "
        "= 114 KiB per core", ASSUMED),
    weight_bits=Figure(
        8, "bits (mantissa, incl. sign if mixed)",
        "Lava 0.10 lava/utils/weightutils.py: static weights are clipped to 8 bits (+ sign) by SignMode and "
        "optimize_weight_bits(loihi2=True) returns a mantissa of num_weight_bits <= 8 bits; value = mantissa "
        "* 2**(8 - num_weight_bits + weight_exp + is_mixed) (Dense/Sparse docstrings). "
        f"{_BRIEF} lists Loihi 2 weight precision as configurable 1-8 bits", LAVA),
    weight_bits_plastic=Figure(
        (8, 9), "bits (single sign, mixed sign)",
        f"{_LAVA_CONST}: W_WEIGHTS_U = 8, W_WEIGHTS_S = 9; LearningConnectionModelBitApproximate saturates "
        "learned weights with clip_weights(num_bits=8): [0, 255] excitatory, [-255, 0] inhibitory, "
        "[-256, 255] mixed", LAVA),
    weight_exponent_range=Figure(
        (-8, 7), "(min, max) power of 2",
        "Assumed from Loihi 1 (NxSDK's 4-bit weight exponent, -8..7); Lava 0.10's Dense model applies any "
        "integer weight_exp as a shift of the summed input and does not state a hardware range", ASSUMED),
    tag_bits=Figure(9, "bits (signed)", f"{_LAVA_CONST}: W_TAG_1_U = 8, W_TAG_1_S = 9 (tag t)", LAVA),
    delay_tag_bits=Figure(
        8, "bits (unsigned)", f"{_LAVA_CONST}: W_TAG_2_U = 8; the fixed-point model clips d to [0, 255]", LAVA),
    trace_bits=Figure(
        7, "bits (unsigned, 0..127)",
        f"{_LAVA_CONST}: W_TRACE = 7 (x1, x2, y1, y2, y3); connection.py clips traces to [0, 2**7 - 1]", LAVA),
    trace_fraction_bits=Figure(
        8, "bits", f"{_LAVA_CONST}: W_TRACE_FRACTIONAL_PART = 8 (impulse fractions, added by stochastic "
        "rounding)", LAVA),
    trace_tau_max_steps=Figure(
        255, "steps",
        "Lava 0.10 lava/magma/core/model/py/connection.py, LearningConnectionModelBitApproximate: x1_tau ... "
        "y3_tau are LavaPyType(np.ndarray, int, precision=8), so a trace time constant is at most 2**8 - 1 "
        "steps (0 = no decay)", LAVA),
    accumulator_bits=Figure(
        16, "bits (signed)", f"{_LAVA_CONST}: W_ACCUMULATOR_U = 15, W_ACCUMULATOR_S = 16 (synaptic change "
        "accumulator)", LAVA),
    product_scale=Figure(
        "m * 2**e, m in [-8, 7], e in [-7, 8]", "",
        "Lava 0.10 lava/magma/core/learning/product_series.py: each product's constant is s_mantissa * "
        f"2**s_exp with 'Mantissa magnitude too large' unless -8 <= m < 8 and -7 <= e < 9; {_LAVA_CONST}: "
        "W_S_MANT = 4, W_CONST = 8 (additive constants in factors)", LAVA),
    t_epoch_range=Figure(
        (1, 63), "steps",
        f"{_LAVA_CONST}: W_EPOCH_TIME = 6 (width of the within-epoch spike time, which runs 1..t_epoch in "
        "connection.py), so t_epoch <= 2**6 - 1; Lava's LearningRule itself only requires t_epoch >= 1",
        DERIVED),
    u_exponent_range=Figure(
        (0, 9), "",
        "Lava 0.10 lava/magma/core/learning/learning_rule.py _validate_uk: 'uk' dependencies take one decimal "
        "digit k, and all targets must share it", LAVA),
    learning_engine=Figure(
        "sum of products: dependency (x0, y0, u) * constant m*2^e * factors (x1, x2, y1, y2, y3, w, t, d, "
        "x0, y0, each + an integer constant, or sgn(w|t|d + C))", "",
        "Lava 0.10 lava/magma/core/learning/product_series.py (Factor: 'state_var + C' or "
        "'sgn(w|d|t + C)'; Product: one dependency, a scaling factor and factors). No division by a "
        "variable, abs, exp, pow, min/max/clamp, nor anything across neurons (softmax, winner, sum_pre)", LAVA),
    weight_bounds=Figure(
        "by sign only: [0, inf), (-inf, 0] or unbounded (and the weight's bit range)", "",
        "Lava 0.10 connection.py: LearningConnectionModelFloat._saturate_synaptic_variable clips w only by "
        "SignMode (max(0, w) excitatory, min(0, w) inhibitory, none mixed); the fixed-point model adds "
        "clip_weights to the 8-bit range. There is no w_min/w_max parameter", LAVA),
    lif_decay_bits=Figure(
        12, "bits (du, dv in 0..4095, per 4096)", f"{_LAVA_LIF}: du, dv unsigned 12-bit; decay = (4096 - "
        "du - 1) / 4096 for the current (ds_offset = 1), (4096 - dv) / 4096 for the voltage", LAVA),
    lif_vth_bits=Figure(
        17, "bits (unsigned, 0..131071)", f"{_LAVA_LIF}: vth unsigned 17-bit, left-shifted by 6 like the "
        "synaptic input (act_shift = vth_shift = 6)", LAVA),
    lif_state_bits=Figure(24, "bits (u, v signed)", f"{_LAVA_LIF} / AbstractPyLifModelFixed: u, v 24-bit "
                          "(wrap around on overflow)", LAVA),
    lif_bias=Figure(
        "13-bit signed mantissa * 2**(3-bit exponent)", "", f"{_LAVA_LIF}: bias_mant signed 13-bit, "
        "bias_exp unsigned 3-bit", LAVA),
    lif_reset=Figure(
        "v -> 0 after a spike; fixed threshold", "", "Lava 0.10 lava/proc/lif/models.py: reset_voltage sets v "
        "to 0 where the neuron spiked; Lava's LIF process has no threshold adaptation", LAVA),
    energy_per_synop_J=Figure(
        23.6e-12, "J per synaptic spike operation",
        f"{_DAVIES}: minimum energy per synaptic spike op 23.6 pJ. Loihi 1 figure; no per-operation energies "
        "for Loihi 2 were found in Intel's publications, so the Loihi 1 value is assumed", ASSUMED),
    energy_per_neuron_update_J=Figure(
        81e-12, "J per neuron update",
        f"{_DAVIES}: energy per neuron update 81 pJ active / 52 pJ inactive; the active value is used for every "
        "neuron every step (upper bound). Loihi 1 figure, assumed for Loihi 2", ASSUMED),
    energy_per_synaptic_update_J=Figure(
        120e-12, "J per synaptic update",
        f"{_DAVIES}: energy per synaptic update (pairwise STDP) 120 pJ; used for every synapse the learning "
        "engine updates. Loihi 1 figure, assumed for Loihi 2 and for rules other than pairwise STDP",
        ASSUMED),
    rule_ops=LOIHI_RULE_OPS,
    sign_bounded_weights=True,
    lava_lif_only=True,
    fixed_point=True,
    notes=(
        "Input populations are assumed to be fed by the host or the embedded x86 cores and to use no neuro core.",
        "A core holds neurons of one population with their whole fan-in (as Lava maps a Dense onto its post "
        "neurons); synapses are stored densely, without index or routing overhead.",
    ),
)

_FLOAT_SRC = "generic float reference (the torch engine's semantics): no limit by definition"
_NONE = Figure(None, "", _FLOAT_SRC, ASSUMED)

FLOAT_TARGET = Target(
    name="float",
    description="a generic float machine without limits (the torch engine's semantics), for comparison",
    chips=1,
    neuro_cores_per_chip=_NONE,
    embedded_cpus_per_chip=_NONE,
    neurons_per_core=_NONE,
    neurons_per_chip=_NONE,
    synapses_per_chip=_NONE,
    synaptic_memory_bits_per_core=_NONE,
    weight_bits=Figure(32, "bits (float32)", "the torch engine's default dtype, float32", ASSUMED),
    weight_bits_plastic=Figure((32, 32), "bits (float32)", "the torch engine's default dtype, float32", ASSUMED),
    weight_exponent_range=_NONE,
    tag_bits=Figure(32, "bits (float32)", "the torch engine's default dtype, float32", ASSUMED),
    delay_tag_bits=Figure(32, "bits (float32)", "the torch engine's default dtype, float32", ASSUMED),
    trace_bits=Figure(32, "bits (float32)", "the torch engine's default dtype, float32", ASSUMED),
    trace_fraction_bits=_NONE,
    trace_tau_max_steps=_NONE,
    accumulator_bits=_NONE,
    product_scale=Figure("any float", "", _FLOAT_SRC, ASSUMED),
    t_epoch_range=Figure((1, None), "steps", _FLOAT_SRC, ASSUMED),
    u_exponent_range=Figure((0, None), "", _FLOAT_SRC, ASSUMED),
    learning_engine=Figure("every operation of the rule language", "", "neuro.expr.OPS (the torch engine)", ASSUMED),
    weight_bounds=Figure("any [w_min, w_max]", "", "neuro.rule.LearningRule (the torch engine)", ASSUMED),
    lif_decay_bits=_NONE,
    lif_vth_bits=_NONE,
    lif_state_bits=_NONE,
    lif_bias=_NONE,
    lif_reset=Figure("any v_reset, adaptive threshold", "", "neuro.neurons (the torch engine)", ASSUMED),
    energy_per_synop_J=Figure(None, "J", "no energy model for the generic float target", ASSUMED),
    energy_per_neuron_update_J=Figure(None, "J", "no energy model for the generic float target", ASSUMED),
    energy_per_synaptic_update_J=Figure(None, "J", "no energy model for the generic float target", ASSUMED),
)

TARGETS: Dict[str, Target] = {LOIHI2.name: LOIHI2, FLOAT_TARGET.name: FLOAT_TARGET}


def get_target(name: str) -> Target:
    """A target by name (``"loihi2"``, ``"float"``)."""
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown target {name!r}; known: {', '.join(TARGETS)}") from None


__all__ = [
    "Figure",
    "Target",
    "LOIHI2",
    "FLOAT_TARGET",
    "TARGETS",
    "get_target",
    "MEASURED",
    "PUBLISHED",
    "LAVA",
    "DERIVED",
    "ASSUMED",
]

"""The torch engine in fixed-point mode: Lava's bit-accurate integer LIF and Dense, batched.

:func:`to_fixed_point` compiles a :class:`neuro.Network` (LIF/IAF populations,
static projections) to Lava's integer parameters using :mod:`hardware.quantize`;
:class:`FixedPointSimulator` runs those integer dynamics on int64 torch tensors
with a leading replica dimension ``R``, reproducing, operation for operation,
Lava 0.10's ``fixed_pt`` models (``PyLifModelBitAcc``, ``PyDenseModelBitAcc``,
``PySendModelFixed``); the equations, with file:line references, are in
``docs/lava_fixed_point.md``. ``tests/test_fixed_point.py`` checks spikes, ``u``
and ``v`` against Lava's ``Loihi2SimCfg(select_tag="fixed_pt")`` with
``np.array_equal``.

Units: a population's integer unit is ``1 / scale`` of a float weight (the
``scale`` of :func:`hardware.quantize.population_scale`, lowered by
``headroom_bits`` so that bursts of input fit Lava's 24-bit ``u`` and ``v``).
Lava shifts the synaptic input and the threshold left by 6 bits, so ``u`` and
``v`` are in units of ``1 / (64 * scale)``; our float membrane potential is
``v * dv_float / (64 * scale)`` (:attr:`FixedPointPopulation.v_to_float`).

Plastic projections (2-factor rules that :func:`hardware.loihi_rules.lower_products`
lowers) run Lava's fixed-point learning engine (``PyLearningDenseModelBitApproximate``
= ``LearningConnectionModelBitApproximate``): 7-bit traces with stochastic rounding,
the 16-bit product accumulator, stochastic rounding of the weights, and Lava's three
scalar random streams (numpy PCG64, reproduced call for call). The fixed-point form of a
rule (:class:`FixedPointLearning`, built by :func:`fixed_point_rule`) is defined once here:

* trace unit ``trace_scale = 2**k_t`` integer trace units per float trace unit, with
  ``k_t = floor(log2(127 / max impulse)) - trace_headroom_bits``; Lava's impulse is
  ``impulse * trace_scale`` (Lava splits it into an integer and 1/256 fraction);
* trace taus in steps ``round(tau / dt)`` (``math.inf``: no decay; Lava decays by
  ``exp(-1/tau_steps)`` with stochastic rounding; its process model declares the taus
  as 8-bit integers, ``x1_tau: LavaPyType(np.ndarray, int, precision=8)``);
* weight unit ``weight_unit = scale / 2**weight_exp`` Lava weight integers per float
  weight, a power of two: the post population's scale is rounded down to a power of two
  when it has a plastic input, and ``weight_exp`` leaves ``weight_headroom_bits`` of the
  8-bit range free for growth; weights are full 8-bit integers (``num_weight_bits=8``);
  tags ``t``/``d`` use the weight unit;
* each lowered product ``c * D * prod(f)`` becomes ``c * weight_unit / prod(unit(f))`` with
  bracket constants ``C * unit(var)`` (``unit`` = ``trace_scale`` for traces,
  ``weight_unit`` for ``w t d``, 1 for ``x0 y0``): the same lowering, rescaled, still of the
  form ``m * 2**e``, or :class:`FixedPointError` says which product leaves Lava's range.

3-factor rules (``Loihi3FLearningRule``): the post population sends y1..y3 every step (in Lava a
``FactorLIF`` with its ``fixed_pt`` model); a ``third_factor``-driven ``y`` is
``clip(rint(value * trace_scale), -128, 127)`` (:meth:`FixedPointPopulation.third_factor_integers`),
a spike ``y`` the neuron's integer trace (:attr:`FixedPointLearning.post_traces`); Lava replaces the
post traces with them and still decays them with tau ``65535`` in the learning phase.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Union

import numpy as np
import torch
from lava.utils.weightutils import SignMode, clip_weights, truncate_weights

from hardware.loihi_rules import (  # noqa: I001
    LoihiFactor,
    _odd_part,
    LoihiLoweringError,
    LoihiProduct,
    format_products,
    impulse_errors,
    loihi_scaling,
    lower_products,
    needs_post_factors,
    weight_sign_mode,
)
from hardware.quantize import QuantizedWeights, _exponent_range, lif_fixed_point, population_scale, quantize_weights
from hardware.targets import LOIHI2, Target
from neuro import IAF, LIF, InputPopulation, Network, Recording, Simulator
from neuro.engine import TensorLike, record_run, split_inputs
from neuro.expr import POST_TRACES, PRE_TRACES
from neuro.rule import LearningRule

# Lava 0.10 lava/proc/lif/models.py, AbstractPyLifModelFixed.__init__ (lines 94-108).
DS_OFFSET = 1  # added to du: current decay (4096 - du - 1) / 4096
DM_OFFSET = 0  # added to dv
DECAY_SHIFT = 12
DECAY_UNITY = 1 << DECAY_SHIFT
VTH_SHIFT = 6
ACT_SHIFT = 6
UV_BITS = 24
MAX_UV = 1 << (UV_BITS - 1)


class FixedPointError(ValueError):
    """The network cannot be compiled to Lava's fixed-point models; the message says why."""


@dataclass
class FixedPointPopulation:
    """Lava ``LIF`` integer parameters (``PyLifModelBitAcc``) of one population."""

    name: str
    n: int
    du: int
    dv: int
    vth: int
    bias_mant: int
    bias_exp: int
    u0: int
    v0: int
    scale: float
    #: our float membrane potential per integer unit of Lava's ``v``
    v_to_float: float
    notes: List[str] = field(default_factory=list)
    #: 3-factor post population (a ``FactorLIF`` in Lava): what it sends as y1..y3, see
    #: :attr:`FixedPointLearning.post_traces`; ``None`` for a plain LIF
    factor_traces: Optional[Dict[str, tuple]] = None
    #: integer units per float unit of the driven values (the 3-factor rule's ``trace_scale``)
    factor_unit: Optional[float] = None

    def third_factor_integers(self, values) -> np.ndarray:
        """Float third-factor values (any shape) as the 7-bit integers the post neuron sends as a driven
        ``y``: ``clip(round(values * factor_unit), -128, 127)`` (half to even), int64. What a Lava run
        gives ``FactorLIF.a_third_factor_in`` and what :class:`FixedPointSimulator` uses."""
        if self.factor_unit is None:
            raise FixedPointError(f"population {self.name!r} reads no third factor")
        v = np.rint(np.asarray(values, dtype=np.float64) * self.factor_unit)
        return np.clip(v, -(1 << W_TRACE), TRACE_MAX).astype(np.int64)

    def lava_kwargs(self) -> Dict[str, object]:
        """Keyword arguments for ``lava.proc.lif.process.LIF``."""
        return dict(
            shape=(self.n,), du=self.du, dv=self.dv, vth=self.vth, bias_mant=self.bias_mant,
            bias_exp=self.bias_exp, u=self.u0, v=self.v0,
        )


@dataclass
class FixedPointProjection:
    """Lava ``Dense`` integer parameters (``PyDenseModelBitAcc``) of one static projection."""

    name: str
    pre: str
    post: str
    #: what to give ``Dense(weights=...)``: 8-bit integers (``mantissa << (8 - num_weight_bits + mixed)``)
    lava_weights: np.ndarray
    #: what Lava's model multiplies with: ``truncate_weights(clip_weights(lava_weights))``
    weights: np.ndarray
    weight_exp: int
    num_weight_bits: int
    sign_mode: SignMode
    quantized: Optional[QuantizedWeights]
    #: the fixed-point learning rule of a plastic projection (Lava ``LearningDense``), else ``None``
    learning: Optional[FixedPointLearning] = None

    def lava_kwargs(self) -> Dict[str, object]:
        """Keyword arguments for ``lava.proc.dense.process.Dense`` (``LearningDense`` when plastic:
        the ``learning_rule`` is included)."""
        kw: Dict[str, object] = dict(
            weights=self.lava_weights.copy(), weight_exp=self.weight_exp,
            num_weight_bits=self.num_weight_bits, sign_mode=self.sign_mode,
        )
        if self.learning is not None:
            kw["learning_rule"] = self.learning.lava_rule()
        return kw


# Lava 0.10 lava/magma/core/learning/constants.py
W_TRACE = 7
TRACE_MAX = (1 << W_TRACE) - 1
W_TRACE_FRACTIONAL_PART = 8
W_ACCUMULATOR_U = 15
ACC_MIN, ACC_MAX = -(1 << W_ACCUMULATOR_U) - 1, (1 << W_ACCUMULATOR_U) - 1
W_S_MANT = 4
SYN_SHIFT = 7  # W_ACCUMULATOR_S - W_SYN_VAR_S (16 - 9) for weights, tag_1 and tag_2
W_CONST = 8
FACTOR_WIDTH = {"x0": 1, "y0": 1, "x1": 7, "x2": 7, "y1": 7, "y2": 7, "y3": 7, "w": 9, "t": 9, "d": 9, "C": W_CONST}
#: Lava's names of the synaptic variables of each target
TARGET_VAR = {"dw": "weights", "dt": "tag_1", "dd": "tag_2"}
SYN_VAR = {"w": "weights", "t": "tag_1", "d": "tag_2"}
#: Lava's ConnVarRandom default seed (lava/magma/core/learning/random.py), not the rule's rng_seed
CONN_RANDOM_SEED = 2
#: Loihi3FLearningRule's y taus (``np.iinfo(np.uint16).max``): Lava still decays the received y with them
LOIHI3F_Y_TAU = 65535


@dataclass(frozen=True)
class LavaProduct:
    """One product as Lava's ``ProductSeries`` parser stores it (``product_series.py:716-738``).

    ``value = (dep * prod(clip(f)) * s_mantissa) >> shift << s_exp`` in units of
    ``2**-7`` of the synaptic variable; ``factors`` are ``(var, const, sgn)`` with the
    constant in integer units.
    """

    dependency: str
    s_mantissa: int
    s_exp: int
    factors: tuple
    shift: int


def lava_product(p: LoihiProduct) -> LavaProduct:
    """What Lava's parser makes of ``p.text()``: mantissa and exponent normalised as in
    ``product_series.py:716-718`` (an integer literal ``12`` is mantissa 12, exponent 0,
    then halved while ``|m| > 7`` and even; ``(K - v)`` negates the mantissa and keeps ``v + C``)."""
    sign = -1 if p.coef < 0 else 1
    a = abs(p.coef)
    if a == 1.0:
        mant, exp = 1, 0
    else:
        m, e = _odd_part(a)
        mant, exp = (m * 2**e, 0) if e >= 0 else (m, e)
    mant *= sign
    while abs(mant) > 7 and mant % 2 == 0 and exp < 8:
        mant, exp = mant // 2, exp + 1
    if not (-8 <= mant < 8 and -7 <= exp < 9):
        raise FixedPointError(f"coefficient {p.coef!r} is no Loihi scaling constant m * 2**e")
    factors = tuple((f.var, 0.0 if f.const is None else float(f.const), bool(f.sgn)) for f in p.factors)
    width = sum(FACTOR_WIDTH[f.var] for f in p.factors) + W_S_MANT
    return LavaProduct(p.dependency, mant, exp + 7, factors, max(0, width - W_ACCUMULATOR_U))


def _constant_notes(product: str, var: str, const: float) -> List[str]:
    """What a bracket constant ``(var + const)``, in integer units, does that Loihi 2's would not: Lava's
    bit-approximate engine adds any float and truncates the sum, the chip holds an integer of
    ``W_CONST`` bits (sign apart)."""
    out = []
    if const != math.floor(const):
        out.append(f"in {product!r} the constant added to {var} is {const:g} in integer units: Lava adds it as "
                   f"a float and truncates the sum, Loihi 2 holds integer constants (make it an integer by the "
                   "choice of constant, trace_scale or weight headroom)")
    if abs(const) >= 2**W_CONST:
        out.append(f"in {product!r} the constant added to {var} is {const:g} in integer units, beyond the "
                   f"{W_CONST}-bit constants of Loihi 2's learning engine (|C| < {2**W_CONST})")
    return out


@dataclass
class FixedPointLearning:
    """The fixed-point form of a 2-factor rule on one projection (see the module docstring).

    ``products`` are the rule's lowered products rescaled to integer units; ``strings``
    their Lava text (``format_products``), ``impulses``/``taus`` Lava's trace parameters
    (trace units, steps), ``lava_products`` what the accumulator evaluates.
    """

    rule: LearningRule
    products: Dict[str, tuple]
    strings: Dict[str, str]
    impulses: Dict[str, float]
    taus: Dict[str, float]
    t_epoch: int
    u_exponent: Optional[int]
    rng_seed: int
    trace_scale: float
    weight_unit: float
    lava_products: Dict[str, tuple]
    notes: List[str] = field(default_factory=list)
    #: 3-factor rule (``Loihi3FLearningRule``): the post neuron sends y1..y3 every step, by name
    #: ``("driven", "third_factor")`` or ``("spike", keep, impulse)`` (the neuron's integer spike trace
    #: ``y = clip(((y * keep) >> 12) + impulse * spike, 0, 127)``, ``keep = round(4096 exp(-dt/tau))``,
    #: ``impulse = round(impulse * trace_scale)``); empty for a 2-factor rule
    post_traces: Dict[str, tuple] = field(default_factory=dict)

    @property
    def three_factor(self) -> bool:
        return bool(self.post_traces)

    def lava_rule_kwargs(self) -> Dict[str, object]:
        """Keyword arguments for ``Loihi2FLearningRule`` (``Loihi3FLearningRule``: no y parameters)."""
        kw: Dict[str, object] = dict(self.strings)
        for name in PRE_TRACES + (() if self.three_factor else POST_TRACES):
            kw[f"{name}_impulse"] = self.impulses.get(name, 0.0)
            kw[f"{name}_tau"] = self.taus.get(name, 0)
        kw["t_epoch"] = self.t_epoch
        kw["rng_seed"] = self.rng_seed
        return kw

    def lava_rule(self):
        """A ``Loihi2FLearningRule`` (``Loihi3FLearningRule`` for a 3-factor rule) with these integer parameters."""
        from lava.magma.core.learning.learning_rule import Loihi2FLearningRule, Loihi3FLearningRule

        cls = Loihi3FLearningRule if self.three_factor else Loihi2FLearningRule
        return cls(**self.lava_rule_kwargs())


def _power_of_two_below(x: float) -> float:
    return 2.0 ** math.floor(math.log2(x))


def fixed_point_rule(
    rule: LearningRule,
    dt: float,
    weight_unit: float,
    trace_headroom_bits: int = 2,
    rng_seed: int = 0,
    trace_scale: Optional[float] = None,
) -> FixedPointLearning:
    """The fixed-point form of ``rule`` for weights of ``weight_unit`` Lava integers per float unit.

    ``weight_unit`` and ``trace_scale`` (default: the largest power of two that puts the
    largest impulse at ``127 / 2**trace_headroom_bits`` or below) must be powers of two so
    that every rescaled coefficient is still ``m * 2**e``.
    """
    three = needs_post_factors(rule)
    if three:
        for name in POST_TRACES:
            tr = rule.traces.get(name)
            if tr is not None and tr.driven_by not in (None, "third_factor"):
                raise FixedPointError(
                    f"rule {rule.name!r}: {name} driven by {tr.driven_by!r} (3-factor path): fixed point implements "
                    "only driven_by='third_factor' (an integer scaling of v or i into 7-bit traces is not defined)"
                )
    for error in impulse_errors(rule):
        raise FixedPointError(str(error))
    try:
        lowered = lower_products(rule)
    except LoihiLoweringError as exc:
        raise FixedPointError(str(exc)) from exc
    used = {f.var for ps in lowered.values() for p in ps for f in p.factors}
    spiking = {k: tr for k, tr in rule.traces.items() if tr.driven_by is None}
    if trace_scale is None:
        imp = max([tr.impulse for k, tr in spiking.items() if k in used] or [1.0])
        imp = imp if imp > 0 else 1.0
        trace_scale = 2.0 ** (math.floor(math.log2(TRACE_MAX / imp)) - trace_headroom_bits)
    for what, v in (("weight_unit", weight_unit), ("trace_scale", trace_scale)):
        if not (v > 0 and math.isfinite(v) and _power_of_two_below(v) == v):
            raise FixedPointError(f"{what} must be a power of two, got {v!r}")
    notes: List[str] = []
    impulses, taus = {}, {}
    post_traces: Dict[str, tuple] = {}
    if three:
        # Loihi3FLearningRule: y impulses 0, y taus 2**16 - 1 (learning_rule.py); the post neuron sends y.
        for name in POST_TRACES:
            impulses[name], taus[name] = 0.0, LOIHI3F_Y_TAU
            tr = rule.traces.get(name)
            if tr is None:
                continue
            if tr.driven_by is not None:
                post_traces[name] = ("driven", tr.driven_by)
                continue
            imp = tr.impulse * trace_scale
            if imp != round(imp) or imp > TRACE_MAX:
                raise FixedPointError(
                    f"rule {rule.name!r}: {name} impulse {tr.impulse} * trace_scale {trace_scale:g} must be an integer "
                    "<= 127 (the post neuron keeps 3-factor spike traces as 7-bit integers)"
                )
            keep = DECAY_UNITY if tr.tau == math.inf else int(round(DECAY_UNITY * math.exp(-dt / tr.tau)))
            post_traces[name] = ("spike", keep, int(imp))
        spiking = {k: v for k, v in spiking.items() if k in PRE_TRACES}
    for name, tr in spiking.items():
        impulses[name] = tr.impulse * trace_scale
        if impulses[name] > TRACE_MAX:
            raise FixedPointError(f"{name} impulse {tr.impulse} * trace_scale {trace_scale} exceeds 7-bit traces")
        frac = impulses[name] - math.floor(impulses[name])
        if frac * 2**W_TRACE_FRACTIONAL_PART != round(frac * 2**W_TRACE_FRACTIONAL_PART):
            notes.append(f"{name} impulse {impulses[name]!r} rounded to 1/256 by Lava")
        if tr.tau == math.inf:
            taus[name] = math.inf
        else:
            steps = tr.tau / dt
            taus[name] = max(1, int(round(steps)))
            if abs(taus[name] - steps) > 1e-6 * steps:
                notes.append(f"{name} tau {tr.tau} s = {steps:g} steps rounded to {taus[name]}")
    unit = {k: trace_scale for k in PRE_TRACES + POST_TRACES}
    unit.update({k: weight_unit for k in ("w", "t", "d")})
    unit.update({"x0": 1.0, "y0": 1.0})
    products: Dict[str, tuple] = {}
    for target, ps in lowered.items():
        out = []
        for p in ps:
            coef = p.coef * weight_unit
            factors = []
            for f in p.factors:
                if not f.sgn:
                    coef /= unit[f.var]
                const = None if f.const is None else f.const * unit[f.var]
                if const is not None:
                    notes.extend(_constant_notes(p.text(first=True), f.var, const))
                factors.append(LoihiFactor(f.var, const, f.sgn))
            q = LoihiProduct(coef, p.dependency, tuple(factors))
            if loihi_scaling(coef) is None:
                raise FixedPointError(
                    f"rule {rule.name!r}, {target}: the product {p.text(first=True)!r} becomes "
                    f"{q.text(first=True)!r} in integer units (weight_unit={weight_unit:g}, "
                    f"trace_scale={trace_scale:g}): its coefficient {coef!r} is not m * 2**e with m in "
                    "[-8, 7], e in [-7, 8]; change the trace scale (trace_headroom_bits) or the weight "
                    "headroom (weight_headroom_bits)"
                )
            out.append(q)
        products[target] = tuple(out)
    u_exp = rule.u_exponent if any(p.dependency == "u" for ps in products.values() for p in ps) else None
    return FixedPointLearning(
        rule=rule,
        products=products,
        strings={k: format_products(v, rule.u_exponent) for k, v in products.items()},
        impulses=impulses,
        taus=taus,
        t_epoch=int(rule.t_epoch),
        u_exponent=u_exp,
        rng_seed=int(rng_seed),
        trace_scale=float(trace_scale),
        weight_unit=float(weight_unit),
        lava_products={k: tuple(lava_product(p) for p in v) for k, v in products.items()},
        notes=notes,
        post_traces=post_traces,
    )


@dataclass
class FixedPointNetwork:
    """A network compiled to Lava's fixed-point parameters (see :func:`to_fixed_point`)."""

    network: Network
    target: Target
    populations: Dict[str, FixedPointPopulation]
    projections: Dict[str, FixedPointProjection]
    inputs: List[str]


def to_fixed_point(
    network: Network,
    target: Target = LOIHI2,
    headroom_bits: int = 4,
    scales: Optional[Mapping[str, float]] = None,
    weight_headroom_bits: int = 1,
    trace_headroom_bits: int = 2,
    rng_seed: int = 0,
    rng_seeds: Optional[Mapping[str, int]] = None,
) -> FixedPointNetwork:
    """Compile ``network`` to Lava's fixed-point LIF/Dense parameters.

    Parameters:
        network: LIF/IAF populations, input populations and static projections
            with shared ``(post, pre)`` weights.
        target: the fixed-point target (weight exponent range, threshold bits).
        headroom_bits: each population's scale is the largest representable one
            (:func:`hardware.quantize.population_scale`: threshold at 17 bits or
            weights at the largest exponent) divided by ``2**headroom_bits``, so
            summed input and the membrane potential stay inside Lava's 24-bit
            ``u``/``v`` (which wrap / saturate).
        scales: explicit integer units per float unit, by population name.

    Per population: ``du = round(dt/tau_syn * 4096) - 1``, ``dv = round(dt/tau_mem * 4096)``,
    ``vth = round(v_th / dv_float * scale)``, bias ``v_leak * 64 * scale`` and
    ``v0 = round(v_leak / dv_float * 64 * scale)`` (Lava adds the bias to ``v``,
    which unlike the input and threshold is not shifted by 6 bits). Per
    projection: :func:`hardware.quantize.quantize_weights` at the post population's scale.

    Plastic projections (2-factor rules; see the module docstring for the mapping): the
    post population's scale is rounded down to a power of two, the weights are 8-bit
    integers ``round(w * scale / 2**weight_exp)`` with ``weight_exp`` the smallest exponent
    at which the initial weights fill at most ``2**-weight_headroom_bits`` of the 8-bit range,
    and the rule is :func:`fixed_point_rule` with ``trace_headroom_bits`` and the Lava
    ``rng_seed`` (``rng_seeds[name]`` or ``rng_seed``).
    """
    rng_seeds = dict(rng_seeds or {})
    if network.dt <= 0:
        raise FixedPointError("dt must be positive")
    scales = dict(scales or {})
    dt = network.dt
    pops: Dict[str, FixedPointPopulation] = {}
    inputs: List[str] = []
    plastic_posts = {proj.post for proj in network.projections.values() if proj.rule is not None}
    for proj in network.projections.values():
        if np.ndim(proj.weights) != 2:
            raise FixedPointError(f"projection {proj.name!r}: fixed point needs shared (post, pre) weights")
        if proj.mask is not None and proj.rule is not None:
            raise FixedPointError(
                f"projection {proj.name!r}: sparse plastic connectivity (mask) is not modelled in fixed point "
                "(Lava's LearningDense would grow the missing synapses)"
            )
    for proj in network.learning_ties():
        raise FixedPointError(
            f"projection {proj.name!r} is tied to {proj.tie.source!r}, which learns: the fixed-point model "
            "does not rewrite tied weights (on Loihi 2 the host would have to)"
        )
    for name, pop in network.populations.items():
        if isinstance(pop, InputPopulation):
            inputs.append(name)
            continue
        m = pop.model
        if not isinstance(m, (LIF, IAF)):
            raise FixedPointError(f"population {name!r}: no Lava LIF mapping for {type(m).__name__}")
        if m.v_reset != 0.0:
            raise FixedPointError(f"population {name!r}: Lava's LIF resets to 0, got v_reset={m.v_reset}")
        if isinstance(m, LIF) and m.theta_plus != 0.0:
            raise FixedPointError(f"population {name!r}: Lava's LIF has no adaptive threshold")
        if isinstance(m, LIF) and m.beyond_lava():
            raise FixedPointError(
                f"population {name!r}: {'; '.join(m.beyond_lava())}; Lava's fixed-point LIF is a standard LIF"
            )
        incoming = [(np.asarray(p.weights, dtype=np.float64), None) for p in network.incoming(name)]
        if name in scales:
            scale = float(scales[name])
        else:
            scale = population_scale(m, dt, incoming, target) / 2.0**headroom_bits
            if name in plastic_posts:
                # Plastic inputs: the weight unit scale / 2**weight_exp must be a power of two.
                scale = _power_of_two_below(scale)
        if name in plastic_posts and _power_of_two_below(scale) != scale:
            raise FixedPointError(f"population {name!r} has plastic inputs: its scale must be a power of two, got {scale!r}")
        lif = lif_fixed_point(m, dt, scale, target)
        if lif.problems:
            raise FixedPointError(f"population {name!r}: " + "; ".join(lif.problems))
        if isinstance(m, LIF):
            dv_float = dt / m.tau_mem
            bias_mant, bias_exp = lif.bias_mant, lif.bias_exp
            v0 = int(round(m.v_leak / dv_float * (1 << VTH_SHIFT) * scale))
        else:
            dv_float, bias_mant, bias_exp, v0 = 1.0, 0, 0, 0
        if abs(v0) >= MAX_UV:
            raise FixedPointError(f"population {name!r}: initial v {v0} exceeds Lava's 24-bit v")
        pops[name] = FixedPointPopulation(
            name=name, n=pop.n, du=lif.du, dv=lif.dv, vth=lif.vth, bias_mant=bias_mant, bias_exp=bias_exp,
            u0=0, v0=v0, scale=scale, v_to_float=dv_float / ((1 << VTH_SHIFT) * scale), notes=list(lif.notes),
        )
    projs: Dict[str, FixedPointProjection] = {}
    for name, proj in network.projections.items():
        if proj.post not in pops:
            raise FixedPointError(f"projection {name!r}: post {proj.post!r} must be a neuron population")
        w = np.asarray(proj.weights, dtype=np.float64)
        if proj.rule is not None:
            projs[name] = _plastic_projection(
                name, proj, w, pops[proj.post].scale, target, dt, weight_headroom_bits, trace_headroom_bits,
                int(rng_seeds.get(name, rng_seed)),
            )
            continue
        q = quantize_weights(w, target, scale=pops[proj.post].scale)  # sign mode from the values
        if q.saturated:
            raise FixedPointError(f"projection {name!r}: " + "; ".join(q.notes))
        lava_w = q.lava_weights
        # Exactly what PyDenseModelBitAcc.run_spk does to the weights on its first step.
        eff = truncate_weights(clip_weights(lava_w, q.sign_mode, num_bits=8), q.sign_mode, q.num_weight_bits)
        projs[name] = FixedPointProjection(
            name=name, pre=proj.pre, post=proj.post, lava_weights=lava_w, weights=np.asarray(eff, dtype=np.int64),
            weight_exp=int(q.exponent), num_weight_bits=int(q.num_weight_bits), sign_mode=q.sign_mode, quantized=q,
        )
    for name, proj in projs.items():
        L = proj.learning
        if L is None or not L.three_factor:
            continue
        pop = pops[proj.post]
        if pop.factor_traces is not None and (pop.factor_traces, pop.factor_unit) != (L.post_traces, L.trace_scale):
            raise FixedPointError(
                f"population {proj.post!r}: 3-factor projections with different post traces or trace scales "
                "(one neuron sends one set of y1..y3)"
            )
        pop.factor_traces, pop.factor_unit = dict(L.post_traces), L.trace_scale
    for name, pop in pops.items():
        if pop.factor_traces is not None and any(
            p.post == name and (p.learning is None or not p.learning.three_factor) and p.learning is not None
            for p in projs.values()
        ):
            raise FixedPointError(f"population {name!r}: mixes 2-factor and 3-factor plastic inputs")
    return FixedPointNetwork(network=network, target=target, populations=pops, projections=projs, inputs=inputs)


_SIGN_RANGE = {SignMode.EXCITATORY: (0, 255), SignMode.INHIBITORY: (-255, 0), SignMode.MIXED: (-256, 255)}


def _plastic_projection(
    name: str, proj, w: np.ndarray, scale: float, target: Target, dt: float,
    weight_headroom_bits: int, trace_headroom_bits: int, rng_seed: int,
) -> FixedPointProjection:
    """A ``LearningDense``: 8-bit weights (``num_weight_bits=8``) at a power-of-two weight unit."""
    rule = proj.rule
    try:
        mode = weight_sign_mode(rule)
    except LoihiLoweringError as exc:
        raise FixedPointError(str(exc)) from exc
    sign_mode = {"mixed": SignMode.MIXED, "excitatory": SignMode.EXCITATORY, "inhibitory": SignMode.INHIBITORY}[mode]
    lo, hi = _SIGN_RANGE[sign_mode]
    if (sign_mode == SignMode.EXCITATORY and w.min() < 0) or (sign_mode == SignMode.INHIBITORY and w.max() > 0):
        raise FixedPointError(f"projection {name!r}: initial weights violate the rule's sign ({mode})")
    e_min, e_max = _exponent_range(target)
    big = float(np.max(np.abs(w))) * scale if w.size else 0.0
    # 8-bit magnitudes in every sign mode (INHIBITORY's range is [-255, 0]: not hi + 1 = 1)
    room = 2.0**8 / 2.0**weight_headroom_bits
    e = math.ceil(math.log2(big / room) - 1e-12) if big > 0 else 0
    e = int(min(max(e, e_min), e_max))
    mixed = int(sign_mode == SignMode.MIXED)
    step = 2**mixed  # Lava's first-step truncate_weights clears the lowest bit of mixed weights
    dense = np.rint(w * scale / 2.0**e / step) * step
    if dense.size and (dense.max() > hi or dense.min() < lo):
        raise FixedPointError(f"projection {name!r}: weights do not fit 8 bits at the largest weight exponent")
    dense = dense.astype(np.int32)
    eff = truncate_weights(dense, sign_mode, 8)  # PyLearningDenseModelBitApproximate.run_spk, first step
    assert np.array_equal(eff, dense)
    learning = fixed_point_rule(
        rule, dt, weight_unit=scale / 2.0**e, trace_headroom_bits=trace_headroom_bits, rng_seed=rng_seed
    )
    return FixedPointProjection(
        name=name, pre=proj.pre, post=proj.post, lava_weights=dense, weights=np.asarray(eff, dtype=np.int64),
        weight_exp=e, num_weight_bits=8, sign_mode=sign_mode, quantized=None, learning=learning,
    )


def _wrap32(x: torch.Tensor) -> torch.Tensor:
    """Two's-complement int32 wrap of an int64 tensor (what numpy's int32 arithmetic does)."""
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _decay(x: torch.Tensor, keep: int) -> torch.Tensor:
    """``sign(x * keep) * (|x * keep| >> 12)``, i.e. the product rounded toward zero (models.py:149-153)."""
    return _wrap32(torch.div(x * keep, DECAY_UNITY, rounding_mode="trunc"))


class LavaLearningRandoms:
    """Lava's three scalar random streams of one learning connection (``learning/random.py``).

    ``x``/``y``: ``TraceRandom(rng_seed, rng_seed + 1)`` / ``(rng_seed + 2, rng_seed + 3)``,
    each holding ``decay = rng.random(1)[0]`` and ``impulse = rng.integers(0, 128, size=1)[0]``
    (drawn one at a time, exactly as Lava calls numpy: a bulk draw would differ);
    ``syn``: ``ConnVarRandom()`` with numpy seed 2 whatever the rule's seed.
    """

    def __init__(self, rng_seed: int) -> None:
        self._rngs = [np.random.default_rng(rng_seed + k) for k in range(4)]
        self._syn_rng = np.random.default_rng(CONN_RANDOM_SEED)
        self.syn = float(self._syn_rng.random(1)[0])
        self._draw()

    def _draw(self) -> None:
        xd, xi, yd, yi = self._rngs
        self.x_decay = float(xd.random(1)[0])
        self.x_impulse = int(xi.integers(0, 2**W_TRACE, size=1, dtype=int)[0])
        self.y_decay = float(yd.random(1)[0])
        self.y_impulse = int(yi.integers(0, 2**W_TRACE, size=1, dtype=int)[0])

    def advance_traces(self) -> None:
        """``_update_trace_randoms``: x then y, each decay then impulse."""
        self._draw()

    def advance_synaptic(self) -> None:
        self.syn = float(self._syn_rng.random(1)[0])


def _split_impulse(impulse: float):
    """Lava's ``_decompose_impulses``: ``floor`` and ``round(frac * 256)``."""
    i = np.floor(np.float64(impulse))
    return int(i), int(np.round((np.float64(impulse) - i) * 2**W_TRACE_FRACTIONAL_PART))


class _PlasticState:
    """Traces, spike times, synaptic variables and random streams of one plastic projection."""

    def __init__(self, proj: FixedPointProjection, n_pre: int, n_post: int, replicas: int, device) -> None:
        L = proj.learning
        self.learning = L
        i64 = dict(dtype=torch.int64, device=device)
        self.x = torch.zeros(replicas, 2, n_pre, **i64)
        self.y = torch.zeros(replicas, 3, n_post, **i64)
        self.tx = torch.zeros(replicas, n_pre, **i64)
        self.ty = torch.zeros(replicas, n_post, **i64)
        w = torch.as_tensor(proj.weights, **i64)
        self.vars = {
            "weights": w.expand(replicas, *w.shape).clone(),
            "tag_1": torch.zeros(replicas, *w.shape, **i64),
            "tag_2": torch.zeros(replicas, *w.shape, **i64),
        }
        self.randoms = LavaLearningRandoms(L.rng_seed)
        imp = [_split_impulse(L.impulses.get(k, 0.0)) for k in PRE_TRACES + POST_TRACES]
        self.imp_int = [i for i, _ in imp]
        self.imp_frac = [f for _, f in imp]
        taus = [L.taus.get(k, 0) for k in PRE_TRACES + POST_TRACES]
        # np.exp(-t / taus) of _decay_trace, in numpy so that the factor is Lava's to the last bit
        self.decay = [None if t == 0 else float(np.exp(-1 / np.float64(t))) for t in taus]
        self.sign_mode = proj.sign_mode


def _add_impulse(trace: torch.Tensor, random: int, imp_int: int, imp_frac: int) -> torch.Tensor:
    """``_add_impulse``: ``clip(trace + int + (random < frac), 0, 127)``."""
    return (trace + imp_int + int(random < imp_frac)).clamp(0, TRACE_MAX)


def _decay_trace(trace: torch.Tensor, factor: Optional[float], random: float) -> torch.Tensor:
    """``_decay_trace`` with ``t = 1``: ``floor(f * h) + (random < frac(f * h))``; ``tau = 0``: 0."""
    if factor is None:
        return torch.zeros_like(trace)
    p = trace.to(torch.float64) * factor
    fl = torch.floor(p)
    return fl.to(torch.int64) + (random < (p - fl)).to(torch.int64)


def _lrn_spiking_phase(
    st: _PlasticState, pre: torch.Tensor, post: torch.Tensor, t_in_epoch: int, y_in: Optional[torch.Tensor] = None
) -> None:
    """``recv_traces`` (connection.py:384-415) for ``(R, N)`` 0/1 spikes; ``y_in`` ``(R, 3, N)``: the
    3-factor rule's ``s_in_y1..3``, which replace the post traces after the post spikes' impulses."""
    s, b = pre.bool(), post.bool()
    multi = (st.tx > 0) & s
    if bool(multi.any()):
        for k in range(2):  # pre impulses use random 0: any fraction rounds up
            st.x[:, k] = torch.where(multi, _add_impulse(st.x[:, k], 0, st.imp_int[k], st.imp_frac[k]), st.x[:, k])
    st.tx = torch.where(s, torch.full_like(st.tx, t_in_epoch), st.tx)
    st.randoms.advance_traces()
    multi = (st.ty > 0) & b
    if bool(multi.any()):
        r = st.randoms.y_impulse
        for k in range(3):
            st.y[:, k] = torch.where(
                multi, _add_impulse(st.y[:, k], r, st.imp_int[2 + k], st.imp_frac[2 + k]), st.y[:, k]
            )
    st.ty = torch.where(b, torch.full_like(st.ty, t_in_epoch), st.ty)
    if y_in is not None:
        st.y = y_in.clone()
    st.randoms.advance_traces()


def _lrn_learning_phase(st: _PlasticState, time_step: int) -> None:
    """``run_lrn`` (connection.py:431-438) with ``LearningRuleApplierBitApprox``."""
    L, rnd = st.learning, st.randoms
    T = L.t_epoch
    rnd.advance_synaptic()
    x0, y0 = st.tx > 0, st.ty > 0
    # Trace histories H[0..T] (_compute_trace_histories): decay, then the impulse of the last spike.
    hx, hy = [st.x], [st.y]
    for t in range(1, T + 1):
        x = torch.stack([_decay_trace(hx[-1][:, k], st.decay[k], rnd.x_decay) for k in range(2)], 1)
        y = torch.stack([_decay_trace(hy[-1][:, k], st.decay[2 + k], rnd.y_decay) for k in range(3)], 1)
        sx, sy = (st.tx == t).unsqueeze(1), (st.ty == t).unsqueeze(1)
        if bool(sx.any()):
            imp = torch.stack([_add_impulse(x[:, k], rnd.x_impulse, st.imp_int[k], st.imp_frac[k]) for k in range(2)], 1)
            x = torch.where(sx, imp, x)
        if bool(sy.any()):
            imp = torch.stack(
                [_add_impulse(y[:, k], rnd.y_impulse, st.imp_int[2 + k], st.imp_frac[2 + k]) for k in range(3)], 1
            )
            y = torch.where(sy, imp, y)
        hx.append(x)
        hy.append(y)
    HX, HY = torch.stack(hx), torch.stack(hy)  # (T+1, R, 2, Npre), (T+1, R, 3, Npost)
    st.x = hx[-1]
    if not L.three_factor:  # _update_traces: a 3-factor rule keeps the received y
        st.y = hy[-1]
    R, _, n_pre = st.x.shape
    n_post = st.y.shape[2]
    # _extract_applier_evaluated_traces: traces at the dependency's spike time, as (R, k, Npost, Npre)
    x_at_tx = HX.gather(0, st.tx[None, :, None, :].expand(1, R, 2, n_pre))[0].unsqueeze(2)
    y_at_ty = HY.gather(0, st.ty[None, :, None, :].expand(1, R, 3, n_post))[0].unsqueeze(3)
    y_at_tx = HY.permute(1, 2, 3, 0).gather(3, st.tx[:, None, None, :].expand(R, 3, n_post, n_pre))
    x_at_ty = HX.permute(1, 2, 0, 3).gather(2, st.ty[:, None, :, None].expand(R, 2, n_post, n_pre))
    traces = {
        "x0": {"x": x_at_tx, "y": y_at_tx},
        "y0": {"x": x_at_ty, "y": y_at_ty},
        "u": {"x": st.x.unsqueeze(2), "y": st.y.unsqueeze(3)},
    }
    u = 0
    if L.u_exponent is not None:
        u = 1 if int(time_step / T) % 2**L.u_exponent == 0 else 0
    deps = {"x0": x0.to(torch.int64)[:, None, :], "y0": y0.to(torch.int64)[:, :, None], "u": u}
    old = dict(st.vars)  # every target reads the values of before this epoch's update
    for target, products in L.lava_products.items():
        var = TARGET_VAR[target]
        acc = old[var] << SYN_SHIFT
        for p in products:
            m = deps[p.dependency] * torch.ones_like(acc)
            for name, const, sgn in p.factors:
                if name in SYN_VAR:
                    val = old[SYN_VAR[name]]
                elif name in ("x0", "y0"):
                    val = deps[name] * torch.ones_like(acc)
                elif name in PRE_TRACES:
                    val = traces[p.dependency]["x"][:, PRE_TRACES.index(name)]
                else:
                    val = traces[p.dependency]["y"][:, POST_TRACES.index(name)]
                width = FACTOR_WIDTH[name]
                if sgn:
                    val = torch.sign(val.to(torch.float64) + const)
                elif const != 0:
                    val = val.to(torch.float64) + const
                val = val.clamp(-(2**width), 2**width - 1)
                if val.dtype == torch.float64:
                    val = torch.trunc(val).to(torch.int64)  # astype(np.int32)
                m = _wrap32(m * val)
            m = _wrap32(m * p.s_mantissa) >> p.shift
            m = _wrap32(m << p.s_exp).clamp(ACC_MIN, ACC_MAX)
            acc = (acc + m).clamp(ACC_MIN, ACC_MAX)
        if var == "weights":
            if st.sign_mode == SignMode.EXCITATORY:
                acc = acc.clamp(min=0)
            elif st.sign_mode == SignMode.INHIBITORY:
                acc = acc.clamp(max=0)
        elif var == "tag_2":
            acc = acc.clamp(min=0)
        # _stochastic_round_synaptic_variable: frac(acc / 128) against one scalar random
        frac = (acc & ((1 << SYN_SHIFT) - 1)).to(torch.float64) / (1 << SYN_SHIFT)
        new = (acc >> SYN_SHIFT) + (rnd.syn < frac).to(torch.int64)
        if var == "weights":
            lo, hi = _SIGN_RANGE[st.sign_mode]
        elif var == "tag_2":
            lo, hi = 0, 255
        else:
            lo, hi = -257, 255
        st.vars[var] = new.clamp(lo, hi)
    st.tx = torch.zeros_like(st.tx)
    st.ty = torch.zeros_like(st.ty)


class FixedPointSimulator:
    """``replicas`` copies of a network in Lava's fixed-point arithmetic, on int64 tensors.

    Parameters:
        network: a :class:`neuro.Network` (compiled with :func:`to_fixed_point` and
            ``quantization`` options) or an already compiled :class:`FixedPointNetwork`.
        replicas: size ``R`` of the leading replica dimension.
        device: torch device.
        seed: seeds the encoders' generator exactly as ``neuro.Simulator(seed=seed)`` does,
            so encoded inputs are the spikes the float engine and ``export.lava`` use.
        quantization: keyword arguments for :func:`to_fixed_point` (``target``,
            ``headroom_bits``, ``scales``).

    One step: Dense projections deliver the input buffered at the previous step;
    each LIF updates ``u``, ``v``, spikes and resets; each projection accumulates
    the new spikes into its buffer (Lava's ``a_buff``); each plastic projection then
    runs Lava's spiking-phase trace update (pre spikes, post spikes as ``s_in_bap``)
    and, every ``t_epoch`` steps, its learning phase (``run_lrn``). Weights, tags and
    traces are per replica; Lava's random streams are scalars, shared by all replicas.
    """

    def __init__(
        self,
        network: Union[Network, FixedPointNetwork],
        replicas: int = 1,
        device: Union[str, torch.device] = "cpu",
        seed: int = 0,
        quantization: Optional[Mapping[str, object]] = None,
    ) -> None:
        if int(replicas) != replicas or replicas < 1:
            raise ValueError(f"replicas must be a positive integer, got {replicas!r}")
        if isinstance(network, FixedPointNetwork):
            if quantization:
                raise ValueError("quantization options apply to a neuro.Network, not a compiled one")
            self.fixed = network
        else:
            self.fixed = to_fixed_point(network, **dict(quantization or {}))
        self.network = self.fixed.network
        self.replicas = int(replicas)
        self.device = torch.device(device)
        self.seed = seed
        # Encoders draw from a float simulator of the input populations only, in population order,
        # exactly as neuro.Simulator (and export.lava.encoded_inputs) draws them.
        inputs_net = Network(dt=self.network.dt)
        for name in self.fixed.inputs:
            p = self.network.populations[name]
            inputs_net.input(name, p.n, p.encoder)
        self._encoder = Simulator(inputs_net, replicas=self.replicas, device=self.device, dtype=torch.float64, seed=seed)
        self.generator = self._encoder.generator
        # float64 products are exact here (|sums| < 2**53) and, unlike int64 matmul, run on CUDA.
        self._w = {
            k: torch.as_tensor(p.weights, dtype=torch.float64, device=self.device)
            for k, p in self.fixed.projections.items()
            if p.learning is None
        }
        self._params = {
            k: dict(
                keep_u=DECAY_UNITY - (p.du + DS_OFFSET), keep_v=DECAY_UNITY - (p.dv + DM_OFFSET),
                vth=p.vth << VTH_SHIFT,
                bias=(p.bias_mant << p.bias_exp) if p.bias_exp >= 0 else (p.bias_mant >> -p.bias_exp),
            )
            for k, p in self.fixed.populations.items()
        }
        self.reset()

    def reset(self) -> None:
        """Neuron state to ``u0``/``v0``, buffers and spikes to zero, time to 0."""
        self.time_step = 0
        shape = lambda n: (self.replicas, n)  # noqa: E731
        i64 = dict(dtype=torch.int64, device=self.device)
        self.state = {
            k: {"u": torch.full(shape(p.n), p.u0, **i64), "v": torch.full(shape(p.n), p.v0, **i64)}
            for k, p in self.fixed.populations.items()
        }
        self.spikes = {k: torch.zeros(shape(p.n), **i64) for k, p in self.network.populations.items()}
        self.buffers = {
            k: torch.zeros(shape(self.network.populations[p.post].n), **i64) for k, p in self.fixed.projections.items()
        }
        # the post neurons' y1..y3 of 3-factor rules (FactorLIF's y state): (R, 3, N)
        self.factor_y = {
            k: torch.zeros(self.replicas, 3, p.n, **i64) for k, p in self.fixed.populations.items() if p.factor_traces
        }
        pops = self.network.populations
        self.plastic = {
            k: _PlasticState(p, pops[p.pre].n, pops[p.post].n, self.replicas, self.device)
            for k, p in self.fixed.projections.items()
            if p.learning is not None
        }

    # --- one step ----------------------------------------------------------------------------------
    def _lif(self, name: str, a_in: torch.Tensor) -> torch.Tensor:
        """``PyLifModelBitAcc.run_spk`` (lava/proc/lif/models.py:138-216) on ``(R, N)`` int64 tensors."""
        p, st = self._params[name], self.state[name]
        u = _decay(st["u"], p["keep_u"])
        u = _wrap32(u + _wrap32(a_in << ACT_SHIFT))
        wrapped = torch.where(u > MAX_UV, u - 2 * MAX_UV, u)
        u = torch.where(wrapped <= -MAX_UV, u + 2 * MAX_UV, wrapped)
        v = _wrap32(_decay(st["v"], p["keep_v"]) + u + p["bias"])
        v = v.clamp(-MAX_UV + 1, MAX_UV - 1)
        s = v > p["vth"]
        st["u"], st["v"] = u, torch.where(s, torch.zeros_like(v), v)
        return s.to(torch.int64)

    def _factor_traces(self, name: str, spikes: torch.Tensor, third_factor: Optional[TensorLike]) -> None:
        """What a ``FactorLIF`` (``fixed_pt``) sends as y1..y3 after its LIF step (see
        :attr:`FixedPointLearning.post_traces`)."""
        pop, y = self.fixed.populations[name], self.factor_y[name]
        for k, trace in enumerate(POST_TRACES):
            spec = pop.factor_traces.get(trace)
            if spec is None:
                continue
            if spec[0] == "driven":
                if third_factor is None:
                    raise KeyError(f"population {name!r} needs a third factor: pass third_factors[{name!r}]")
                v = pop.third_factor_integers(torch.as_tensor(third_factor, dtype=torch.float64).cpu().numpy())
                y[:, k] = torch.as_tensor(np.broadcast_to(v, (self.replicas, pop.n)).copy(), device=self.device)
            else:
                _, keep, imp = spec
                y[:, k] = (((y[:, k] * keep) >> DECAY_SHIFT) + imp * spikes).clamp(0, TRACE_MAX)

    def step(
        self,
        inputs: Optional[Mapping[str, TensorLike]] = None,
        step_in_presentation: int = 0,
        third_factors: Optional[Mapping[str, TensorLike]] = None,
    ) -> Dict[str, torch.Tensor]:
        """Advance one step; ``inputs`` as in :meth:`neuro.Simulator.step`; ``third_factors``: this step's
        float third factor ``(N,)`` or ``(R, N)`` of each 3-factor post population. Returns int64 spikes
        by population."""
        inputs = dict(inputs or {})
        third_factors = dict(third_factors or {})
        unknown = set(third_factors) - set(self.factor_y)
        if unknown:
            raise KeyError(f"third factors for populations that read none: {sorted(unknown)}")
        unknown = set(inputs) - set(self.fixed.inputs)
        if unknown:
            raise KeyError(f"not input population(s): {sorted(unknown)}; inputs are {self.fixed.inputs}")
        self.time_step += 1
        with torch.no_grad():
            enc = self._encoder.step(inputs, step_in_presentation=step_in_presentation)
            currents: Dict[str, torch.Tensor] = {}
            for name, proj in self.fixed.projections.items():
                # PyInPortVectorDense.recv sums the int32 messages of all incoming ports.
                b = self.buffers[name]
                currents[proj.post] = b if proj.post not in currents else _wrap32(currents[proj.post] + b)
            for name, pop in self.network.populations.items():
                if name in self.fixed.populations:
                    a = currents.get(name)
                    a = torch.zeros_like(self.state[name]["u"]) if a is None else a
                    self.spikes[name] = self._lif(name, a)
                    if name in self.factor_y:
                        self._factor_traces(name, self.spikes[name], third_factors.get(name))
                else:
                    self.spikes[name] = (enc[name] > 0).to(torch.int64)
            for name, proj in self.fixed.projections.items():
                # PyDenseModelBitAcc.run_spk (lava/proc/dense/models.py:97-107): sum the weights of the
                # spiking inputs, shift by weight_exp (arithmetic right shift when negative); the
                # message travels as int32.
                pre = self.spikes[proj.pre].to(torch.float64)
                if proj.learning is None:
                    acc = (pre @ self._w[name].T).to(torch.int64)
                else:  # the weights of before this step's learning (run_lrn follows run_spk)
                    w = self.plastic[name].vars["weights"].to(torch.float64)
                    acc = torch.bmm(w, pre.unsqueeze(2)).squeeze(2).to(torch.int64)
                acc = acc << proj.weight_exp if proj.weight_exp > 0 else acc >> -proj.weight_exp
                self.buffers[name] = _wrap32(acc)
            for name, st in self.plastic.items():
                # LearningConnectionModelBitApproximate: recv_traces at the end of run_spk, then run_lrn.
                proj = self.fixed.projections[name]
                T = st.learning.t_epoch
                y_in = self.factor_y[proj.post] if st.learning.three_factor else None
                _lrn_spiking_phase(st, self.spikes[proj.pre], self.spikes[proj.post], self.time_step % T or T, y_in)
                if self.time_step % T == 0:
                    _lrn_learning_phase(st, self.time_step)
        return self.spikes

    def run(
        self,
        steps: int,
        inputs: Optional[Mapping[str, TensorLike]] = None,
        monitors: Iterable[str] = (),
        every: int = 1,
        third_factors: Optional[Mapping[str, TensorLike]] = None,
    ) -> Recording:
        """Run ``steps`` steps; ``inputs`` and ``every`` as in :meth:`neuro.Simulator.run`; ``third_factors``:
        float values by population, ``(N,)`` held or ``(steps, N)`` / ``(steps, R, N)`` per step, as
        integers :meth:`FixedPointPopulation.third_factor_integers`.

        Monitors: ``"pop.spikes"`` (0/1), ``"pop.u"`` and ``"pop.v"`` (Lava's integer
        units), recorded as int64 tensors ``(K, R, N)``; for a plastic projection
        ``"proj.weights"``, ``"proj.tag_1"``, ``"proj.tag_2"`` ``(K, R, Npost, Npre)`` and
        its traces ``"proj.x1"`` ... ``"proj.y3"`` (7-bit integers).
        """
        per_step, held = split_inputs(self.network, steps, inputs, torch.float64, self.device)

        tf = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in (third_factors or {}).items()}
        tf_step = {k: v for k, v in tf.items() if v.ndim >= 2}
        for k, v in tf_step.items():
            if v.shape[0] < steps:
                raise ValueError(f"third factor of {k!r}: {v.shape[0]} steps given, {steps} run")

        def advance(k: int) -> None:
            factors = {name: (v[k] if name in tf_step else v) for name, v in tf.items()}
            self.step(
                {**held, **{name: v[k] for name, v in per_step.items()}}, step_in_presentation=k, third_factors=factors
            )

        return record_run(steps, advance, self._read, lambda: self.time_step, list(monitors), every)

    def _read(self, monitor: str) -> torch.Tensor:
        target, _, var = monitor.partition(".")
        if target in self.network.populations and var == "spikes":
            return self.spikes[target]
        if target in self.state and var in ("u", "v"):
            return self.state[target][var]
        if target in self.plastic:
            st = self.plastic[target]
            if var in st.vars:
                return st.vars[var]
            if var in PRE_TRACES:
                return st.x[:, PRE_TRACES.index(var)]
            if var in POST_TRACES:
                return st.y[:, POST_TRACES.index(var)]
        raise KeyError(
            f"cannot monitor {monitor!r}: use 'population.spikes', 'population.u', 'population.v', "
            "or for a plastic projection 'projection.weights' / '.tag_1' / '.tag_2' / '.x1' ... '.y3'"
        )

    def weights_float(self, projection: str) -> torch.Tensor:
        """A plastic projection's weights in our float units (``weights / weight_unit``)."""
        return self.plastic[projection].vars["weights"].to(torch.float64) / self.fixed.projections[projection].learning.weight_unit

    def v_float(self, population: str) -> torch.Tensor:
        """The membrane potential of ``population`` in our float units (``v * v_to_float``)."""
        return self.state[population]["v"].to(torch.float64) * self.fixed.populations[population].v_to_float


__all__ = [
    "FixedPointError",
    "FixedPointLearning",
    "LavaLearningRandoms",
    "LavaProduct",
    "fixed_point_rule",
    "lava_product",
    "FixedPointNetwork",
    "FixedPointPopulation",
    "FixedPointProjection",
    "FixedPointSimulator",
    "to_fixed_point",
]

"""Lower a :class:`neuro.LearningRule` to Loihi 2's learning engine (Lava's ``Loihi2FLearningRule``).

The learning engine evaluates, per synapse and once per epoch, a *sum of products*
for each target ``dw``, ``dt``, ``dd``::

    dZ = sum_i  S_i * D_i * prod_j F_ij

* ``D_i`` is one dependency: ``x0`` (pre spiked), ``y0`` (post spiked) or ``u<k>``;
* ``S_i = m * 2**e`` is a scaling constant with an integer mantissa ``m`` in
  ``[-8, 7]`` and an exponent ``e`` in ``[-7, 8]`` (Lava's parser rejects anything else,
  the floating-point simulator included);
* each factor ``F_ij`` is a trace (``x1 x2 y1 y2 y3``) or synaptic variable (``w t d``),
  optionally plus a constant, ``(x1 + C)`` / ``(w - C)``, or the sign of a synaptic
  variable plus a constant, ``sgn(w + C)``.

Lava's string grammar (``lava/magma/core/learning/symbolic_equation.py``) has only
integer literals ``12``, ``2^-3`` and ``3*2^-5``: no decimal point (``0.5`` crashes the
parser). Every finite float is ``M * 2**E`` with an integer ``M``, so every bracket
constant can be written exactly (``5404319552844595*2^-54`` is 0.3 to the last bit; Lava's
float engine evaluates ``M * 2**E``, which is exact), but a *scaling* constant must fit the
4-bit mantissa / exponent range above: ``0.01`` does not, and lowering says so instead of
rounding it silently (Lava's own ``float_to_literal`` rounds 0.01 to ``2^-7``).

What lowers exactly, and how:

* ``rule.terms()`` (products already distributed over sums) with the rule's ``Param``
  values substituted; like products are combined, and a pair ``c*D*F*v + k*D*F`` is folded
  back into Lava's bracket factor ``c*D*F*(v + k/c)`` (the human form of soft bounds,
  ``2^-5 * y0 * x1 * (1 - w)``, and a way to carry constants that are no scaling literal);
* ``sign(a*v + k)`` with ``v`` in ``w, t, d`` -> ``sgn(v + k/a)``; ``abs(a*v + k)`` ->
  ``|a| * sgn(v + K) * (v + K)``; ``abs`` of a spike-counting trace is the trace itself
  (impulses are non-negative); integer powers ``e**n`` become ``n`` repeated factors;
* ``u`` becomes ``u<rule.u_exponent>``; trace taus in seconds become steps, ``tau / dt``
  (``math.inf``, no decay, stays ``inf``: Lava's float engine decays by ``exp(-1/tau)``,
  which is exactly 1 there); the weight bounds become Lava's sign mode.

Everything else raises :class:`LoihiLoweringError`, whose message names the offending
product and, where one exists, the hardware-compatible variant.

Rules with a *driven* post trace (``Trace(driven_by=...)``, a third factor) lower to
``Loihi3FLearningRule``: on that path the post neuron sends y1, y2 and y3 every step, so
it must provide the driven signal *and* any spike-counting y trace the rule reads
(:attr:`LoihiRule.post_traces` lists what). Their taus in the Lava rule are set to
``inf`` so Lava's float engine holds the received value through the epoch instead of
decaying it by ``exp(-1/65535)`` per step, which is what the torch engine does.
"""
from __future__ import annotations

import functools
import math
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Dict, List, Optional, Tuple

from neuro.expr import DEPENDENCIES, MIXING_OPS, POST_TRACES, SYNAPTIC, TRACES, Const, Expr, Op, Param, Var
from neuro.rule import TARGETS, LearningRule, RuleError, Term, expand_terms

# Range of a product's scaling constant m * 2**e in Lava's ProductSeries parser.
SCALE_MANTISSA_RANGE: Tuple[int, int] = (-8, 7)
SCALE_EXPONENT_RANGE: Tuple[int, int] = (-7, 8)
# Lava's parser reads "u" followed by ONE digit ("u12" parses as u1 times a literal 2).
MAX_U_EXPONENT = 9
# Integer powers up to this exponent are expanded into repeated factors.
MAX_POWER = 8

class LoihiLoweringError(ValueError):
    """A rule has no exact Loihi 2 learning-engine form.

    Attributes:
        rule_name: the rule's name.
        target: ``"dw"``, ``"dt"``, ``"dd"``, or ``None`` for rule-level problems
            (weight bounds, traces, epochs).
        term: the offending product as text (``"0.1 * y0 * softmax(y2, 1.0)"``), or the
            offending setting (``"w in [0, 1]"``).
        reason: why the learning engine cannot express it.
        suggestion: the hardware-compatible variant, or ``""``.
    """

    def __init__(self, rule_name: str, target: Optional[str], term: str, reason: str, suggestion: str = "") -> None:
        self.rule_name, self.target, self.term = rule_name, target, term
        self.reason, self.suggestion = reason, suggestion
        where = f"{target}: the product '{term}'" if target else f"'{term}'"
        message = f"cannot lower rule {rule_name!r} to Loihi 2: {where}: {reason}"
        if suggestion:
            message += f". Suggestion: {suggestion}"
        super().__init__(message)


# --------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------
def _odd_part(x: float) -> Tuple[int, int]:
    """``x == M * 2**E`` with ``M`` odd (``x`` finite, non-zero)."""
    fr = Fraction(x)
    num, den = fr.numerator, fr.denominator
    exp = -(den.bit_length() - 1)  # den is a power of two for every float
    while num % 2 == 0:
        num //= 2
        exp += 1
    return num, exp


def loihi_scaling(c: float) -> Optional[Tuple[int, int]]:
    """``(m, e)`` with ``c == m * 2**e`` as a Loihi scaling constant, or ``None`` if impossible.

    ``m`` is an integer in :data:`SCALE_MANTISSA_RANGE`, ``e`` in :data:`SCALE_EXPONENT_RANGE`.
    """
    if not math.isfinite(c) or c == 0:
        return None
    mant, exp = _odd_part(c)
    if exp < SCALE_EXPONENT_RANGE[0]:
        return None
    shift = max(0, exp - SCALE_EXPONENT_RANGE[1])
    m, e = mant * 2**shift, exp - shift
    if not SCALE_MANTISSA_RANGE[0] <= m <= SCALE_MANTISSA_RANGE[1]:
        return None
    return m, e


def _literal(x: float) -> str:
    """Lava literal text for ``x > 0``: ``12``, ``2^-3`` or ``3*2^-5``, exact for any float."""
    mant, exp = _odd_part(x)
    if exp >= 0:
        return str(mant * 2**exp)
    if mant == 1:
        return f"2^{exp}"
    return f"{mant}*2^{exp}"


def _nearest_scalings(c: float) -> Tuple[Optional[float], Optional[float]]:
    """The representable scaling constants just below and just above ``c``."""
    values = sorted(
        {m * 2.0**e for m in range(SCALE_MANTISSA_RANGE[0], SCALE_MANTISSA_RANGE[1] + 1)
         for e in range(SCALE_EXPONENT_RANGE[0], SCALE_EXPONENT_RANGE[1] + 1) if m != 0}
    )
    below = [v for v in values if v < c]
    above = [v for v in values if v > c]
    return (below[-1] if below else None), (above[0] if above else None)


def _scaling_text(v: float) -> str:
    return f"{'' if v > 0 else '-'}{_literal(abs(v))} (= {v!r})"


# --------------------------------------------------------------------------------------
# Lowered products
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoihiFactor:
    """One factor of a Loihi product: ``var``, ``(var + const)`` or ``sgn(var + const)``."""

    var: str
    const: Optional[float] = None
    sgn: bool = False

    def text(self, flip: bool = False) -> str:
        """Lava text; ``flip`` writes ``-(var + const)`` as ``(-const - var)``."""
        if flip:
            return f"({_literal(-self.const)} - {self.var})"  # type: ignore[operator]
        inner = self.var
        if self.const is not None and self.const != 0:
            inner += f" {'+' if self.const > 0 else '-'} {_literal(abs(self.const))}"
        if self.sgn:
            return f"sgn({inner})"
        return f"({inner})" if self.const is not None and self.const != 0 else inner


@dataclass(frozen=True)
class LoihiProduct:
    """``coef * dependency * prod(factors)``; ``dependency`` is x0, y0 or u (``u<k>`` in text)."""

    coef: float
    dependency: str
    factors: Tuple[LoihiFactor, ...]

    def text(self, u_exponent: int = 0, first: bool = False) -> str:
        """Lava text with its sign as a leading operator (`` - 2^-4 * x0 * y1``)."""
        coef = self.coef
        factors = [f.text() for f in self.factors]
        if coef < 0:
            # Prefer (1 - w) to -(w - 1): flip one bracket whose constant is negative.
            for i, f in enumerate(self.factors):
                if f.const is not None and f.const < 0 and not f.sgn:
                    factors[i] = f.text(flip=True)
                    coef = -coef
                    break
        dep = f"u{u_exponent}" if self.dependency == "u" else self.dependency
        parts = ([] if abs(coef) == 1.0 else [_literal(abs(coef))]) + [dep] + factors
        body = " * ".join(parts)
        if first:
            return ("-" if coef < 0 else "") + body
        return (" - " if coef < 0 else " + ") + body


def _term_text(coef: float, dependency: str, factors) -> str:
    """A product as the user would read it, for messages: ``0.1 * y0 * softmax(y2, 1.0)``."""
    parts = [dependency] + [str(f) for f in factors]
    if coef == -1.0:
        parts[0] = "-" + parts[0]
    elif coef != 1.0:
        parts.insert(0, repr(coef))
    return " * ".join(parts)


# --------------------------------------------------------------------------------------
# Expression rewriting (exact identities only)
# --------------------------------------------------------------------------------------
def _fold(name: str, args: List[float], attrs: Tuple[float, ...]) -> Optional[float]:
    """Constant folding with the torch engine's semantics; ``None`` if not a finite number."""
    a = args
    table = {
        "add": lambda: a[0] + a[1],
        "sub": lambda: a[0] - a[1],
        "mul": lambda: a[0] * a[1],
        "div": lambda: a[0] / a[1],
        "neg": lambda: -a[0],
        "abs": lambda: abs(a[0]),
        "sign": lambda: float((a[0] > 0) - (a[0] < 0)),
        "exp": lambda: math.exp(a[0]),
        "pow": lambda: a[0] ** attrs[0],
        "clamp": lambda: min(max(a[0], attrs[0]), attrs[1]),
        "maximum": lambda: max(a[0], a[1]),
        "minimum": lambda: min(a[0], a[1]),
        "softmax": lambda: 1.0,  # of a value shared by all post neurons (engine: ones)
    }
    if name not in table:  # winner, sum_pre: their value depends on the population size
        return None
    try:
        value = table[name]()
    except (ZeroDivisionError, OverflowError, ValueError):
        return None
    if isinstance(value, complex) or not math.isfinite(value):
        return None
    return float(value)


def _linear(e: Expr) -> Optional[Tuple[Dict[str, float], float]]:
    """``e`` as ``sum(a_v * v) + k`` over variables, or ``None`` if not linear."""
    if isinstance(e, Const):
        return {}, e.value
    if isinstance(e, Var):
        return {e.name: 1.0}, 0.0
    if not isinstance(e, Op):
        return None
    if e.name in ("add", "sub"):
        la, lb = _linear(e.args[0]), _linear(e.args[1])
        if la is None or lb is None:
            return None
        s = 1.0 if e.name == "add" else -1.0
        coefs = dict(la[0])
        for v, c in lb[0].items():
            coefs[v] = coefs.get(v, 0.0) + s * c
        return {v: c for v, c in coefs.items() if c != 0}, la[1] + s * lb[1]
    if e.name == "neg":
        la = _linear(e.args[0])
        return None if la is None else ({v: -c for v, c in la[0].items()}, -la[1])
    if e.name in ("mul", "div"):
        la, lb = _linear(e.args[0]), _linear(e.args[1])
        if la is None or lb is None:
            return None
        if e.name == "div":
            if lb[0] or lb[1] == 0:
                return None
            return {v: c / lb[1] for v, c in la[0].items()}, la[1] / lb[1]
        if la[0] and lb[0]:
            return None
        (vs, k), s = (la, lb[1]) if not lb[0] else (lb, la[1])
        return {v: c * s for v, c in vs.items() if c * s != 0}, k * s
    return None


def _exact_ratio(num: float, den: float) -> Optional[float]:
    """``num / den`` if it is exactly a float, else ``None``."""
    q = num / den
    return q if math.isfinite(q) and Fraction(q) * Fraction(den) == Fraction(num) else None


class _Lowering:
    """Lowers one rule; collects the facts that :func:`to_loihi_rule` needs."""

    def __init__(self, rule: LearningRule) -> None:
        self.rule = rule
        self.driven = {k for k, tr in rule.traces.items() if tr.driven_by}
        # Only a driven trace that some target reads needs the 3-factor path.
        self.three_factor = any(rule.uses(k) for k in self.driven)

    def error(self, target: Optional[str], term: str, reason: str, suggestion: str = "") -> LoihiLoweringError:
        return LoihiLoweringError(self.rule.name, target, term, reason, suggestion)

    # --- tree rewrites -------------------------------------------------------------------
    def rewrite(self, e: Expr) -> Expr:
        if isinstance(e, Param):
            return Const(self.rule.params[e.name])
        if not isinstance(e, Op):
            return e
        args = tuple(self.rewrite(a) for a in e.args)
        if all(isinstance(a, Const) for a in args):
            value = _fold(e.name, [a.value for a in args], e.attrs)  # type: ignore[union-attr]
            if value is not None:
                return Const(value)
        if e.name == "pow":
            n = e.attrs[0]
            if math.isfinite(n) and n == int(n) and 0 <= n <= MAX_POWER:
                if n == 0:
                    return Const(1.0)
                out = args[0]
                for _ in range(int(n) - 1):
                    out = Op("mul", (out, args[0]))
                return out
        if e.name == "abs":
            lin = _linear(args[0])
            if lin is not None and len(lin[0]) == 1:
                (v, a), k = next(iter(lin[0].items())), lin[1]
                if v in SYNAPTIC:
                    # |e| = sgn(e) * e; the bracket merge folds it back to sgn(v + K) * (v + K).
                    return Op("mul", (Op("sign", args), args[0]))
                if v in TRACES and v not in self.driven and k == 0 and self.rule.traces[v].impulse >= 0:
                    # A spike-counting trace with a non-negative impulse is never negative.
                    return Op("mul", (Const(abs(a)), Var(v)))
        return Op(e.name, args, e.attrs)

    # --- products ------------------------------------------------------------------------
    def lower_term(self, target: str, term: Term) -> LoihiProduct:
        rule = self.rule
        coef, dep = term.coef, term.dependency
        text = _term_text(term.coef, term.dependency, term.factors)
        spike_deps = [f.name for f in term.factors if isinstance(f, Var) and f.name in ("x0", "y0")]
        if dep == "u" and rule.u_exponent == 0 and spike_deps:
            # u0 is 1 in every epoch, so u0 * y0 * F == y0 * F when F reads no trace (or
            # t_epoch == 1, where every dependency samples traces at the same step).
            reads_trace = any(n.name in TRACES for f in term.factors for n in f.walk() if isinstance(n, Var))
            if rule.t_epoch == 1 or not reads_trace:
                dep = spike_deps[0]
        factors: List[LoihiFactor] = []
        for f in term.factors:
            if isinstance(f, Var):
                if f.name in DEPENDENCIES:
                    if f.name == dep:
                        continue  # x0 * x0 == x0: dependencies are 0/1
                    if f.name == "u" and rule.u_exponent == 0:
                        continue  # u0 is 1 in every epoch
                    raise self.error(
                        target, text,
                        f"'{f.name}' appears as a second dependency inside a product triggered by "
                        f"'{dep}'. Loihi 2 lists x0/y0 factors, but Lava's floating-point learning "
                        "engine (0.10) cannot evaluate them ('Unknown Factor') and its parser drops a "
                        "second u<k> silently",
                        "keep one dependency per product: e.g. gate by the post spike alone (y0 * x1 "
                        "instead of y0 * x0, using the pre trace as the pre-activity measure), or use "
                        "t_epoch=1 and u_exponent=0 so that u is 1 in every epoch",
                    )
                factors.append(LoihiFactor(f.name))
                continue
            if isinstance(f, Op) and f.name == "sign":
                lin = _linear(f.args[0])
                if lin is None or len(lin[0]) != 1 or next(iter(lin[0])) not in SYNAPTIC:
                    if lin is None:
                        what = "a non-linear expression"
                    elif len(lin[0]) > 1:
                        what = "a sum of several variables"
                    elif not lin[0]:
                        what = "an expression that cancels to a constant"
                    else:
                        what = f"the trace {next(iter(lin[0]))}"
                    raise self.error(
                        target, text,
                        f"the learning engine's sgn() applies only to w, t or d plus a constant "
                        f"(sgn(w + C)); {f} takes the sign of {what}",
                        "rewrite it as the sign of one synaptic variable, e.g. keep the signed quantity "
                        "in the tag t (dt = ...) and use sgn(t); spike-counting traces are never "
                        "negative, so sign(x1) is a spike test: use the dependency x0/y0 instead",
                    )
                (v, a), k = next(iter(lin[0].items())), lin[1]
                const = _exact_ratio(k, a)
                if const is None:
                    raise self.error(target, text, f"the threshold {k!r}/{a!r} in {f} is not a float exactly")
                if a < 0:
                    coef = -coef
                factors.append(LoihiFactor(v, None if const == 0 else const, sgn=True))
                continue
            raise self._unsupported(target, text, f, term)
        if self.three_factor and rule.t_epoch > 1:
            spiking_y = [f.var for f in factors if f.var in POST_TRACES and f.var not in self.driven]
            if spiking_y:
                raise self.error(
                    target, text,
                    f"the rule has a driven post trace, so it runs on Loihi's 3-factor path, where "
                    f"the post neuron sends y1..y3 every step and Lava holds the last value through "
                    f"the epoch; the spike-counting trace {spiking_y[0]} then loses the within-epoch "
                    f"timing (sampling at the {dep} spike, several spikes per epoch) that the torch "
                    f"engine reproduces (t_epoch={rule.t_epoch})",
                    "use t_epoch=1 (exact), or express the post-spike timing through a pre trace "
                    "sampled at y0 (y0 * x1)",
                )
        return LoihiProduct(coef, dep, tuple(factors))

    def _unsupported(self, target: str, text: str, f: Expr, term: Term) -> LoihiLoweringError:
        # An operation across neurons is the real obstacle wherever it is nested (pow(sum_pre(...), 0.5)).
        across = [n for n in f.walk() if isinstance(n, Op) and n.name in MIXING_OPS]
        if across:
            f = across[0]
        name = f.name if isinstance(f, Op) else type(f).__name__
        if name == "softmax":
            return self.error(
                target, text,
                f"{f} normalizes across the post population; the learning engine only sees the "
                "local variables of one synapse",
                "let a winner-take-all layer (lateral inhibition) do the competition and gate the "
                "Hebbian update by the winner's spike: replace softmax(...) by y0 of a WTA "
                f"population, e.g. {_term_text(term.coef, 'y0', [g for g in term.factors if g is not f])}"
                " (SoftHebb's hardware form: eta * y0 * (x1 - w))",
            )
        if name == "winner":
            return self.error(
                target, text,
                f"{f} compares the post neurons with each other (a hard winner-take-all); the "
                "learning engine only sees the local variables of one synapse",
                "let lateral inhibition pick the winner and gate the update by its spike (y0); "
                "drop the anti-Hebbian update of the losers (SoftHebb's hardware form: "
                "eta * y0 * (x1 - y2 * w))",
            )
        if name == "sum_pre":
            return self.error(
                target, text,
                f"{f} sums over the pre-synaptic population (e.g. a weight vector's norm); the "
                "learning engine only sees the local variables of one synapse",
                "use a constant learning rate instead of one scaled by the weight norm: the "
                "Oja-like term - y0 * y2 * w already drives each neuron's weight norm to a fixed value",
            )
        if name == "abs":
            return self.error(
                target, text,
                f"{f}: the learning engine has no absolute value (only |w + C| = sgn(w + C) * (w + C) "
                "of one synaptic variable is lowered automatically)",
                "write sgn(...) * (...) of a synaptic variable, or split the connection into a "
                "positive and a negative projection (sign_mode EXCITATORY / INHIBITORY) so that "
                "each side has a known sign",
            )
        if name == "div":
            return self.error(
                target, text,
                f"{f} divides by a non-constant: there is no division on chip",
                "divide only by numbers or Params (folded into the scaling constant), or give the "
                "reciprocal as a Param / a driven trace",
            )
        if name in ("exp", "pow"):
            return self.error(
                target, text,
                f"{f}: the learning engine multiplies and adds only (integer powers become repeated "
                "factors; exp and fractional or negative powers have no form)",
                "remove it, or let a trace provide the exponential (traces decay as exp(-t/tau)), "
                "or bound the weight with w_min/w_max (sign mode) instead",
            )
        if name in ("clamp", "maximum", "minimum"):
            return self.error(
                target, text,
                f"{f}: the learning engine has no clipping, maximum or minimum inside a rule",
                "remove it and bound the weight with w_min=0 (sign mode EXCITATORY) or w_max=0 "
                "(INHIBITORY), or use a multiplicative soft bound such as a * y0 * x1 * (w_max - w)",
            )
        return self.error(target, text, f"{f} has no learning-engine form")

    # --- whole rule ------------------------------------------------------------------------
    def products(self) -> Dict[str, Tuple[LoihiProduct, ...]]:
        rule = self.rule
        if rule.u_exponent > MAX_U_EXPONENT and rule.uses("u"):
            raise self.error(
                None, f"u_exponent={rule.u_exponent}",
                f"Lava's parser reads one digit after 'u' (u{rule.u_exponent} would parse as "
                f"u{str(rule.u_exponent)[0]} times {str(rule.u_exponent)[1:]})",
                f"use u_exponent <= {MAX_U_EXPONENT}, or a longer t_epoch",
            )
        out: Dict[str, Tuple[LoihiProduct, ...]] = {}
        for target in TARGETS:
            expr = getattr(rule, target)
            if expr is None:
                continue
            try:
                terms = expand_terms(self.rewrite(expr), target)
            except RuleError as exc:  # e.g. a rewrite exposed a constant-only product
                raise self.error(target, str(expr), str(exc)) from exc
            products = [self.lower_term(target, t) for t in terms]
            products = _merge_brackets(_combine(products))
            for p in products:
                if loihi_scaling(p.coef) is None:
                    raise self._coefficient_error(target, p)
            if products:
                out[target] = tuple(products)
        if not out:
            raise self.error(None, str(rule).splitlines()[0], "every target's products cancel out: nothing to learn")
        return out

    def _coefficient_error(self, target: str, p: LoihiProduct) -> LoihiLoweringError:
        lo, hi = _nearest_scalings(p.coef)
        near = " or ".join(_scaling_text(v) for v in (lo, hi) if v is not None)
        text = " * ".join([repr(p.coef), p.dependency] + [f.text() for f in p.factors])
        return self.error(
            target, text,
            f"Loihi scales each product by m * 2^e with an integer m in [{SCALE_MANTISSA_RANGE[0]}, "
            f"{SCALE_MANTISSA_RANGE[1]}] and e in [{SCALE_EXPONENT_RANGE[0]}, {SCALE_EXPONENT_RANGE[1]}]; "
            f"{p.coef!r} is not of that form (Lava would have to round it)",
            f"use a representable value such as {near} (rule.with_params(...)), or move the "
            "factor into a trace impulse (impulse * k and coefficient / k) or into the weight scale",
        )


def _combine(products: List[LoihiProduct]) -> List[LoihiProduct]:
    """Sum the coefficients of products with the same dependency and factors; drop zeros."""
    order: List[Tuple] = []
    coefs: Dict[Tuple, float] = {}
    first: Dict[Tuple, LoihiProduct] = {}
    for p in products:
        key = (p.dependency, frozenset(Counter(p.factors).items()))
        if key not in coefs:
            order.append(key)
            coefs[key], first[key] = 0.0, p
        coefs[key] += p.coef
    return [LoihiProduct(coefs[k], first[k].dependency, first[k].factors) for k in order if coefs[k] != 0]


def _merge_brackets(products: List[LoihiProduct]) -> List[LoihiProduct]:
    """Fold ``c*D*F*v + k*D*F`` into ``c*D*F*(v + k/c)`` where that is exact.

    Done for synaptic variables (the soft-bound forms ``(1 - w)``, ``(w - w_min)``) and
    wherever ``k`` is no scaling constant on its own (``(x1 - 0.3)``).
    """
    products = list(products)
    changed = True
    while changed:
        changed = False
        for i, a in enumerate(products):
            if loihi_scaling(a.coef) is None:
                continue
            ca = Counter(a.factors)
            for j, b in enumerate(products):
                if i == j or a.dependency != b.dependency:
                    continue
                cb = Counter(b.factors)
                extra = ca - cb
                if cb - ca or sum(extra.values()) != 1:
                    continue
                v = next(iter(extra))
                if v.const is not None or v.sgn:
                    continue
                if v.var not in SYNAPTIC and loihi_scaling(b.coef) is not None:
                    continue  # fold traces only where needed: x0*y1 + x0 stays as written
                const = _exact_ratio(b.coef, a.coef)
                if const is None:
                    continue
                factors = list(a.factors)
                factors[factors.index(v)] = LoihiFactor(v.var, const)
                merged = LoihiProduct(a.coef, a.dependency, tuple(factors))
                keep, drop = min(i, j), max(i, j)
                products[keep] = merged
                del products[drop]
                changed = True
                break
            if changed:
                break
    return products


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------
def lower_products(rule: LearningRule) -> Dict[str, Tuple[LoihiProduct, ...]]:
    """Each target's products in Loihi form (exact), or raise :class:`LoihiLoweringError`."""
    return _Lowering(rule).products()


def needs_post_factors(rule: LearningRule) -> bool:
    """Whether a target reads a driven post trace: the 3-factor path, where the post neuron sends y1..y3."""
    return _Lowering(rule).three_factor


def impulse_errors(rule: LearningRule) -> List[LoihiLoweringError]:
    """Negative trace impulses, which Loihi (and Lava) reject."""
    return [
        LoihiLoweringError(
            rule.name, None, f"{name} impulse {tr.impulse:g}",
            "Loihi trace impulses are non-negative (Lava rejects negative ones)",
            f"use impulse {-tr.impulse:g} and flip the sign of the products that read {name}",
        )
        for name, tr in sorted(rule.traces.items())
        if tr.driven_by is None and tr.impulse < 0
    ]


def lowering_problems(rule: LearningRule) -> List[LoihiLoweringError]:
    """Every reason ``rule`` has no exact Loihi 2 form (empty if it lowers).

    Unlike :func:`lower_products`, which stops at the first, this reports each
    offending product of each target, the weight bounds and the impulses.
    """
    found: List[LoihiLoweringError] = []
    try:
        weight_sign_mode(rule)
    except LoihiLoweringError as e:
        found.append(e)
    found += impulse_errors(rule)
    lowering = _Lowering(rule)
    term_errors: List[LoihiLoweringError] = []
    for target, terms in rule.terms().items():
        products = []
        for term in terms:
            # Each product of the expanded rule on its own, so one bad factor hides no other.
            single = functools.reduce(lambda a, b: a * b, term.factors, Const(term.coef) * Var(term.dependency))
            try:
                products += [lowering.lower_term(target, t) for t in expand_terms(lowering.rewrite(single), target)]
            except LoihiLoweringError as e:
                term_errors.append(e)
            except RuleError as e:
                term_errors.append(lowering.error(target, str(single), str(e)))
        term_errors += [
            lowering._coefficient_error(target, p)
            for p in _merge_brackets(_combine(products))
            if loihi_scaling(p.coef) is None
        ]
    if not term_errors:
        try:
            lowering.products()  # rule-wide checks: u_exponent, products that all cancel
        except LoihiLoweringError as e:
            term_errors.append(e)
    return found + term_errors


def format_products(products: Tuple[LoihiProduct, ...], u_exponent: int = 0) -> str:
    """Lava learning-rule text of a sum of products."""
    return "".join(p.text(u_exponent, first=(i == 0)) for i, p in enumerate(products))


def to_loihi_strings(rule: LearningRule) -> Dict[str, str]:
    """The sum-of-products string of each target (``dw``, ``dt``, ``dd``) for Lava's parser.

    Targets whose products cancel out are left out (no update is the same as ``0``).
    Raises :class:`LoihiLoweringError` naming the offending product otherwise.
    """
    return {k: format_products(v, rule.u_exponent) for k, v in lower_products(rule).items()}


def weight_sign_mode(rule: LearningRule) -> str:
    """``"mixed"``, ``"excitatory"`` or ``"inhibitory"``: the only weight bounds Loihi has."""
    lo, hi = rule.w_min, rule.w_max
    if lo == -math.inf and hi == math.inf:
        return "mixed"
    if lo == 0.0 and hi == math.inf:
        return "excitatory"
    if lo == -math.inf and hi == 0.0:
        return "inhibitory"
    raise LoihiLoweringError(
        rule.name, None, f"w in [{lo:g}, {hi:g}]",
        "Loihi has no arbitrary weight clipping: its learning engine only keeps the sign "
        "(w >= 0 with sign mode EXCITATORY, w <= 0 with INHIBITORY, none with MIXED)",
        "drop the bound(s) (dataclasses.replace(rule, w_min=0.0, w_max=math.inf) for an excitatory "
        "connection), and if the weights must stay below w_max use the multiplicative soft-bound "
        "form a_plus * y0 * x1 * (w_max - w) - a_minus * x0 * y1 * (w - w_min) "
        "(neuro.standard_rules.stdp(multiplicative=True)), which approaches the bounds without clipping",
    )


__all__ = [
    "LoihiLoweringError",
    "LoihiFactor",
    "LoihiProduct",
    "SCALE_MANTISSA_RANGE",
    "SCALE_EXPONENT_RANGE",
    "loihi_scaling",
    "lower_products",
    "lowering_problems",
    "needs_post_factors",
    "impulse_errors",
    "format_products",
    "to_loihi_strings",
    "weight_sign_mode",
]

"""Plasticity rules: targets, trace configuration, learning epoch.

A :class:`LearningRule` says how the synaptic variables change once per learning
epoch of ``t_epoch`` steps, following the semantics of Loihi 2's learning engine
as simulated by Lava (``LearningConnectionModelFloat``):

* within an epoch each synapse end remembers whether and when (last step) it
  spiked; ``x0``/``y0`` are 1 for a pre/post neuron that spiked in the epoch;
* at the end of the epoch every target is updated, ``w += dw`` (and ``t += dt``,
  ``d += dd``), from the values all variables had before the update;
* a trace appearing in a product is read at the time given by that product's
  dependency: at the pre neuron's last spike (``x0``), at the post neuron's last
  spike (``y0``) or at the end of the epoch (``u``);
* traces decay by ``exp(-dt / tau)`` per step and jump by ``impulse`` on a spike
  (the spike's own step included), a post trace may instead be *driven* by the
  post neuron (membrane potential, current or an external third factor).

Every product of the expanded rule must contain one dependency; it is the
event that triggers that part of the update.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Mapping, Optional, Tuple

from neuro.expr import (
    DEPENDENCIES,
    POST_TRACES,
    PRE_TRACES,
    TRACES,
    Const,
    Expr,
    Op,
    Param,
    RuleError,
    Var,
    expr_from_data,
)

TARGETS: Tuple[str, ...] = ("dw", "dt", "dd")
DRIVERS: Tuple[str, ...] = ("v", "i", "third_factor")
FORMAT = "neuro.rule/1"


@dataclass(frozen=True)
class Trace:
    """Configuration of one trace.

    Parameters:
        impulse: increment on each spike of the trace's neuron (dimensionless).
        tau: decay time constant in **seconds** (``math.inf``: no decay).
        driven_by: post traces only: instead of counting spikes, the trace takes,
            every step, the post neuron's membrane potential ``"v"``, its synaptic
            current ``"i"`` or an external ``"third_factor"`` signal (reward,
            error). A driven trace has no impulse and does not decay.
    """

    impulse: float = 0.0
    tau: float = math.inf
    driven_by: Optional[str] = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.impulse):
            raise RuleError(f"trace impulse must be finite, got {self.impulse!r}")
        if isinstance(self.tau, bool) or not isinstance(self.tau, (int, float)) or not self.tau > 0:
            raise RuleError(
                f"trace tau must be a positive time in seconds (math.inf for no decay), got {self.tau!r}"
            )
        if self.driven_by is not None:
            if self.driven_by not in DRIVERS:
                raise RuleError(
                    f"unknown trace driver {self.driven_by!r}; known: {', '.join(DRIVERS)}"
                )
            if self.impulse != 0.0 or self.tau != math.inf:
                raise RuleError("a driven trace takes its value from the post neuron: give no impulse or tau")

    def decay(self, dt: float) -> float:
        """Multiplicative decay per step of ``dt`` seconds."""
        return 1.0 if self.tau == math.inf else math.exp(-dt / self.tau)

    def to_data(self) -> Dict[str, Any]:
        return {
            "impulse": self.impulse,
            "tau": None if self.tau == math.inf else self.tau,
            "driven_by": self.driven_by,
        }

    @staticmethod
    def from_data(data: Any, name: str) -> "Trace":
        if not isinstance(data, dict) or set(data) - {"impulse", "tau", "driven_by"}:
            raise RuleError(f"trace {name!r} must be a mapping with keys impulse, tau, driven_by")
        tau = data.get("tau")
        impulse = data.get("impulse", 0.0)
        if isinstance(impulse, bool) or not isinstance(impulse, (int, float)):
            raise RuleError(f"trace {name!r}: impulse must be a number, got {impulse!r}")
        if tau is not None and (isinstance(tau, bool) or not isinstance(tau, (int, float))):
            raise RuleError(f"trace {name!r}: tau must be a number or null, got {tau!r}")
        driven_by = data.get("driven_by")
        if driven_by is not None and not isinstance(driven_by, str):
            raise RuleError(f"trace {name!r}: driven_by must be a string or null")
        return Trace(float(impulse), math.inf if tau is None else float(tau), driven_by)


@dataclass(frozen=True)
class Term:
    """One product of an expanded rule: ``coef * dependency * factors``."""

    coef: float
    dependency: str
    factors: Tuple[Expr, ...]


def _expand(expr: Expr) -> List[Tuple[float, Tuple[Expr, ...]]]:
    """Distribute products over sums: ``expr == sum(coef * prod(factors))``."""
    if isinstance(expr, Const):
        return [(expr.value, ())]
    if isinstance(expr, Op):
        if expr.name == "add":
            return _expand(expr.args[0]) + _expand(expr.args[1])
        if expr.name == "sub":
            return _expand(expr.args[0]) + [(-c, f) for c, f in _expand(expr.args[1])]
        if expr.name == "neg":
            return [(-c, f) for c, f in _expand(expr.args[0])]
        if expr.name == "mul":
            return [
                (ca * cb, fa + fb)
                for ca, fa in _expand(expr.args[0])
                for cb, fb in _expand(expr.args[1])
            ]
        if expr.name == "div" and isinstance(expr.args[1], Const):
            if expr.args[1].value == 0:
                raise RuleError(f"division by zero in {expr}")
            return [(c / expr.args[1].value, f) for c, f in _expand(expr.args[0])]
        if expr.name == "div" and not expr.args[1].variables() & set(DEPENDENCIES):
            # a / b = a * (1 / b): each product of a keeps its dependency (a dependency in b cannot trigger)
            inverse = Op("div", (Const(1.0), expr.args[1]))
            return [(c, f + (inverse,)) for c, f in _expand(expr.args[0])]
    return [(1.0, (expr,))]


def expand_terms(expr: Expr, target: str = "dw") -> Tuple[Term, ...]:
    """Expand ``expr`` into products, each with exactly one triggering dependency.

    The first of x0/y0/u met in a product triggers it; a further dependency in
    the same product is an ordinary 0/1 factor (``x0 * y0``: both spiked).
    """
    terms = []
    for coef, factors in _expand(expr):
        if coef == 0.0:
            continue
        deps = [f for f in factors if isinstance(f, Var) and f.name in DEPENDENCIES]
        if not deps:
            shown = " * ".join([repr(coef)] + [str(f) for f in factors])
            raise RuleError(
                f"{target}: the product '{shown}' has no dependency; multiply it by x0 "
                "(on a pre spike), y0 (on a post spike) or u (every epoch)"
            )
        for f in factors:
            if f is not deps[0] and any(
                isinstance(n, Var) and n.name in DEPENDENCIES for n in f.walk()
            ) and not (isinstance(f, Var)):
                raise RuleError(
                    f"{target}: dependency inside '{f}': x0, y0 and u may only be plain factors"
                )
        rest = list(factors)
        rest.remove(deps[0])
        terms.append(Term(coef, deps[0].name, tuple(rest)))
    return tuple(terms)


@dataclass(frozen=True)
class LearningRule:
    """A local plasticity rule, written once for every back-end.

    Parameters:
        dw, dt, dd: per-epoch increments of the weight ``w``, the tag ``t`` and
            the delay/second tag ``d`` (``None``: the variable does not learn).
        traces: configuration of the traces the expressions read, by name
            (``x1``, ``x2``, ``y1``, ``y2``, ``y3``).
        t_epoch: learning epoch length in **steps**.
        u_exponent: ``u`` is 1 in epochs whose index is a multiple of
            ``2**u_exponent`` and 0 otherwise (Loihi's ``u<k>``).
        w_min, w_max: the weight is clipped to this range after each update.
        params: values of the :class:`~neuro.expr.Param` names used.
        name: a label for files and messages.

    ``d`` is kept non-negative after each update, as on Loihi.
    """

    dw: Optional[Expr] = None
    dt: Optional[Expr] = None
    dd: Optional[Expr] = None
    traces: Mapping[str, Trace] = field(default_factory=dict)
    t_epoch: int = 1
    u_exponent: int = 0
    w_min: float = -math.inf
    w_max: float = math.inf
    params: Mapping[str, float] = field(default_factory=dict)
    name: str = "rule"

    def __post_init__(self) -> None:
        object.__setattr__(self, "traces", dict(self.traces))
        object.__setattr__(self, "params", {k: float(v) for k, v in dict(self.params).items()})
        targets = self.targets()
        if not targets:
            raise RuleError(f"rule {self.name!r} has no target: give at least one of dw, dt, dd")
        for target, expr in targets.items():
            if not isinstance(expr, Expr):
                raise RuleError(
                    f"rule {self.name!r}: {target} must be a rule expression, got {type(expr).__name__}"
                )
        for trace_name, trace in self.traces.items():
            if trace_name not in TRACES:
                raise RuleError(
                    f"rule {self.name!r}: unknown trace {trace_name!r}; traces are {', '.join(TRACES)}"
                )
            if not isinstance(trace, Trace):
                raise RuleError(f"rule {self.name!r}: trace {trace_name!r} must be a Trace")
            if trace.driven_by is not None and trace_name in PRE_TRACES:
                raise RuleError(
                    f"rule {self.name!r}: {trace_name} is a pre trace; only post traces can be driven"
                )
        if isinstance(self.t_epoch, bool) or not isinstance(self.t_epoch, int) or self.t_epoch < 1:
            raise RuleError(f"rule {self.name!r}: t_epoch must be an integer >= 1 steps, got {self.t_epoch!r}")
        if isinstance(self.u_exponent, bool) or not isinstance(self.u_exponent, int) or self.u_exponent < 0:
            raise RuleError(f"rule {self.name!r}: u_exponent must be an integer >= 0")
        if not (self.w_min < self.w_max) or math.isnan(self.w_min) or math.isnan(self.w_max):
            raise RuleError(f"rule {self.name!r}: need w_min < w_max, got {self.w_min}, {self.w_max}")
        for p, v in self.params.items():
            Param(p)  # validates the name
            if not math.isfinite(v):
                raise RuleError(f"rule {self.name!r}: parameter {p!r} must be finite, got {v}")
        used_params: set = set()
        for target, expr in targets.items():
            expand_terms(expr, target)
            for var in expr.variables():
                if var in TRACES and var not in self.traces:
                    raise RuleError(
                        f"rule {self.name!r}: {target} reads trace {var!r} but the rule configures no "
                        f"Trace for it; add traces={{'{var}': Trace(impulse=..., tau=...)}}"
                    )
            used_params |= expr.params()
        missing = used_params - set(self.params)
        if missing:
            raise RuleError(f"rule {self.name!r}: no value for parameter(s) {sorted(missing)}")

    def targets(self) -> Dict[str, Expr]:
        """The non-empty targets by name (``dw``, ``dt``, ``dd``)."""
        return {k: getattr(self, k) for k in TARGETS if getattr(self, k) is not None}

    def terms(self) -> Dict[str, Tuple[Term, ...]]:
        """Each target's expanded products."""
        return {k: expand_terms(e, k) for k, e in self.targets().items()}

    def with_params(self, **values: float) -> "LearningRule":
        """A copy with some parameter values replaced."""
        unknown = set(values) - set(self.params)
        if unknown:
            raise RuleError(f"rule {self.name!r} has no parameter(s) {sorted(unknown)}")
        return replace(self, params={**self.params, **values})

    @property
    def update_period(self) -> int:
        """Steps between weight changes: ``t_epoch``, times ``2**u_exponent`` when every product
        carries the ``u`` dependency (then nothing changes in the epochs where ``u`` is 0)."""
        terms = [t for ts in self.terms().values() for t in ts]
        if terms and all(t.dependency == "u" for t in terms):
            return self.t_epoch * 2**self.u_exponent
        return self.t_epoch

    def uses(self, name: str) -> bool:
        """Whether any target reads variable ``name``."""
        return any(name in e.variables() for e in self.targets().values())

    def to_data(self) -> Dict[str, Any]:
        """A JSON-safe description (dicts, lists, strings, numbers, None)."""
        return {
            "format": FORMAT,
            "name": self.name,
            **{k: (None if getattr(self, k) is None else getattr(self, k).to_data()) for k in TARGETS},
            "traces": {k: v.to_data() for k, v in sorted(self.traces.items())},
            "t_epoch": self.t_epoch,
            "u_exponent": self.u_exponent,
            "w_min": None if self.w_min == -math.inf else self.w_min,
            "w_max": None if self.w_max == math.inf else self.w_max,
            "params": dict(sorted(self.params.items())),
        }

    @staticmethod
    def from_data(data: Any) -> "LearningRule":
        """Parse :meth:`to_data` output; raise :class:`RuleError` on anything malformed."""
        if not isinstance(data, dict):
            raise RuleError(f"rule data must be a mapping, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise RuleError(f"not a neuro rule: format is {data.get('format')!r}, expected {FORMAT!r}")
        known = {"format", "name", *TARGETS, "traces", "t_epoch", "u_exponent", "w_min", "w_max", "params"}
        extra = set(data) - known
        if extra:
            raise RuleError(f"unknown key(s) in rule data: {sorted(extra)}")
        traces = data.get("traces", {})
        params = data.get("params", {})
        if not isinstance(traces, dict) or not isinstance(params, dict):
            raise RuleError("rule data: 'traces' and 'params' must be mappings")
        for k, v in params.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise RuleError(f"rule data: parameter {k!r} must be a number, got {v!r}")

        def bound(key: str, default: float) -> float:
            v = data.get(key)
            if v is None:
                return default
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise RuleError(f"rule data: {key} must be a number or null, got {v!r}")
            return float(v)

        for key in ("t_epoch", "u_exponent"):
            v = data.get(key, 1 if key == "t_epoch" else 0)
            if isinstance(v, bool) or not isinstance(v, int):
                raise RuleError(f"rule data: {key} must be an integer, got {v!r}")
        name = data.get("name", "rule")
        if not isinstance(name, str):
            raise RuleError("rule data: name must be a string")
        return LearningRule(
            **{k: (None if data.get(k) is None else expr_from_data(data[k])) for k in TARGETS},
            traces={k: Trace.from_data(v, k) for k, v in traces.items()},
            t_epoch=data.get("t_epoch", 1),
            u_exponent=data.get("u_exponent", 0),
            w_min=bound("w_min", -math.inf),
            w_max=bound("w_max", math.inf),
            params=params,
            name=name,
        )

    def __str__(self) -> str:
        lines = [f"{self.name}: t_epoch={self.t_epoch} steps"]
        lines += [f"  {k} = {e}" for k, e in self.targets().items()]
        for k, tr in sorted(self.traces.items()):
            how = f"driven by {tr.driven_by}" if tr.driven_by else f"impulse {tr.impulse:g}, tau {tr.tau:g} s"
            lines.append(f"  {k}: {how}")
        if self.w_min > -math.inf or self.w_max < math.inf:
            lines.append(f"  w in [{self.w_min:g}, {self.w_max:g}]")
        if self.params:
            lines.append("  params: " + ", ".join(f"{k}={v:g}" for k, v in sorted(self.params.items())))
        return "\n".join(lines)


__all__ = ["LearningRule", "Trace", "Term", "expand_terms", "RuleError", "TARGETS", "DRIVERS", "POST_TRACES"]

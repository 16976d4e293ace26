"""Expression trees for plasticity rules.

A rule is data: a small tree of :class:`Var`, :class:`Const`, :class:`Param` and
:class:`Op` nodes built with ordinary Python operators (``eta * y0 * (x1 - w)``).
Trees serialize to JSON-safe nested dicts and are parsed back by
:func:`expr_from_data`, which walks the data and never evaluates text, so model
files are safe to load.

Variables follow Loihi 2's learning engine (see DESIGN.md):

* dependencies ``x0`` (pre spiked in the epoch), ``y0`` (post spiked), ``u``
  (every epoch, decimated by the rule's ``u_exponent``);
* pre traces ``x1``, ``x2``; post traces ``y1``, ``y2``, ``y3``;
* synaptic state ``w`` (weight), ``t`` (tag), ``d`` (delay / second tag).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, Tuple, Union

DEPENDENCIES: Tuple[str, ...] = ("x0", "y0", "u")
PRE_TRACES: Tuple[str, ...] = ("x1", "x2")
POST_TRACES: Tuple[str, ...] = ("y1", "y2", "y3")
TRACES: Tuple[str, ...] = PRE_TRACES + POST_TRACES
SYNAPTIC: Tuple[str, ...] = ("w", "t", "d")
VARIABLES: Tuple[str, ...] = DEPENDENCIES + TRACES + SYNAPTIC

# name -> (number of expression arguments, number of float attributes).
# The simulator supports all of them; Loihi's sum-of-products engine supports
# only add/sub/neg/mul by constants and sign (see export/ for the lowering).
OPS: Dict[str, Tuple[int, int]] = {
    "add": (2, 0),
    "sub": (2, 0),
    "mul": (2, 0),
    "div": (2, 0),
    "neg": (1, 0),
    "abs": (1, 0),
    "sign": (1, 0),
    "exp": (1, 0),
    "pow": (1, 1),  # attribute: the (constant) exponent
    "clamp": (1, 2),  # attributes: lower, upper bound
    "maximum": (2, 0),
    "minimum": (2, 0),
    "softmax": (1, 1),  # over the post population; attribute: temperature
    "winner": (1, 0),  # 1 for the post neuron with the largest value, 0 for the others
    "sum_pre": (1, 0),  # sum over the pre-synaptic population (e.g. a weight vector's norm)
}

# Operations whose value at one synapse depends on other neurons' values. They compare
# the neurons at one instant, the end of the learning epoch, whatever the product's dependency.
MIXING_OPS: Tuple[str, ...] = ("softmax", "winner", "sum_pre")
# What each may compare: (which population, the variables its argument may read).
ACROSS: Dict[str, Tuple[str, frozenset]] = {
    "softmax": ("the post neurons", frozenset({"y1", "y2", "y3", "w", "t", "d"})),
    "winner": ("the post neurons", frozenset({"y1", "y2", "y3", "w", "t", "d"})),
    "sum_pre": ("the pre neurons", frozenset({"x1", "x2", "w", "t", "d"})),
}

Operand = Union["Expr", float, int]


class RuleError(ValueError):
    """A rule or its serialized data is malformed; the message names the problem."""


def _wrap(value: Operand) -> "Expr":
    if isinstance(value, Expr):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RuleError(
            f"cannot use {value!r} ({type(value).__name__}) in a rule: "
            "only rule variables, Param(...) and numbers are allowed"
        )
    return Const(float(value))


class Expr:
    """Base class of rule expressions; combine them with + - * / and unary -."""

    __slots__ = ()

    def __add__(self, other: Operand) -> "Expr":
        return Op("add", (self, _wrap(other)))

    def __radd__(self, other: Operand) -> "Expr":
        return Op("add", (_wrap(other), self))

    def __sub__(self, other: Operand) -> "Expr":
        return Op("sub", (self, _wrap(other)))

    def __rsub__(self, other: Operand) -> "Expr":
        return Op("sub", (_wrap(other), self))

    def __mul__(self, other: Operand) -> "Expr":
        return Op("mul", (self, _wrap(other)))

    def __rmul__(self, other: Operand) -> "Expr":
        return Op("mul", (_wrap(other), self))

    def __truediv__(self, other: Operand) -> "Expr":
        return Op("div", (self, _wrap(other)))

    def __rtruediv__(self, other: Operand) -> "Expr":
        return Op("div", (_wrap(other), self))

    def __neg__(self) -> "Expr":
        return Op("neg", (self,))

    def __pow__(self, exponent: float) -> "Expr":
        if isinstance(exponent, Expr):
            raise RuleError("the exponent of ** must be a number, not an expression")
        return Op("pow", (self,), (float(exponent),))

    def __bool__(self) -> bool:
        # `if expr:` or `a < b` chains would silently pick a branch.
        raise RuleError("rule expressions have no truth value; use clamp/maximum/minimum")

    def children(self) -> Tuple["Expr", ...]:
        return ()

    def walk(self) -> Iterator["Expr"]:
        """Yield this node and all nodes below it, parents first."""
        yield self
        for child in self.children():
            yield from child.walk()

    def variables(self) -> set:
        return {n.name for n in self.walk() if isinstance(n, Var)}

    def params(self) -> set:
        return {n.name for n in self.walk() if isinstance(n, Param)}

    def to_data(self) -> Dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True, eq=True)
class Var(Expr):
    """A local variable of the learning engine (one of :data:`VARIABLES`)."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in VARIABLES:
            raise RuleError(
                f"unknown rule variable {self.name!r}; known variables: {', '.join(VARIABLES)}"
            )

    def to_data(self) -> Dict[str, Any]:
        return {"var": self.name}

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, eq=True)
class Const(Expr):
    """A finite number."""

    value: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.value):
            raise RuleError(f"rule constants must be finite, got {self.value!r}")

    def to_data(self) -> Dict[str, Any]:
        return {"const": self.value}

    def __str__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True, eq=True)
class Param(Expr):
    """A named scalar hyper-parameter whose value the rule's ``params`` give.

    The torch engine can give each replica its own value (a sweep); exporters
    substitute the single value.
    """

    name: str

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name in VARIABLES:
            raise RuleError(
                f"bad parameter name {self.name!r}: use an identifier that is not a rule variable"
            )

    def to_data(self) -> Dict[str, Any]:
        return {"param": self.name}

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, eq=True)
class Op(Expr):
    """An operation from :data:`OPS` on expression arguments and float attributes."""

    name: str
    args: Tuple[Expr, ...]
    attrs: Tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.name not in OPS:
            raise RuleError(f"unknown rule operation {self.name!r}; known: {', '.join(OPS)}")
        n_args, n_attrs = OPS[self.name]
        if len(self.args) != n_args or not all(isinstance(a, Expr) for a in self.args):
            raise RuleError(f"operation {self.name!r} takes {n_args} expression argument(s)")
        if len(self.attrs) != n_attrs:
            raise RuleError(f"operation {self.name!r} takes {n_attrs} number attribute(s)")
        for a in self.attrs:
            if not isinstance(a, float) or math.isnan(a):
                raise RuleError(f"operation {self.name!r} has a bad attribute {a!r}")
        if self.name == "clamp" and not self.attrs[0] <= self.attrs[1]:
            raise RuleError(f"clamp bounds must satisfy lower <= upper, got {self.attrs}")
        if self.name == "softmax" and not (self.attrs[0] > 0 and math.isfinite(self.attrs[0])):
            raise RuleError(f"softmax temperature must be positive and finite, got {self.attrs[0]}")
        if self.name in ACROSS:
            side, allowed = ACROSS[self.name]
            used = self.args[0].variables()
            if not used or not used <= allowed:
                raise RuleError(
                    f"{self.name}(...) compares {side}: its argument must read {side}-side or synaptic "
                    f"variables ({', '.join(sorted(allowed))}) and nothing else, got {self.args[0]}"
                )

    def children(self) -> Tuple[Expr, ...]:
        return self.args

    def to_data(self) -> Dict[str, Any]:
        data: Dict[str, Any] = {"op": self.name, "args": [a.to_data() for a in self.args]}
        if self.attrs:
            data["attrs"] = list(self.attrs)
        return data

    def __str__(self) -> str:
        symbols = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
        if self.name in symbols:
            return f"({self.args[0]} {symbols[self.name]} {self.args[1]})"
        if self.name == "neg":
            return f"(-{self.args[0]})"
        inner = ", ".join([str(a) for a in self.args] + [repr(v) for v in self.attrs])
        return f"{self.name}({inner})"


# The variables as ready-made expressions, so rules read like equations.
x0, y0, u = Var("x0"), Var("y0"), Var("u")
x1, x2 = Var("x1"), Var("x2")
y1, y2, y3 = Var("y1"), Var("y2"), Var("y3")
w, t, d = Var("w"), Var("t"), Var("d")


def abs_(e: Operand) -> Expr:
    """|e|."""
    return Op("abs", (_wrap(e),))


def sign(e: Operand) -> Expr:
    """sign(e) in {-1, 0, 1}."""
    return Op("sign", (_wrap(e),))


def exp(e: Operand) -> Expr:
    """e ** exponential."""
    return Op("exp", (_wrap(e),))


def clamp(e: Operand, lower: float = -math.inf, upper: float = math.inf) -> Expr:
    """e limited to [lower, upper]."""
    return Op("clamp", (_wrap(e),), (float(lower), float(upper)))


def relu(e: Operand) -> Expr:
    """max(e, 0)."""
    return clamp(e, 0.0, math.inf)


def maximum(a: Operand, b: Operand) -> Expr:
    return Op("maximum", (_wrap(a), _wrap(b)))


def minimum(a: Operand, b: Operand) -> Expr:
    return Op("minimum", (_wrap(a), _wrap(b)))


def softmax(e: Operand, temperature: float = 1.0) -> Expr:
    """softmax(e / temperature) across the post-synaptic population (at the end of the epoch)."""
    return Op("softmax", (_wrap(e),), (float(temperature),))


def winner(e: Operand) -> Expr:
    """1 for the post neuron where ``e`` is largest (the first on ties), 0 elsewhere (hard WTA);
    ``e`` reads post traces or synaptic variables, compared at the end of the epoch."""
    return Op("winner", (_wrap(e),))


def sum_pre(e: Operand) -> Expr:
    """Sum of ``e`` over the pre-synaptic population, per post neuron: ``sum_pre(w * w) ** 0.5``
    is the norm of a neuron's incoming weight vector. ``e`` reads pre traces or synaptic
    variables, at the end of the epoch."""
    return Op("sum_pre", (_wrap(e),))


_MAX_DEPTH = 64


def expr_from_data(data: Any, _depth: int = 0) -> Expr:
    """Parse :meth:`Expr.to_data` output back into an expression.

    Raises :class:`RuleError` naming the first malformed node; never evaluates text.
    """
    if _depth > _MAX_DEPTH:
        raise RuleError(f"rule expression nested deeper than {_MAX_DEPTH} levels")
    if not isinstance(data, dict):
        raise RuleError(f"rule expression node must be a mapping, got {type(data).__name__}")
    keys = set(data)
    if keys == {"var"}:
        if not isinstance(data["var"], str):
            raise RuleError(f"variable name must be a string, got {data['var']!r}")
        return Var(data["var"])
    if keys == {"const"}:
        value = data["const"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RuleError(f"constant must be a number, got {value!r}")
        return Const(float(value))
    if keys == {"param"}:
        if not isinstance(data["param"], str):
            raise RuleError(f"parameter name must be a string, got {data['param']!r}")
        return Param(data["param"])
    if "op" in keys and keys <= {"op", "args", "attrs"}:
        name, args, attrs = data["op"], data.get("args", []), data.get("attrs", [])
        if not isinstance(name, str):
            raise RuleError(f"operation name must be a string, got {name!r}")
        if not isinstance(args, (list, tuple)) or not isinstance(attrs, (list, tuple)):
            raise RuleError(f"operation {name!r}: 'args' and 'attrs' must be lists")
        for a in attrs:
            if isinstance(a, bool) or not isinstance(a, (int, float)):
                raise RuleError(f"operation {name!r}: attribute {a!r} is not a number")
        parsed = tuple(expr_from_data(a, _depth + 1) for a in args)
        return Op(name, parsed, tuple(float(a) for a in attrs))
    raise RuleError(f"unrecognized rule expression node with keys {sorted(keys)}")


def map_leaves(expr: Expr, fn: Callable[[Expr], Expr]) -> Expr:
    """Rebuild ``expr`` with every leaf replaced by ``fn(leaf)``."""
    if isinstance(expr, Op):
        return Op(expr.name, tuple(map_leaves(a, fn) for a in expr.args), expr.attrs)
    return fn(expr)

"""Compile a :class:`neuro.Network` and its learning rules to Brian2 and run it there.

The graph and the rules are translated, not re-written: a rule's expanded products (the same
:func:`neuro.rule.expand_terms` the torch engine runs) become Brian2 abstract code, so any rule of the
rule language that Brian2 can express per synapse runs there without a line of Brian2 written for it.
tests/test_brian2_export.py checks the result against the torch engine (same spikes, weights to
float64 rounding); tests/test_brian2_reference.py checks the engine against Brian2 models written by
hand, independently of this module.

Mapping (engine step ``k``, numbered from 1, is Brian2's time ``(k - 1) dt``):

* an input population -> ``SpikeGeneratorGroup`` replaying its spikes (encoded inputs drawn exactly as
  :class:`neuro.Simulator` draws them for the same seed);
* a population -> ``NeuronGroup``. Each projection adds to its own buffer ``ibuf_<projection>`` in
  the post group, which takes the buffers in at the next step, summed in the network's order as the
  engine sums them: the engine's one-step synaptic buffer. :class:`~neuro.LIF` updates ``v`` and
  ``isyn`` (Brian2 reserves ``i``) with Norse's operations written out one temporary at a time (Brian2
  would reorder the terms of one expression, and a spike at a threshold tie would then flip); the
  current's bounds, gate and one-sided leak, the subtractive reset, the membrane floor and the adaptive
  threshold are all expressed. :class:`~neuro.IAF` adds its input to ``v``. What still differs from the
  engine is the order in which one projection's synapses are summed (BLAS in a dense step, spike order
  in Brian2 and in the engine's event-driven step): ~1e-16, and a spike exactly at threshold may flip;
* a projection -> ``Synapses`` with the existing synapses only (a mask's), ``on_pre`` adding ``w``
  to the post buffer with the weight before this step's learning;
* a rule -> per-synapse traces (``exact`` exponential decay each step, the impulse on a spike),
  flags for this step's pre and post spikes, and one ``run_regularly`` at the end of every step that
  evaluates every product from the values before the update, adds them, clips ``w`` to the rule's
  bounds and keeps ``d`` non-negative. Driven post traces read ``v_post``, ``isyn_post`` or the
  population's third factor (a ``TimedArray``). Epochs of ``t_epoch > 1`` steps follow the engine's (and
  Lava's) learning engine: traces hold their epoch-start value, the last spike's step in the epoch is
  kept per synapse (``tx``, ``ty``), a second spike in an epoch adds its impulse to the start value, each
  product reads its traces at its dependency's time, and the update, gated to the epoch's last step,
  leaves every variable untouched on the other steps. A ``sum_pre(...)`` is a summed variable into the
  post neuron, evaluated at the end of the step before the update.

* a projection tied to a learning one (:class:`~neuro.graph.Tie`) -> ``Synapses`` whose weights a
  ``NetworkOperation`` rewrites after every step's learning, as the torch engine copies them (Brian2
  cannot share weights between synapse groups; runtime targets only, like any network operation).

What it refuses, with the reason (:class:`Brian2ExportError`): operations that compare post neurons
(``softmax``, ``winner``: a Brian2 synapse reads its own pre and post neuron only) and a ``sum_pre`` over
a masked projection unless each of its products has the factor ``w`` (the engine sums every pre neuron, a
summed variable the existing synapses). Brian2
runs one replica: per-replica weights are taken at ``replica``.

A product with a factor that may be infinite or NaN where its dependency is 0 (a division by a variable,
``exp``, a negative power) goes through ``vanish(dependency, product)``, a Brian2 function that gives 0
there whatever the product is, as the engine's ``where`` does (``0 * inf`` would be NaN).
Names that Brian2 cannot take (non-ASCII, a leading ``_``) become ``pop<k>`` / ``proj<k>`` / ``par<k>``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from neuro import IAF, LIF, InputPopulation, LearningRule, Network, Recording, Simulator
from neuro.engine import TensorLike
from neuro.expr import MIXING_OPS, PRE_TRACES, Const, Expr, Op, Param, Var
from neuro.plasticity import TRACE_INDEX, _may_be_infinite
from neuro.rule import _expand
from export.runs import continued, encoded_inputs, held_or_sequence

#: Brian2 names of the rule language's synaptic variables (Brian2 reserves ``t`` and ``dt``).
SYNAPTIC_NAMES = {"w": "w", "t": "tag", "d": "tag2"}
#: Brian2 names of the learning targets' per-step increments.
TARGET_NAMES = {"dw": "w", "dt": "tag", "dd": "tag2"}


class Brian2ExportError(ValueError):
    """The network uses something the Brian2 back-end cannot express; the message says what."""


@dataclass
class Brian2Model:
    """A network compiled to Brian2 objects (one replica).

    ``net`` is the ``brian2.Network`` to run; ``groups`` maps each population to its ``NeuronGroup``
    (or ``SpikeGeneratorGroup``), ``synapses`` each projection to its ``Synapses``; ``code`` holds the
    generated equations and abstract code by object, for reading.
    """

    net: object
    groups: Dict[str, object]
    synapses: Dict[str, object]
    dt: float
    code: Dict[str, str] = field(default_factory=dict)


# --- rules as Brian2 abstract code -------------------------------------------------------------------
def _number(value: float) -> str:
    if math.isinf(value):
        return "inf" if value > 0 else "(-inf)"
    text = repr(float(value))
    return f"({text})" if value < 0 else text


def _names(rule: LearningRule, dependency: str, first_step: int, dt: float) -> Dict[str, str]:
    """Brian2 code for each rule variable in a product with ``dependency``, read at the end of the epoch
    of a run whose Brian2 step 0 is the engine's step ``first_step + 1``.

    One-step epochs: traces are per-synapse variables that decay every step. Longer epochs follow the
    engine (Lava's learning engine): a trace variable holds its value at the epoch's start, ``tx`` / ``ty``
    the last spike's step in the epoch (0: none), and a product reads each trace at its dependency's
    time ``s``: ``start * a**s + impulse * a**(s - t_spike) * [0 < t_spike <= s]``.
    """
    T, period = rule.t_epoch, 2**rule.u_exponent
    epoch = f"((t_in_timesteps + {first_step + 1}) // {T})" if T > 1 else f"(t_in_timesteps + {first_step + 1})"
    names = dict(SYNAPTIC_NAMES)
    names["u"] = "1.0" if period == 1 else f"int({epoch} % {period} == 0)"
    if T == 1:
        names.update(x0="pre_now", y0="post_now")
    else:
        names.update(x0="int(tx > 0)", y0="int(ty > 0)")
    at = {"x0": "tx", "y0": "ty", "u": str(T)}[dependency]
    driven = {"v": "v_post", "i": "isyn_post", "third_factor": "third_post"}
    for name, trace in rule.traces.items():
        if trace.driven_by:
            names[name] = driven[trace.driven_by]
        elif T == 1:
            names[name] = name
        else:
            names[name] = _sampled(name, trace, dt, at)
    return names


def _sampled(name: str, trace, dt: float, at: str) -> str:
    """Trace ``name`` of a multi-step epoch read at within-epoch step ``at`` (see :func:`_names`)."""
    spike = "tx" if name in PRE_TRACES else "ty"
    a = trace.decay(dt)
    value = name if a == 1.0 else f"{name} * {a!r}**{at}"
    if trace.impulse != 0.0:
        # the exponent clipped at 0 as the engine's table index is: a**(negative) may overflow, and * 0 is NaN
        jump = _number(trace.impulse) if a == 1.0 else f"{_number(trace.impulse)} * {a!r}**clip({at} - {spike}, 0, inf)"
        value = f"({value} + {jump} * int({spike} > 0 and {spike} <= {at}))"
    return value


def _code(e: Expr, names: Mapping[str, str], where: str, sums: Optional[Dict[str, str]] = None,
          prefix: str = "rule", at_end: Optional[Mapping[str, str]] = None) -> str:
    """``e`` as a Brian2 expression; ``Param`` ``p`` reads namespace entry ``par_p``. A ``sum_pre(...)``
    becomes a post-neuron variable ``<prefix>_sum<k>`` that a summed variable fills; ``sums`` collects
    them (name -> the per-synapse expression summed)."""
    if isinstance(e, Var):
        return names[e.name]
    if isinstance(e, Const):
        return _number(e.value)
    if isinstance(e, Param):
        return names["$" + e.name]
    assert isinstance(e, Op)
    if e.name == "sum_pre" and sums is not None:
        # the rule language allows x1, x2, w, t, d there, no nesting; mixing ops read the epoch's end
        summed = _code(e.args[0], at_end or names, where)
        name = next((k for k, v in sums.items() if v == summed), f"{prefix}_sum{len(sums)}")
        sums[name] = summed
        return f"{name}_post"
    if e.name in MIXING_OPS:
        raise Brian2ExportError(
            f"{where}: {e.name}(...) compares post neurons, and a Brian2 synapse reads only its own pre and post "
            "neuron (sums over pre neurons, sum_pre, are expressed): run this rule with the torch engine"
        )
    a = [_code(x, names, where, sums, prefix, at_end) for x in e.args]
    infix = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
    if e.name in infix:
        return f"({a[0]} {infix[e.name]} {a[1]})"
    if e.name == "neg":
        return f"(-{a[0]})"
    if e.name in ("abs", "sign", "exp"):
        return f"{e.name}({a[0]})"
    if e.name == "pow":
        return f"({a[0]})**{_number(e.attrs[0])}"
    if e.name == "clamp":
        return f"clip({a[0]}, {_number(e.attrs[0])}, {_number(e.attrs[1])})"
    if e.name == "maximum":
        return f"clip({a[0]}, {a[1]}, inf)"
    if e.name == "minimum":
        return f"clip({a[0]}, -inf, {a[1]})"
    raise Brian2ExportError(f"{where}: no Brian2 translation of operation {e.name!r}")


@dataclass(frozen=True)
class RuleCode:
    """A rule as Brian2 code for one ``Synapses`` object.

    ``model``: its equations (weights, tags, per-synapse traces, this step's spike flags, and a summed
    variable per ``sum_pre``); ``on_pre`` / ``on_post``: trace impulses and flags; ``learn``: the
    end-of-step update (every target's products from the values before the update, then ``w`` clipped
    and ``d`` kept non-negative); ``namespace``: parameters (``par_<name>``) and trace time constants
    (``tau_<trace>``, seconds); ``sums``: the post-neuron variables the summed variables fill.
    """

    model: str
    on_pre: str
    on_post: str
    learn: str
    namespace: Dict[str, float]
    sums: Tuple[str, ...]


def rule_code(rule: LearningRule, dt: float, where: str = "rule", first_step: int = 0, prefix: str = "rule",
              masked: bool = False) -> RuleCode:
    """Translate ``rule`` for steps of ``dt`` seconds (see :class:`RuleCode`). ``first_step``: the engine's
    steps before the run (epochs and ``u``'s period count from the engine's step 1); ``prefix`` names its
    ``sum_pre`` variables; ``masked``: the synapses are a mask's (a ``sum_pre`` would then sum fewer pre
    neurons than the engine)."""
    T = rule.t_epoch
    lines = [_kept_tags(rule)] + (["pre_now : 1", "post_now : 1"] if T == 1 else ["tx : 1", "ty : 1"])
    # Brian2 names are ASCII: a parameter named, say, "eta" is par_eta, one named in Greek par<k>
    params = {p: f"par_{p}" if p.isascii() else f"par{k}" for k, p in enumerate(rule.params)}
    namespace = {params[k]: v for k, v in rule.params.items()}
    on_pre, on_post = [], []
    for name, trace in rule.traces.items():
        if trace.driven_by:
            continue
        side = on_pre if name in PRE_TRACES else on_post
        if T > 1:
            # the epoch-start value; a second spike in the epoch adds its impulse to it (Loihi's approximation)
            lines.append(f"{name} : 1")
            if trace.impulse != 0.0:
                side.append(f"{name} += {_number(trace.impulse)} * int({'tx' if side is on_pre else 'ty'} > 0)")
            continue
        if math.isinf(trace.tau):
            lines.append(f"{name} : 1")
        else:
            lines.append(f"d{name}/dt = -{name} / tau_{name} : 1 (clock-driven)")
            namespace[f"tau_{name}"] = trace.tau
        if trace.impulse != 0.0:
            side.append(f"{name} += {_number(trace.impulse)}")
    if T == 1:
        on_pre.append("pre_now = 1")
        on_post.append("post_now = 1")
    else:
        within = f"((t_in_timesteps + {first_step}) % {T} + 1)"
        on_pre.append(f"tx = {within}")
        on_post.append(f"ty = {within}")
    sums: Dict[str, str] = {}
    increments, updates = [], []
    by_dependency = {dep: {**_names(rule, dep, first_step, dt), **{"$" + k: v for k, v in params.items()}}
                     for dep in ("x0", "y0", "u")}
    at_end = by_dependency["u"]  # what sum_pre reads: the epoch's end
    for target, terms in rule.terms().items():
        parts = []
        for term in terms:
            names = by_dependency[term.dependency]
            factors = [_code(f, names, f"{where}: {target}", sums, prefix, at_end) for f in term.factors]
            product = " * ".join(factors) if factors else "1.0"
            if any(_may_be_infinite(f) for f in term.factors):
                parts.append(f"{_number(term.coef)} * vanish({names[term.dependency]}, {product})")
            else:
                parts.append(f"{_number(term.coef)} * {names[term.dependency]} * {product}")
        var = TARGET_NAMES[target]
        increments.append(f"delta_{var} = " + (" + ".join(parts) if parts else "0.0"))
        updates.append((var, {"w": f"clip(w + delta_w, {_number(rule.w_min)}, {_number(rule.w_max)})",
                              "tag": "tag + delta_tag", "tag2": "clip(tag2 + delta_tag2, 0, inf)"}[var]))
    if "dw" not in rule.targets():  # the engine clips every weight each epoch, whatever learns
        updates.append(("w", f"clip(w, {_number(rule.w_min)}, {_number(rule.w_max)})"))
    if masked:
        for expr in rule.targets().values():
            for node in expr.walk():
                if isinstance(node, Op) and node.name == "sum_pre" and not _zero_off_mask(node.args[0]):
                    raise Brian2ExportError(
                        f"{where}: {node} on a masked projection: the engine sums over every pre neuron, a Brian2 "
                        "summed variable over the existing synapses only; they agree where every product of the "
                        "sum has the factor w (0 off the mask)")
    lines += [f"{name}_post = {expr} : 1 (summed)" for name, expr in sums.items()]
    if T == 1:
        learn = increments + [f"{var} = {value}" for var, value in updates] + ["pre_now = 0", "post_now = 0"]
    else:
        # Every step runs the code; only an epoch's last step changes anything. x * 1 + y * 0 is x exactly
        # (y finite), so the end of an epoch gives the engine's values to the last bit.
        end = f"int((t_in_timesteps + {first_step + 1}) % {T} == 0)"
        rolled = [(name, _sampled(name, tr, dt, str(T))) for name, tr in rule.traces.items() if not tr.driven_by]
        learn = ([f"epoch_end = {end}"] + increments
                 + [f"{var} = ({value}) * epoch_end + {var} * (1 - epoch_end)" for var, value in updates + rolled]
                 + ["tx = tx * (1 - epoch_end)", "ty = ty * (1 - epoch_end)"])
    return RuleCode("\n".join(lines), "\n".join(on_pre), "\n".join(on_post), "\n".join(learn), namespace,
                    tuple(sums))


def _zero_off_mask(e: Expr) -> bool:
    """Whether ``e`` is 0 at a missing synapse (``w = 0`` there): every product has a plain factor ``w``
    and no factor that could be infinite."""
    return all(any(isinstance(f, Var) and f.name == "w" for f in fs) and not any(_may_be_infinite(f) for f in fs)
               for _, fs in _expand(e))


# --- neurons -------------------------------------------------------------------------------------------
def _has_theta(model, theta: Optional[np.ndarray]) -> bool:
    """Whether ``model``'s threshold has an adaptation to add: it adapts (``theta_plus > 0``), or a run
    continued after :meth:`~neuro.Simulator.set_model` froze it holds a ``theta`` (the engine adds theta
    whatever ``theta_plus`` is)."""
    return isinstance(model, LIF) and (model.theta_plus > 0 or (theta is not None and bool(np.any(theta != 0))))


def _neuron_code(name: str, model, dt: float, buffers: Sequence[str], gated: Sequence[str], third: bool,
                 sums: Iterable[str] = (), theta: bool = False) -> Tuple[str, Dict[str, str], Dict[str, float]]:
    """``(equations, {"threshold", "reset", "before_groups", "groups", "end"}, namespace)`` of a population.

    ``buffers`` / ``gated``: the post variables its incoming (gated) projections add to, in the
    network's order, which is the order the engine sums them in; ``sums``: variables that incoming
    synapses' ``sum_pre`` fill; ``theta``: the threshold has an adaptation to add (:func:`_has_theta`).
    The state update is Norse's
    sequence of operations, written out (not Brian2's Euler integrator), so that it rounds as the engine's.
    """
    ns: Dict[str, float] = {}
    eqs = [f"{b} : 1" for b in list(buffers) + list(gated)] + [f"{v} : 1" for v in sums]
    # a plain variable set each step (not a subexpression): synapses then read it without the TimedArray
    load_third = [f"third = third_{name}(t, i)"] if third else []
    if third:
        eqs.append("third : 1")
    # Sums built one temporary at a time: Brian2 (sympy) reorders the terms of one expression, and the
    # engine adds the projections' buffers in the network's order.
    summed = _ordered_sum("cur", buffers)
    c = "cur" if buffers else "0.0"
    clear = [f"{b} = 0" for b in list(buffers) + list(gated)]
    if isinstance(model, IAF):
        ns.update(v_th=model.v_th, v_reset=model.v_reset)
        code = {"threshold": "v > v_th", "reset": "v = v_reset", "before_groups": "\n".join(load_third),
                "groups": "\n".join(summed + [f"v = v + {c}"] + clear), "end": ""}
        return "\n".join(["v : 1"] + eqs), code, ns
    m: LIF = model
    ns.update(dt_tau_mem=dt * (1.0 / m.tau_mem), dt_tau_syn=dt * (1.0 / m.tau_syn), v_th=m.v_th,
              v_reset=m.v_reset, v_leak=m.v_leak)
    eqs = ["v : 1", "isyn : 1"] + eqs
    if gated:
        summed += _ordered_sum("gsum", gated)
        summed += [f"gin = gsum * int(isyn > {_number(m.gate_min)} and isyn < {_number(m.gate_max)})",
                   f"cur = {c} + gin"]
        c = "cur"
    if m.bounded:  # as the engine: the input is cut to what keeps the current inside, then added
        summed += [f"inside = clip(isyn + {c}, {_number(m.i_min)}, {_number(m.i_max)})", "cut = inside - isyn"]
        c = "cut"
    held = {"both": "", "positive": " * int(isyn > 0)", "negative": " * int(isyn < 0)"}.get(m.syn_leak)
    groups = summed + [f"isyn = isyn + {c}", "vgap = v_leak - v", "drive = vgap + isyn", "dv = dt_tau_mem * drive",
                       "v = v + dv"]
    if m.syn_leak != "none":
        groups += ["di = (-dt_tau_syn) * isyn", f"isyn = isyn + di{held}"]
    threshold = "v > v_th"
    reset = ["v = v - (v_th - v_reset)" if m.subtract_reset else "v = v_reset"]
    end = []
    if theta:
        eqs += ["theta : 1"]
        threshold = "v > v_th + theta"
        reset = ["v = v - ((v_th + theta) - v_reset)" if m.subtract_reset else "v = v_reset"]
    if m.theta_plus > 0:  # the engine moves theta only then
        eqs += ["fired : 1"]
        ns.update(theta_plus=m.theta_plus, theta_decay=1.0 if math.isinf(m.tau_theta) else math.exp(-dt / m.tau_theta))
        reset.append("fired = 1")
        end += ["theta = theta * theta_decay + theta_plus * fired", "fired = 0"]
    if not math.isinf(m.v_min):
        end.append(f"v = clip(v, {_number(m.v_min)}, inf)")
    code = {"threshold": threshold, "reset": "\n".join(reset), "before_groups": "\n".join(load_third),
            "groups": "\n".join(groups + clear), "end": "\n".join(end)}
    return "\n".join(eqs), code, ns


# --- the network ---------------------------------------------------------------------------------------
def _check(network: Network, replica: int) -> None:
    if isinstance(replica, bool) or not isinstance(replica, (int, np.integer)):
        raise Brian2ExportError(f"replica must be an integer, got {replica!r}")
    for name, proj in network.projections.items():
        if proj.weights.ndim == 3 and not 0 <= replica < proj.weights.shape[0]:
            raise Brian2ExportError(
                f"replica {replica}: projection {name!r} has weights for {proj.weights.shape[0]} replicas"
            )


def _needs_third(network: Network, rules: Mapping[str, LearningRule]) -> Dict[str, List[str]]:
    """The populations whose incoming rules read the third factor, with those projections."""
    out: Dict[str, List[str]] = {}
    for name, rule in rules.items():
        if any(tr.driven_by == "third_factor" and rule.uses(k) for k, tr in rule.traces.items()):
            out.setdefault(network.projections[name].post, []).append(name)
    return out


def _check_initial(network: Network, initial: Optional[Simulator]) -> None:
    if initial is not None and initial.network is not network:
        raise Brian2ExportError("initial: the simulator must simulate this very network")
    if initial is not None and initial.replicas != 1:
        raise Brian2ExportError(f"initial: Brian2 runs one replica, the simulator has {initial.replicas}")


def _start(network: Network, initial: Optional[Simulator]) -> Tuple[Dict, Dict, Dict[str, np.ndarray]]:
    """``(models, rules, state)`` to start from: the network's, or where ``initial`` stopped (its models,
    learning flag and rule parameters; ``state`` as :meth:`Simulator.state_dict`, one replica, float64;
    empty without ``initial``)."""
    _check_initial(network, initial)
    models, rules = continued(network, initial)
    if initial is None:
        return models, rules, {}
    state = {k: np.asarray(v, dtype=np.float64) for k, v in initial.state_dict().items() if k != "rng_state"}
    return models, rules, state


def _spike_array(values: TensorLike, steps: int, n: int, name: str) -> np.ndarray:
    s = np.asarray(torch.as_tensor(values, dtype=torch.float64))
    if s.shape != (steps, n):
        raise Brian2ExportError(f"input {name!r}: spikes must have shape (steps, N) = ({steps}, {n}), got {s.shape}")
    if not np.all((s == 0) | (s == 1)):
        raise Brian2ExportError(f"input {name!r}: spikes must be 0 or 1")
    return s


def to_brian2(
    network: Network,
    steps: int,
    inputs: Optional[Mapping[str, TensorLike]] = None,
    third_factors: Optional[Mapping[str, TensorLike]] = None,
    seed: int = 0,
    replica: int = 0,
    initial: Optional[Simulator] = None,
) -> Brian2Model:
    """Build ``network`` as Brian2 objects for a run of ``steps`` steps (one replica).

    ``inputs`` and ``third_factors`` mean what they mean in :meth:`neuro.Simulator.run` for one
    replica: an input population with an encoder takes values ``(N,)`` (drawn into spikes exactly as
    ``Simulator(seed=seed)`` draws them), one without takes spikes ``(steps, N)`` (0 or 1); third factors
    are held ``(N,)`` or per step ``(steps, N)``. ``replica``: which replica's weights a projection with
    per-replica weights starts from. With ``initial`` (a one-replica simulator of ``network``) Brian2
    continues exactly where that run stopped: its models (:meth:`~neuro.Simulator.set_model`), learning
    flag and rule parameters, weights, tags, traces, neuron state, in-flight synaptic input and the
    encoders' random generator. Raises :class:`Brian2ExportError` naming what Brian2 cannot run.
    """
    import brian2 as b2

    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise Brian2ExportError(f"steps must be a positive integer, got {steps!r}")
    steps = int(steps)
    models, rules, start = _start(network, initial)
    _check(network, replica)
    first_step = int(start.get("time_step", 0))
    names = _brian2_names(network)
    codes = {name: rule_code(rule, network.dt, f"projection {name!r}", first_step, names[name],
                             network.projections[name].mask is not None)
             for name, rule in rules.items()}
    inputs = dict(inputs or {})
    third_factors = dict(third_factors or {})
    pops = network.populations
    unknown = (set(inputs) | set(third_factors)) - set(pops)
    if unknown:
        raise Brian2ExportError(f"inputs or third factors for unknown population(s) {sorted(unknown)}; have {sorted(pops)}")
    encoded = {k: v for k, v in inputs.items() if getattr(pops[k], "encoder", None) is not None}
    generator = None if initial is None else initial.generator.get_state()
    try:
        spikes = encoded_inputs(network, steps, encoded, seed, generator) if encoded else {}
    except ValueError as e:  # the engine's message, e.g. a shape
        raise Brian2ExportError(str(e)) from None
    spikes = {k: v for k, v in spikes.items() if k in encoded}
    for name, values in inputs.items():
        if not isinstance(pops[name], InputPopulation):
            raise Brian2ExportError(f"inputs: {name!r} is not an input population")
        if name not in spikes:
            spikes[name] = _spike_array(values, steps, pops[name].n, name)
    needs_third = _needs_third(network, rules)
    sums_into: Dict[str, List[str]] = {}
    for name, c in codes.items():
        sums_into.setdefault(network.projections[name].post, []).extend(c.sums)
    for name, projs in needs_third.items():
        if name not in third_factors:
            raise Brian2ExportError(f"projection(s) {projs} read the third factor of {name!r}: give third_factors[{name!r}]")
    third_factors = {name: held_or_sequence(v, steps, pops[name].n, f"third factor for {name!r}", Brian2ExportError)
                     for name, v in third_factors.items()}

    dt = network.dt * b2.second
    clock = b2.Clock(dt)  # one clock: every object's slots interleave in one schedule
    groups, synapses, code = {}, {}, {}
    objects: List[object] = []
    into: Dict[str, Tuple[List[str], List[str]]] = {p: ([], []) for p in pops}
    for name, proj in network.projections.items():  # one input buffer per projection, summed in this order
        into[proj.post][1 if proj.gated else 0].append(f"ibuf_{names[name]}")
    for name, pop in pops.items():
        if isinstance(pop, InputPopulation):
            rows, idx = np.nonzero(spikes.get(name, np.zeros((0, pop.n))))
            group = b2.SpikeGeneratorGroup(pop.n, idx, rows * dt, clock=clock, name=f"{names[name]}_brian2")
        else:
            theta = _has_theta(models[name], start.get(f"neurons/{name}/theta"))
            eqs, c, ns = _neuron_code(names[name], models[name], network.dt, *into[name], name in needs_third,
                                      sums_into.get(name, ()), theta)
            if name in needs_third:
                ns[f"third_{names[name]}"] = b2.TimedArray(third_factors[name], dt=dt)
            group = b2.NeuronGroup(pop.n, eqs, threshold=c["threshold"], reset=c["reset"], method="euler",
                                   namespace=_with_units(ns, b2), clock=clock, name=f"{names[name]}_brian2")
            fresh = models[name].initial_state((1, pop.n), torch.zeros((), dtype=torch.float64))
            for var in fresh:
                value = start.get(f"neurons/{name}/{var}", fresh[var].numpy())[0]
                if var != "theta" or theta:
                    setattr(group, _MONITORED[var], value)
            for proj in network.incoming(name):  # the input the engine has buffered for the next step
                if f"buffers/{proj.name}" in start:
                    setattr(group, f"ibuf_{names[proj.name]}", start[f"buffers/{proj.name}"][0])
            for when in ("before_groups", "groups", "end"):
                if c[when]:
                    objects.append(group.run_regularly(c[when], when=when, order=0, name=f"{names[name]}_{when}"))
            code[name] = "\n".join([eqs] + [f"{k}: {v}" for k, v in c.items()])
        groups[name] = group
        objects.append(group)
    for name, proj in network.projections.items():
        if proj.mask is not None and not proj.mask.any():
            continue  # no synapse: nothing to build (Brian2 cannot prepare an empty pathway); its w reads 0
        rule, rc = rules.get(name), codes.get(name)
        model, on_pre, on_post, ns = _kept_tags(proj.rule), "", None, {}
        if rc is not None:
            model, on_pre, on_post, ns = rc.model, rc.on_pre, rc.on_post, dict(rc.namespace)
        if "vanish(" in (rc.learn if rc is not None else ""):
            ns["vanish"] = _vanish_function()
        on_pre = f"ibuf_{names[name]}_post += w" + (f"\n{on_pre}" if on_pre else "")
        syn = b2.Synapses(groups[proj.pre], groups[proj.post], model, on_pre=on_pre, on_post=on_post,
                          method="exact", namespace=_with_units(ns, b2), clock=clock, name=f"{names[name]}_brian2")
        w = proj.weights if proj.weights.ndim == 2 else proj.weights[replica]
        post_idx, pre_idx = np.nonzero(proj.mask) if proj.mask is not None else np.nonzero(np.ones_like(w, dtype=bool))
        syn.connect(i=pre_idx, j=post_idx)
        syn.w = start[f"synapses/{name}/w"][0][post_idx, pre_idx] if start else w[post_idx, pre_idx]
        for var in _tags(proj.rule) if start else ():  # learning now or not, the tags where the run stopped
            setattr(syn, SYNAPTIC_NAMES[var], start[f"synapses/{name}/{var}"][0][post_idx, pre_idx])
        code[name] = "\n".join([model, f"on_pre: {on_pre}", f"on_post: {on_post}"])
        if rule is not None:
            _set_rule_state(syn, rule, start, name, post_idx, pre_idx)
            for updater in syn.summed_updaters.values():
                updater.when, updater.order = "end", 1  # sum_pre reads the end of the step, before learning
            objects.append(syn.run_regularly(rc.learn, when="end", order=2, name=f"{names[name]}_learning"))
            code[name] += f"\nend: {rc.learn}"
        synapses[name] = syn
        objects.append(syn)
    for name, proj in network.projections.items():
        if proj.tie is not None and proj.tie.source in rules and proj.tie.source in synapses:
            source = network.projections[proj.tie.source]
            objects.append(b2.NetworkOperation(_tie_copy(synapses[source.name], synapses[name], proj.tie,
                                                         source.weights.shape[-2:]),
                                               when="end", order=3, clock=clock, name=f"{names[name]}_tie"))
            code[name] += f"\nend: w = {proj.tie.scale!r} * {source.name}.w" + ("^T" if proj.tie.transpose else "")
    return Brian2Model(b2.Network(*objects), groups, synapses, network.dt, code)


def _ordered_sum(name: str, terms: Sequence[str]) -> List[str]:
    """Statements that leave ``terms[0] + terms[1] + ...``, added left to right, in temporary ``name``."""
    if not terms:
        return []
    lines = [f"{name} = {terms[0]}"]
    lines += [f"{name} = {name} + {t}" for t in terms[1:]]
    return lines


def _brian2_names(network: Network) -> Dict[str, str]:
    """A Brian2-safe name for each population and projection: its own where it is an ASCII identifier
    that does not start with ``_`` (Brian2 reserves those), else ``pop<k>`` / ``proj<k>``."""
    out = {}
    for kind, items in (("pop", network.populations), ("proj", network.projections)):
        for k, name in enumerate(items):
            out[name] = name if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) else f"{kind}{k}"
    return out


def _tags(rule: Optional[LearningRule]) -> List[str]:
    """The tags (``t``, ``d``) a projection with ``rule`` holds: those the rule reads or learns."""
    return [] if rule is None else [v for v in ("t", "d") if rule.uses(v) or f"d{v}" in rule.targets()]


def _kept_tags(rule: Optional[LearningRule]) -> str:
    """Equations of a projection's weight and the tags its rule has (learning now or not)."""
    return "\n".join(["w : 1"] + [f"{SYNAPTIC_NAMES[v]} : 1" for v in _tags(rule)])


_VANISH = None


def _vanish_function():
    """Brian2 function ``vanish(dep, value)``: ``dep * value`` where ``dep`` is not 0, else 0 even where
    ``value`` is infinite or NaN (the engine's meaning of a dependency; ``0 * inf`` would be NaN)."""
    global _VANISH
    if _VANISH is None:
        import brian2 as b2

        @b2.implementation("cython", """
        cdef double vanish(double dep, double value):
            return dep * value if dep != 0 else 0.0
        """)
        @b2.check_units(dep=1, value=1, result=1)
        def vanish(dep, value):
            with np.errstate(invalid="ignore", over="ignore"):
                return np.where(dep != 0, dep * value, 0.0)

        _VANISH = vanish
    return _VANISH


def _tie_copy(source, tied, tie, shape: Tuple[int, int]):
    """A function that gives ``tied`` the tie of ``source``'s weights: run by the host after each step's
    learning, as the torch engine copies them (Brian2 cannot share weights between synapse groups)."""
    s_pre, s_post = np.asarray(source.i), np.asarray(source.j)
    t_pre, t_post = np.asarray(tied.i), np.asarray(tied.j)

    def copy() -> None:
        full = np.zeros(shape)
        full[s_post, s_pre] = np.asarray(source.w[:])
        tied.w[:] = tie.apply(full)[t_post, t_pre]

    return copy


def _set_rule_state(syn, rule: LearningRule, start: Mapping[str, np.ndarray], name: str,
                    post_idx: np.ndarray, pre_idx: np.ndarray) -> None:
    """Traces where the engine's run stopped (each synapse's copy of its neurons' traces)."""
    if not start:
        return
    if rule.t_epoch > 1:  # last spike steps within an epoch the engine stopped in
        syn.tx = start[f"plasticity/{name}/tx"][0][pre_idx]
        syn.ty = start[f"plasticity/{name}/ty"][0][post_idx]
    for trace, tr in rule.traces.items():
        if tr.driven_by:
            continue
        k = TRACE_INDEX[trace]
        values = start[f"plasticity/{name}/x"][0, k][pre_idx] if trace in PRE_TRACES else \
            start[f"plasticity/{name}/y"][0, k][post_idx]
        setattr(syn, trace, values)


def _with_units(ns: Mapping[str, object], b2) -> Dict[str, object]:
    """Time constants (``tau*``) in seconds, for equations whose ``dt`` is a time."""
    return {k: (v * b2.second if k.startswith("tau") else v) for k, v in ns.items()}


_MONITORED = {"v": "v", "i": "isyn", "theta": "theta", "w": "w", "t": "tag", "d": "tag2"}


def run_brian2(
    network: Network,
    steps: int,
    inputs: Optional[Mapping[str, TensorLike]] = None,
    monitors: Iterable[str] = (),
    third_factors: Optional[Mapping[str, TensorLike]] = None,
    seed: int = 0,
    replica: int = 0,
    target: str = "numpy",
    initial: Optional[Simulator] = None,
) -> Recording:
    """Build ``network`` in Brian2 (:func:`to_brian2`), run ``steps`` steps, return monitors like
    :meth:`neuro.Simulator.run` does for one replica: ``(steps, 1, ...)`` float64 arrays, recorded
    after every step. Monitors: ``pop.spikes``, ``pop.v``, ``pop.i``, ``pop.theta``, ``proj.w``,
    ``proj.t``, ``proj.d`` (a projection's missing synapses read 0). ``target``: Brian2's code
    generation target for the run (``"numpy"`` needs no compiler; ``"cython"`` compiles), restored after.
    ``initial``: continue where a one-replica simulator stopped (see :func:`to_brian2`).
    """
    import brian2 as b2

    if target not in ("numpy", "cython"):
        raise Brian2ExportError(f"target must be Brian2's runtime code generation target 'numpy' or 'cython', "
                                f"got {target!r} (a NetworkOperation, which tied learning needs, runs on the runtime device only)")
    monitors = list(dict.fromkeys(monitors))
    _check_initial(network, initial)
    models, _ = continued(network, initial)
    for m in monitors:
        obj, _, var = m.partition(".")
        is_pop = obj in network.populations and not isinstance(network.populations.get(obj), InputPopulation)
        ok = (obj in network.populations and var == "spikes") or (is_pop and var in ("v", "i", "theta")) or (
            obj in network.projections and var in ("w", "t", "d"))
        if not ok:
            raise Brian2ExportError(f"monitor {m!r}: the Brian2 export records pop.spikes, pop.v, pop.i, "
                                    "pop.theta, proj.w, proj.t and proj.d")
        if var == "i" and isinstance(models[obj], IAF):
            raise Brian2ExportError(f"monitor {m!r}: an IAF neuron has no current")
        if var == "theta":
            held = None if initial is None else initial.state[obj].get("theta")
            if not _has_theta(models[obj], None if held is None else held.detach().cpu().numpy()):
                raise Brian2ExportError(f"monitor {m!r}: the neurons of {obj!r} have no adaptive threshold "
                                        "(theta_plus = 0)")
        if var in ("t", "d"):
            if var not in _tags(network.projections[obj].rule):  # a rule that does not learn now still holds them
                raise Brian2ExportError(f"monitor {m!r}: {obj!r} has no {var!r} (its rule neither reads nor learns it)")
    old_target, old_dtype = b2.prefs.codegen.target, b2.prefs.core.default_float_dtype
    b2.prefs.codegen.target, b2.prefs.core.default_float_dtype = target, np.float64
    try:
        model = to_brian2(network, steps, inputs, third_factors, seed, replica, initial)
        probes: Dict[str, Tuple[object, str]] = {}
        for m in monitors:
            obj, _, var = m.partition(".")
            if var == "spikes":
                probe = b2.SpikeMonitor(model.groups[obj])
            elif obj in network.projections and obj not in model.synapses:
                probes[m] = (None, var)
                continue
            else:
                owner = model.groups.get(obj) or model.synapses[obj]
                # when="end", after the neurons' and the rules' end-of-step code: the state after the step
                probe = b2.StateMonitor(owner, _MONITORED[var], record=True, when="end", order=10)
            probes[m] = (probe, var)
            model.net.add(probe)
        # 0/0 and x/0 where a dependency is 0 are expected (vanish() drops them), as torch does, silently
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            model.net.run(steps * network.dt * b2.second, namespace={})
    finally:
        b2.prefs.codegen.target, b2.prefs.core.default_float_dtype = old_target, old_dtype
    data = {}
    for m, (probe, var) in probes.items():
        obj = m.partition(".")[0]
        if var == "spikes":
            out = np.zeros((steps, network.populations[obj].n))
            rows = np.rint(np.asarray(probe.t / b2.second) / network.dt).astype(int)
            out[rows, np.asarray(probe.i)] = 1.0
        elif obj in model.groups:
            out = np.asarray(getattr(probe, _MONITORED[var])).T
        elif probe is None:  # a projection without synapses
            out = np.zeros((steps,) + network.projections[obj].weights.shape[-2:])
        else:
            proj = network.projections[obj]
            syn = model.synapses[obj]
            out = np.zeros((steps,) + proj.weights.shape[-2:])
            out[:, np.asarray(syn.j), np.asarray(syn.i)] = np.asarray(getattr(probe, _MONITORED[var])).T
        data[m] = torch.as_tensor(out[:, None], dtype=torch.float64)
    first = 0 if initial is None else initial.time_step
    return Recording(data, {m: list(range(first + 1, first + steps + 1)) for m in data})

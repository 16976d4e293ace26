"""The torch executor of learning rules, with the epoch semantics of Lava's learning engine.

Shapes: ``R`` replicas, ``M`` post neurons, ``N`` pre neurons. Pre traces are
``(R, 2, N)``, post traces ``(R, 3, M)``, last spike times within the epoch
``tx: (R, N)``, ``ty: (R, M)`` (1..t_epoch, 0 = no spike), synaptic variables
``(Rw, M, N)`` with ``Rw`` 1 (shared) or ``R``.

Matching ``LearningConnectionModelFloat`` exactly:

* trace variables hold their value at the start of the epoch; a second spike
  in the same epoch adds its impulse to that start value (Loihi's
  approximation); only the last spike time is remembered;
* at the end of the epoch the trace history is rebuilt,
  ``h(s) = start * a**s + impulse * a**(s - t_spk) * [0 < t_spk <= s]``, and
  sampled at each product's dependency time (``tx``, ``ty`` or ``t_epoch``);
* every target is computed from the pre-update variables, then
  ``w`` is clipped to the rule's bounds and ``d`` to ``>= 0``.
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Tuple

import torch

from neuro.expr import POST_TRACES, PRE_TRACES, Const, Expr, Op, Param, Var
from neuro.rule import LearningRule, Term

TRACE_INDEX = {"x1": 0, "x2": 1, "y1": 0, "y2": 1, "y3": 2}


def _history(
    start: torch.Tensor, powers: torch.Tensor, impulse: float, t_spk: torch.Tensor, s: torch.Tensor
) -> torch.Tensor:
    """Trace value at within-epoch step ``s`` (broadcast), from its epoch-start value.

    ``powers[k]`` is ``a**k`` for ``k = 0..t_epoch``; looking powers up is much
    cheaper than ``torch.pow`` on ``(R, M, N)`` tensors.
    """
    s = s.long()
    value = start * powers[s]
    if impulse != 0.0:
        t_spk = t_spk.long()
        hit = (t_spk > 0) & (t_spk <= s)
        value = value + (impulse * powers[(s - t_spk).clamp(min=0)]) * hit.to(start.dtype)
    return value


class CompiledRule:
    """A :class:`LearningRule` bound to a step ``dt``, a device and per-replica parameters."""

    def __init__(self, rule: LearningRule, dt: float) -> None:
        self.rule = rule
        self.dt = dt
        self.terms: Dict[str, Tuple[Term, ...]] = rule.terms()
        self.decay: Dict[str, float] = {k: tr.decay(dt) for k, tr in rule.traces.items()}
        self.impulse: Dict[str, float] = {k: tr.impulse for k, tr in rule.traces.items()}
        self.driven: Dict[str, str] = {k: tr.driven_by for k, tr in rule.traces.items() if tr.driven_by}
        self._powers: Dict[str, torch.Tensor] = {}
        # With one-step epochs every spike happens at step 1 of its epoch, so a trace
        # sampled at any dependency that is 1 equals its end-of-epoch value; where the
        # dependency is 0 the product vanishes. Sampling at the epoch end then gives
        # the same updates with (R, 1, N) / (R, M, 1) traces instead of (R, M, N).
        # softmax mixes post neurons whose dependency is 0, so it keeps exact sampling.
        has_softmax = any(
            isinstance(n, Op) and n.name == "softmax" for e in rule.targets().values() for n in e.walk()
        )
        self.sample_at_end = rule.t_epoch == 1 and not has_softmax
        self.uses_tag = rule.uses("t") or "dt" in self.terms
        self.uses_delay = rule.uses("d") or "dd" in self.terms

    def powers(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """``decay**k`` for ``k = 0..t_epoch`` on ``like``'s device and dtype (cached)."""
        table = self._powers.get(name)
        if table is None or table.device != like.device or table.dtype != like.dtype:
            a = self.decay[name]
            table = torch.tensor([a**k for k in range(self.rule.t_epoch + 1)], dtype=like.dtype, device=like.device)
            self._powers[name] = table
        return table

    # --- spiking phase -------------------------------------------------------------------------
    def record(
        self,
        state: Dict[str, torch.Tensor],
        pre: torch.Tensor,
        post: torch.Tensor,
        within_epoch_step: int,
        signals: Mapping[str, torch.Tensor],
    ) -> None:
        """Record one step's pre ``(R, N)`` and post ``(R, M)`` spikes (0/1) into ``state``."""
        pre_b, post_b = pre > 0, post > 0
        x, y = state["x"], state["y"]
        multi_x = (state["tx"] > 0) & pre_b
        for name in PRE_TRACES:
            if self.impulse.get(name, 0.0) != 0.0:
                k = TRACE_INDEX[name]
                x[:, k] = x[:, k] + self.impulse[name] * multi_x.to(x.dtype)
        multi_y = (state["ty"] > 0) & post_b
        for name in POST_TRACES:
            if self.impulse.get(name, 0.0) != 0.0:
                k = TRACE_INDEX[name]
                y[:, k] = y[:, k] + self.impulse[name] * multi_y.to(y.dtype)
        state["tx"] = torch.where(pre_b, torch.full_like(state["tx"], within_epoch_step), state["tx"])
        state["ty"] = torch.where(post_b, torch.full_like(state["ty"], within_epoch_step), state["ty"])
        for name, driver in self.driven.items():
            if driver not in signals:
                raise ValueError(f"rule {self.rule.name!r}: trace {name} needs the post signal {driver!r}")
            y[:, TRACE_INDEX[name]] = signals[driver]

    # --- learning phase ------------------------------------------------------------------------
    def learn(
        self,
        state: Dict[str, torch.Tensor],
        syn: Dict[str, torch.Tensor],
        params: Mapping[str, torch.Tensor],
        time_step: int,
    ) -> None:
        """Apply one epoch's update to ``syn`` (``w`` and, if used, ``t``, ``d``), then roll traces."""
        t_epoch = self.rule.t_epoch
        ctx = _EpochContext(self, state, syn, params, time_step)
        deltas: Dict[str, torch.Tensor] = {}
        for target, terms in self.terms.items():
            total: Optional[torch.Tensor] = None
            for term in terms:
                value = ctx.term(term)
                total = value if total is None else total + value
            if total is None:
                continue
            var = target[1:]
            replicas = state["x"].shape[0]
            total = torch.broadcast_to(total, (replicas,) + tuple(syn["w"].shape[1:]))
            if syn[var].shape[0] == 1:
                # Shared synapses learn from every replica, as from a mini-batch.
                total = total.sum(dim=0, keepdim=True)
            deltas[var] = total
        for var, delta in deltas.items():
            syn[var] = syn[var] + delta
        syn["w"] = syn["w"].clamp(self.rule.w_min, self.rule.w_max)
        if "d" in deltas:
            syn["d"] = syn["d"].clamp(min=0.0)
        # Roll the traces to their value at the end of the epoch.
        end = torch.tensor(t_epoch, device=state["tx"].device)
        for name in PRE_TRACES:
            if name in self.decay:
                k = TRACE_INDEX[name]
                x = state["x"][:, k]
                state["x"][:, k] = _history(x, self.powers(name, x), self.impulse[name], state["tx"], end)
        for name in POST_TRACES:
            if name in self.decay and name not in self.driven:
                k = TRACE_INDEX[name]
                y = state["y"][:, k]
                state["y"][:, k] = _history(y, self.powers(name, y), self.impulse[name], state["ty"], end)
        state["tx"] = torch.zeros_like(state["tx"])
        state["ty"] = torch.zeros_like(state["ty"])


class _EpochContext:
    """Evaluates products at the end of one epoch; traces sampled per dependency."""

    def __init__(self, rule: CompiledRule, state, syn, params, time_step: int) -> None:
        self.rule, self.state, self.syn, self.params = rule, state, syn, params
        tx, ty = state["tx"], state["ty"]
        dtype = state["x"].dtype
        k = rule.rule.u_exponent
        epoch_index = time_step // rule.rule.t_epoch
        self.deps = {
            "x0": (tx > 0).to(dtype)[:, None, :],
            "y0": (ty > 0).to(dtype)[:, :, None],
            "u": torch.tensor(1.0 if epoch_index % (2 ** k) == 0 else 0.0, dtype=dtype, device=tx.device),
        }
        # Sampling times, shaped so they broadcast against (R, M, N).
        self.times = {
            "x0": (tx[:, None, :], tx[:, None, :]),  # (for pre traces, for post traces)
            "y0": (ty[:, :, None], ty[:, :, None]),
            "u": (torch.tensor(rule.rule.t_epoch, device=tx.device),) * 2,
        }
        self._cache: Dict[Tuple[str, str], torch.Tensor] = {}

    def trace(self, name: str, dep: str) -> torch.Tensor:
        if self.rule.sample_at_end:
            dep = "u"
        key = (name, dep)
        if key not in self._cache:
            rule, st = self.rule, self.state
            k = TRACE_INDEX[name]
            if name in PRE_TRACES:
                start, t_spk, s = st["x"][:, k][:, None, :], st["tx"][:, None, :], self.times[dep][0]
            else:
                start, t_spk, s = st["y"][:, k][:, :, None], st["ty"][:, :, None], self.times[dep][1]
            self._cache[key] = _history(start, rule.powers(name, start), rule.impulse[name], t_spk, s)
        return self._cache[key]

    def term(self, term: Term) -> torch.Tensor:
        value = self.deps[term.dependency] * term.coef
        for f in term.factors:
            value = value * self.eval(f, term.dependency)
        return value

    def eval(self, e: Expr, dep: str):
        if isinstance(e, Const):
            return e.value
        if isinstance(e, Param):
            return self.params[e.name]
        if isinstance(e, Var):
            if e.name in self.deps:
                return self.deps[e.name]
            if e.name in TRACE_INDEX:
                return self.trace(e.name, dep)
            return self.syn[e.name]
        assert isinstance(e, Op)
        a = [self.eval(x, dep) for x in e.args]
        return _OPS[e.name](a, e.attrs)


def _t(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.tensor(x)


def _softmax_post(a, attrs):
    x = _t(a[0]) / attrs[0]
    if x.dim() < 3:  # a scalar or per-replica value: the same for every post neuron
        return torch.ones_like(x)
    return torch.softmax(x, dim=-2)


_OPS = {
    "add": lambda a, at: a[0] + a[1],
    "sub": lambda a, at: a[0] - a[1],
    "mul": lambda a, at: a[0] * a[1],
    "div": lambda a, at: a[0] / a[1],
    "neg": lambda a, at: -a[0],
    "abs": lambda a, at: _t(a[0]).abs(),
    "sign": lambda a, at: _t(a[0]).sign(),
    "exp": lambda a, at: _t(a[0]).exp(),
    "pow": lambda a, at: _t(a[0]) ** at[0],
    "clamp": lambda a, at: _t(a[0]).clamp(None if math.isinf(at[0]) else at[0], None if math.isinf(at[1]) else at[1]),
    "maximum": lambda a, at: torch.maximum(_t(a[0]), _t(a[1])),
    "minimum": lambda a, at: torch.minimum(_t(a[0]), _t(a[1])),
    "softmax": _softmax_post,
}


def initial_plastic_state(
    replicas: int, n_pre: int, n_post: int, dtype: torch.dtype, device: torch.device
) -> Dict[str, torch.Tensor]:
    """Zero traces and no spikes in the current epoch."""
    return {
        "x": torch.zeros(replicas, 2, n_pre, dtype=dtype, device=device),
        "y": torch.zeros(replicas, 3, n_post, dtype=dtype, device=device),
        "tx": torch.zeros(replicas, n_pre, dtype=torch.int32, device=device),
        "ty": torch.zeros(replicas, n_post, dtype=torch.int32, device=device),
    }

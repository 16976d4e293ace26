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
from typing import Dict, List, Mapping, Optional, Tuple

import torch

from neuro.expr import MIXING_OPS, POST_TRACES, PRE_TRACES, Const, Expr, Op, Param, Var
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


def _at_end(start: torch.Tensor, powers: torch.Tensor, impulse: float, t_spk: torch.Tensor, t_epoch: int) -> torch.Tensor:
    """:func:`_history` at the end of the epoch (``s = t_epoch``), the case of every step when ``t_epoch`` is 1."""
    value = start * powers[t_epoch]  # the table's entry, rounded to the dtype as _history's is
    if impulse != 0.0:
        hit = (t_spk > 0).to(start.dtype)
        if t_epoch == 1:  # a spike in a one-step epoch is at its end: the impulse, undecayed
            value = value + impulse * hit
        else:
            value = value + (impulse * powers[(t_epoch - t_spk).long()]) * hit
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
        self.sample_at_end = rule.t_epoch == 1
        self.uses_tag = rule.uses("t") or "dt" in self.terms
        self.uses_delay = rule.uses("d") or "dd" in self.terms
        # Products that vanish where a neuron did not spike and compare no neurons: those an
        # event-driven update may evaluate on the spiking neurons' rows or columns only.
        self.local: Dict[str, List[bool]] = {
            target: [t.dependency in ("x0", "y0") and not any(_mixes(f) for f in t.factors) for t in terms]
            for target, terms in self.terms.items()
        }
        self.has_local = any(any(v) for v in self.local.values())
        # Products with a factor that may be infinite where the dependency is 0 (a division by a weight that
        # is 0, say): a dense update must give 0 there, as an event-driven one does, not 0 * inf = NaN.
        self.unbounded: Dict[str, List[bool]] = {
            target: [any(_may_be_infinite(f) for f in t.factors) for t in terms] for target, terms in self.terms.items()
        }
        # Plain ints read every step (the rule's properties expand it, and torch.compile cannot trace them).
        self.t_epoch: int = rule.t_epoch
        self.update_period: int = rule.update_period
        self.u_exponent: int = rule.u_exponent
        self.w_min, self.w_max = rule.w_min, rule.w_max

    def powers(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """``decay**k`` for ``k = 0..t_epoch`` on ``like``'s device and dtype (cached)."""
        table = self._powers.get(name)
        if table is None or table.device != like.device or table.dtype != like.dtype:
            a = self.decay[name]
            table = torch.tensor([a**k for k in range(self.t_epoch + 1)], dtype=like.dtype, device=like.device)
            self._powers[name] = table
        return table

    def at_end(self, name: str, start: torch.Tensor, t_spk: torch.Tensor) -> torch.Tensor:
        """Trace ``name`` at the end of the epoch from its start value and last spike times."""
        return _at_end(start, self.powers(name, start), self.impulse[name], t_spk, self.t_epoch)

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
        if self.t_epoch == 1:
            # Every step ends an epoch, so tx and ty are 0 here: no second spike, no earlier spike time.
            state["tx"], state["ty"] = pre_b.to(state["tx"].dtype), post_b.to(state["ty"].dtype)
            self._drive(y, signals)
            return
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
        self._drive(y, signals)

    def _drive(self, y: torch.Tensor, signals: Mapping[str, torch.Tensor]) -> None:
        """Driven post traces take their signal's value."""
        for name, driver in self.driven.items():
            if driver not in signals:
                raise ValueError(f"rule {self.rule.name!r}: trace {name} needs the post signal {driver!r}")
            y[:, TRACE_INDEX[name]] = signals[driver]

    # --- learning phase ------------------------------------------------------------------------
    def apply(
        self,
        ctx: "_Context",
        syn: Dict[str, torch.Tensor],
        replicas: int,
        scale: float = 1.0,
        mask: Optional[torch.Tensor] = None,
        events: Optional[Mapping[str, torch.Tensor]] = None,
        clamp_all: bool = True,
        lists: Optional["SynapseLists"] = None,
    ) -> None:
        """Add every target's update, evaluated by ``ctx`` for ``replicas`` replicas, to ``syn``.

        Shared synapses (leading size 1) learn from every replica, as from a
        mini-batch: their update is the sum over replicas times ``scale``. All
        targets are computed before any is applied; then ``w`` is clipped and
        ``d`` kept non-negative. ``mask`` ``(M, N)`` (bool): only existing synapses change.

        ``events``: event-driven evaluation. ``events["y0"]`` holds the post neurons
        that spiked in the epoch (in any replica), ``events["x0"]`` the pre neurons;
        a product with that dependency vanishes elsewhere, so it is evaluated on those
        rows (columns) only and added there in place, and only the touched rows and
        columns are clipped unless ``clamp_all``. Products that compare neurons
        (softmax, winner, sum_pre) are evaluated on the whole matrix. With ``lists`` (a sparse
        projection's synapses) they are evaluated on the existing synapses of those rows and columns only.
        """
        full: Dict[str, torch.Tensor] = {}  # var -> update to add
        fused: Dict[str, Tuple[torch.Tensor, torch.Tensor]] = {}  # var -> (A, B): var += A @ B and clipped, one kernel
        updated: Dict[str, torch.Tensor] = {}  # var -> new value (update already added)
        # (var, dim, index, delta): rows (dim -2), columns (dim -1) or listed synapses (dim 0: flat indices)
        parts: List[Tuple[str, int, torch.Tensor, torch.Tensor]] = []
        shape = tuple(syn["w"].shape[1:])
        for target, terms in self.terms.items():
            var = target[1:]
            shared = syn[var].shape[0] == 1 and replicas > 1
            dense: List[List] = []
            for term, local, unbounded in zip(terms, self.local[target], self.unbounded[target]):
                index = events.get(term.dependency) if (events is not None and local) else None
                if index is None:
                    dense.append(_vanishing(ctx.factors(term)) if unbounded else ctx.factors(term))
                    continue
                if index.numel() == 0:
                    continue  # nobody spiked: the product is 0 everywhere
                dim = -2 if term.dependency == "y0" else -1
                if lists is not None:
                    rows, cols = lists.rows(index) if dim == -2 else lists.cols(index)[:2]
                    if rows.numel():
                        value = torch.as_tensor(_prod(_Listed(ctx, rows, cols).factors(term)))  # (R|1, S)
                        parts.append((var, 0, rows * shape[1] + cols,
                                      self._finish(value, syn[var], replicas, (rows.numel(),), False, scale, None)))
                    continue
                sub = (index.numel(), shape[1]) if dim == -2 else (shape[0], index.numel())
                value = _product(_Sliced(ctx, dim, index).factors(term), replicas, sub, shared)
                parts.append((var, dim, index, self._finish(value, syn[var], replicas, sub, shared, scale,
                                                           None if mask is None else mask.index_select(dim, index))))
            if not dense:
                continue
            outer = [_separable(f) for f in dense]
            if all(o is not None for o in outer):
                # Every product is (post vector) x (pre vector): one matrix product adds them all.
                a, b = _outer_factors(syn[var], outer, replicas, scale)
                if mask is None and _fusable(syn[var]):
                    fused[var] = (a, b)  # applied in place below, once every target is computed
                else:
                    updated[var] = _add_outer(syn[var], a, b, mask)
                continue
            total = None
            for f in dense:
                value = _product(f, replicas, shape, shared)
                total = value if total is None else total + value
            full[var] = self._finish(total, syn[var], replicas, shape, shared, scale, mask)
        lo, hi = self.w_min, self.w_max
        for var, (a, b) in fused.items():
            from neuro.kernels import outer_update_  # Triton: imported only where a CUDA step asks for it

            bounds = {"w": (lo, hi), "d": (0.0, math.inf)}.get(var, (-math.inf, math.inf))
            outer_update_(syn[var], *_grouped(a, b, syn[var].shape[0]), *bounds, precision=FUSED_PRECISION)
        for var, delta in full.items():
            syn[var] = syn[var] + delta
        syn.update(updated)
        for var, dim, index, delta in parts:
            x = syn[var]
            if dim == 0:
                x.view(x.shape[0], -1).index_add_(1, index, delta.to(x.dtype))
            else:
                x.index_add_(x.dim() + dim, index, delta.to(x.dtype))
        fresh = set(full) | set(updated)  # new tensors, which may be clipped in place
        if "w" in fused:  # the kernel clipped every weight; event-driven parts were added after it
            _clamp_touched(syn["w"], [(dim, index) for var, dim, index, _ in parts if var == "w"], lo, hi)
        elif clamp_all or "w" in fresh:
            syn["w"] = syn["w"].clamp_(lo, hi) if "w" in fresh else syn["w"].clamp(lo, hi)
        else:
            _clamp_touched(syn["w"], [(dim, index) for var, dim, index, _ in parts if var == "w"], lo, hi)
        d_parts = [(dim, index) for var, dim, index, _ in parts if var == "d"]
        if "d" in fused:
            _clamp_touched(syn["d"], d_parts, 0.0, math.inf)
        elif "d" in fresh:
            syn["d"] = syn["d"].clamp_(min=0.0)
        elif clamp_all and "dd" in self.terms:  # as a dense update would: every d, once after a load
            syn["d"] = syn["d"].clamp(min=0.0)
        else:
            _clamp_touched(syn["d"] if "d" in syn else None, d_parts, 0.0, math.inf)

    @staticmethod
    def _finish(total, current, replicas, shape, shared, scale, mask):
        """One target's summed products as the update of ``current`` (``(1|R, *shape)``; ``shape`` the
        matrix, rows or columns updated, or ``(S,)`` listed synapses). ``shared``: ``total`` is already
        summed over replicas."""
        if not shared:
            total = torch.broadcast_to(total, (replicas,) + shape)
            if current.shape[0] == 1:
                total = total.sum(dim=0, keepdim=True)
        if scale != 1.0:
            total = total * scale
        # where, not a product: an infinite update of a missing synapse must not leave a NaN there
        return total if mask is None else torch.where(mask, total, torch.zeros((), dtype=total.dtype, device=total.device))

    def learn(
        self,
        state: Dict[str, torch.Tensor],
        syn: Dict[str, torch.Tensor],
        params: Mapping[str, torch.Tensor],
        time_step: int,
        mask: Optional[torch.Tensor] = None,
        event_fraction: float = 0.0,
        clamp_all: bool = True,
        lists: Optional[SynapseLists] = None,
    ) -> None:
        """Apply one epoch's update to ``syn`` (``w`` and, if used, ``t``, ``d``), then roll traces.

        ``event_fraction``: evaluate the products that depend on post (pre) spikes only on the rows
        (columns) of the neurons that spiked, when those are at most this fraction of the population
        (0: never, 1: always); see :meth:`apply`. The result is the same either way."""
        events = None
        if event_fraction > 0 and self.has_local:
            events = {}
            for dep, key in (("y0", "ty"), ("x0", "tx")):
                spiked = state[key].any(dim=0)  # spike times: > 0 where a neuron spiked
                index = spiked.nonzero()[:, 0]
                if index.numel() <= event_fraction * spiked.numel():
                    events[dep] = index
        ctx = _EpochContext(self, state, syn, params, time_step)
        self.apply(ctx, syn, state["x"].shape[0], mask=mask, events=events, clamp_all=clamp_all, lists=lists)
        # Roll the traces to their value at the end of the epoch (the products may have made it already).
        for name in PRE_TRACES:
            if name in self.decay:
                k = TRACE_INDEX[name]
                made = ctx.at_end_made(name)
                state["x"][:, k] = made[:, 0, :] if made is not None else self.at_end(name, state["x"][:, k], state["tx"])
        for name in POST_TRACES:
            if name in self.decay and name not in self.driven:
                k = TRACE_INDEX[name]
                made = ctx.at_end_made(name)
                state["y"][:, k] = made[:, :, 0] if made is not None else self.at_end(name, state["y"][:, k], state["ty"])
        state["tx"] = torch.zeros_like(state["tx"])
        state["ty"] = torch.zeros_like(state["ty"])


def _may_be_infinite(e: Expr) -> bool:
    """Whether ``e`` may be infinite for finite variables: a division by a non-constant, exp, a negative power."""
    if not isinstance(e, Op):
        return False
    if (e.name == "div" and not isinstance(e.args[1], Const)) or e.name == "exp" or (e.name == "pow" and e.attrs[0] < 0):
        return True
    return any(_may_be_infinite(a) for a in e.args)


def _vanishing(factors: List) -> List:
    """A product's factors (dependency first) as one factor that is 0 wherever the dependency is 0, whatever
    the others are there (the rule language's meaning of the dependency, which event-driven updates keep)."""
    dep = factors[0]
    if not isinstance(dep, torch.Tensor):
        return factors
    rest = _prod(factors[1:])
    return [torch.where(dep != 0, dep * rest, torch.zeros((), dtype=dep.dtype, device=dep.device))]


def _mixes(e: Expr) -> bool:
    if isinstance(e, Op):
        return e.name in MIXING_OPS or any(_mixes(a) for a in e.args)
    return False


def _clamp_touched(x: Optional[torch.Tensor], touched: List[Tuple[int, torch.Tensor]], lo: float, hi: float) -> None:
    """Clip ``x`` in place on the given rows (``dim -2``) and columns (``dim -1``) only."""
    if x is None:
        return
    lo_, hi_ = (None if math.isinf(lo) else lo), (None if math.isinf(hi) else hi)
    if lo_ is None and hi_ is None:
        return
    for dim, index in touched:
        y, d = (x.view(x.shape[0], -1), 1) if dim == 0 else (x, x.dim() + dim)  # dim 0: flat synapse indices
        y.index_copy_(d, index, y.index_select(d, index).clamp(lo_, hi_))


class SynapseLists:
    """The synapses of a sparse projection (a mask ``(M, N)``), listed by post neuron and by pre neuron
    (padded tables, -1 past a neuron's last synapse), so that the synapses of the neurons that spiked are
    found without scanning whole rows or columns."""

    def __init__(self, mask: torch.Tensor) -> None:
        self.pre_of_post = _padded(mask)  # (M, max in-degree): the pre neurons of each post neuron
        self.post_of_pre = _padded(mask.T)  # (N, max out-degree)

    def rows(self, index: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(post, pre)`` indices of the synapses onto the post neurons ``index``."""
        table = self.pre_of_post[index]
        valid = table >= 0
        return index[:, None].expand_as(table)[valid], table[valid]

    def cols(self, index: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(post, pre, k)`` for the synapses from the pre neurons ``index``: ``k`` says which entry of
        ``index`` each comes from."""
        table = self.post_of_pre[index]
        valid = table >= 0
        k = torch.arange(len(index), device=index.device)[:, None].expand_as(table)[valid]
        return table[valid], index[k], k


def _padded(mask: torch.Tensor) -> torch.Tensor:
    """For each row of ``mask``, the columns where it is true, left-aligned and padded with -1."""
    rows, cols = mask.nonzero(as_tuple=True)  # sorted by row
    counts = torch.bincount(rows, minlength=mask.shape[0])
    width = int(counts.max()) if rows.numel() else 0
    table = torch.full((mask.shape[0], max(width, 1)), -1, dtype=torch.long, device=mask.device)
    slot = torch.arange(rows.numel(), device=mask.device) - (counts.cumsum(0) - counts)[rows]
    table[rows, slot] = cols
    return table


def _sides(factors: List) -> Tuple[List, List, List, List]:
    """Sort a product's factors: post-sided ``(R|1, M|1, 1)``, pre-sided ``(R|1, 1, N)``, numbers
    (Python or 0-d), and those that span both sides."""
    post, pre, numbers, both = [], [], [], []
    for f in factors:
        if not isinstance(f, torch.Tensor) or f.dim() == 0:
            numbers.append(f)
        elif f.dim() == 3 and f.shape[-1] == 1:
            post.append(f)
        elif f.dim() == 3 and f.shape[-2] == 1:
            pre.append(f)
        else:
            both.append(f)
    return post, pre, numbers, both


def _separable(factors: List) -> Optional[Tuple[object, object]]:
    """``(a, b)`` with ``prod(factors) == a * b``, ``a`` post-sided ``(R|1, M|1, 1)`` (with every number
    folded in) and ``b`` pre-sided ``(R|1, 1, N)`` (or 1); ``None`` if a factor spans both sides."""
    post, pre, numbers, both = _sides(factors)
    if both or not (post or pre):
        return None
    return _prod(post + numbers), (_prod(pre) if pre else 1.0)


#: The CUDA engine adds an update made only of outer products (STDP, Hebbian, predictive-coding rules)
#: to float32 weights and clips them in one Triton kernel (``neuro.kernels.outer_update_``); False: torch's
#: ``addmm`` then ``clamp_``. ``FUSED_PRECISION``: the kernel's product precision ("ieee": float32;
#: "tf32x3": tensor cores, ~2**-22 relative error).
FUSED_UPDATES = True
FUSED_PRECISION = "ieee"


def _fusable(current: torch.Tensor) -> bool:
    # Under torch.compile inductor makes the kernels (a Triton call there would be traced, not run).
    return (FUSED_UPDATES and current.is_cuda and current.dtype == torch.float32 and current.is_contiguous()
            and not torch.compiler.is_compiling())


def _outer_factors(current: torch.Tensor, outer: List[Tuple[object, object]], replicas: int,
                   scale: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` with ``A @ B = scale * sum_k a_k b_k`` for the products ``outer`` (see :func:`_separable`):
    summed over replicas where ``current`` is shared, ``(M, K) @ (K, N)``; else per replica,
    ``(R, M, K) @ (R, K, N)``."""
    m, n = current.shape[1:]
    like = dict(dtype=current.dtype, device=current.device)
    a = [torch.broadcast_to(_on(x, like), (replicas, m, 1))[..., 0] for x, _ in outer]
    b = [torch.broadcast_to(_on(y, like), (replicas, 1, n))[:, 0, :] for _, y in outer]
    if scale != 1.0:
        a = [x * scale for x in a]
    if current.shape[0] == 1:
        return torch.cat(a, 0).T, torch.cat(b, 0)
    return torch.stack(a, -1), torch.stack(b, 1)


def _grouped(a: torch.Tensor, b: torch.Tensor, groups: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`_outer_factors`' matrices with a leading group dimension (1 for shared weights)."""
    return (a[None], b[None]) if groups == 1 and a.dim() == 2 else (a, b)


def _add_outer(current: torch.Tensor, a: torch.Tensor, b: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """``current + A @ B`` (:func:`_outer_factors`), added in the matrix product's kernel where no mask intervenes."""
    zero = torch.zeros((), dtype=current.dtype, device=current.device)
    if a.dim() == 2:  # shared
        if mask is None:
            return torch.addmm(current[0], a, b)[None]
        return current + torch.where(mask, a @ b, zero)
    if mask is None:
        return torch.baddbmm(current, a, b)
    return current + torch.where(mask, torch.bmm(a, b), zero)


def _on(x, like: Dict) -> torch.Tensor:
    """``x`` (a tensor or a number) as a tensor of ``like``'s dtype and device; a number by a fill, not a
    copy from the host (legal inside a CUDA graph capture)."""
    return x.to(**like) if isinstance(x, torch.Tensor) else torch.full((), x, **like)


def _product(factors: List, replicas: int, shape: Tuple[int, int], sum_replicas: bool) -> torch.Tensor:
    """The product of ``factors`` (numbers or tensors broadcasting to ``(R, M, N)``).

    With ``sum_replicas`` the result is summed over replicas, ``(1, M, N)``. Where
    every factor is either post-sided ``(R|1, M|1, 1)``, pre-sided ``(R|1, 1, N)``
    or the same for all replicas ``(1, M, N)``, the sum over replicas is a matrix
    product of the two sides and no ``(R, M, N)`` tensor is made: a mini-batch
    Hebbian update ``sum_r y_r x_r^T`` costs one matmul.
    """
    if not sum_replicas:
        return torch.as_tensor(_prod(factors))
    post, pre, common, both = _sides(factors)
    common += [f for f in both if f.dim() == 3 and f.shape[0] == 1]  # the same for every replica
    full = [f for f in both if not (f.dim() == 3 and f.shape[0] == 1)]
    if full or not (post or pre):
        return torch.broadcast_to(torch.as_tensor(_prod(factors)), (replicas,) + shape).sum(dim=0, keepdim=True)
    a, b = _prod(post), _prod(pre)
    if not pre:  # sum_r a_r * 1: no matmul needed
        value = torch.broadcast_to(a, (replicas, shape[0], 1)).sum(dim=0, keepdim=True) * b
    elif not post:
        value = a * torch.broadcast_to(b, (replicas, 1, shape[1])).sum(dim=0, keepdim=True)
    else:
        dtype = torch.promote_types(a.dtype, b.dtype)  # as the broadcast product would
        a = torch.broadcast_to(a, (replicas, shape[0], 1))[..., 0].to(dtype)
        b = torch.broadcast_to(b, (replicas, 1, shape[1]))[:, 0, :].to(dtype)
        value = (a.T @ b)[None]
    for f in common:
        value = value * f
    return torch.broadcast_to(value, (1,) + shape)


def _prod(factors: List):
    value = factors[0] if factors else 1.0
    for f in factors[1:]:
        value = value * f
    return value


class _Context:
    """Evaluates the factors of a rule's products; subclasses say what each variable holds."""

    rule: CompiledRule
    params: Mapping[str, torch.Tensor]

    def dependency(self, name: str):
        raise NotImplementedError

    def trace(self, name: str, dep: str):
        raise NotImplementedError

    def synaptic(self, name: str) -> torch.Tensor:
        raise NotImplementedError

    def factors(self, term: Term) -> List:
        """``coef * dependency`` followed by the term's factors, evaluated."""
        return [self.dependency(term.dependency) * term.coef] + [self.eval(f, term.dependency) for f in term.factors]

    def eval(self, e: Expr, dep: str):
        if isinstance(e, Const):
            return e.value
        if isinstance(e, Param):
            return self.params[e.name]
        if isinstance(e, Var):
            if e.name in ("x0", "y0", "u"):
                return self.dependency(e.name)
            if e.name in TRACE_INDEX:
                return self.trace(e.name, dep)
            return self.synaptic(e.name)
        assert isinstance(e, Op)
        # Operations across neurons compare them at one instant: the end of the epoch.
        inner = "u" if e.name in MIXING_OPS else dep
        a = [self.eval(x, inner) for x in e.args]
        return _OPS[e.name](a, e.attrs)


class _EpochContext(_Context):
    """Evaluates products at the end of one epoch; traces sampled per dependency."""

    def __init__(self, rule: CompiledRule, state, syn, params, time_step: int) -> None:
        self.rule, self.state, self.syn, self.params = rule, state, syn, params
        self.time_step = time_step
        self._deps: Dict[str, torch.Tensor] = {}  # made when a product first asks
        self._cache: Dict[Tuple[str, str], torch.Tensor] = {}

    def at_end_made(self, name: str) -> Optional[torch.Tensor]:
        """Trace ``name`` at the epoch's end if a product already computed it, else ``None``."""
        return self._cache.get((name, "u"))

    def trace(self, name: str, dep: str) -> torch.Tensor:
        if self.rule.sample_at_end:
            dep = "u"
        key = (name, dep)
        if key not in self._cache:
            rule, st = self.rule, self.state
            k = TRACE_INDEX[name]
            if name in PRE_TRACES:
                start, t_spk = st["x"][:, k][:, None, :], st["tx"][:, None, :]
            else:
                start, t_spk = st["y"][:, k][:, :, None], st["ty"][:, :, None]
            if dep == "u":
                self._cache[key] = rule.at_end(name, start, t_spk)
            else:  # sampled at the dependency's spike times, shaped to broadcast against (R, M, N)
                s = st["tx"][:, None, :] if dep == "x0" else st["ty"][:, :, None]
                self._cache[key] = _history(start, rule.powers(name, start), rule.impulse[name], t_spk, s)
        return self._cache[key]

    def dependency(self, name: str):
        if name not in self._deps:
            st, dtype = self.state, self.state["x"].dtype
            if name == "x0":
                self._deps[name] = (st["tx"] > 0).to(dtype)[:, None, :]
            elif name == "y0":
                self._deps[name] = (st["ty"] > 0).to(dtype)[:, :, None]
            else:
                on = (self.time_step // self.rule.t_epoch) % (2 ** self.rule.u_exponent) == 0
                # a fill, not a copy from the host: legal inside a CUDA graph capture
                self._deps[name] = torch.full((), 1.0 if on else 0.0, dtype=dtype, device=st["tx"].device)
        return self._deps[name]

    def synaptic(self, name: str) -> torch.Tensor:
        return self.syn[name]


class _Cut(_Context):
    """``base``'s values, each cut by :meth:`_cut` (to some rows, columns or synapses) before the
    operations combine them."""

    base: _Context

    def _cut(self, v):
        raise NotImplementedError

    def dependency(self, name: str):
        return self._cut(self.base.dependency(name))

    def trace(self, name: str, dep: str):
        return self._cut(self.base.trace(name, dep))

    def synaptic(self, name: str) -> torch.Tensor:
        return self._cut(self.base.synaptic(name))


class _Sliced(_Cut):
    """``base``'s values on the rows (``dim=-2``: post neurons) or columns (``dim=-1``: pre neurons)
    ``index`` only: every variable is cut there before the operations combine them."""

    def __init__(self, base: _Context, dim: int, index: torch.Tensor) -> None:
        self.base, self.dim, self.index = base, dim, index
        self.rule, self.params = base.rule, base.params

    def _cut(self, v):
        if isinstance(v, torch.Tensor) and v.dim() == 3 and v.shape[self.dim] != 1:
            return v.index_select(self.dim, self.index)
        return v


class _Listed(_Cut):
    """``base``'s values at listed synapses ``(post[k], pre[k])`` only: every variable ``(R|1, M|1, N|1)``
    becomes ``(R|1, S)`` before the operations combine them."""

    def __init__(self, base: _Context, post: torch.Tensor, pre: torch.Tensor) -> None:
        self.base, self.post, self.pre = base, post, pre
        self.rule = base.rule
        self.params = {k: v.reshape(v.shape[0], 1) for k, v in base.params.items()}  # (R, 1, 1) -> (R, 1)
        self._zero = torch.zeros_like(post)

    def _cut(self, v):
        if isinstance(v, torch.Tensor) and v.dim() == 3:
            return v[:, self.post if v.shape[-2] != 1 else self._zero, self.pre if v.shape[-1] != 1 else self._zero]
        return v


class RateContext(_Context):
    """Rate semantics of a rule: one epoch per sample, every neuron's activity a number.

    ``u`` is 1; ``x0`` and every spike-counting pre trace read the pre-synaptic
    activity ``(R, N)``; ``y0`` and every spike-counting post trace read the
    post-synaptic activity ``(R, M)`` (for a soft winner-take-all layer, the
    probability of being the winner, i.e. the expected spike); a driven post trace
    reads its driver from ``signals`` (``"v"`` and ``"i"``: the pre-activation).
    """

    def __init__(self, rule: CompiledRule, pre, post, signals, syn, params) -> None:
        self.rule, self.syn, self.params = rule, syn, params
        self.pre, self.post, self.signals = pre[:, None, :], post[:, :, None], signals

    def dependency(self, name: str):
        return {"x0": self.pre, "y0": self.post}.get(name, 1.0)

    def trace(self, name: str, dep: str):
        if name in PRE_TRACES:
            return self.pre
        driver = self.rule.driven.get(name)
        if driver is None:
            return self.post
        if driver not in self.signals:
            raise ValueError(f"rule {self.rule.rule.name!r}: trace {name} needs the post signal {driver!r}")
        return self.signals[driver][:, :, None]

    def synaptic(self, name: str) -> torch.Tensor:
        return self.syn[name]


def _t(x) -> torch.Tensor:
    # float64: a 0-d tensor takes the dtype of the tensors it meets, so a float32 run still computes in float32,
    # while a float64 run sees the rule's constant unrounded (torch.tensor(0.1) would round it to float32).
    return x if isinstance(x, torch.Tensor) else torch.tensor(x, dtype=torch.float64)


def _softmax_post(a, attrs):
    x = _t(a[0]) / attrs[0]
    if x.dim() < 3:  # a scalar or per-replica value: the same for every post neuron
        return torch.ones_like(x)
    return torch.softmax(x, dim=-2)


def _winner_post(a, attrs):
    x = _t(a[0])
    if x.dim() < 3:  # the same for every post neuron: the first one wins
        raise ValueError("winner(...) needs a value that differs between post neurons (a post trace or w)")
    return torch.zeros_like(x).scatter_(-2, x.argmax(dim=-2, keepdim=True), 1.0)


def _sum_pre(a, attrs):
    x = _t(a[0])
    if x.dim() < 3 or x.shape[-1] == 1:
        raise ValueError("sum_pre(...) needs a value per pre-synaptic neuron (a pre trace or w)")
    return x.sum(dim=-1, keepdim=True)


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
    "winner": _winner_post,
    "sum_pre": _sum_pre,
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

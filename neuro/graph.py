"""The network graph: populations, input populations and projections (dense, or sparse with a mask).

A :class:`Network` is a description, not a simulation: back-ends (the torch
engine in :mod:`neuro.engine`, the exporters in ``export/``) compile it. It
holds only plain data (numbers, numpy arrays, rules), so it can be written to
and read from files without executing code.

Timing convention (Lava's): a spike emitted at step ``k`` reaches the post
population's input at step ``k + 1``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

import numpy as np

from neuro.encoders import Encoder, encoder_from_data, encoder_to_data
from neuro.neurons import IAF, LIF, NeuronModel, check_time_step, model_from_data, model_to_data
from neuro.rule import LearningRule


def random_mask(n_post: int, n_pre: int, p: float, seed: int = 0, autapses: bool = True) -> np.ndarray:
    """A boolean ``(n_post, n_pre)`` mask in which each synapse exists with probability ``p``
    (Brian2's ``connect(p=p)``); ``autapses=False`` removes the diagonal (for a population onto itself)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"random_mask: p must be a probability in [0, 1], got {p!r}")
    mask = np.random.default_rng(seed).random((n_post, n_pre)) < p
    if not autapses:
        np.fill_diagonal(mask, False)
    return mask


def _check_mask(name: str, mask: Any, shape: tuple) -> np.ndarray:
    m = np.asarray(mask)
    if m.shape != shape:
        raise ValueError(f"connect {name!r}: mask must have shape (post, pre) = {shape}, got {tuple(m.shape)}")
    if m.dtype != bool:
        if not np.issubdtype(m.dtype, np.number) or not np.all((m == 0) | (m == 1)):
            raise ValueError(f"connect {name!r}: mask must be boolean (or 0/1), got {m.dtype} values")
        m = m.astype(bool)
    return m


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"names must be identifiers (letters, digits, _), got {name!r}")


def _size(name: str, n: Any) -> int:
    # Checked before any int(): int(2.5) would quietly make 2 neurons.
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"population {name!r}: n must be a positive integer, got {n!r}")
    return int(n)


@dataclass
class Population:
    """``n`` neurons of one model."""

    name: str
    n: int
    model: NeuronModel = field(default_factory=LIF)

    def to_data(self) -> Dict[str, Any]:
        return {"kind": "population", "name": self.name, "n": self.n, "model": model_to_data(self.model)}


@dataclass
class InputPopulation:
    """``n`` spike sources; with an encoder they turn values in [0, 1] into spikes."""

    name: str
    n: int
    encoder: Optional[Encoder] = None

    def to_data(self) -> Dict[str, Any]:
        return {"kind": "input", "name": self.name, "n": self.n, "encoder": encoder_to_data(self.encoder)}


@dataclass(frozen=True)
class Tie:
    """Weights that follow another projection's: ``scale * source.w`` (transposed if ``transpose``).

    A back-end keeps the tie after every learning epoch of ``source`` (the torch
    engine copies the weights; on Loihi 2 no synapse group can share another's
    weights, so the host must rewrite them, which ``hardware.check`` reports).
    Predictive coding's error feedback ``W^T`` is a tie.
    """

    source: str
    transpose: bool = True
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.source, str):
            raise ValueError(f"a tie's source must be a projection name, got {self.source!r}")
        if not isinstance(self.transpose, (bool, np.bool_)):
            raise ValueError(f"a tie's transpose must be True or False, got {self.transpose!r}")
        if isinstance(self.scale, (bool, np.bool_)) or not isinstance(self.scale, (int, float, np.number)):
            raise ValueError(f"a tie's scale must be a number, got {self.scale!r}")
        if not np.isfinite(self.scale):
            raise ValueError(f"a tie's scale must be finite, got {self.scale!r}")
        # Plain Python values, so the description stays JSON-safe.
        object.__setattr__(self, "transpose", bool(self.transpose))
        object.__setattr__(self, "scale", float(self.scale))

    def apply(self, w):
        """The tied weights for source weights ``w`` ``(..., post, pre)``, a numpy array or a torch tensor."""
        w = w.swapaxes(-1, -2) if self.transpose else w
        return self.scale * w

    def to_data(self) -> Dict[str, Any]:
        return {"source": self.source, "transpose": self.transpose, "scale": self.scale}

    @staticmethod
    def from_data(data: Any) -> "Tie":
        if not isinstance(data, dict) or set(data) != {"source", "transpose", "scale"}:
            raise ValueError(f"a tie must be a mapping with keys source, transpose, scale, got {data!r:.200}")
        return Tie(data["source"], data["transpose"], data["scale"])


@dataclass
class Projection:
    """Synapses from ``pre`` to ``post``: all pairs, or those of a connectivity ``mask``.

    ``weights`` has shape ``(post.n, pre.n)`` (one matrix shared by all
    replicas: with a rule, the replicas' updates are summed into it, like a
    mini-batch) or ``(R, post.n, pre.n)`` (one matrix per replica, each learning
    on its own). ``rule`` is ``None`` for static synapses; ``tie`` is set for
    weights that follow another projection's (:class:`Tie`). ``mask`` (boolean ``(post, pre)``, or
    ``None`` for all-to-all) says which synapses exist: the others have weight 0 and never learn
    (Brian2's ``Synapses.connect(p=...)``; the classic COBA/CUBA networks have 2 %).
    """

    name: str
    pre: str
    post: str
    weights: np.ndarray
    rule: Optional[LearningRule] = None
    tie: Optional[Tie] = None
    gated: bool = False
    mask: Optional[np.ndarray] = None

    @property
    def shared(self) -> bool:
        return self.weights.ndim == 2

    @property
    def synapses(self) -> int:
        """How many synapses exist (per replica)."""
        n_post, n_pre = self.weights.shape[-2:]
        return n_post * n_pre if self.mask is None else int(self.mask.sum())

    def to_data(self) -> Dict[str, Any]:
        data = {
            "name": self.name,
            "pre": self.pre,
            "post": self.post,
            "rule": None if self.rule is None else self.rule.to_data(),
        }
        if self.tie is not None:
            data["tie"] = self.tie.to_data()
        if self.gated:
            data["gated"] = True
        if self.mask is not None:
            data["masked"] = True  # the mask itself is an array, stored beside the weights
        return data


class Network:
    """A graph of populations and projections simulated with a step of ``dt`` seconds."""

    def __init__(self, dt: float = 1e-3, name: str = "network") -> None:
        if isinstance(dt, bool) or not isinstance(dt, (int, float, np.integer, np.floating)) or not 0 < dt < math.inf:
            raise ValueError(f"dt must be a positive, finite number of seconds, got {dt!r}")
        if not isinstance(name, str):
            raise TypeError(f"the network's name must be a string, got {name!r}")
        self.dt = float(dt)
        self.name = name
        self.populations: Dict[str, Union[Population, InputPopulation]] = {}
        self.projections: Dict[str, Projection] = {}

    def _add_node(self, pop: Union[Population, InputPopulation]) -> None:
        _check_name(pop.name)
        if pop.name in self.populations or pop.name in self.projections:
            raise ValueError(f"the network already has something named {pop.name!r}")
        self.populations[pop.name] = pop

    def input(self, name: str, n: int, encoder: Optional[Encoder] = None) -> InputPopulation:
        """Add ``n`` spike sources (fed through ``Simulator.run(inputs=...)``)."""
        pop = InputPopulation(name, _size(name, n), encoder)
        self._add_node(pop)
        return pop

    def population(self, name: str, n: int, model: Optional[NeuronModel] = None) -> Population:
        """Add ``n`` neurons of ``model`` (default: :class:`~neuro.neurons.LIF`)."""
        model = model if model is not None else LIF()
        if not isinstance(model, (LIF, IAF)):
            raise TypeError(f"population {name!r}: model must be a neuron model (LIF, IAF), got {model!r:.100}")
        check_time_step(model, self.dt, f"population {name!r}")
        pop = Population(name, _size(name, n), model)
        self._add_node(pop)
        return pop

    def connect(
        self,
        pre: Union[str, Population, InputPopulation],
        post: Union[str, Population],
        weights: Union[float, np.ndarray],
        rule: Optional[LearningRule] = None,
        name: Optional[str] = None,
        tie: Optional[Tie] = None,
        gated: bool = False,
        mask: Optional[np.ndarray] = None,
    ) -> Projection:
        """Add synapses; ``weights`` is a number, ``(post, pre)`` or ``(R, post, pre)``.

        ``mask``: boolean ``(post, pre)``, which synapses exist (default: all); a number as
        ``weights`` is then given to the existing ones only, and weights off the mask must be 0.
        See :func:`random_mask`.

        With ``tie`` the weights must equal the tie applied to the source's (see :meth:`tied`).
        ``gated``: the input passes only while the post neuron's current lies inside its gate
        (:class:`~neuro.neurons.LIF` ``gate_min`` / ``gate_max``, which must be set).
        """
        pre_name = pre if isinstance(pre, str) else pre.name
        post_name = post if isinstance(post, str) else post.name
        for role, n in (("pre", pre_name), ("post", post_name)):
            if n not in self.populations:
                raise ValueError(f"connect: unknown {role} population {n!r}; have {sorted(self.populations)}")
        if isinstance(self.populations[post_name], InputPopulation):
            raise ValueError(f"connect: {post_name!r} is an input population and cannot receive synapses")
        name = name or f"{pre_name}_to_{post_name}"
        _check_name(name)
        if name in self.projections or name in self.populations:
            raise ValueError(f"the network already has something named {name!r}")
        if rule is not None and not isinstance(rule, LearningRule):
            raise TypeError(f"connect: rule must be a LearningRule, got {type(rule).__name__}")
        shape = (self.populations[post_name].n, self.populations[pre_name].n)
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim == 0:
            w = np.full(shape, float(w))
        if mask is not None:
            mask = _check_mask(name, mask, shape)
            if np.ndim(weights) == 0:
                w = w * mask
        if w.shape[-2:] != shape or w.ndim not in (2, 3):
            raise ValueError(
                f"connect {name!r}: weights must have shape (post, pre) = {shape} or (R, *{shape}), "
                f"got {tuple(w.shape)}"
            )
        if not np.all(np.isfinite(w)):
            raise ValueError(f"connect {name!r}: weights contain NaN or infinite values")
        if mask is not None and np.any(w[..., ~mask] != 0):
            raise ValueError(f"connect {name!r}: weights must be 0 where the mask has no synapse")
        if mask is not None and rule is not None and not rule.w_min <= 0.0 <= rule.w_max:
            # Missing synapses hold 0; a rule that clips every weight into [w_min, w_max] would move them.
            raise ValueError(
                f"connect {name!r}: a masked projection needs a rule whose bounds include 0 "
                f"(missing synapses hold 0), got w_min={rule.w_min}, w_max={rule.w_max}"
            )
        if tie is not None:
            if mask is not None:
                raise ValueError(f"connect {name!r}: tied weights take the source's connectivity; give no mask")
            self._check_tie(name, w, rule, tie)
        post_model = self.populations[post_name].model
        if gated and not getattr(post_model, "gated", False):
            raise ValueError(
                f"connect {name!r}: gated input needs a post neuron with a gate (LIF gate_min/gate_max); "
                f"{post_name!r} is a {post_model}"
            )
        if rule is not None:
            model = self.populations[post_name].model
            for trace_name, tr in rule.traces.items():
                if tr.driven_by in ("v", "i") and rule.uses(trace_name) and tr.driven_by not in model.state_names:
                    raise ValueError(
                        f"connect {name!r}: rule {rule.name!r} reads {trace_name} from the post neuron's {tr.driven_by!r}, "
                        f"which a {type(model).__name__} neuron does not have ({', '.join(model.state_names)})"
                    )
        proj = Projection(name, pre_name, post_name, w.copy(), rule, tie, bool(gated),
                          None if mask is None else mask.copy())
        self.projections[name] = proj
        return proj

    def tied(
        self,
        pre: Union[str, Population, InputPopulation],
        post: Union[str, Population],
        source: str,
        transpose: bool = True,
        scale: float = 1.0,
        name: Optional[str] = None,
        gated: bool = False,
    ) -> Projection:
        """Add synapses whose weights follow projection ``source``'s: ``scale * W_source`` (``^T`` if
        ``transpose``), also while ``source`` learns. E.g. feedback ``W^T`` in predictive coding.
        ``gated`` as in :meth:`connect`."""
        if source not in self.projections:
            raise ValueError(f"tied: unknown source projection {source!r}; have {sorted(self.projections)}")
        tie = Tie(source, bool(transpose), float(scale))
        return self.connect(pre, post, tie.apply(self.projections[source].weights), name=name, tie=tie, gated=gated)

    def _check_tie(self, name: str, w: np.ndarray, rule: Optional[LearningRule], tie: Tie) -> None:
        src = self.projections.get(tie.source)
        if src is None:
            raise ValueError(f"projection {name!r} is tied to unknown projection {tie.source!r} (define it first)")
        if src.tie is not None:
            raise ValueError(f"projection {name!r} is tied to {tie.source!r}, which is itself tied; tie to its source")
        if rule is not None:
            raise ValueError(f"projection {name!r} is tied to {tie.source!r}; tied weights cannot have a rule")
        expected = tie.apply(src.weights)
        if expected.shape != w.shape:
            raise ValueError(
                f"projection {name!r}: tied to {tie.source!r} ({'transposed, ' if tie.transpose else ''}"
                f"shape {expected.shape}) but its weights have shape {w.shape}"
            )
        if not np.allclose(w, expected, rtol=1e-12, atol=0.0):
            raise ValueError(f"projection {name!r}: weights differ from the tie to {tie.source!r} applied to its weights")

    def learning_ties(self) -> List[Projection]:
        """The tied projections whose source learns: a back-end must rewrite them as the source changes."""
        return [p for p in self.projections.values()
                if p.tie is not None and self.projections[p.tie.source].rule is not None]

    def incoming(self, post: str) -> List[Projection]:
        return [p for p in self.projections.values() if p.post == post]

    def to_data(self) -> Dict[str, Any]:
        """JSON-safe description without the weight arrays (those are stored as arrays)."""
        return {
            "format": "neuro.network/1",
            "name": self.name,
            "dt": self.dt,
            "populations": [p.to_data() for p in self.populations.values()],
            "projections": [p.to_data() for p in self.projections.values()],
        }

    @staticmethod
    def from_data(
        data: Dict[str, Any], weights: Dict[str, np.ndarray], masks: Optional[Dict[str, np.ndarray]] = None
    ) -> "Network":
        """Rebuild a network from :meth:`to_data` output, initial weights and connectivity masks by projection name."""
        masks = masks or {}
        for p in data.get("projections", []):
            if isinstance(p, dict) and p.get("masked") and p.get("name") not in masks:
                raise ValueError(f"projection {p.get('name')!r} is sparse (masked) but no mask was given for it")
        if not isinstance(data, dict) or data.get("format") != "neuro.network/1":
            raise ValueError("not a neuro network description (missing format 'neuro.network/1')")
        net = Network(dt=data["dt"], name=data.get("name", "network"))
        for p in data["populations"]:
            if p["kind"] == "input":
                net.input(p["name"], p["n"], encoder_from_data(p.get("encoder")))
            elif p["kind"] == "population":
                net.population(p["name"], p["n"], model_from_data(p["model"]))
            else:
                raise ValueError(f"unknown population kind {p['kind']!r}")
        for p in data["projections"]:
            if p["name"] not in weights:
                raise ValueError(f"no weights stored for projection {p['name']!r}")
            rule = None if p["rule"] is None else LearningRule.from_data(p["rule"])
            tie = None if p.get("tie") is None else Tie.from_data(p["tie"])
            gated = p.get("gated", False)
            if not isinstance(gated, bool):
                raise ValueError(f"projection {p['name']!r}: 'gated' must be true or false, got {gated!r}")
            net.connect(p["pre"], p["post"], weights[p["name"]], rule, p["name"], tie, gated, masks.get(p["name"]))
        return net

    def __repr__(self) -> str:
        pops = ", ".join(f"{p.name}[{p.n}]" for p in self.populations.values())
        projs = ", ".join(
            f"{p.pre}->{p.post}" + (f" ({p.rule.name})" if p.rule else "") + (f" (tied to {p.tie.source})" if p.tie else "")
            + (" (gated)" if p.gated else "") + (f" ({p.synapses} synapses)" if p.mask is not None else "")
            for p in self.projections.values()
        )
        return f"Network({self.name!r}, dt={self.dt} s; {pops}; {projs})"

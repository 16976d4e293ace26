"""Exchange the inference part of a :class:`neuro.Network` as a NIR graph (Neuromorphic
Intermediate Representation, https://neuroir.org) and read NIR graphs back.

API:

* :func:`to_nir` ``(network_or_simulator) -> nir.NIRGraph``;
* :func:`write_nir` ``(path, network_or_simulator)``: the same, written with ``nir.write`` (HDF5);
* :func:`from_nir` ``(graph_or_path, dt=None) -> neuro.Network``;
* :func:`norse_caveats` ``(graph, dt)``: where Norse 1.1's NIR importer departs from the NIR
  equations (so where a Norse run of the graph will not match ours).

What is exported
----------------
Populations, input populations and projections with their **current** weights (a
:class:`~neuro.Simulator` gives the weights it has learnt so far; a :class:`~neuro.Network` its
initial weights). NIR has no plasticity: learning rules are dropped, with a
:class:`PlasticityNotExportedWarning`, and the exported synapses are static. The rules (and
traces, tags and the rest of the learning state) live in neuro's own model file written by
:func:`neuro.save` (``neuro.io``), which is the file to keep beside the ``.nir`` graph.

Mapping (NIR's equations read with forward Euler at the network's step ``dt``, the synaptic
current updated before the membrane, and an input spike being the value 1 during one step;
this is the reading of Norse's and snnTorch's NIR importers and exporters):

=====================  =========================================================================
neuro                  NIR
=====================  =========================================================================
input population       ``Input`` (shape ``(n,)``), named after the population
projection             ``Linear(weight)``, weight ``(post, pre)``, named after the projection
:class:`~neuro.LIF`    ``CubaLIF(tau_syn, tau_mem, r=1, v_leak, v_threshold=v_th, v_reset,
                       w_in=tau_syn/dt)``, one value per neuron, times in **seconds**
:class:`~neuro.IAF`    ``IF(r=1/dt, v_threshold=v_th, v_reset)``
(sink populations)     ``Output`` nodes named ``<population>_out``
=====================  =========================================================================

Why ``w_in = tau_syn/dt``: NIR's CubaLIF is ``tau_syn dI/dt = -I + w_in S``,
``tau_mem dv/dt = v_leak - v + r I``. One Euler step is ``I += dt/tau_syn (-I + w_in S)``,
``v += dt/tau_mem (v_leak - v + r I)``. Our LIF (Norse's ``lif_feed_forward_step``) does
``i += input``; ``v += dt/tau_mem (v_leak - v + i)``; ``i *= 1 - dt/tau_syn``, i.e. with
``j`` the current used at a step, ``j_k = (1 - dt/tau_syn) j_{k-1} + input_k``: the same
recursion when ``dt/tau_syn * w_in = 1`` and ``r = 1``. Likewise ``IF``'s ``dv/dt = r I`` gives
``v += dt r I``, which is our ``v += input`` for ``r = 1/dt``. The graph's ``w_in`` (and ``IF``'s
``r``) therefore depend on ``dt``, which is stored in the graph's metadata (``"dt"``, seconds)
and used by :func:`from_nir`; give Norse the same ``dt`` (``norse.torch.from_nir(graph, dt=dt)``).
A saturating current (``i_min`` / ``i_max``), a gate (``gate_min`` / ``gate_max``) or a subtractive
reset has no NIR equivalent and is refused.
An adaptive threshold (``theta_plus > 0``) has no NIR equivalent and is refused, unless
``freeze_theta=True`` exports the current threshold ``v_th + theta`` per neuron (as Diehl & Cook
do at test time).

Timing convention (the synaptic delay)
--------------------------------------
In neuro a spike emitted at step ``k`` reaches the post population's input at step ``k + 1``:
every projection delays by one step. NIR graphs as simulators read them (Norse through
nirtorch, snnTorch, ...) propagate along a feed-forward edge *within* the step, and along an
edge that closes a cycle with a one-step delay. Two ways to export this:

``delays="implicit"`` (default)
    No ``Delay`` nodes (what every NIR importer runs). This is exact up to a shift for
    *layered* networks: when every population ``P`` has a depth ``d(P)`` with
    ``d(post) = d(pre) + 1`` for every projection between different populations and
    ``d = 0`` for inputs (and populations without incoming projections), then with the same
    input spikes ``neuro_spikes_P[k + d(P)] == zero_delay_spikes_P[k]``: population ``P``
    spikes ``d(P)`` steps later in neuro. (A resting neuron given no input stays exactly at
    rest, so the ``d(P)`` leading silent steps change nothing.) Projections from a
    population onto itself keep their one-step delay on both sides. Graphs that are not
    layered (skip connections whose paths have different lengths, cycles through several
    populations) cannot be written this way and raise :class:`NIRExportError`. Each neuron
    node's metadata holds its ``neuro_depth``; the graph's metadata says
    ``delays = "implicit"``.
``delays="explicit"``
    A ``Delay(delay=dt)`` node after every ``Linear``: exact NIR for any topology, read as
    "edges are instantaneous", but Norse 1.1 cannot import ``Delay`` nodes.

:func:`from_nir` reads both: a path ``population -> [Linear | Affine (zero bias) | Scale |
Delay]* -> population`` becomes one projection (the weight nodes multiplied); its delay must
be exactly one step (``dt``), or zero in a graph without any ``Delay`` node (the implicit
convention above, so a layered zero-delay graph from another tool is imported with each
population ``d`` steps later). Neuron parameters must be the same for all neurons of a node
(a population shares one model), except ``r`` and ``w_in``, which are folded into the
incoming weights (left untouched when they amount to a factor 1 within 1e-12, so a round trip
is exact). ``nir.LIF`` (no synaptic current) is imported as our LIF with ``tau_syn = dt``: the
current then decays to exactly zero after each step when ``dt * (1/dt) == 1.0`` in floating
point (a warning says when it is not). Other node types raise :class:`NIRImportError` naming
them.

Running the graph in Norse 1.1
------------------------------
``norse.torch.from_nir(graph, dt=dt)`` builds a nirtorch ``GraphExecutor``; the spikes of each
population are in the returned state's ``cache[<population name>]``. Its importer stores
parameters and weights as float32, ignores ``v_reset`` (resets to 0), lets the CubaLIF synaptic
current relax towards (and start at) ``v_leak``, ignores ``r`` and ``dt`` of ``IF`` nodes,
supports one ``Input`` node only, cannot run ``Delay`` nodes, and executes nodes depth-first
from the input, so a population with several parent populations may get some of its input one
step late. :func:`norse_caveats` lists these for a given graph; with none, Norse reproduces our
spikes with the shift above (tests/test_nir.py).
"""
from __future__ import annotations

import math
import os
import re
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Union

import nir
import numpy as np
import torch

from neuro import IAF, LIF, InputPopulation, Network, Population, Simulator
from neuro.io import atomic_path

PathLike = Union[str, "os.PathLike[str]"]
FORMAT = "neuro.nir/1"
_UNITY_RTOL = 1e-12  # r * w_in * dt / tau_syn within this of 1 leaves the weights untouched


class NIRExportError(ValueError):
    """The network uses something a NIR graph cannot express; the message says what."""


class NIRImportError(ValueError):
    """A NIR graph uses something a neuro network cannot express; the message says what."""


class NIRExportWarning(UserWarning):
    """Something of the network is left out of (or changed in) the NIR graph."""


class NIRImportWarning(UserWarning):
    """A NIR graph is imported with a (small) approximation; the message says which."""


class PlasticityNotExportedWarning(NIRExportWarning):
    """A plastic projection was exported as static synapses with its current weights."""


# --- export ----------------------------------------------------------------------------------------
def _population_depths(network: Network) -> Dict[str, int]:
    """Depth of every population for the implicit delay convention, or NIRExportError."""
    pops = list(network.populations)
    parents: Dict[str, List[Tuple[str, str]]] = {p: [] for p in pops}
    for proj in network.projections.values():
        if proj.pre != proj.post:
            parents[proj.post].append((proj.pre, proj.name))
    depth: Dict[str, int] = {}
    visiting: List[str] = []

    def visit(p: str) -> int:
        if p in depth:
            return depth[p]
        if p in visiting:
            cycle = visiting[visiting.index(p):] + [p]
            raise NIRExportError(
                f"projections form a cycle through several populations ({' -> '.join(cycle)}): read without "
                f"delays, a NIR cycle is delayed by one step in all, where neuro delays each projection by "
                f"one step; export with delays='explicit' (neuro export: --delays explicit)"
            )
        visiting.append(p)
        ds = {pre: visit(pre) + 1 for pre, _ in parents[p]}
        visiting.pop()
        if len(set(ds.values())) > 1:
            paths = ", ".join(f"from {pre!r} after {d} projection(s)" for pre, d in ds.items())
            raise NIRExportError(
                f"population {p!r} is reached by paths of different lengths ({paths}): a NIR graph without "
                f"delays cannot keep neuro's one-step delay per projection there; export with delays='explicit' (neuro export: --delays explicit)"
            )
        depth[p] = next(iter(ds.values()), 0)
        return depth[p]

    for p in pops:
        visit(p)
    return depth


def _current_weights(source: Union[Network, Simulator], name: str, replica: Optional[int]) -> np.ndarray:
    network = source.network if isinstance(source, Simulator) else source
    if isinstance(source, Simulator):
        w = source.weights(name).detach().to("cpu", torch.float64).numpy()
    else:
        w = np.asarray(network.projections[name].weights, dtype=np.float64)
    if w.ndim == 3:
        if replica is None:
            raise NIRExportError(
                f"projection {name!r} has one weight matrix per replica ({w.shape[0]} replicas); a NIR graph "
                f"holds one network: pass replica=<index> (neuro export: --replica) to export one of them"
            )
        if not 0 <= replica < w.shape[0]:
            raise NIRExportError(f"replica={replica} is out of range for projection {name!r} ({w.shape[0]} replicas)")
        w = w[replica]
    return np.array(w, dtype=np.float64)


def _model(source: Union[Network, Simulator], pop: Population):
    """The neuron model ``pop`` steps with: a simulator's may have been swapped (``Simulator.set_model``)."""
    return source.models[pop.name] if isinstance(source, Simulator) else pop.model


def _thresholds(
    source: Union[Network, Simulator], pop: Population, replica: Optional[int], freeze_theta: bool
) -> np.ndarray:
    m = _model(source, pop)
    v_th = np.full(pop.n, float(m.v_th))
    if not isinstance(m, LIF) or m.theta_plus == 0.0:
        return v_th
    if not freeze_theta:
        raise NIRExportError(
            f"population {pop.name!r}: the adaptive threshold (theta_plus={m.theta_plus}) has no NIR "
            f"equivalent; pass freeze_theta=True (neuro export: --freeze-theta) to export the current threshold v_th + theta instead"
        )
    if not isinstance(source, Simulator):
        return v_th  # theta starts at 0
    theta = source.state[pop.name]["theta"].detach().to("cpu", torch.float64).numpy()
    if replica is None:
        if theta.shape[0] > 1 and not np.all(theta == theta[:1]):
            raise NIRExportError(
                f"population {pop.name!r}: the replicas' thresholds differ; pass replica=<index> (neuro export: --replica) to export one"
            )
        replica = 0
    return v_th + theta[replica]


def to_nir(
    source: Union[Network, Simulator],
    *,
    replica: Optional[int] = None,
    delays: str = "implicit",
    outputs: Optional[Sequence[str]] = None,
    freeze_theta: bool = False,
) -> nir.NIRGraph:
    """The inference part of ``source`` (a Network, or a Simulator for its current weights) as NIR.

    Parameters:
        source: what to export; a :class:`~neuro.Simulator` exports its current weights
            (and with ``freeze_theta`` its current thresholds).
        replica: which replica to export when weights (or thresholds) differ between replicas.
        delays: ``"implicit"`` (no ``Delay`` nodes; layered networks only) or ``"explicit"``
            (a ``Delay(dt)`` node per projection); see the module docstring.
        outputs: populations that get an ``Output`` node (default: the populations that
            project to no other population).
        freeze_theta: export an adaptive threshold as its current value instead of refusing it.

    Learning rules are dropped (a :class:`PlasticityNotExportedWarning` names them); input
    encoders are not part of NIR (a :class:`NIRExportWarning`): feed the graph spikes.
    """
    network = source.network if isinstance(source, Simulator) else source
    if not isinstance(network, Network):
        raise TypeError(f"to_nir: expected a neuro Network or Simulator, got {type(source).__name__}")
    if delays not in ("implicit", "explicit"):
        raise ValueError(f"to_nir: delays must be 'implicit' or 'explicit', got {delays!r}")
    if replica is not None:
        replicas = source.replicas if isinstance(source, Simulator) else max(
            [p.weights.shape[0] for p in network.projections.values() if not p.shared], default=1)
        if isinstance(replica, bool) or not isinstance(replica, (int, np.integer)) or not 0 <= replica < replicas:
            raise NIRExportError(f"to_nir: replica {replica!r} is out of range: an index in [0, {replicas}) is needed")
    dt = network.dt
    depth = _population_depths(network) if delays == "implicit" else {}

    nodes: Dict[str, nir.NIRNode] = {}
    edges: List[Tuple[str, str]] = []
    for pop in network.populations.values():
        meta = {"neuro_depth": depth[pop.name]} if depth else {}
        if isinstance(pop, InputPopulation):
            if pop.encoder is not None:
                warnings.warn(
                    f"input {pop.name!r} has a {type(pop.encoder).__name__}: NIR inputs are spikes, the encoder "
                    f"is not exported; encode values into spikes before feeding the graph",
                    NIRExportWarning,
                    stacklevel=2,
                )
            nodes[pop.name] = nir.Input(input_type={"input": np.array([pop.n])}, metadata=meta)
            continue
        m, ones = _model(source, pop), np.ones(pop.n)
        if isinstance(m, LIF) and m.beyond_lava():
            raise NIRExportError(
                f"population {pop.name!r}: {'; '.join(m.beyond_lava())}; NIR's CubaLIF is a standard LIF"
            )
        if isinstance(m, LIF):
            nodes[pop.name] = nir.CubaLIF(
                tau_syn=ones * m.tau_syn,
                tau_mem=ones * m.tau_mem,
                r=ones.copy(),
                v_leak=ones * m.v_leak,
                v_threshold=_thresholds(source, pop, replica, freeze_theta),
                v_reset=ones * m.v_reset,
                w_in=ones * (m.tau_syn / dt),
                metadata={"neuro_model": "LIF", **meta},
            )
        elif isinstance(m, IAF):
            nodes[pop.name] = nir.IF(
                r=ones / dt,
                v_threshold=ones * m.v_th,
                v_reset=ones * m.v_reset,
                metadata={"neuro_model": "IAF", **meta},
            )
        else:
            raise NIRExportError(f"population {pop.name!r}: no NIR node for neuron model {type(m).__name__}")

    plastic = []
    for proj in network.projections.values():
        meta = {}
        if proj.rule is not None:
            plastic.append(f"{proj.name!r} (rule {proj.rule.name!r})")
            meta = {"neuro_rule": proj.rule.name}
        nodes[proj.name] = nir.Linear(weight=_current_weights(source, proj.name, replica), metadata=meta)
        edges.append((proj.pre, proj.name))
        if delays == "explicit":
            delay_name = _fresh(f"{proj.name}_delay", nodes, network)
            nodes[delay_name] = nir.Delay(delay=np.full(network.populations[proj.post].n, dt))
            edges += [(proj.name, delay_name), (delay_name, proj.post)]
        else:
            edges.append((proj.name, proj.post))
    if plastic:
        warnings.warn(
            f"NIR has no plasticity: plastic projection(s) {', '.join(plastic)} are exported as static "
            f"synapses with their current weights; the rules are kept only in neuro's model file (neuro.save)",
            PlasticityNotExportedWarning,
            stacklevel=2,
        )

    neurons = [p.name for p in network.populations.values() if isinstance(p, Population)]
    if outputs is None:
        feeds_others = {p.pre for p in network.projections.values() if p.pre != p.post}
        outputs = [p for p in neurons if p not in feeds_others] or neurons[-1:]
    for name in outputs:
        if name not in neurons:
            raise ValueError(f"to_nir: outputs must name populations of neurons, got {name!r}; have {neurons}")
        out = _fresh(f"{name}_out", nodes, network)
        nodes[out] = nir.Output(output_type={"output": np.array([network.populations[name].n])})
        edges.append((name, out))

    metadata = {
        "format": FORMAT,
        "name": network.name,
        "dt": dt,
        "delays": delays,
        "synaptic_delay_steps": 1,
        "populations": ",".join(network.populations),
        "projections": ",".join(network.projections),
    }
    try:
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)
    except (ValueError, AssertionError) as e:  # pragma: no cover - our graphs are well typed
        raise NIRExportError(f"NIR rejected the graph of network {network.name!r}: {e}") from e


def _fresh(name: str, nodes: Dict[str, object], network: Network) -> str:
    while name in nodes or name in network.populations or name in network.projections:
        name += "_"
    return name


def write_nir(path: PathLike, source: Union[Network, Simulator], **kwargs) -> nir.NIRGraph:
    """:func:`to_nir` ``(source, **kwargs)`` written to ``path`` with ``nir.write`` (HDF5), atomically (an
    existing file is replaced only once the new one is complete); returns the graph."""
    graph = to_nir(source, **kwargs)
    with atomic_path(path) as tmp:  # nir.write truncates its target first: a failed write would lose the old graph
        nir.write(tmp, graph)
    return graph


# --- import ----------------------------------------------------------------------------------------
_NEURON_NODES = (nir.CubaLIF, nir.LIF, nir.IF)
_TRANSFER_NODES = (nir.Linear, nir.Affine, nir.Scale, nir.Delay)


def _as_array(value, n: int) -> np.ndarray:
    """A per-neuron parameter as ``(n,)`` float64 (scalars and ``(1,)`` broadcast)."""
    return np.broadcast_to(np.asarray(value, dtype=np.float64).reshape(-1), (n,))


def _node_size(name: str, node: nir.NIRNode) -> int:
    if isinstance(node, nir.Input):
        shape = tuple(int(s) for s in np.asarray(node.input_type["input"]).reshape(-1))
    else:
        shape = np.shape(node.tau if isinstance(node, nir.LIF) else node.v_threshold)
    if len(shape) != 1:
        raise NIRImportError(f"node {name!r} ({type(node).__name__}) has shape {shape}; neuro populations are 1-D")
    return int(shape[0])


def _uniform(name: str, node: nir.NIRNode, field: str, n: int) -> float:
    values = _as_array(getattr(node, field), n)
    if np.isnan(values).any():
        raise NIRImportError(f"node {name!r} ({type(node).__name__}): {field} is NaN")
    if not np.all(values == values[0]):
        raise NIRImportError(
            f"node {name!r} ({type(node).__name__}): {field} differs between neurons; a neuro population "
            f"shares one parameter set (split the node into one population per value)"
        )
    return float(values[0])


def _neuron_model(name: str, node: nir.NIRNode, n: int, dt: float) -> Tuple[object, np.ndarray]:
    """Our model for a NIR neuron node, and the per-neuron factor on its input."""
    u = lambda f: _uniform(name, node, f, n)  # noqa: E731
    if isinstance(node, nir.CubaLIF):
        tau_syn = u("tau_syn")
        model = LIF(
            tau_mem=u("tau_mem"), tau_syn=tau_syn, v_th=u("v_threshold"), v_reset=u("v_reset"), v_leak=u("v_leak")
        )
        scale = _as_array(node.w_in, n) * _as_array(node.r, n) * (dt / tau_syn)
    elif isinstance(node, nir.LIF):
        if dt * (1.0 / dt) != 1.0:
            warnings.warn(
                f"node {name!r} (LIF) is imported as a LIF with tau_syn = dt = {dt!r} s, but dt * (1/dt) != 1 in "
                f"floating point: a current of ~1e-16 of the input outlives each step",
                NIRImportWarning,
                stacklevel=3,
            )
        model = LIF(tau_mem=u("tau"), tau_syn=dt, v_th=u("v_threshold"), v_reset=u("v_reset"), v_leak=u("v_leak"))
        scale = _as_array(node.r, n).copy()
    else:  # nir.IF
        model = IAF(v_th=u("v_threshold"), v_reset=u("v_reset"))
        scale = _as_array(node.r, n) * dt
    return model, scale


def _identifier(name: str, taken: set) -> str:
    ident = re.sub(r"\W", "_", str(name))
    if not ident or not ident.isidentifier():
        ident = f"n_{ident}"
    out, i = ident, 1
    while out in taken:
        out, i = f"{ident}_{i}", i + 1
    taken.add(out)
    return out


def _read(graph_or_path) -> Tuple[nir.NIRGraph, str]:
    if isinstance(graph_or_path, nir.NIRGraph):
        return graph_or_path, "NIR graph"
    if isinstance(graph_or_path, (str, os.PathLike)):
        path = os.fspath(graph_or_path)
        try:
            graph = nir.read(path)
        except Exception as e:  # nir raises assertions, KeyErrors, OSErrors ...
            raise NIRImportError(f"cannot read NIR file {path!r}: {type(e).__name__}: {e}") from e
        if not isinstance(graph, nir.NIRGraph):
            raise NIRImportError(f"NIR file {path!r} holds a {type(graph).__name__}, not a NIRGraph")
        return graph, f"NIR file {path!r}"
    raise TypeError(f"from_nir: expected a nir.NIRGraph or a path, got {type(graph_or_path).__name__}")


def _meta_str(meta: dict, key: str) -> Optional[str]:
    v = meta.get(key)
    if isinstance(v, bytes):
        v = v.decode("utf8")
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v.item()
    return v if isinstance(v, str) else None


def from_nir(graph_or_path, dt: Optional[float] = None, name: Optional[str] = None) -> Network:
    """A neuro :class:`~neuro.Network` (static synapses) from a NIR graph or ``.nir`` file.

    ``dt`` (seconds) is the step the graph's equations are discretised with; by default the
    ``"dt"`` in the graph's metadata (which :func:`to_nir` writes). See the module docstring
    for the node types read and the delay convention.
    """
    graph, what = _read(graph_or_path)
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    if dt is None:
        if "dt" not in meta:
            raise NIRImportError(
                f"{what} does not say its time step: pass dt=<seconds> (NIR's w_in and r depend on it)"
            )
        dt = float(np.asarray(meta["dt"]))
    dt = float(dt)
    if not dt > 0:
        raise NIRImportError(f"dt must be a positive number of seconds, got {dt!r}")

    unsupported = [
        f"{type(node).__name__} ({key!r})"
        for key, node in graph.nodes.items()
        if not isinstance(node, _NEURON_NODES + _TRANSFER_NODES + (nir.Input, nir.Output))
    ]
    if unsupported:
        raise NIRImportError(
            f"{what}: unsupported NIR node type(s) {', '.join(unsupported)}; neuro reads Input, Output, "
            f"CubaLIF, LIF, IF, Linear, Affine (zero bias), Scale and Delay"
        )

    taken: set = set()
    pop_keys = [k for k, v in graph.nodes.items() if isinstance(v, (nir.Input,) + _NEURON_NODES)]
    order = (_meta_str(meta, "populations") or "").split(",")
    pop_keys.sort(key=lambda k: order.index(k) if k in order else len(order))
    pop_name = {k: _identifier(k, taken) for k in pop_keys}
    sizes = {k: _node_size(k, graph.nodes[k]) for k in pop_keys}

    children: Dict[str, List[str]] = {k: [] for k in graph.nodes}
    for a, b in graph.edges:
        children[a].append(b)
    for a, b in graph.edges:
        if isinstance(graph.nodes[b], nir.Input):
            raise NIRImportError(f"{what}: edge {a!r} -> {b!r} leads into an Input node")

    # Every path population -> transfer nodes* -> population is one projection.
    paths = []  # (pre key, post key, weight or None, delay seconds, transfer node keys)

    def walk(start: str, key: str, w: Optional[np.ndarray], n_out: int, delay: float, via: List[str]) -> None:
        for nxt in children[key]:
            node = graph.nodes[nxt]
            if isinstance(node, (nir.Input,) + _NEURON_NODES):
                if w is None and n_out != sizes[nxt]:
                    raise NIRImportError(f"{what}: {start!r} ({n_out}) feeds {nxt!r} ({sizes[nxt]}) without weights")
                if w is not None and w.shape[0] != sizes[nxt]:
                    raise NIRImportError(
                        f"{what}: the weights from {start!r} give {w.shape[0]} values to {nxt!r} "
                        f"({sizes[nxt]} neurons)"
                    )
                paths.append((start, nxt, w, delay, via))
            elif isinstance(node, nir.Output):
                if w is not None:
                    raise NIRImportError(
                        f"{what}: output {nxt!r} reads weighted values (through {via}), not spikes; neuro can only "
                        f"output populations"
                    )
            else:
                if nxt in via:
                    raise NIRImportError(f"{what}: a cycle of {' -> '.join(via + [nxt])} passes no neuron node")
                nw, nn, nd = w, n_out, delay
                if isinstance(node, (nir.Linear, nir.Affine)):
                    weight = np.asarray(node.weight, dtype=np.float64)
                    if weight.ndim != 2 or weight.shape[1] != n_out:
                        raise NIRImportError(
                            f"{what}: {type(node).__name__} {nxt!r} has weight shape {weight.shape}, "
                            f"expected (out, {n_out})"
                        )
                    if isinstance(node, nir.Affine) and np.any(np.asarray(node.bias) != 0):
                        raise NIRImportError(
                            f"{what}: Affine {nxt!r} has a non-zero bias (a constant input current), which neuro "
                            f"projections cannot express"
                        )
                    nw, nn = (weight if w is None else weight @ w), weight.shape[0]
                elif isinstance(node, nir.Scale):
                    s = _as_array(node.scale, n_out)
                    nw = np.diag(s) if w is None else s[:, None] * w
                else:  # nir.Delay
                    d = _as_array(node.delay, n_out)
                    if not np.all(d == d[0]):
                        raise NIRImportError(f"{what}: Delay {nxt!r} differs between neurons")
                    nd = delay + float(d[0])
                walk(start, nxt, nw, nn, nd, via + [nxt])

    for k in pop_keys:
        walk(k, k, None, sizes[k], 0.0, [])

    # Without any Delay node every path has delay 0: the implicit convention (one step in neuro).
    if any(isinstance(v, nir.Delay) for v in graph.nodes.values()):
        for pre, post, _, delay, via in paths:
            if not math.isclose(delay, dt, rel_tol=1e-9):
                raise NIRImportError(
                    f"{what}: the path {' -> '.join([pre] + via + [post])} delays by {delay!r} s "
                    f"({delay / dt:g} steps of dt={dt!r}); in a graph with Delay nodes every path between "
                    f"populations must delay by exactly one step, as neuro projections do"
                )

    net_name = name or _meta_str(meta, "name") or "nir"
    net = Network(dt=dt, name=net_name)
    scales = {}
    for k in pop_keys:
        node = graph.nodes[k]
        if isinstance(node, nir.Input):
            net.input(pop_name[k], sizes[k])
        else:
            try:
                model, scale = _neuron_model(k, node, sizes[k], dt)
                net.population(pop_name[k], sizes[k], model)
            except NIRImportError:
                raise
            except ValueError as e:  # parameters no neuro model takes: infinite, or time constants below dt
                raise NIRImportError(f"{what}: node {k!r} ({type(node).__name__}): {e}") from None
            scales[k] = scale

    weight_uses: Dict[str, int] = {}
    for *_, via in paths:
        for v in via:
            weight_uses[v] = weight_uses.get(v, 0) + 1
    proj_order = (_meta_str(meta, "projections") or "").split(",")
    built = []
    for pre, post, w, _, via in paths:
        weighted = [v for v in via if not isinstance(graph.nodes[v], nir.Delay)]
        if len(weighted) == 1 and weight_uses[weighted[0]] == 1:
            base = weighted[0]
        elif weighted:
            base = "_".join(weighted)
        else:
            base = f"{pre}_to_{post}"
        if base in pop_name.values():
            base = f"{base}_proj"
        proj_name = _identifier(base, taken)
        w = np.diag(np.ones(sizes[pre])) if w is None else w
        scale = scales[post]
        if not np.allclose(scale, 1.0, rtol=0.0, atol=_UNITY_RTOL):
            w = scale[:, None] * w
        built.append((proj_name, pop_name[pre], pop_name[post], w))
    built.sort(key=lambda b: proj_order.index(b[0]) if b[0] in proj_order else len(proj_order))
    for proj_name, pre, post, w in built:
        net.connect(pre, post, w, name=proj_name)
    if not any(isinstance(v, nir.Delay) for v in graph.nodes.values()):
        # Delay-free edges are instantaneous in NIR, one step each in neuro: the same spikes (shifted by
        # each population's depth) only in a layered graph, which is what to_nir writes without delays.
        try:
            _population_depths(net)
        except NIRExportError as e:
            raise NIRImportError(f"{what}: a graph without Delay nodes must be layered to run as NIR reads it: "
                                 f"{str(e).split('; export with')[0]}; add Delay nodes (exact for any topology)"
                                 ) from None
    return net


# --- Norse -----------------------------------------------------------------------------------------
def norse_caveats(graph_or_path, dt: Optional[float] = None) -> List[str]:
    """Where ``norse.torch.from_nir`` (Norse 1.1) runs ``graph`` differently from its NIR equations.

    An empty list means Norse's run of the graph follows the equations (read with Euler at
    ``dt``, default the graph's metadata) and so, given the module's delay convention, our
    simulation of :func:`from_nir` of it.
    """
    graph, _ = _read(graph_or_path)
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    if dt is None and "dt" in meta:
        dt = float(np.asarray(meta["dt"]))
    out = []
    inputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Input)]
    if len(inputs) > 1:
        out.append(f"several Input nodes {inputs}: Norse (nirtorch) feeds only the first")
    parents: Dict[str, set] = {}
    for key, node in graph.nodes.items():
        if isinstance(node, nir.Delay):
            out.append(f"Delay node {key!r}: Norse cannot import Delay nodes")
        if isinstance(node, (nir.CubaLIF, nir.LIF, nir.IF)) and np.any(np.asarray(node.v_reset) != 0):
            out.append(f"{key!r}: Norse resets to 0, ignoring v_reset")
        if isinstance(node, nir.CubaLIF) and np.any(np.asarray(node.v_leak) != 0):
            out.append(f"{key!r}: Norse's CubaLIF synaptic current relaxes towards (and starts at) v_leak")
        if isinstance(node, nir.LIF) and not np.allclose(node.r, 1.0):
            out.append(f"{key!r}: Norse ignores r of LIF nodes")
        if isinstance(node, nir.IF) and (dt is None or not np.allclose(np.asarray(node.r) * dt, 1.0)):
            out.append(f"{key!r}: Norse's IF adds its input to v, ignoring r and dt (r * dt must be 1)")
    reachable, stack = set(), inputs[:1]
    while stack:
        k = stack.pop()
        if k not in reachable:
            reachable.add(k)
            stack.extend(b for a, b in graph.edges if a == k)
    unreached = [k for k, v in graph.nodes.items() if isinstance(v, _NEURON_NODES) and k not in reachable]
    if unreached:
        out.append(f"{unreached} cannot be reached from the first Input node: Norse (nirtorch) never runs them")
    # Depth-first execution: a neuron node with several parent neuron nodes may read one late.
    for key, node in graph.nodes.items():
        if isinstance(node, _NEURON_NODES):
            parents[key] = _neuron_parents(graph, key) - {key}
            if len(parents[key]) > 1:
                out.append(
                    f"{key!r} has several parent populations {sorted(parents[key])}: Norse's depth-first "
                    f"execution may deliver some of their spikes one step late"
                )
    return out


def _neuron_parents(graph: nir.NIRGraph, key: str) -> set:
    sources: Dict[str, List[str]] = {}
    for a, b in graph.edges:
        sources.setdefault(b, []).append(a)
    found, stack, seen = set(), list(sources.get(key, [])), set()
    while stack:
        k = stack.pop()
        if k in seen:
            continue
        seen.add(k)
        if isinstance(graph.nodes[k], _NEURON_NODES + (nir.Input,)):
            found.add(k)
        else:
            stack.extend(sources.get(k, []))
    return found

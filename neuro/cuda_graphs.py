"""Many simulation steps replayed as one CUDA graph (``Simulator(graph_steps=K)``).

A step launches a few kernels per population, projection and rule, each a few microseconds of
Python and launch overhead; on a GPU that overhead, not the arithmetic, is most of a step of a
network of thousands of neurons. Here ``K`` steps (a *chunk*) are captured once into a
``torch.cuda.CUDAGraph`` and replayed: one launch a chunk, no Python a step.

A graph reads and writes fixed addresses, so the simulator's state is pinned to *static* tensors:
at the end of every chunk each state tensor's final value is copied into its static tensor and the
simulator's dictionaries point at the static tensors again. Whatever replaced a state tensor between
chunks (an eager step, ``set_weights``, ``reset``, a user's assignment) is copied into the static
tensor before the next replay. What a graph bakes in must repeat from chunk to chunk:

* the step number decides which steps close a learning epoch and when ``u`` is on, so ``K`` is a
  whole number of every rule's update period (``t_epoch * 2**u_exponent``) and a graph is keyed by
  the step number's phase in that period;
* monitors are recorded every ``every`` steps into static buffers: ``K`` is a multiple of ``every``
  and chunks start at a record boundary;
* the step within the presentation, which encoders read, is a device scalar set before each replay;
* random numbers come from the simulator's generator, registered with the graph so that each replay
  draws the numbers the eager steps would have drawn.

The first chunk of each kind (inputs, monitors, phase, learning on or off) runs eagerly, which also
fills every lazily made constant, then is captured. On the CPU no graph is captured and every chunk
runs eagerly through the same code: the same results, no gain.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Dict, Mapping, Optional, Tuple

import torch
from tqdm.auto import tqdm

from neuro.recording import count_monitor

if TYPE_CHECKING:  # the engine imports this module
    from neuro.engine import Simulator
    from neuro.recording import Recorder

Path = Tuple[str, ...]
#: Kinds of chunk (inputs, monitors, phase, learning) a simulator keeps captured at once; each graph
#: holds a private memory pool, so the oldest kind is dropped (and captured again if it comes back).
MAX_KINDS = 16
_GROUPS = ("state", "syn", "plastic", "params")  # {owner: {name: tensor}} attributes of a Simulator


def state_tensors(sim: "Simulator") -> Dict[Path, torch.Tensor]:
    """Every tensor a step reads or writes, by path: ``("spikes", pop)``, ``("buffers", proj)``,
    ``("state" | "syn" | "plastic" | "params", owner, name)``."""
    out: Dict[Path, torch.Tensor] = {}
    for pop, t in sim.spikes.items():
        out[("spikes", pop)] = t
    for proj, t in sim.buffers.items():
        out[("buffers", proj)] = t
    for group in _GROUPS:
        for owner, d in getattr(sim, group).items():
            for name, t in d.items():
                out[(group, owner, name)] = t
    return out


def _layout(sim: "Simulator") -> Dict[Path, Tuple[Tuple[int, ...], torch.dtype]]:
    """Shape and dtype of every state tensor as the simulator makes them (``state_tensors``' paths)."""
    net, R, dtype = sim.network, sim.replicas, sim.dtype
    n = {name: pop.n for name, pop in net.populations.items()}
    out: Dict[Path, Tuple[Tuple[int, ...], torch.dtype]] = {}
    for p in state_tensors(sim):
        group, owner = p[0], p[1]
        if group in ("spikes", "state"):
            out[p] = ((R, n[owner]), dtype)
        elif group == "buffers":
            out[p] = ((R, n[net.projections[owner].post]), dtype)
        elif group == "syn":
            out[p] = (tuple(sim.syn[owner][p[2]].shape), dtype)
        elif group == "params":
            out[p] = ((R, 1, 1), dtype)
        else:  # plastic
            proj = net.projections[owner]
            out[p] = {"x": ((R, 2, n[proj.pre]), dtype), "y": ((R, 3, n[proj.post]), dtype),
                      "tx": ((R, n[proj.pre]), torch.int32), "ty": ((R, n[proj.post]), torch.int32)}[p[2]]
    return out


def _put(sim: "Simulator", path: Path, value: torch.Tensor) -> None:
    d = getattr(sim, path[0])
    for key in path[1:-1]:
        d = d[key]
    d[path[-1]] = value



@dataclass
class _Chunk:
    """One kind of chunk: its static inputs and records, and its graph once captured."""

    steps: int
    every: int
    inputs: Dict[str, torch.Tensor]  # per-step spikes (K, [R,] N)
    held: Dict[str, torch.Tensor]  # values held for the run (R, N)
    tf_seq: Dict[str, torch.Tensor]  # third factors per step (K, R, N)
    tf_held: Dict[str, torch.Tensor]
    k0: torch.Tensor  # the chunk's first step within the run (0-d, int64)
    counts: Dict[str, torch.Tensor]  # spikes per neuron since the last record, by population
    records: Dict[str, torch.Tensor]  # (K // every, ...) by monitor
    graph: Optional["torch.cuda.CUDAGraph"] = None
    runs: int = field(default=0)
    failed: Optional[str] = None  # why capturing failed: the chunk then always runs eagerly


class StepGraphs:
    """The chunks of one simulator (see the module docstring)."""

    def __init__(self, sim: "Simulator") -> None:
        self.sim = sim
        self.capture = sim.device.type == "cuda"
        self.chunks: Dict[tuple, _Chunk] = {}
        self.statics: Optional[Dict[Path, torch.Tensor]] = None
        periods = [rule.update_period for rule in sim.rules.values()]
        #: Steps after which the learning schedule repeats (1 without rules).
        self.period = math.lcm(*periods) if periods else 1

    def chunk_length(self, every: int) -> int:
        """``graph_steps`` rounded up to a multiple of the learning period and of ``every``."""
        unit = math.lcm(self.period, every)
        return -(-self.sim.graph_steps // unit) * unit

    # --- running -----------------------------------------------------------------------------------
    def run(self, steps: int, per_step: Mapping[str, torch.Tensor], held: Mapping[str, torch.Tensor],
            tf_seq: Mapping[str, torch.Tensor], tf_held: Mapping[str, torch.Tensor], recorder: "Recorder",
            advance: Callable[[int], None], progress: bool = False) -> None:
        """``steps`` steps of ``Simulator.run``: whole chunks from graphs, the rest by ``advance(k)``.
        Inputs as ``Simulator.run`` sorted them (per-step ``(steps, [R,] N)``, held ``(R, N)``)."""
        sim = self.sim
        unknown = (set(tf_seq) | set(tf_held)) - set(sim.network.populations)
        if unknown:
            raise KeyError(f"unknown population(s) {sorted(unknown)}; have {sorted(sim.network.populations)}")
        size = self.chunk_length(recorder.every if recorder.monitors else 1)
        bar = tqdm(total=steps, disable=not progress, desc="simulating", unit="step")
        k = 0
        while steps - k >= size:
            self._adopt()
            chunk = self._chunk(size, per_step, held, tf_seq, tf_held, recorder)
            for name, v in per_step.items():
                chunk.inputs[name].copy_(v[k:k + size])
            for name, v in tf_seq.items():
                chunk.tf_seq[name].copy_(v[k:k + size])
            for src, dst in ((held, chunk.held), (tf_held, chunk.tf_held)):
                for name, v in src.items():
                    dst[name].copy_(v)
            chunk.k0.fill_(k)
            t0 = sim.time_step
            if chunk.graph is not None and not self._clips_all_once():
                chunk.graph.replay()
                sim.time_step += size
                if sim.learning:
                    sim._unclipped.clear()  # every rule learned (a chunk holds whole update periods)
            else:
                # First of its kind (or weights set that the captured steps would not clip): eagerly.
                self._eager(chunk)
                if self.capture and chunk.graph is None and chunk.failed is None:
                    self._capture(chunk)
            chunk.runs += 1
            for m, buf in chunk.records.items():
                recorder.extend(m, buf.clone(), [t0 + (i + 1) * chunk.every for i in range(buf.shape[0])])
            k += size
            bar.update(size)
        while k < steps:
            advance(k)
            recorder.after_step(k)
            k += 1
            bar.update(1)
        bar.close()

    def _clips_all_once(self) -> bool:
        """Whether the next epoch of some rule must clip weights it does not update (set but never
        learned), which captured steps, recorded after every weight was clipped, would not do. A rule with
        a ``dw`` target clips every weight at every dense epoch anyway."""
        sim = self.sim
        return sim.learning and any("dw" not in sim.rules[name].terms for name in sim._unclipped)

    def _chunk(self, size: int, per_step, held, tf_seq, tf_held, recorder: "Recorder") -> _Chunk:
        sim = self.sim
        sig = lambda d, skip=0: tuple((n, tuple(v.shape[skip:]), v.dtype) for n, v in sorted(d.items()))  # noqa: E731
        # Per-step values by their shape per step: runs of any length share a chunk.
        key = (size, recorder.every, tuple(recorder.monitors), sim.learning, sim.time_step % self.period,
               sig(per_step, 1), sig(held), sig(tf_seq, 1), sig(tf_held))
        chunk = self.chunks.get(key)
        if chunk is None:
            like = dict(dtype=sim.dtype, device=sim.device)
            reads = {m: sim._read(m) for m in recorder.monitors if count_monitor(m) is None}
            pops = {p for p in map(count_monitor, recorder.monitors) if p is not None}
            n_rec = size // recorder.every
            chunk = _Chunk(
                steps=size, every=recorder.every,
                inputs={n: torch.empty((size,) + tuple(v.shape[1:]), dtype=v.dtype, device=v.device)
                        for n, v in per_step.items()},
                held={n: torch.empty(v.shape, dtype=v.dtype, device=v.device) for n, v in held.items()},
                tf_seq={n: torch.empty((size,) + tuple(v.shape[1:]), dtype=v.dtype, device=v.device)
                        for n, v in tf_seq.items()},
                tf_held={n: torch.empty(v.shape, dtype=v.dtype, device=v.device) for n, v in tf_held.items()},
                k0=torch.zeros((), dtype=torch.int64, device=sim.device),
                counts={p: torch.zeros_like(sim.spikes[p]) for p in pops},
                records={m: torch.empty((n_rec,) + tuple((sim.spikes[count_monitor(m)] if m not in reads
                                                          else reads[m]).shape),
                                        dtype=(like["dtype"] if m not in reads else reads[m].dtype), device=sim.device)
                         for m in recorder.monitors},
            )
            if len(self.chunks) >= MAX_KINDS:  # each graph holds a memory pool: drop the oldest kind
                self.chunks.pop(next(iter(self.chunks)))
            self.chunks[key] = chunk
        return chunk

    def _adopt(self) -> None:
        """Point the simulator's state at the static tensors, copying in whatever replaced them (converted
        to the simulator's dtype and broadcast to its shapes, as the next eager step would)."""
        sim = self.sim
        if self.statics is None:
            # Own, contiguous tensors of the simulator's layout: a graph must not write into memory that
            # something else holds, nor take the layout of a tensor a user assigned.
            self.statics = {p: torch.empty(shape, dtype=dtype, device=sim.device)
                            for p, (shape, dtype) in _layout(sim).items()}
        self._pin()

    def _pin(self) -> None:
        """Copy each state tensor that is not its static tensor into it and point the simulator there. A
        value that lives in some static tensor's memory (two tensors swapped, a view) is taken first."""
        sim, statics = self.sim, self.statics
        current = state_tensors(sim)
        if current.keys() != statics.keys():
            raise RuntimeError(f"graph_steps: the simulator's state changed its make-up "
                               f"({sorted(set(current) ^ set(statics))}); make a new Simulator")
        storages = {t.untyped_storage().data_ptr() for t in statics.values()}
        values = {p: (c.clone() if c is not statics[p] and c.untyped_storage().data_ptr() in storages else c)
                  for p, c in current.items()}
        for p, target in statics.items():
            c = values[p]
            if c is target:
                continue
            try:
                target.copy_(c)
            except RuntimeError as e:
                raise ValueError(f"state {'/'.join(p)}: a tensor of shape {tuple(c.shape)} cannot stand for one of "
                                 f"shape {tuple(target.shape)}") from e
            _put(sim, p, target)

    def _steps(self, chunk: _Chunk) -> None:
        """The chunk's work: ``steps`` steps from the static inputs, records into the static buffers,
        the final state into the static tensors. Run eagerly or under capture."""
        sim = self.sim
        for acc in chunk.counts.values():
            acc.zero_()
        with torch.no_grad():
            for j in range(chunk.steps):
                inputs = dict(chunk.held)
                inputs.update({n: v[j] for n, v in chunk.inputs.items()})
                tf = dict(chunk.tf_held)
                tf.update({n: v[j] for n, v in chunk.tf_seq.items()})
                sim.time_step += 1
                compiled = sim._compiled if sim._warmed else None
                (compiled or sim._advance)(inputs, tf, chunk.k0 + j)
                sim._warmed = True
                for pop, acc in chunk.counts.items():
                    acc.add_(sim.spikes[pop])
                if (j + 1) % chunk.every == 0:
                    i = (j + 1) // chunk.every - 1
                    for m, buf in chunk.records.items():
                        pop = count_monitor(m)
                        buf[i].copy_(chunk.counts[pop] if pop is not None else sim._read(m))
                    for acc in chunk.counts.values():
                        acc.zero_()
            self._settle()

    def _settle(self) -> None:
        """Copy each state tensor's final value into its static tensor and point the simulator there."""
        self._pin()

    def _eager(self, chunk: _Chunk) -> None:
        if not self.capture:
            self._steps(chunk)
            return
        # On a side stream, as torch.cuda.graphs recommends before a capture (library handles, workspaces).
        main = torch.cuda.current_stream(self.sim.device)
        side = torch.cuda.Stream(self.sim.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            self._steps(chunk)
        main.wait_stream(side)

    def _capture(self, chunk: _Chunk) -> None:
        """Record the chunk's kernels (nothing runs); the Python side of the simulator is put back.

        If the capture fails (an operation a graph cannot hold, in a library or a compiled kernel), the
        simulator is put back all the same, a warning names the error, and the chunk runs eagerly from
        then on: slower, never wrong."""
        sim = self.sim
        time_step, rng, unclipped = sim.time_step, sim.generator.get_state(), set(sim._unclipped)
        try:
            graph = torch.cuda.CUDAGraph()
            graph.register_generator_state(sim.generator)
            with torch.cuda.graph(graph):
                self._steps(chunk)
        except RuntimeError as e:  # torch.AcceleratorError is one
            chunk.failed = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            warnings.warn(f"graph_steps: capturing {chunk.steps} steps as a CUDA graph failed ({chunk.failed}); "
                          "these chunks run eagerly", RuntimeWarning, stacklevel=4)
        else:
            chunk.graph = graph
        finally:
            sim.time_step, sim._unclipped = time_step, unclipped
            sim.generator.set_state(rng)
            for p, s in self.statics.items():  # the state as the eager chunk left it
                _put(sim, p, s)

"""The torch engine: simulates a :class:`~neuro.graph.Network` on CPU or CUDA.

Every population's state has a leading replica dimension ``R``: independent
copies (seeds, samples, hyper-parameters) run at once. One step (numbered from
1, like Lava's ``time_step``) does, in order:

1. deliver to each population the synaptic input buffered at the previous step;
2. update the neurons (Norse dynamics) and take their spikes;
3. propagate the new spikes through each projection into its buffer (so they
   act at the next step), using the weights before this step's learning;
4. record spikes into each plastic projection and, when the step closes a
   learning epoch (``step % t_epoch == 0``), apply the rule; then projections
   tied to one that learned (:class:`~neuro.graph.Tie`) take its new weights.

This is the order of Lava's ``Dense``/``LearningDense`` spiking and learning
phases, which the Lava exporter relies on.

Propagation and learning are dense (one matrix product, one update of every
synapse per epoch) or event-driven (only the columns of the pre neurons that
spiked are summed; products that depend on a spike are evaluated on the rows and
columns of the neurons that spiked); both give the same results. The choice is the
``event_driven`` argument of :class:`Simulator`.
"""
from __future__ import annotations

from typing import Dict, Iterable, Mapping, Optional, Tuple, Union

import numpy as np
import torch

from neuro.cuda_graphs import StepGraphs
from neuro.graph import InputPopulation, Network, Population, Projection
from neuro.native import NativeLoop
from neuro.neurons import NeuronModel, check_time_step
from neuro.plasticity import TRACE_INDEX, CompiledRule, SynapseLists, initial_plastic_state
from neuro.recording import Recorder, Recording, check_steps, record_run  # noqa: F401 (Recording, record_run: re-exported)

TensorLike = Union[torch.Tensor, np.ndarray, float]


def _numpy(t: torch.Tensor) -> np.ndarray:
    # numpy has no bfloat16: store it as float32, which holds every bfloat16 value exactly.
    # A copy: the engine updates some state in place, and a snapshot must not follow it.
    return (t.float() if t.dtype == torch.bfloat16 else t).detach().cpu().numpy().copy()


def split_inputs(
    network: Network, steps: int, inputs: Optional[Mapping[str, TensorLike]], dtype: torch.dtype, device
) -> Tuple[Dict[str, torch.Tensor], Dict[str, TensorLike]]:
    """Sort ``run`` inputs into per-step spike trains ``(steps, [R,] N)`` and values held for the run."""
    per_step: Dict[str, torch.Tensor] = {}
    held: Dict[str, TensorLike] = {}
    for name, x in (inputs or {}).items():
        pop = network.populations.get(name)
        if pop is None:
            raise KeyError(f"unknown input population {name!r}; have {sorted(network.populations)}")
        if not isinstance(pop, InputPopulation):
            raise ValueError(f"{name!r} is not an input population")
        if pop.encoder is None:
            v = torch.as_tensor(x, dtype=dtype, device=device)
            if v.dim() not in (2, 3) or v.shape[0] != steps:
                raise ValueError(
                    f"input {name!r}: spikes must have shape (steps={steps}, N) or (steps, R, N), got {tuple(v.shape)}"
                )
            per_step[name] = v
        else:
            held[name] = x
    return per_step, held


class Simulator:
    """The state of ``replicas`` copies of ``network`` on ``device``, advanced step by step.

    Parameters:
        network: the graph to simulate (not modified; weights are copied).
        replicas: size ``R`` of the leading replica dimension.
        device: torch device ("cpu", "cuda", ...).
        dtype: floating type of all state (float64 for comparisons with references).
        seed: seeds the generator used by encoders, so runs are reproducible.
        event_driven: ``True``: event-driven propagation and learning always; ``False``: dense
            always; ``"auto"`` (default): event-driven on CPU for every step in which at most
            :attr:`EVENT_FRACTION` of a projection's pre (or post) neurons spiked, dense on CUDA
            (counting the spikes there would stall the device every step). On CUDA the event-driven
            sums use atomic adds: not bit-reproducible from run to run, unlike the dense path.
        compile: ``True`` or a ``torch.compile`` mode (``"max-autotune-no-cudagraphs"``, ...): each step
            runs as fused kernels made by ``torch.compile`` (inductor:
            C++/OpenMP on CPU, Triton on CUDA) instead of one kernel per operation. The first steps
            compile (seconds to tens of seconds); worth it for long runs. Compiled steps are dense
            (data-dependent event lists would break the graph), so ``event_driven=True`` is refused with
            it. torch.compile keeps a few compiled versions per process (``torch._dynamo.config.
            recompile_limit``, 8) and runs further simulators of other shapes eagerly: raise it when
            compiling many. The modes that make CUDA graphs of one step (``"reduce-overhead"``,
            ``"max-autotune"``) are refused on CUDA: each step's state would live in graph memory that the
            next step overwrites. ``graph_steps`` is the engine's CUDA graphs, of many steps, with the state
            in place.
        graph_steps: ``run`` replays its steps ``graph_steps`` at a time as one CUDA graph (rounded up to
            a whole number of the rules' update periods and of ``every``), so a chunk of steps costs one
            launch instead of a few kernels per operation and no Python per step; the state stays in
            place on the device. The first chunk of a run of a new kind (other inputs, monitors, phase)
            runs eagerly and is then captured; steps left over at a run's end run eagerly. Combines with
            ``compile`` (the captured kernels are then the fused ones). Dense steps only (like
            ``compile``). On the CPU the chunks run eagerly, with the same results and no gain: a check
            of the chunked loop where no GPU is present. The state tensors are then updated in place from
            chunk to chunk (a graph reads and writes fixed memory): clone what you keep (``state_dict``
            copies). 0 (default): no graphs.
        native: CPU only: ``run`` runs its steps in a C++ loop generated from the network and its rules
            and compiled once (``neuro.native``; needs a C++ compiler): event-driven, no Python per step,
            the same results as the torch engine to rounding. Rules with operations across neurons
            (softmax, winner, sum_pre) are refused. Single ``step`` calls still run the torch engine.
    """

    #: Largest fraction of spiking neurons for which ``"auto"`` goes event-driven (W1 and W3 in
    #: ``benchmarks/``: well below it, gathering the spiking columns beats the matrix product; above
    #: a few percent the dense update of a learning projection is cheaper).
    EVENT_FRACTION = 0.05

    def __init__(
        self,
        network: Network,
        replicas: int = 1,
        device: Union[str, torch.device] = "cpu",
        dtype: torch.dtype = torch.float32,
        seed: int = 0,
        event_driven: Union[bool, str] = "auto",
        compile: Union[bool, str] = False,
        graph_steps: int = 0,
        native: bool = False,
    ) -> None:
        if int(replicas) != replicas or replicas < 1:
            raise ValueError(f"replicas must be a positive integer, got {replicas!r}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch dtype (torch.float32, torch.float64, ...), got {dtype!r}")
        if event_driven not in (True, False, "auto"):
            raise ValueError(f"event_driven must be True, False or 'auto', got {event_driven!r}")
        self.network = network
        self.replicas = int(replicas)
        self.device = torch.device(device)
        self.event_driven = event_driven
        if compile and event_driven is True:
            raise ValueError("compile=... runs dense steps: event_driven=True cannot be compiled (use 'auto' or False)")
        if compile not in (False, True) and not isinstance(compile, str):
            raise ValueError(f"compile must be True, False or a torch.compile mode, got {compile!r}")
        if isinstance(graph_steps, bool) or int(graph_steps) != graph_steps or graph_steps < 0:
            raise ValueError(f"graph_steps must be a non-negative integer number of steps, got {graph_steps!r}")
        if isinstance(compile, str) and compile.startswith(("reduce-overhead", "max-autotune")) \
                and not compile.endswith("no-cudagraphs") and (graph_steps or torch.device(device).type == "cuda"):
            raise ValueError(f"compile={compile!r} makes a CUDA graph of each step, whose outputs (the state the next "
                             "step reads) the next replay overwrites: use graph_steps=K (CUDA graphs of K steps, the "
                             "state in place) with compile=True or 'max-autotune-no-cudagraphs'")
        if native and (compile or graph_steps):
            raise ValueError("native=True runs its own compiled loop: it cannot be combined with compile or graph_steps")
        if graph_steps and event_driven is True:
            raise ValueError("graph_steps=... replays dense steps: event_driven=True cannot run in CUDA graphs "
                             "(use 'auto' or False)")
        self._compiled = None
        self._warmed = False  # whether a step ran eagerly (see step)
        if compile:
            self._compiled = torch.compile(self._advance, mode=None if compile is True else compile)
        if compile or graph_steps:
            event_driven = False
        if event_driven == "auto":
            self._event_fraction = self.EVENT_FRACTION if self.device.type == "cpu" else 0.0
        else:
            self._event_fraction = 1.0 if event_driven else 0.0
        self.graph_steps = int(graph_steps)
        self.dtype = dtype
        self.dt = network.dt
        self.seed = seed
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.time_step = 0
        #: When False, plastic projections neither record spikes nor learn (frozen weights).
        self.learning = True
        self._like = torch.zeros((), dtype=dtype, device=self.device)
        self.rules: Dict[str, CompiledRule] = {}
        self.params: Dict[str, Dict[str, torch.Tensor]] = {}
        self.syn: Dict[str, Dict[str, torch.Tensor]] = {}
        self.plastic: Dict[str, Dict[str, torch.Tensor]] = {}
        self.masks: Dict[str, torch.Tensor] = {
            p.name: torch.as_tensor(p.mask, device=self.device) for p in network.projections.values() if p.mask is not None
        }
        # Event-driven steps visit a sparse projection's synapses of the neurons that spiked by list.
        self._lists: Dict[str, SynapseLists] = {
            name: SynapseLists(mask) for name, mask in self.masks.items() if self._event_fraction > 0
        }
        # Plastic projections whose weights may lie outside the rule's bounds (set, not yet learned):
        # the first epoch clips all of them, as a dense update would, later ones what they touched.
        self._unclipped = set()
        for proj in network.projections.values():
            self._init_projection(proj)
        self._tied = [p for p in network.projections.values() if p.tie is not None]
        # The neuron model each population steps with: the network's, until set_model swaps one (the
        # network is shared by simulators and exporters and stays as built).
        self.models = {pop.name: pop.model for pop in network.populations.values() if isinstance(pop, Population)}
        self._graphs = StepGraphs(self) if graph_steps else None
        self.reset()
        self._native = NativeLoop(self) if native else None

    # --- set-up ------------------------------------------------------------------------------------
    def _init_projection(self, proj: Projection) -> None:
        w = torch.as_tensor(proj.weights, dtype=self.dtype, device=self.device)
        if not torch.isfinite(w).all():  # the network's weights are finite: the conversion overflowed
            raise ValueError(f"projection {proj.name!r}: weights up to {float(np.abs(proj.weights).max()):g} do not fit "
                             f"{self.dtype} (largest {torch.finfo(self.dtype).max:g})")
        if w.dim() == 2:
            w = w[None]
        elif w.shape[0] != self.replicas:
            raise ValueError(
                f"projection {proj.name!r} has weights for {w.shape[0]} replicas, simulator has {self.replicas}"
            )
        syn = {"w": w.clone(memory_format=torch.contiguous_format)}  # flat views need a plain layout
        if proj.rule is not None:
            rule = CompiledRule(proj.rule, self.dt)
            self.rules[proj.name] = rule
            self._unclipped.add(proj.name)
            if rule.uses_tag:
                syn["t"] = torch.zeros_like(w)
            if rule.uses_delay:
                syn["d"] = torch.zeros_like(w)
            self.params[proj.name] = {
                k: torch.full((self.replicas, 1, 1), v, dtype=self.dtype, device=self.device)
                for k, v in proj.rule.params.items()
            }
        self.syn[proj.name] = syn

    def reset(self) -> None:
        """Reset neuron state, synaptic buffers and learning traces (weights are kept)."""
        shape = lambda n: (self.replicas, n)  # noqa: E731
        self.state: Dict[str, Dict[str, torch.Tensor]] = {}
        self.spikes: Dict[str, torch.Tensor] = {}
        for pop in self.network.populations.values():
            if isinstance(pop, Population):
                self.state[pop.name] = self.models[pop.name].initial_state(shape(pop.n), self._like)
            self.spikes[pop.name] = torch.zeros(shape(pop.n), dtype=self.dtype, device=self.device)
        self.buffers = {
            p.name: torch.zeros(shape(self.network.populations[p.post].n), dtype=self.dtype, device=self.device)
            for p in self.network.projections.values()
        }
        for name in self.rules:
            proj = self.network.projections[name]
            n_pre, n_post = self.network.populations[proj.pre].n, self.network.populations[proj.post].n
            self.plastic[name] = initial_plastic_state(self.replicas, n_pre, n_post, self.dtype, self.device)

    def reset_neurons(self) -> None:
        """Reset only neuron state and synaptic buffers, e.g. between presented samples."""
        for pop in self.network.populations.values():
            if isinstance(pop, Population):
                keep = {"theta": self.state[pop.name]["theta"]} if "theta" in self.state[pop.name] else {}
                self.state[pop.name] = self.models[pop.name].initial_state((self.replicas, pop.n), self._like)
                self.state[pop.name].update(keep)
            self.spikes[pop.name].zero_()
        for b in self.buffers.values():
            b.zero_()

    def set_model(self, population: str, model: NeuronModel) -> None:
        """Step ``population`` with ``model`` from now on, keeping its state: a parameter changed between
        runs, e.g. a current decay switched off for the end of a presentation (on Lava, setting a process's
        ``du`` between runs). ``model`` must be of the same type as the network's (the same state variables).
        Eager simulators only: a compiled step, CUDA graphs and the native loop hold the model's constants."""
        pop = self.network.populations.get(population)
        if pop is None:
            raise KeyError(f"set_model: unknown population {population!r}; have {sorted(self.models)}")
        if not isinstance(pop, Population):
            raise ValueError(f"set_model: {population!r} is an input population, it has no neuron model")
        if type(model) is not type(pop.model):
            raise TypeError(f"set_model {population!r}: the network's model is a {type(pop.model).__name__}, "
                            f"got a {type(model).__name__} (the state variables must stay the same)")
        if self._compiled is not None or self._graphs is not None or self._native is not None:
            raise ValueError(f"set_model {population!r}: needs an eager simulator (no compile, graph_steps or "
                             f"native), which read the model at their first step")
        check_time_step(model, self.dt, f"set_model {population!r}")
        self.models[population] = model

    def set_param(self, projection: str, name: str, values: TensorLike) -> None:
        """Give rule parameter ``name`` of ``projection`` one value or one value per replica ``(R,)``."""
        if projection not in self.params or name not in self.params[projection]:
            known = {p: sorted(v) for p, v in self.params.items()}
            raise KeyError(f"no rule parameter {name!r} on projection {projection!r}; known: {known}")
        v = torch.as_tensor(values, dtype=self.dtype, device=self.device).reshape(-1)
        if v.numel() not in (1, self.replicas):
            raise ValueError(f"parameter {name!r}: give 1 or {self.replicas} values, got {v.numel()}")
        if not torch.isfinite(v).all():
            raise ValueError(f"parameter {name!r}: values must be finite")
        self.params[projection][name] = v.expand(self.replicas).reshape(self.replicas, 1, 1).clone()

    def weights(self, projection: str) -> torch.Tensor:
        """A copy of the current weights, ``(post, pre)`` if shared else ``(R, post, pre)`` (a copy:
        event-driven learning updates the live tensor in place)."""
        w = self.syn[projection]["w"]
        return (w[0] if self.network.projections[projection].shared else w).clone()

    def set_weights(self, projection: str, weights: TensorLike) -> None:
        """Replace a projection's weights (and those of projections tied to it)."""
        tie = self.network.projections[projection].tie
        if tie is not None:
            raise ValueError(f"set_weights {projection!r}: its weights are tied to {tie.source!r}; set those instead")
        w = torch.as_tensor(weights, dtype=self.dtype, device=self.device)
        old = self.syn[projection]["w"]
        w = w[None] if w.dim() == 2 else w
        if w.shape != old.shape:
            raise ValueError(f"set_weights {projection!r}: expected shape {tuple(old.shape)}, got {tuple(w.shape)}")
        if not torch.isfinite(w).all():
            raise ValueError(f"set_weights {projection!r}: weights contain NaN or infinite values")
        if projection in self.masks and torch.any(w[..., ~self.masks[projection]] != 0):
            raise ValueError(f"set_weights {projection!r}: weights must be 0 where the projection has no synapse (mask)")
        self.syn[projection]["w"] = w.clone(memory_format=torch.contiguous_format)
        self._unclipped.add(projection)
        self._refresh_ties({projection})

    def _refresh_ties(self, sources) -> None:
        for proj in self._tied:
            if proj.tie.source in sources:
                self.syn[proj.name]["w"] = proj.tie.apply(self.syn[proj.tie.source]["w"]).contiguous()

    # --- stepping ----------------------------------------------------------------------------------
    def _as_state(self, x: TensorLike, n: int, what: str) -> torch.Tensor:
        v = torch.as_tensor(x, dtype=self.dtype, device=self.device)
        if v.dim() == 0:
            v = v.expand(n)
        if v.shape[-1] != n or v.dim() > 2 or (v.dim() == 2 and v.shape[0] not in (1, self.replicas)):
            raise ValueError(f"{what}: expected shape ({n},) or ({self.replicas}, {n}), got {tuple(v.shape)}")
        return v.expand(self.replicas, n)

    def _as_sequence(self, v: torch.Tensor, steps: int, n: int, what: str) -> torch.Tensor:
        """Per-step values ``(steps, N)`` or ``(steps, 1|R, N)`` as ``(steps, 1|R, N)``."""
        if v.dim() == 2:
            v = v[:, None]
        if v.dim() != 3 or v.shape[0] != steps or v.shape[1] not in (1, self.replicas) or v.shape[2] != n:
            raise ValueError(f"{what} needs shape (steps={steps}, {n}) or ({steps}, {self.replicas}, {n}), "
                             f"got {tuple(v.shape)}")
        return v

    def step(
        self,
        inputs: Optional[Mapping[str, TensorLike]] = None,
        third_factors: Optional[Mapping[str, TensorLike]] = None,
        step_in_presentation: int = 0,
    ) -> Dict[str, torch.Tensor]:
        """Advance one step. ``inputs[name]``: spikes ``(R, N)`` of an input population
        without encoder, or values in [0, 1] for one with an encoder. Returns spikes by population."""
        inputs = inputs or {}
        third_factors = third_factors or {}
        net = self.network
        unknown = (set(inputs) | set(third_factors)) - set(net.populations)
        if unknown:
            raise KeyError(f"unknown population(s) {sorted(unknown)}; have {sorted(net.populations)}")
        # Checked before anything changes, so that a call refused for a bad argument leaves the state as it was.
        inputs = {k: self._as_state(v, net.populations[k].n, f"input {k!r}") for k, v in inputs.items()}
        third_factors = {k: self._as_state(v, net.populations[k].n, f"third factor {k!r}") for k, v in third_factors.items()}
        self.time_step += 1
        # A simulator's first step runs eagerly even when compiled: it fills lazily made constants, which a
        # compiled step would see change and recompile for.
        compiled = self._compiled if self._warmed else None
        with torch.no_grad():
            (compiled or self._advance)(inputs, third_factors, step_in_presentation)
        self._warmed = True
        return self.spikes

    def _advance(self, inputs: Mapping[str, TensorLike], third_factors: Mapping[str, TensorLike],
                 step_in_presentation: Union[int, torch.Tensor]) -> None:
        """The work of one step (see the module docstring), on validated arguments; compiled with ``compile``,
        captured with ``graph_steps`` (then ``step_in_presentation`` is a 0-d device tensor, so that one
        graph serves every chunk; encoders take either)."""
        net = self.network
        currents = {name: None for name in net.populations}
        gated = {}
        for proj in net.projections.values():
            into = gated if proj.gated else currents
            c = into.get(proj.post)
            into[proj.post] = self.buffers[proj.name] if c is None else c + self.buffers[proj.name]
        for pop in net.populations.values():
            if isinstance(pop, InputPopulation):
                x = inputs.get(pop.name)
                if x is None:
                    self.spikes[pop.name] = torch.zeros_like(self.spikes[pop.name])
                    continue
                x = x.expand(self.replicas, pop.n)  # checked by step or run; (1, N) rows reach every replica
                if pop.encoder is not None:
                    x = pop.encoder.step(x.contiguous(), step_in_presentation, self.dt, self.generator)
                self.spikes[pop.name] = (x > 0).to(self.dtype)
            else:
                c = currents[pop.name]
                c = torch.zeros_like(self.spikes[pop.name]) if c is None else c
                self.spikes[pop.name] = self.models[pop.name].step(c, self.state[pop.name], self.dt, gated.get(pop.name))
        for proj in net.projections.values():
            self.buffers[proj.name] = self._propagate(self.syn[proj.name]["w"], self.spikes[proj.pre],
                                                      self._lists.get(proj.name))
        learned = set()
        for name, rule in (self.rules.items() if self.learning else ()):
            proj = net.projections[name]
            t_epoch = rule.t_epoch
            within = self.time_step % t_epoch or t_epoch
            signals = dict(self.state[proj.post])
            if proj.post in third_factors:
                n = net.populations[proj.post].n
                signals["third_factor"] = third_factors[proj.post].expand(self.replicas, n)
            rule.record(self.plastic[name], self.spikes[proj.pre], self.spikes[proj.post], within, signals)
            if self.time_step % t_epoch == 0:
                clamp_all = name in self._unclipped
                rule.learn(self.plastic[name], self.syn[name], self.params[name], self.time_step,
                           self.masks.get(name), self._event_fraction, clamp_all=clamp_all,
                           lists=self._lists.get(name))
                self._unclipped.discard(name)
                # else u was 0 and no weight was clipped: nothing changed
                if clamp_all or self.time_step % rule.update_period == 0:
                    learned.add(name)
        if learned and self._tied:
            self._refresh_ties(learned)

    def _propagate(self, w: torch.Tensor, s: torch.Tensor, lists: Optional[SynapseLists] = None) -> torch.Tensor:
        """Synaptic input ``(R, M)`` from spikes ``s`` ``(R, N)`` through weights ``w`` ``(1|R, M, N)``;
        ``lists``: the synapses of a sparse projection."""
        if self._event_fraction > 0:
            r, n = s.nonzero(as_tuple=True)
            if r.numel() <= self._event_fraction * s.numel():
                # Event-driven (spikes here are 0 or 1): only the neurons that spiked.
                out = torch.zeros(s.shape[0], w.shape[1], dtype=w.dtype, device=w.device)
                if r.numel() == 0:
                    return out
                if lists is not None:  # a sparse projection: their existing synapses only
                    post, pre, k = lists.cols(n)
                    flat = post * w.shape[2] + pre
                    values = w[0].view(-1)[flat] if w.shape[0] == 1 else w.view(w.shape[0], -1)[r[k], flat]
                    return out.index_put_((r[k], post), values, accumulate=True)
                cols = w[0].index_select(1, n).T if w.shape[0] == 1 else w[r, :, n]  # their columns, summed
                return out.index_add_(0, r, cols)
        if w.shape[0] == 1:
            return s @ w[0].T
        return torch.bmm(w, s.unsqueeze(-1)).squeeze(-1)

    def run(
        self,
        steps: int,
        inputs: Optional[Mapping[str, TensorLike]] = None,
        third_factors: Optional[Mapping[str, TensorLike]] = None,
        monitors: Iterable[str] = (),
        every: int = 1,
        progress: bool = False,
        first_step: int = 0,
    ) -> Recording:
        """Run ``steps`` steps and return what ``monitors`` asked for.

        ``inputs[name]`` is, for an input population with an encoder, values
        ``(N,)`` or ``(R, N)`` held for the whole run; without one, spikes
        ``(steps, N)`` or ``(steps, R, N)``. ``third_factors[post]`` is held
        values ``(N,)``/``(R, N)`` or a per-step sequence ``(steps, R, N)``. Monitors are
        ``"population.spikes"``, ``"population.count"`` (spikes per neuron summed over the
        ``every`` steps up to each record), ``"population.<state>"`` (``v``, ``i``,
        ``theta``), ``"projection.<var>"`` (``w``, ``t``, ``d``, ``x1`` ... ``y3``),
        recorded every ``every`` steps. Traces read as Loihi's trace registers do:
        their value at the start of the current learning epoch (with ``t_epoch = 1``,
        the value after this step's spikes).

        ``first_step``: the step of the presentation the run starts at (encoders' spike times count from
        it), to go on with a presentation that an earlier run began, e.g. after :meth:`set_model`.
        """
        if int(first_step) != first_step or first_step < 0:
            raise ValueError(f"first_step must be a non-negative integer, got {first_step!r}")
        if first_step and (self._native is not None or self._graphs is not None):
            raise ValueError("first_step needs a simulator without native or graph_steps, whose runs start "
                             "presentations at step 0")
        pops = self.network.populations
        unknown = set(third_factors or {}) - set(pops)
        if unknown:
            raise KeyError(f"third factors for unknown population(s) {sorted(unknown)}; have {sorted(pops)}")
        per_step, held = split_inputs(self.network, steps, inputs, self.dtype, self.device)
        # Every argument checked here, before a step runs (the native loop and CUDA graphs take them whole);
        # sequences as (steps, 1|R, N).
        per_step = {name: self._as_sequence(v, steps, pops[name].n, f"input {name!r}: spikes")
                    for name, v in per_step.items()}
        held = {name: self._as_state(x, pops[name].n, f"input {name!r}") for name, x in held.items()}
        tf_held, tf_seq = {}, {}
        for name, x in (third_factors or {}).items():
            v = torch.as_tensor(x, dtype=self.dtype, device=self.device)
            if v.dim() == 3:
                tf_seq[name] = self._as_sequence(v, steps, pops[name].n, f"third factor {name!r}: a sequence")
            else:
                tf_held[name] = self._as_state(v, pops[name].n, f"third factor {name!r}")

        def advance(k: int) -> None:
            step_inputs = {**held, **{name: v[k] for name, v in per_step.items()}}
            tf = {**tf_held, **{name: v[k] for name, v in tf_seq.items()}}
            self.step(step_inputs, tf, step_in_presentation=first_step + k)

        if self._native is not None:
            check_steps(steps)
            recorder = Recorder(list(monitors), self._read, lambda: self.time_step, every)
            self._native.run(steps, per_step, held, tf_seq, tf_held, recorder, progress)
            return recorder.result()
        if self._graphs is not None:
            check_steps(steps)
            recorder = Recorder(list(monitors), self._read, lambda: self.time_step, every)
            self._graphs.run(steps, per_step, held, tf_seq, tf_held, recorder, advance, progress)
            return recorder.result()
        return record_run(steps, advance, self._read, lambda: self.time_step, list(monitors), every, progress)

    def _read(self, monitor: str) -> torch.Tensor:
        target, _, var = monitor.partition(".")
        net = self.network
        if target in net.populations:
            if var == "spikes":
                return self.spikes[target]
            if target in self.state and var in self.state[target]:
                return self.state[target][var]
        elif target in net.projections:
            if var in self.syn[target]:
                return self.syn[target][var]
            if var in TRACE_INDEX and target in self.plastic:
                key = "x" if var.startswith("x") else "y"
                return self.plastic[target][key][:, TRACE_INDEX[var]]
        raise KeyError(
            f"cannot monitor {monitor!r}: use 'population.spikes', 'population.count', 'population.v' (or i, theta), "
            f"'projection.w' (or t, d, x1, x2, y1, y2, y3)"
        )

    # --- state for files ---------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, np.ndarray]:
        """Everything needed to continue the run exactly, as numpy arrays by path-like name."""
        out: Dict[str, np.ndarray] = {
            "time_step": np.asarray(self.time_step, dtype=np.int64),
            "rng_state": self.generator.get_state().cpu().numpy(),
        }
        for pop, st in self.state.items():
            for k, v in st.items():
                out[f"neurons/{pop}/{k}"] = _numpy(v)
        for pop, s in self.spikes.items():
            out[f"spikes/{pop}"] = _numpy(s)
        for proj, b in self.buffers.items():
            out[f"buffers/{proj}"] = _numpy(b)
        for proj, syn in self.syn.items():
            for k, v in syn.items():
                out[f"synapses/{proj}/{k}"] = _numpy(v)
        for proj, st in self.plastic.items():
            for k, v in st.items():
                out[f"plasticity/{proj}/{k}"] = _numpy(v)
        for proj, ps in self.params.items():
            for k, v in ps.items():
                out[f"params/{proj}/{k}"] = _numpy(v.reshape(-1))
        return out

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore :meth:`state_dict` output (shapes are checked against this simulator)."""
        expected = self.state_dict()
        missing = set(expected) - set(state)
        extra = set(state) - set(expected)
        if missing or extra:
            raise ValueError(f"state does not match this network: missing {sorted(missing)}, unexpected {sorted(extra)}")
        for k, v in state.items():
            if k == "rng_state":
                if np.shape(v) != expected[k].shape:
                    raise ValueError(
                        f"state 'rng_state' has {np.size(v)} bytes, this simulator's generator ({self.device.type}) "
                        f"has {expected[k].size}: the state was saved from a generator on another device type"
                    )
                continue
            if np.shape(v) != expected[k].shape:
                raise ValueError(f"state {k!r}: expected shape {expected[k].shape}, got {np.shape(v)}")
            if np.issubdtype(np.asarray(v).dtype, np.floating):
                if not np.all(np.isfinite(v)):
                    raise ValueError(f"state {k!r} contains NaN or infinite values")
                if np.size(v) and expected[k].dtype.kind == "f" and np.abs(v).max() > torch.finfo(self.dtype).max:
                    raise ValueError(f"state {k!r}: values up to {np.abs(v).max():g} do not fit {self.dtype} "
                                     f"(largest {torch.finfo(self.dtype).max:g})")
            if k == "time_step" and int(np.asarray(v)) < 0:
                raise ValueError(f"state 'time_step' must be >= 0, got {int(np.asarray(v))}")
            if k.startswith("plasticity/") and k.endswith(("/tx", "/ty")):
                # the step of the epoch at which each neuron last spiked (0: not in this epoch)
                t_epoch = self.rules[k.split("/")[1]].t_epoch
                if np.size(v) and not (0 <= np.min(v) and np.max(v) <= t_epoch):
                    raise ValueError(f"state {k!r}: spike steps within the epoch must lie in [0, {t_epoch}], "
                                     f"got [{np.min(v)}, {np.max(v)}]")
            if k.startswith("spikes/") and not np.all((np.asarray(v) == 0) | (np.asarray(v) == 1)):
                raise ValueError(f"state {k!r}: spikes must be 0 or 1")
            proj = k[len("synapses/"):-len("/w")] if k.startswith("synapses/") and k.endswith("/w") else None
            if proj in self.masks and np.any(np.asarray(v)[..., ~self.masks[proj].cpu().numpy()] != 0):
                raise ValueError(f"state {k!r} has weights where the projection has no synapse (mask)")

        def t(k: str, like: torch.Tensor) -> torch.Tensor:
            # A copy: two simulators loaded from one state must not share (in-place updated) memory.
            return torch.tensor(np.asarray(state[k]), device=self.device).to(like.dtype).contiguous()

        self.time_step = int(state["time_step"])
        self.generator.set_state(torch.as_tensor(np.asarray(state["rng_state"], dtype=np.uint8)).cpu())
        for pop, st in self.state.items():
            for k in list(st):
                st[k] = t(f"neurons/{pop}/{k}", st[k])
        for pop in self.spikes:
            self.spikes[pop] = t(f"spikes/{pop}", self.spikes[pop])
        for proj in self.buffers:
            self.buffers[proj] = t(f"buffers/{proj}", self.buffers[proj])
        for proj, syn in self.syn.items():
            for k in list(syn):
                syn[k] = t(f"synapses/{proj}/{k}", syn[k])
        for proj, st in self.plastic.items():
            for k in list(st):
                st[k] = t(f"plasticity/{proj}/{k}", st[k])
        for proj, ps in self.params.items():
            for k in list(ps):
                ps[k] = t(f"params/{proj}/{k}", ps[k]).reshape(self.replicas, 1, 1)
        self._unclipped.update(self.rules)
        # Tied weights follow their sources, whatever the state held for them.
        self._refresh_ties({p.tie.source for p in self._tied})

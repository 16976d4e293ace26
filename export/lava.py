"""Compile a :class:`neuro.Network` to a Lava process graph and run it on Lava's simulator.

Mapping (each checked against the torch engine in tests/test_lava_export.py):

* input population -> ``RingBuffer`` replaying its spikes (encoded inputs are
  drawn exactly as :class:`neuro.Simulator` draws them for the same seed);
* :class:`~neuro.LIF` -> Lava ``LIF`` with ``du = dt/tau_syn``, ``dv = dt/tau_mem``.
  Lava integrates ``v += u`` where Norse integrates ``v += dv * i``, so Lava's
  voltage is ours divided by ``dv``: the threshold becomes ``v_th / dv`` and
  the leak potential the bias ``v_leak``; weights are unchanged;
* :class:`~neuro.IAF` -> Lava ``LIF`` with ``du = 1`` (no current memory), ``dv = 0``;
* a LIF whose current saturates (``i_min`` / ``i_max``), that gates an input (``gate_min`` /
  ``gate_max``, projections with ``gated``), resets by subtraction (``subtract_reset``), has a
  membrane floor (``v_min``) or a current that decays on one side of 0 only (``syn_leak``) ->
  :class:`~export.lava_procs.BoundedLIF` (gated projections into its ``a_gated`` port), or
  ``FactorLIF`` with the same dynamics where it also sends post factors; floating point only;
* a static projection -> ``Dense``; a plastic one -> ``LearningDense`` with the
  rule lowered by :mod:`export.loihi_rules`, fed the post population's spikes
  as back-propagating action potentials;
* a projection tied to a plastic one (:class:`~neuro.graph.Tie`) -> ``Dense``
  whose weights the host rewrites after every learning epoch of the source
  (Lava, like Loihi 2, has no weight sharing between synapse groups), so the
  run is split into epochs.

Both sides deliver a spike one step after it is emitted and learn after the
spiking phase, so with ``Loihi2SimCfg(select_tag="floating_pt")`` spikes are
identical and weights agree to float rounding.
"""
from __future__ import annotations

import functools
import math
import multiprocessing
import sys
from typing import Dict, Iterable, Mapping, Optional

import numpy as np
import torch

from neuro import IAF, LIF, InputPopulation, Network, Recording, Simulator
from export.runs import continued, encoded_inputs, held_or_sequence
from export.loihi_rules import LoihiRule, to_loihi_rule
from neuro.engine import TensorLike


def _prepare_lava_import() -> None:
    """Let Lava set its 'fork' start method even if something already fixed the default context.

    Lava calls ``multiprocessing.set_start_method('fork')`` at import, which fails
    once any multiprocessing lock exists (tqdm creates one for its first bar). A
    context that already is 'fork' is what Lava asks for, so unfixing it is safe.
    """
    if "lava.magma.runtime.message_infrastructure.multiprocessing" in sys.modules:
        return
    ctx = multiprocessing.context._default_context
    if ctx._actual_context is not None:
        if ctx._actual_context.get_start_method() != "fork":
            raise LavaExportError(
                f"Lava needs the 'fork' multiprocessing start method; this process uses "
                f"{ctx._actual_context.get_start_method()!r}"
            )
        ctx._actual_context = None


class LavaExportError(ValueError):
    """The network uses something the Lava back-end cannot express; the message says what."""


def _lif_params(name: str, m, dt: float) -> Dict[str, float]:
    """Lava LIF parameters for our neuron model ``m``, and ``v_scale`` = our volts per Lava volt."""
    if m.v_reset != 0.0:
        raise LavaExportError(f"population {name!r}: Lava's LIF resets to 0, got v_reset={m.v_reset}")
    if isinstance(m, LIF):
        if m.theta_plus != 0.0:
            raise LavaExportError(
                f"population {name!r}: Lava's LIF has no adaptive threshold (theta_plus={m.theta_plus})"
            )
        dv, du = dt / m.tau_mem, dt / m.tau_syn
        return dict(du=du, dv=dv, vth=m.v_th / dv, bias_mant=m.v_leak, u=0.0, v=m.v_leak / dv, v_scale=dv)
    if isinstance(m, IAF):
        return dict(du=1.0, dv=0.0, vth=m.v_th, bias_mant=0.0, u=0.0, v=0.0, v_scale=1.0)
    raise LavaExportError(f"population {name!r}: no Lava process for {type(m).__name__}")


def _as_is(data: np.ndarray) -> np.ndarray:
    """A monitored Lava variable that already is ours (spikes, weights, tags)."""
    return data


def _custom_lif(m) -> Optional[LIF]:
    """``m`` if it is a LIF model whose dynamics go beyond Lava's LIF (``LIF.beyond_lava``: run by
    :class:`~export.lava_procs.BoundedLIF` or ``FactorLIF``'s float model), else ``None``."""
    return m if isinstance(m, LIF) and m.beyond_lava() else None


def _post_factor_specs(network: Network, post: str, lowered: Mapping[str, LoihiRule]) -> Dict[str, tuple]:
    """What the post neuron must send as y1..y3 for the three-factor rules projecting onto it."""
    specs: Dict[str, tuple] = {}
    for proj in network.incoming(post):
        rule = lowered.get(proj.name)
        if rule is None or not rule.three_factor:
            continue
        for name, tr in rule.post_traces.items():
            if tr.driven_by:
                spec = ("driven", tr.driven_by)
            else:
                spec = ("spike", math.exp(-1.0 / tr.tau_steps) if math.isfinite(tr.tau_steps) else 1.0, tr.impulse)
            if specs.setdefault(name, spec) != spec:
                raise LavaExportError(
                    f"population {post!r}: its incoming rules need different {name} traces ({specs[name]} vs {spec}); "
                    "a Loihi neuron sends one value per trace"
                )
    return specs


def _start_state(network: Network, initial: Optional[Simulator]) -> Dict[str, np.ndarray]:
    """The state to start Lava from: the network's initial weights, or where ``initial`` stopped.

    Keys as in :meth:`Simulator.state_dict`, replica 0, float64.
    """
    if initial is None:
        return {f"synapses/{p.name}/w": p.weights for p in network.projections.values()}
    if initial.network is not network:
        raise LavaExportError("initial: the simulator must simulate this very network")
    if initial.replicas != 1:
        raise LavaExportError(f"initial: Lava runs one replica, the simulator has {initial.replicas}")
    for name, rule in initial.rules.items():
        period = rule.rule.t_epoch * 2 ** rule.rule.u_exponent
        if initial.time_step % period:
            raise LavaExportError(
                f"initial: projection {name!r} is mid-epoch (step {initial.time_step}); Lava starts a new "
                f"epoch (and u's decimation count) at its step 1, so continue at a multiple of {period} steps"
            )
    return {k: np.asarray(v, dtype=np.float64)[0] if np.ndim(v) > 0 else v for k, v in initial.state_dict().items()}


def _set_initial(var, value) -> None:
    if value is not None:
        var.init = np.asarray(value, dtype=np.float64).copy()


def run_lava(
    network: Network,
    steps: int,
    inputs: Optional[Mapping[str, TensorLike]] = None,
    monitors: Iterable[str] = (),
    third_factors: Optional[Mapping[str, TensorLike]] = None,
    seed: int = 0,
    select_tag: str = "floating_pt",
    initial: Optional[Simulator] = None,
) -> Recording:
    """Build the Lava graph of ``network``, run ``steps`` steps, return monitors like ``Simulator.run``.

    One replica (Lava has no batch dimension). ``inputs``, ``third_factors``
    (held ``(N,)`` or per step ``(steps, N)``) and ``monitors`` have the meaning
    they have in :meth:`neuro.Simulator.run`; recorded arrays have
    shape ``(steps, 1, ...)``. With ``initial`` (a one-replica simulator of
    ``network`` stopped at an epoch boundary) Lava continues exactly where the
    torch run stopped: weights, tags, traces, neuron state, in-flight synaptic
    input and the encoders' random generator. Monitors: ``pop.spikes``, ``pop.v``, ``pop.i``,
    ``proj.w``, ``proj.t``, ``proj.d``. A tied projection's ``w`` is rewritten between steps, after
    the monitor read the source's learning step: it shows the new copy one step later than torch.
    """
    _prepare_lava_import()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense, LearningDense
    from lava.proc.io.source import RingBuffer
    from lava.proc.monitor.process import Monitor


    from lava.proc.lif.process import LIF as LavaLIF

    from export.lava_procs import BoundedLIF, FactorLIF
    from export.lava_procs.bounded_lif import decay_factor

    dt = network.dt
    start = _start_state(network, initial)
    # Where the torch run stopped: the models it steps with (Simulator.set_model), whether it learns,
    # and its rule parameters (Simulator.set_param; one replica).
    models, rules = continued(network, initial)
    learning = True if initial is None else initial.learning
    if select_tag != "floating_pt":
        for name, m in models.items():
            if _custom_lif(m) is not None:
                raise LavaExportError(f"population {name!r}: {'; '.join(m.beyond_lava())}: runs only with floating_pt")
        for proj in network.learning_ties() if learning else ():
            raise LavaExportError(
                f"projection {proj.name!r}: tied to the learning {proj.tie.source!r}; the host rewrites tied "
                "weights only with floating_pt"
            )
    spikes = encoded_inputs(
        network, steps, inputs or {}, seed, None if initial is None else initial.generator.get_state()
    )
    third_factors = dict(third_factors or {})
    lowered = {n: to_loihi_rule(rule, dt) for n, rule in rules.items()}
    procs, scale, current_decay, factor_sources = {}, {}, {}, []
    for name, pop in network.populations.items():
        if isinstance(pop, InputPopulation):
            procs[name] = RingBuffer(data=spikes[name].T.copy())
            continue
        params = _lif_params(name, models[name], dt)
        scale[name] = params.pop("v_scale")
        m = _custom_lif(models[name])
        # Lava's u is the current before this step's decay; the engine reports it after.
        current_decay[name] = (params["du"], "both" if m is None else m.syn_leak)
        if f"neurons/{name}/v" in start:
            # Lava's v is ours / v_scale; its u is the current before this step's decay.
            params["v"] = start[f"neurons/{name}/v"] / scale[name]
            if f"neurons/{name}/i" in start:  # LIF; an IAF keeps no current
                i = start[f"neurons/{name}/i"]
                params["u"] = i / decay_factor(i, *current_decay[name])
        specs = _post_factor_specs(network, name, lowered)
        custom = None if m is None else dict(u_min=m.i_min, u_max=m.i_max, g_min=m.gate_min, g_max=m.gate_max,
                                             subtract_reset=m.subtract_reset, v_min=m.v_min / scale[name],
                                             syn_leak=m.syn_leak)
        if specs:
            uses_tf = any(spec == ("driven", "third_factor") for spec in specs.values())
            procs[name] = FactorLIF(
                shape=(pop.n,), traces=specs, v_scale=scale[name], third_factor=uses_tf, custom=custom, name=name,
                **params
            )
            if uses_tf:
                if name not in third_factors:
                    raise LavaExportError(f"population {name!r} needs a third factor: pass third_factors[{name!r}]")
                factor_sources.append((name, held_or_sequence(third_factors.pop(name), steps, pop.n, f"third factor for {name!r}", LavaExportError)))
        elif custom is not None:
            procs[name] = BoundedLIF(shape=(pop.n,), name=name, **custom, **params)
        else:
            procs[name] = LavaLIF(shape=(pop.n,), name=name, **params)
    if third_factors:
        raise LavaExportError(f"third factors given for populations that use none: {sorted(third_factors)}")
    for name, seq in factor_sources:
        src = RingBuffer(data=seq.T.copy())
        src.s_out.connect(procs[name].a_third_factor_in)
    conns = {}
    for name, proj in network.projections.items():
        if proj.weights.ndim != 2:
            raise LavaExportError(f"projection {name!r}: Lava runs one replica; weights must be (post, pre)")
        if proj.mask is not None and name in lowered:
            # Static: the missing synapses are zeros in Dense, exactly. Plastic: LearningDense would grow them.
            raise LavaExportError(
                f"projection {name!r}: sparse plastic connectivity (mask) is not exported: LearningDense would "
                "grow the missing synapses (Lava's LearningSparse is not wired up yet)"
            )
        weights = np.asarray(start[f"synapses/{name}/w"], dtype=np.float64).copy()
        if name not in lowered:  # static, or the run continues with learning off
            conn = Dense(weights=weights, name=name)
        else:
            rule = lowered[name]
            conn = LearningDense(weights=weights, name=name, **rule.dense_kwargs())
            plastic = f"plasticity/{name}/"
            if plastic + "x" in start:
                for k, trace in enumerate(("x1", "x2")):
                    _set_initial(getattr(conn, trace), start[plastic + "x"][k])
                if not rule.three_factor:
                    for k, trace in enumerate(("y1", "y2", "y3")):
                        _set_initial(getattr(conn, trace), start[plastic + "y"][k])
                _set_initial(conn.tag_1, start.get(f"synapses/{name}/t"))
                _set_initial(conn.tag_2, start.get(f"synapses/{name}/d"))
                if isinstance(procs[proj.post], FactorLIF):
                    for k, trace in enumerate(("y1", "y2", "y3")):
                        _set_initial(getattr(procs[proj.post], trace), start[plastic + "y"][k])
            post = procs[proj.post]
            if isinstance(post, FactorLIF):
                post.s_out_bap.connect(conn.s_in_bap)
                if rule.three_factor:
                    for k in ("y1", "y2", "y3"):
                        getattr(post, f"s_out_{k}").connect(getattr(conn, f"s_in_{k}"))
            else:
                post.s_out.connect(conn.s_in_bap)
        _set_initial(conn.a_buff, start.get(f"buffers/{name}"))
        procs[proj.pre].s_out.connect(conn.s_in)
        conn.a_out.connect(procs[proj.post].a_gated if proj.gated else procs[proj.post].a_in)
        conns[name] = conn

    probes = {}
    for m in monitors:
        target, _, var = m.partition(".")
        mon = Monitor()
        if target in network.populations and var == "spikes":
            mon.probe(procs[target].s_out, steps)
            probes[m] = (mon, procs[target].name, "s_out", _as_is)
        elif target in scale and var in ("v", "i"):
            lava_var = "v" if var == "v" else "u"
            mon.probe(getattr(procs[target], lava_var), steps)
            # Lava's v is ours divided by dv (see the module docstring); its u is ours before the decay.
            if var == "v":
                to_ours = functools.partial(np.multiply, scale[target])
            else:
                to_ours = lambda u, decay=current_decay[target]: u * decay_factor(u, *decay)  # noqa: E731
            probes[m] = (mon, procs[target].name, lava_var, to_ours)
        elif target in conns and var in ("w", "t", "d"):
            lava_var = {"w": "weights", "t": "tag_1", "d": "tag_2"}[var]
            mon.probe(getattr(conns[target], lava_var), steps)
            probes[m] = (mon, conns[target].name, lava_var, _as_is)
        else:
            raise LavaExportError(f"cannot monitor {m!r} on Lava: use pop.spikes, pop.v, pop.i, proj.w, proj.t, proj.d")

    anchor = next(iter(procs.values()))
    out = Recording()
    cfg = Loihi2SimCfg(select_tag=select_tag)
    live = network.learning_ties() if learning else []
    chunk = math.gcd(*(network.projections[p.tie.source].rule.update_period for p in live)) if live else steps
    try:
        done = 0
        while done < steps:
            n = min(chunk, steps - done)
            anchor.run(condition=RunSteps(num_steps=n), run_cfg=cfg)
            done += n
            for p in live:  # the source learned at the end of this chunk: rewrite its copy
                conns[p.name].weights.set(p.tie.apply(np.asarray(conns[p.tie.source].weights.get(), dtype=np.float64)))
        for m, (mon, pname, var, to_ours) in probes.items():
            data = to_ours(np.asarray(mon.get_data()[pname][var], dtype=np.float64))
            out.data[m] = torch.as_tensor(data)[:, None]
            out.steps[m] = list(range(1, steps + 1))
    finally:
        anchor.stop()
    return out

"""The torch engine in fixed-point mode: Lava's bit-accurate integer LIF and Dense, batched.

:func:`to_fixed_point` compiles a :class:`neuro.Network` (LIF/IAF populations,
static projections) to Lava's integer parameters using :mod:`hardware.quantize`;
:class:`FixedPointSimulator` runs those integer dynamics on int64 torch tensors
with a leading replica dimension ``R``, reproducing, operation for operation,
Lava 0.10's ``fixed_pt`` models (``PyLifModelBitAcc``, ``PyDenseModelBitAcc``,
``PySendModelFixed``); the equations, with file:line references, are in
``docs/lava_fixed_point.md``. ``tests/test_fixed_point.py`` checks spikes, ``u``
and ``v`` against Lava's ``Loihi2SimCfg(select_tag="fixed_pt")`` with
``np.array_equal``.

Units: a population's integer unit is ``1 / scale`` of a float weight (the
``scale`` of :func:`hardware.quantize.population_scale`, lowered by
``headroom_bits`` so that bursts of input fit Lava's 24-bit ``u`` and ``v``).
Lava shifts the synaptic input and the threshold left by 6 bits, so ``u`` and
``v`` are in units of ``1 / (64 * scale)``; our float membrane potential is
``v * dv_float / (64 * scale)`` (:attr:`FixedPointPopulation.v_to_float`).

Plastic projections are not compiled yet (Lava's learning engine in fixed point,
``LearningConnectionModelBitApproximate``, is documented in the same document).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Union

import numpy as np
import torch
from lava.utils.weightutils import SignMode, clip_weights, truncate_weights

from hardware.quantize import QuantizedWeights, lif_fixed_point, population_scale, quantize_weights
from hardware.targets import LOIHI2, Target
from neuro import IAF, LIF, InputPopulation, Network, Recording, Simulator
from neuro.engine import TensorLike

# Lava 0.10 lava/proc/lif/models.py, AbstractPyLifModelFixed.__init__ (lines 94-108).
DS_OFFSET = 1  # added to du: current decay (4096 - du - 1) / 4096
DM_OFFSET = 0  # added to dv
DECAY_SHIFT = 12
DECAY_UNITY = 1 << DECAY_SHIFT
VTH_SHIFT = 6
ACT_SHIFT = 6
UV_BITS = 24
MAX_UV = 1 << (UV_BITS - 1)


class FixedPointError(ValueError):
    """The network cannot be compiled to Lava's fixed-point models; the message says why."""


@dataclass
class FixedPointPopulation:
    """Lava ``LIF`` integer parameters (``PyLifModelBitAcc``) of one population."""

    name: str
    n: int
    du: int
    dv: int
    vth: int
    bias_mant: int
    bias_exp: int
    u0: int
    v0: int
    scale: float
    #: our float membrane potential per integer unit of Lava's ``v``
    v_to_float: float
    notes: List[str] = field(default_factory=list)

    def lava_kwargs(self) -> Dict[str, object]:
        """Keyword arguments for ``lava.proc.lif.process.LIF``."""
        return dict(
            shape=(self.n,), du=self.du, dv=self.dv, vth=self.vth, bias_mant=self.bias_mant,
            bias_exp=self.bias_exp, u=self.u0, v=self.v0,
        )


@dataclass
class FixedPointProjection:
    """Lava ``Dense`` integer parameters (``PyDenseModelBitAcc``) of one static projection."""

    name: str
    pre: str
    post: str
    #: what to give ``Dense(weights=...)``: 8-bit integers (``mantissa << (8 - num_weight_bits + mixed)``)
    lava_weights: np.ndarray
    #: what Lava's model multiplies with: ``truncate_weights(clip_weights(lava_weights))``
    weights: np.ndarray
    weight_exp: int
    num_weight_bits: int
    sign_mode: SignMode
    quantized: QuantizedWeights

    def lava_kwargs(self) -> Dict[str, object]:
        """Keyword arguments for ``lava.proc.dense.process.Dense``."""
        return dict(
            weights=self.lava_weights.copy(), weight_exp=self.weight_exp,
            num_weight_bits=self.num_weight_bits, sign_mode=self.sign_mode,
        )


@dataclass
class FixedPointNetwork:
    """A network compiled to Lava's fixed-point parameters (see :func:`to_fixed_point`)."""

    network: Network
    target: Target
    populations: Dict[str, FixedPointPopulation]
    projections: Dict[str, FixedPointProjection]
    inputs: List[str]


def to_fixed_point(
    network: Network,
    target: Target = LOIHI2,
    headroom_bits: int = 4,
    scales: Optional[Mapping[str, float]] = None,
) -> FixedPointNetwork:
    """Compile ``network`` to Lava's fixed-point LIF/Dense parameters.

    Parameters:
        network: LIF/IAF populations, input populations and static projections
            with shared ``(post, pre)`` weights.
        target: the fixed-point target (weight exponent range, threshold bits).
        headroom_bits: each population's scale is the largest representable one
            (:func:`hardware.quantize.population_scale`: threshold at 17 bits or
            weights at the largest exponent) divided by ``2**headroom_bits``, so
            summed input and the membrane potential stay inside Lava's 24-bit
            ``u``/``v`` (which wrap / saturate).
        scales: explicit integer units per float unit, by population name.

    Per population: ``du = round(dt/tau_syn * 4096) - 1``, ``dv = round(dt/tau_mem * 4096)``,
    ``vth = round(v_th / dv_float * scale)``, bias ``v_leak * 64 * scale`` and
    ``v0 = round(v_leak / dv_float * 64 * scale)`` (Lava adds the bias to ``v``,
    which unlike the input and threshold is not shifted by 6 bits). Per
    projection: :func:`hardware.quantize.quantize_weights` at the post population's scale.
    """
    if network.dt <= 0:
        raise FixedPointError("dt must be positive")
    scales = dict(scales or {})
    dt = network.dt
    pops: Dict[str, FixedPointPopulation] = {}
    inputs: List[str] = []
    for proj in network.projections.values():
        if proj.rule is not None:
            raise FixedPointError(
                f"projection {proj.name!r} is plastic: the fixed-point learning engine "
                "(Lava's LearningConnectionModelBitApproximate) is not implemented yet; see docs/lava_fixed_point.md"
            )
        if np.ndim(proj.weights) != 2:
            raise FixedPointError(f"projection {proj.name!r}: fixed point needs shared (post, pre) weights")
    for name, pop in network.populations.items():
        if isinstance(pop, InputPopulation):
            inputs.append(name)
            continue
        m = pop.model
        if not isinstance(m, (LIF, IAF)):
            raise FixedPointError(f"population {name!r}: no Lava LIF mapping for {type(m).__name__}")
        if m.v_reset != 0.0:
            raise FixedPointError(f"population {name!r}: Lava's LIF resets to 0, got v_reset={m.v_reset}")
        if isinstance(m, LIF) and m.theta_plus != 0.0:
            raise FixedPointError(f"population {name!r}: Lava's LIF has no adaptive threshold")
        incoming = [(np.asarray(p.weights, dtype=np.float64), None) for p in network.incoming(name)]
        if name in scales:
            scale = float(scales[name])
        else:
            scale = population_scale(m, dt, incoming, target) / 2.0**headroom_bits
        lif = lif_fixed_point(m, dt, scale, target)
        if lif.problems:
            raise FixedPointError(f"population {name!r}: " + "; ".join(lif.problems))
        if isinstance(m, LIF):
            dv_float = dt / m.tau_mem
            bias_mant, bias_exp = lif.bias_mant, lif.bias_exp
            v0 = int(round(m.v_leak / dv_float * (1 << VTH_SHIFT) * scale))
        else:
            dv_float, bias_mant, bias_exp, v0 = 1.0, 0, 0, 0
        if abs(v0) >= MAX_UV:
            raise FixedPointError(f"population {name!r}: initial v {v0} exceeds Lava's 24-bit v")
        pops[name] = FixedPointPopulation(
            name=name, n=pop.n, du=lif.du, dv=lif.dv, vth=lif.vth, bias_mant=bias_mant, bias_exp=bias_exp,
            u0=0, v0=v0, scale=scale, v_to_float=dv_float / ((1 << VTH_SHIFT) * scale), notes=list(lif.notes),
        )
    projs: Dict[str, FixedPointProjection] = {}
    for name, proj in network.projections.items():
        if proj.post not in pops:
            raise FixedPointError(f"projection {name!r}: post {proj.post!r} must be a neuron population")
        w = np.asarray(proj.weights, dtype=np.float64)
        q = quantize_weights(w, target, scale=pops[proj.post].scale)  # sign mode from the values
        if q.saturated:
            raise FixedPointError(f"projection {name!r}: " + "; ".join(q.notes))
        lava_w = q.lava_weights
        # Exactly what PyDenseModelBitAcc.run_spk does to the weights on its first step.
        eff = truncate_weights(clip_weights(lava_w, q.sign_mode, num_bits=8), q.sign_mode, q.num_weight_bits)
        projs[name] = FixedPointProjection(
            name=name, pre=proj.pre, post=proj.post, lava_weights=lava_w, weights=np.asarray(eff, dtype=np.int64),
            weight_exp=int(q.exponent), num_weight_bits=int(q.num_weight_bits), sign_mode=q.sign_mode, quantized=q,
        )
    return FixedPointNetwork(network=network, target=target, populations=pops, projections=projs, inputs=inputs)


def _wrap32(x: torch.Tensor) -> torch.Tensor:
    """Two's-complement int32 wrap of an int64 tensor (what numpy's int32 arithmetic does)."""
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _decay(x: torch.Tensor, keep: int) -> torch.Tensor:
    """``sign(x * keep) * (|x * keep| >> 12)``, i.e. the product rounded toward zero (models.py:149-153)."""
    return _wrap32(torch.div(x * keep, DECAY_UNITY, rounding_mode="trunc"))


class FixedPointSimulator:
    """``replicas`` copies of a network in Lava's fixed-point arithmetic, on int64 tensors.

    Parameters:
        network: a :class:`neuro.Network` (compiled with :func:`to_fixed_point` and
            ``quantization`` options) or an already compiled :class:`FixedPointNetwork`.
        replicas: size ``R`` of the leading replica dimension.
        device: torch device.
        seed: seeds the encoders' generator exactly as ``neuro.Simulator(seed=seed)`` does,
            so encoded inputs are the spikes the float engine and ``export.lava`` use.
        quantization: keyword arguments for :func:`to_fixed_point` (``target``,
            ``headroom_bits``, ``scales``).

    One step: Dense projections deliver the input buffered at the previous step;
    each LIF updates ``u``, ``v``, spikes and resets; each projection accumulates
    the new spikes into its buffer (Lava's ``a_buff``).
    """

    def __init__(
        self,
        network: Union[Network, FixedPointNetwork],
        replicas: int = 1,
        device: Union[str, torch.device] = "cpu",
        seed: int = 0,
        quantization: Optional[Mapping[str, object]] = None,
    ) -> None:
        if int(replicas) != replicas or replicas < 1:
            raise ValueError(f"replicas must be a positive integer, got {replicas!r}")
        if isinstance(network, FixedPointNetwork):
            if quantization:
                raise ValueError("quantization options apply to a neuro.Network, not a compiled one")
            self.fixed = network
        else:
            self.fixed = to_fixed_point(network, **dict(quantization or {}))
        self.network = self.fixed.network
        self.replicas = int(replicas)
        self.device = torch.device(device)
        self.seed = seed
        # Encoders draw from a float simulator of the input populations only, in population order,
        # exactly as neuro.Simulator (and export.lava.encoded_inputs) draws them.
        inputs_net = Network(dt=self.network.dt)
        for name in self.fixed.inputs:
            p = self.network.populations[name]
            inputs_net.input(name, p.n, p.encoder)
        self._encoder = Simulator(inputs_net, replicas=self.replicas, device=self.device, dtype=torch.float64, seed=seed)
        self.generator = self._encoder.generator
        # float64 products are exact here (|sums| < 2**53) and, unlike int64 matmul, run on CUDA.
        self._w = {
            k: torch.as_tensor(p.weights, dtype=torch.float64, device=self.device) for k, p in self.fixed.projections.items()
        }
        self._params = {
            k: dict(
                keep_u=DECAY_UNITY - (p.du + DS_OFFSET), keep_v=DECAY_UNITY - (p.dv + DM_OFFSET),
                vth=p.vth << VTH_SHIFT,
                bias=(p.bias_mant << p.bias_exp) if p.bias_exp >= 0 else (p.bias_mant >> -p.bias_exp),
            )
            for k, p in self.fixed.populations.items()
        }
        self.reset()

    def reset(self) -> None:
        """Neuron state to ``u0``/``v0``, buffers and spikes to zero, time to 0."""
        self.time_step = 0
        shape = lambda n: (self.replicas, n)  # noqa: E731
        i64 = dict(dtype=torch.int64, device=self.device)
        self.state = {
            k: {"u": torch.full(shape(p.n), p.u0, **i64), "v": torch.full(shape(p.n), p.v0, **i64)}
            for k, p in self.fixed.populations.items()
        }
        self.spikes = {k: torch.zeros(shape(p.n), **i64) for k, p in self.network.populations.items()}
        self.buffers = {
            k: torch.zeros(shape(self.network.populations[p.post].n), **i64) for k, p in self.fixed.projections.items()
        }

    # --- one step ----------------------------------------------------------------------------------
    def _lif(self, name: str, a_in: torch.Tensor) -> torch.Tensor:
        """``PyLifModelBitAcc.run_spk`` (lava/proc/lif/models.py:138-216) on ``(R, N)`` int64 tensors."""
        p, st = self._params[name], self.state[name]
        u = _decay(st["u"], p["keep_u"])
        u = _wrap32(u + _wrap32(a_in << ACT_SHIFT))
        wrapped = torch.where(u > MAX_UV, u - 2 * MAX_UV, u)
        u = torch.where(wrapped <= -MAX_UV, u + 2 * MAX_UV, wrapped)
        v = _wrap32(_decay(st["v"], p["keep_v"]) + u + p["bias"])
        v = v.clamp(-MAX_UV + 1, MAX_UV - 1)
        s = v > p["vth"]
        st["u"], st["v"] = u, torch.where(s, torch.zeros_like(v), v)
        return s.to(torch.int64)

    def step(self, inputs: Optional[Mapping[str, TensorLike]] = None, step_in_presentation: int = 0) -> Dict[str, torch.Tensor]:
        """Advance one step; ``inputs`` as in :meth:`neuro.Simulator.step`. Returns int64 spikes by population."""
        inputs = dict(inputs or {})
        unknown = set(inputs) - set(self.fixed.inputs)
        if unknown:
            raise KeyError(f"not input population(s): {sorted(unknown)}; inputs are {self.fixed.inputs}")
        self.time_step += 1
        with torch.no_grad():
            enc = self._encoder.step(inputs, step_in_presentation=step_in_presentation)
            currents: Dict[str, torch.Tensor] = {}
            for name, proj in self.fixed.projections.items():
                # PyInPortVectorDense.recv sums the int32 messages of all incoming ports.
                b = self.buffers[name]
                currents[proj.post] = b if proj.post not in currents else _wrap32(currents[proj.post] + b)
            for name, pop in self.network.populations.items():
                if name in self.fixed.populations:
                    a = currents.get(name)
                    a = torch.zeros_like(self.state[name]["u"]) if a is None else a
                    self.spikes[name] = self._lif(name, a)
                else:
                    self.spikes[name] = (enc[name] > 0).to(torch.int64)
            for name, proj in self.fixed.projections.items():
                # PyDenseModelBitAcc.run_spk (lava/proc/dense/models.py:97-107): sum the weights of the
                # spiking inputs, shift by weight_exp (arithmetic right shift when negative); the
                # message travels as int32.
                acc = (self.spikes[proj.pre].to(torch.float64) @ self._w[name].T).to(torch.int64)
                acc = acc << proj.weight_exp if proj.weight_exp > 0 else acc >> -proj.weight_exp
                self.buffers[name] = _wrap32(acc)
        return self.spikes

    def run(
        self,
        steps: int,
        inputs: Optional[Mapping[str, TensorLike]] = None,
        monitors: Iterable[str] = (),
        every: int = 1,
    ) -> Recording:
        """Run ``steps`` steps; ``inputs`` and ``every`` as in :meth:`neuro.Simulator.run`.

        Monitors: ``"pop.spikes"`` (0/1), ``"pop.u"`` and ``"pop.v"`` (Lava's integer
        units), recorded as int64 tensors ``(K, R, N)``.
        """
        if int(steps) != steps or steps < 0:
            raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
        monitors = list(monitors)
        for m in monitors:
            self._read(m)
        per_step, held = {}, {}
        for name, x in (inputs or {}).items():
            if name not in self.fixed.inputs:
                raise KeyError(f"{name!r} is not an input population; inputs are {self.fixed.inputs}")
            if self.network.populations[name].encoder is None:
                v = torch.as_tensor(x, dtype=torch.float64, device=self.device)
                if v.dim() not in (2, 3) or v.shape[0] != steps:
                    raise ValueError(f"input {name!r}: spikes must have shape (steps={steps}, N) or (steps, R, N)")
                per_step[name] = v
            else:
                held[name] = x
        rec: Dict[str, List[torch.Tensor]] = {m: [] for m in monitors}
        rec_steps: Dict[str, List[int]] = {m: [] for m in monitors}
        for k in range(steps):
            step_inputs = dict(held)
            for name, v in per_step.items():
                step_inputs[name] = v[k]
            self.step(step_inputs, step_in_presentation=k)
            if monitors and (k + 1) % every == 0:
                for m in monitors:
                    rec[m].append(self._read(m).clone())
                    rec_steps[m].append(self.time_step)
        out = Recording()
        for m in monitors:
            out.data[m] = torch.stack(rec[m]) if rec[m] else torch.empty(0, dtype=torch.int64)
            out.steps[m] = rec_steps[m]
        return out

    def _read(self, monitor: str) -> torch.Tensor:
        target, _, var = monitor.partition(".")
        if target in self.network.populations and var == "spikes":
            return self.spikes[target]
        if target in self.state and var in ("u", "v"):
            return self.state[target][var]
        raise KeyError(f"cannot monitor {monitor!r}: use 'population.spikes', 'population.u' or 'population.v'")

    def v_float(self, population: str) -> torch.Tensor:
        """The membrane potential of ``population`` in our float units (``v * v_to_float``)."""
        return self.state[population]["v"].to(torch.float64) * self.fixed.populations[population].v_to_float


__all__ = [
    "FixedPointError",
    "FixedPointNetwork",
    "FixedPointPopulation",
    "FixedPointProjection",
    "FixedPointSimulator",
    "to_fixed_point",
]

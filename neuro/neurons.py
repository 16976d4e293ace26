"""Neuron models: parameters in seconds, dynamics from Norse.

The models are dataclasses (like Norse's parameter tuples); the engine turns
them into Norse parameters for a step of ``dt`` seconds.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Dict, List, Optional, Tuple, Union

import torch
from norse.torch.functional.iaf import IAFFeedForwardState, IAFParameters, iaf_feed_forward_step
from norse.torch.functional.lif import LIFFeedForwardState, LIFParameters, lif_feed_forward_step


def _check_positive(name: str, value: float, allow_inf: bool = False) -> None:
    if not (value > 0) or (not allow_inf and math.isinf(value)):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


def _check_finite(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def check_time_step(model: "NeuronModel", dt: float, where: str) -> None:
    """Refuse time constants shorter than the step ``dt`` (seconds): the Euler step would overshoot
    (``dt / tau > 1``) and the membrane or current oscillate with growing amplitude."""
    for name in ("tau_mem", "tau_syn"):
        tau = getattr(model, name, None)
        if tau is not None and tau < dt:
            raise ValueError(f"{where}: {name} ({tau:g} s) is shorter than the time step dt ({dt:g} s); "
                             f"the Euler step would overshoot (dt / {name} > 1)")


SYN_LEAKS = ("both", "positive", "negative", "none")


@dataclass(frozen=True)
class LIF:
    """Current-based leaky integrate-and-fire neuron (Norse's ``lif_feed_forward_step``).

    Per step of ``dt`` seconds: ``i += input``; ``v += dt/tau_mem * (v_leak - v + i)``;
    ``i *= 1 - dt/tau_syn``; spike where ``v > v_th + theta``; then ``v = v_reset``.
    With ``theta_plus > 0`` the threshold adapts (homeostasis, Diehl & Cook 2015):
    ``theta`` jumps by ``theta_plus`` on each spike and decays with ``tau_theta``.
    With finite ``i_min`` / ``i_max`` the current saturates there once the input is
    added, before ``v`` integrates it (a bounded integrator, e.g. a predictive-coding value unit whose value lives in
    ``[-1, 1]``; Loihi's fixed-point current saturates too, at its 24-bit range).
    With finite ``gate_min`` / ``gate_max``, input through *gated* projections
    (``Network.connect(..., gated=True)``) is added only where the current (before this step's
    input) lies strictly inside ``(gate_min, gate_max)``: the derivative of a clipped activation,
    e.g. the ``f'(x)`` that gates a predictive-coding value unit's feedback from the layer above.
    With ``subtract_reset`` a spike lowers ``v`` by ``v_th + theta - v_reset`` instead of setting it
    to ``v_reset``: the excess above threshold is kept, so a constant current ``i`` fires at the
    exact average rate (an integrator with reset to ``v_reset`` fires once every ``ceil`` of it: a
    staircase).

    Parameters:
        tau_mem: membrane time constant (s).
        tau_syn: synaptic current time constant (s).
        v_th, v_reset, v_leak: threshold, reset and rest potential (dimensionless).
        theta_plus: threshold increment per spike (dimensionless).
        tau_theta: decay time constant of the threshold adaptation (s; inf: none).
        i_min, i_max: bounds of the synaptic current (dimensionless; -inf / inf: none).
        subtract_reset: reset by subtraction (see above) rather than to ``v_reset``.
        v_min: floor of the membrane (dimensionless, at most ``v_reset``; -inf: none). A membrane that a
            negative current drives down stops there, so the neuron answers as soon as the current turns
            positive instead of first making up what it integrated below.
        syn_leak: on which side of 0 the current decays: ``"both"`` (Norse's LIF); ``"positive"``, only
            while positive (a negative current is held, a perfect integrator there); ``"negative"``, only
            while negative; ``"none"``, never (a perfect integrator; e.g. swapped in for part of a
            presentation with :meth:`Simulator.set_model`). The side is that of the current once this
            step's input is added.
        gate_min, gate_max: the open interval of the current in which gated input passes
            (dimensionless; -inf / inf: no gate, and no gated projection may target the neuron).
    """

    tau_mem: float = 10e-3
    tau_syn: float = 5e-3
    v_th: float = 1.0
    v_reset: float = 0.0
    v_leak: float = 0.0
    theta_plus: float = 0.0
    tau_theta: float = math.inf
    i_min: float = -math.inf
    i_max: float = math.inf
    gate_min: float = -math.inf
    gate_max: float = math.inf
    subtract_reset: bool = False
    v_min: float = -math.inf
    syn_leak: str = "both"

    def __post_init__(self) -> None:
        _check_positive("tau_mem", self.tau_mem)
        for name in ("v_th", "v_reset", "v_leak", "theta_plus"):
            _check_finite(name, getattr(self, name))
        if not self.i_min < self.i_max:
            raise ValueError(f"i_min must be below i_max, got [{self.i_min}, {self.i_max}]")
        if not self.gate_min < self.gate_max:
            raise ValueError(f"gate_min must be below gate_max, got ({self.gate_min}, {self.gate_max})")
        if not isinstance(self.subtract_reset, bool):
            raise ValueError(f"subtract_reset must be True or False, got {self.subtract_reset!r}")
        if not self.v_min <= self.v_reset:
            raise ValueError(f"v_min must be at most v_reset ({self.v_reset}), got {self.v_min!r}")
        if self.syn_leak not in SYN_LEAKS:
            raise ValueError(f"syn_leak must be one of {', '.join(map(repr, SYN_LEAKS))}, got {self.syn_leak!r}")
        _check_positive("tau_syn", self.tau_syn)
        _check_positive("tau_theta", self.tau_theta, allow_inf=True)
        if self.theta_plus < 0:
            raise ValueError(f"theta_plus must be >= 0, got {self.theta_plus}")

    state_names: ClassVar[Tuple[str, ...]] = ("v", "i", "theta")

    @property
    def bounded(self) -> bool:
        """Whether the current saturates (``i_min`` or ``i_max`` finite)."""
        return not (math.isinf(self.i_min) and math.isinf(self.i_max))

    @property
    def gated(self) -> bool:
        """Whether the neuron has a gate (``gate_min`` or ``gate_max`` finite), so gated projections may target it."""
        return not (math.isinf(self.gate_min) and math.isinf(self.gate_max))

    def beyond_lava(self) -> List[str]:
        """What this neuron does that a standard LIF (Lava's, Loihi 2's default neuron program, NIR's
        CubaLIF) does not, each with why: a saturating current, a gated input, a subtractive reset.
        Back-ends that run only the standard LIF refuse the neuron naming these."""
        out = []
        if self.bounded:
            out.append(f"its current saturates at [{self.i_min:g}, {self.i_max:g}] (i_min/i_max), where a standard "
                       "LIF's is bounded only by its number range")
        if self.gated:
            out.append(f"its gated input passes only while its current lies in ({self.gate_min:g}, {self.gate_max:g}) "
                       "(gate_min/gate_max), where a standard LIF has one input")
        if self.subtract_reset:
            out.append("it resets by subtracting its threshold (subtract_reset), where a standard LIF sets v to v_reset")
        if not math.isinf(self.v_min):
            out.append(f"its membrane has a floor at {self.v_min:g} (v_min), where a standard LIF's falls without bound")
        if self.syn_leak == "none":
            out.append("its current never decays (syn_leak='none'), where a standard LIF's decays with tau_syn")
        elif self.syn_leak != "both":
            out.append(f"its current decays only while {self.syn_leak} (syn_leak), where a standard LIF's decays "
                       "on both sides of 0")
        return out

    def initial_state(self, shape: Tuple[int, ...], like: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {
            "v": torch.full(shape, self.v_leak, dtype=like.dtype, device=like.device),
            "i": torch.zeros(shape, dtype=like.dtype, device=like.device),
            "theta": torch.zeros(shape, dtype=like.dtype, device=like.device),
        }

    def step(self, current: torch.Tensor, state: Dict[str, torch.Tensor], dt: float,
             gated: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Advance ``state`` in place by one step; return the spikes (0/1, same dtype).

        ``current``: this step's input ``(R, n)``; ``gated``: input through gated projections, added
        where the current lies inside ``(gate_min, gate_max)``."""
        if gated is not None:
            open_ = (state["i"] > self.gate_min) & (state["i"] < self.gate_max)
            current = current + torch.where(open_, gated, torch.zeros_like(gated))
        tau_syn_inv, tau_mem_inv, v_leak, v_reset = _constants(self, current.dtype, current.device)
        p = LIFParameters(tau_syn_inv=tau_syn_inv, tau_mem_inv=tau_mem_inv, v_leak=v_leak,
                          v_th=self.v_th + state["theta"], v_reset=v_reset)
        if self.bounded:
            # Norse adds the input to the current, integrates v with the sum, then decays it; the
            # bound applies to the sum, so the input is cut to what keeps the sum inside.
            lo = None if math.isinf(self.i_min) else self.i_min
            hi = None if math.isinf(self.i_max) else self.i_max
            current = (state["i"] + current).clamp(lo, hi) - state["i"]
        z, new = lif_feed_forward_step(current, LIFFeedForwardState(state["v"], state["i"]), p, dt)
        if self.subtract_reset:
            # Norse resets to v_reset only; the membrane it compared with the threshold is its
            # v + dt/tau_mem * (v_leak - v + i + input), recomputed here to keep the excess.
            v_decayed = state["v"] + dt * p.tau_mem_inv * ((p.v_leak - state["v"]) + (state["i"] + current))
            new = LIFFeedForwardState(torch.where(z > 0, v_decayed - (p.v_th - self.v_reset), new.v), new.i)
        # v_min <= v_reset: a floor after the reset is the floor before the threshold test.
        state["v"] = new.v if math.isinf(self.v_min) else new.v.clamp(min=self.v_min)
        if self.syn_leak == "both":
            state["i"] = new.i
        else:
            # Norse decays the current plus this step's input; on the held side that sum is kept as is.
            i_new = state["i"] + current
            if self.syn_leak == "none":
                state["i"] = i_new
            else:
                held = i_new <= 0 if self.syn_leak == "positive" else i_new >= 0
                state["i"] = torch.where(held, i_new, new.i)
        if self.theta_plus > 0:
            decay = 1.0 if math.isinf(self.tau_theta) else math.exp(-dt / self.tau_theta)
            state["theta"] = state["theta"] * decay + self.theta_plus * z
        return z


_CONSTANTS: Dict[Tuple[Any, ...], Tuple[torch.Tensor, ...]] = {}


def _constants(model: "NeuronModel", dtype: torch.dtype, device: torch.device) -> Tuple[torch.Tensor, ...]:
    """Norse's parameters in the state's dtype (float32 constants would round a float64 run), made once
    per model, dtype and device rather than every step (a plain dict: torch.compile traces it; no copy
    from the host inside a CUDA graph capture). LIF: ``1/tau_syn, 1/tau_mem, v_leak, v_reset``;
    IAF: ``v_th, v_reset``."""
    key = (model, dtype, device)
    if key not in _CONSTANTS:
        c = lambda x: torch.as_tensor(x, dtype=dtype, device=device)  # noqa: E731
        if isinstance(model, IAF):
            _CONSTANTS[key] = (c(model.v_th), c(model.v_reset))
        else:
            _CONSTANTS[key] = (c(1.0 / model.tau_syn), c(1.0 / model.tau_mem), c(model.v_leak), c(model.v_reset))
    return _CONSTANTS[key]


@dataclass(frozen=True)
class IAF:
    """Non-leaky integrate-and-fire neuron (Norse's ``iaf_feed_forward_step``).

    Per step: ``v += input``; spike where ``v > v_th``; then ``v = v_reset``.
    """

    v_th: float = 1.0
    v_reset: float = 0.0

    def __post_init__(self) -> None:
        _check_finite("v_th", self.v_th)
        _check_finite("v_reset", self.v_reset)

    state_names: ClassVar[Tuple[str, ...]] = ("v",)

    def initial_state(self, shape: Tuple[int, ...], like: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {"v": torch.full(shape, self.v_reset, dtype=like.dtype, device=like.device)}

    def step(self, current: torch.Tensor, state: Dict[str, torch.Tensor], dt: float,
             gated: Optional[torch.Tensor] = None) -> torch.Tensor:
        if gated is not None:
            raise ValueError("an IAF neuron has no gated input")
        v_th, v_reset = _constants(self, current.dtype, current.device)
        p = IAFParameters(v_th=v_th, v_reset=v_reset)
        z, new = iaf_feed_forward_step(current, IAFFeedForwardState(state["v"]), p, dt)
        state["v"] = new.v
        return z


NeuronModel = Union[LIF, IAF]
MODELS = {"LIF": LIF, "IAF": IAF}


def model_to_data(model: NeuronModel) -> Dict[str, Any]:
    data = asdict(model)
    return {"type": type(model).__name__,
            **{k: (None if not isinstance(v, str) and math.isinf(v) else v) for k, v in data.items()}}


def _field_from_data(cls, name: str, value: Any) -> Any:
    """One stored parameter back as the model's type: flags and choices stay as stored (the model checks
    them); ``None`` is an infinity (JSON has none) with the sign of the field's default (-inf for lower bounds)."""
    default = getattr(cls.__dataclass_fields__.get(name), "default", math.inf)
    if isinstance(default, (bool, str)):
        return value
    if value is None:
        return -math.inf if default == -math.inf else math.inf
    return float(value)


def model_from_data(data: Dict[str, Any]) -> NeuronModel:
    kind = data.get("type")
    if kind not in MODELS:
        raise ValueError(f"unknown neuron model {kind!r}; known: {', '.join(MODELS)}")
    cls = MODELS[kind]
    fields = {k: _field_from_data(cls, k, v) for k, v in data.items() if k != "type"}
    allowed = set(cls.__dataclass_fields__)
    extra = set(fields) - allowed
    if extra:
        raise ValueError(f"{kind} has no parameter(s) {sorted(extra)}")
    return cls(**fields)

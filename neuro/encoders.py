"""Encoders: turn values in [0, 1] (image pixels, rates) into spikes, one step at a time.

An input population with an encoder receives values of shape ``(R, N)`` or
``(N,)`` for a presentation and emits spikes every step; randomness comes from
the simulator's seeded generator so runs are reproducible and resumable.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Union

import torch
from norse.torch.functional.encode import poisson_encode_step


@dataclass(frozen=True)
class _RateCode:
    """A value in [0, 1] fires at ``value * max_rate`` Hz (``max_rate``: of an input with value 1)."""

    max_rate: float = 100.0

    def __post_init__(self) -> None:
        if not self.max_rate > 0:
            raise ValueError(f"max_rate must be positive (Hz), got {self.max_rate!r}")

    def per_step(self, dt: float) -> float:
        """Spikes per step of an input with value 1 (at most one)."""
        if self.max_rate * dt > 1:
            raise ValueError(f"max_rate {self.max_rate} Hz exceeds one spike per step of {dt} s")
        return self.max_rate * dt


@dataclass(frozen=True)
class PoissonEncoder(_RateCode):
    """Independent Bernoulli spikes per step with probability ``value * max_rate * dt``.

    Parameters:
        max_rate: firing rate in Hz of an input with value 1.
    """

    def step(
        self, values: torch.Tensor, step_in_presentation: int, dt: float, generator: torch.Generator
    ) -> torch.Tensor:
        self.per_step(dt)
        # clamped as the other rate codes: a value of 5 must not fire at 5 * max_rate
        return poisson_encode_step(values.clamp(0, 1), f_max=self.max_rate, dt=dt, generator=generator).to(values.dtype)


@dataclass(frozen=True)
class LatencyEncoder:
    """One spike per presentation, earlier for larger values (time-to-first-spike).

    A value ``x > threshold`` fires at step ``round((1 - x) * (window - 1))`` of
    each presentation window of ``window`` steps; smaller values stay silent.
    Presentations longer than the window repeat it.
    """

    window: int = 20
    threshold: float = 0.0

    def __post_init__(self) -> None:
        if int(self.window) != self.window or self.window < 1:
            raise ValueError(f"window must be a positive number of steps, got {self.window!r}")

    def step(
        self, values: torch.Tensor, step_in_presentation: int, dt: float, generator: torch.Generator
    ) -> torch.Tensor:
        fire_at = torch.round((1.0 - values.clamp(0, 1)) * (self.window - 1))
        k = step_in_presentation % self.window
        return ((fire_at == k) & (values > self.threshold)).to(values.dtype)


@dataclass(frozen=True)
class RegularEncoder(_RateCode):
    """Evenly spaced spikes at ``value * max_rate`` Hz, without randomness: rate coding with
    far less noise than Poisson spikes (only the rounding of a rate to whole spikes).

    Input ``j`` fires at step ``k`` of a presentation where
    ``floor((k + 1) p + phi_j) > floor(k p + phi_j)``, ``p = value * max_rate * dt``: ``n p``
    spikes in ``n`` steps, rounded. The phases ``phi_j = frac(j * 0.618...)`` (golden ratio) spread
    the inputs' spikes over time so that inputs of equal value do not fire in lock-step.

    Parameters:
        max_rate: firing rate in Hz of an input with value 1 (at most one spike per step).
    """

    def step(
        self, values: torch.Tensor, step_in_presentation: int, dt: float, generator: torch.Generator
    ) -> torch.Tensor:
        p = values.clamp(0, 1) * self.per_step(dt)
        index = torch.arange(values.shape[-1], device=values.device, dtype=torch.float64)
        phase = torch.frac(index * 0.6180339887498949).to(values.dtype)
        k = step_in_presentation
        return (torch.floor(_times(p, k + 1) + phase) > torch.floor(_times(p, k) + phase)).to(values.dtype)


def _times(p: torch.Tensor, k: Union[int, torch.Tensor]) -> torch.Tensor:
    """``k * p`` for a step number ``k``, a Python int or (in a CUDA graph) a 0-d tensor, with the same
    rounding either way: torch multiplies a tensor by a Python number in its op precision (float32 for
    half types) but casts a 0-d integer tensor to ``p``'s dtype first, which would round ``k`` in half types."""
    if not isinstance(k, torch.Tensor):
        return k * p
    op = torch.float32 if p.dtype in (torch.float16, torch.bfloat16) else p.dtype
    return (p.to(op) * k.to(op)).to(p.dtype)


Encoder = Union[PoissonEncoder, LatencyEncoder, RegularEncoder]
ENCODERS = {"PoissonEncoder": PoissonEncoder, "LatencyEncoder": LatencyEncoder, "RegularEncoder": RegularEncoder}


def encoder_to_data(encoder: Optional[Encoder]) -> Optional[Dict[str, Any]]:
    return None if encoder is None else {"type": type(encoder).__name__, **asdict(encoder)}


def encoder_from_data(data: Optional[Dict[str, Any]]) -> Optional[Encoder]:
    if data is None:
        return None
    kind = data.get("type")
    if kind not in ENCODERS:
        raise ValueError(f"unknown encoder {kind!r}; known: {', '.join(ENCODERS)}")
    fields = {k: v for k, v in data.items() if k != "type"}
    if "window" in fields:
        fields["window"] = int(fields["window"])
    return ENCODERS[kind](**fields)

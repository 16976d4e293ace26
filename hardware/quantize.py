"""Fixed-point formats of a target: weights and LIF parameters, following Lava's conventions.

How the numbers fit together (Lava 0.10, ``fixed_pt`` models):

* ``Dense`` sums the integer weights of the spiking inputs and shifts the sum
  by ``weight_exp``; the integer weights are what ``clip_weights`` (8 bits +
  sign, by :class:`SignMode`) and ``truncate_weights`` (to ``num_weight_bits``)
  leave. Lava documents the value of a stored mantissa as
  ``mantissa * 2**(8 - num_weight_bits + weight_exp + is_mixed)``.
* ``LIF`` (``PyLifModelBitAcc``) adds that input (shifted left by 6) to its
  current ``u``, decays ``u`` and ``v`` by 12-bit ``du``/``dv`` and spikes when
  ``v > vth << 6``: input and threshold get the same shift, so they share one
  integer unit.
* The Lava exporter (``export/lava.py``) maps our LIF onto Lava's with
  ``du = dt/tau_syn``, ``dv = dt/tau_mem``, threshold ``v_th / dv``, bias
  ``v_leak`` and the weights unchanged.

So a population's weights, threshold and bias can be multiplied by one common
``scale`` (integer units per float unit) without changing the dynamics: that
is the ``scale`` :func:`quantize_weights` returns, and :func:`lif_fixed_point`
takes it to give ``vth = round(v_th / dv * scale)`` and the bias.
:func:`population_scale` chooses the largest scale at which the threshold and
every incoming weight matrix are representable.

We reuse Lava's own helpers (``determine_sign_mode``, ``optimize_weight_bits``,
``clip_weights``, ``truncate_weights``) rather than re-deriving the format, and
check that Lava's preprocessing leaves our integers unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Tuple

import numpy as np
from lava.utils.weightutils import (
    SignMode,
    clip_weights,
    determine_sign_mode,
    optimize_weight_bits,
    truncate_weights,
)

from hardware.targets import Target

# Range of the integer weights Lava's Dense accepts (after clip_weights(num_bits=8)), by sign mode.
_DENSE_RANGE = {
    SignMode.EXCITATORY: (0, 255),
    SignMode.INHIBITORY: (-255, 0),
    SignMode.MIXED: (-256, 254),  # truncate_weights drops the LSB of mixed weights: even values only
}


class QuantizationError(ValueError):
    """Weights or parameters cannot be represented; the message says why."""


@dataclass
class QuantizedWeights:
    """A weight matrix in a target's fixed-point format.

    ``w ~= mantissa * 2**(8 - num_weight_bits + exponent + is_mixed) / scale``
    (Lava's formula); :attr:`lava_weights` with ``weight_exp=exponent``,
    ``num_weight_bits`` and ``sign_mode`` is what to give Lava's ``Dense``.

    Attributes:
        mantissa: integer mantissas, ``num_weight_bits`` bits (signed if mixed).
        exponent: the shared power-of-two exponent (Lava's ``weight_exp``).
        scale: integer units per float unit; multiply the post neurons'
            threshold and bias by the same factor.
        max_error: ``max |dequantized - w|`` in float units.
        lsb: the rounding step in float units (``max_error <= lsb / 2`` unless saturated).
        sign_mode: Lava's :class:`SignMode` of the matrix.
        num_weight_bits: mantissa width (Lava's ``num_weight_bits``).
        saturated: some weights were out of range even at the largest exponent.

    Unpacks as ``mantissa, exponent, scale, max_error = quantize_weights(...)``.
    """

    mantissa: np.ndarray
    exponent: int
    scale: float
    max_error: float
    lsb: float
    sign_mode: SignMode
    num_weight_bits: int
    saturated: bool = False
    notes: List[str] = field(default_factory=list)

    def __iter__(self) -> Iterator:
        return iter((self.mantissa, self.exponent, self.scale, self.max_error))

    @property
    def mixed(self) -> int:
        return int(self.sign_mode == SignMode.MIXED)

    @property
    def lava_weights(self) -> np.ndarray:
        """The integers for Lava's ``Dense(weights=..., weight_exp=exponent, num_weight_bits=..., sign_mode=...)``."""
        shift = 8 - self.num_weight_bits + self.mixed
        return (self.mantissa.astype(np.int64) << shift).astype(np.int32)

    def values(self) -> np.ndarray:
        """The weights the chip uses, in float units."""
        shift = 8 - self.num_weight_bits + self.mixed + self.exponent
        return self.mantissa.astype(np.float64) * 2.0**shift / self.scale


def _exponent_range(target: Target) -> Tuple[int, int]:
    r = target.weight_exponent_range.value
    return (-(2**31), 2**31 - 1) if r is None else (int(r[0]), int(r[1]))


def sign_mode_for(w: np.ndarray, w_min: float = -math.inf, w_max: float = math.inf) -> SignMode:
    """The sign mode of a matrix: from a plastic rule's bounds if they fix a sign, else from the values."""
    if w_min == 0.0 and w_max > 0:
        return SignMode.EXCITATORY
    if w_max == 0.0 and w_min < 0:
        return SignMode.INHIBITORY
    if w_min < 0 < w_max and (math.isinf(w_min) or math.isinf(w_max)):
        return SignMode.MIXED
    return determine_sign_mode(np.asarray(w))


def full_range_scale(w: np.ndarray, sign_mode: Optional[SignMode] = None) -> float:
    """The scale at which ``w`` fills Lava's integer weight range with exponent 0."""
    w = np.asarray(w, dtype=np.float64)
    sign_mode = sign_mode or determine_sign_mode(w)
    lo, hi = _DENSE_RANGE[sign_mode]
    scales = []
    if w.size and w.max() > 0 and hi > 0:
        scales.append(hi / w.max())
    if w.size and w.min() < 0 and lo < 0:
        scales.append(lo / w.min())
    return min(scales) if scales else 1.0


def quantize_weights(
    w: np.ndarray,
    target: Target,
    scale: Optional[float] = None,
    sign_mode: Optional[SignMode] = None,
) -> QuantizedWeights:
    """Quantize float weights ``w`` to ``target``'s weight format.

    Parameters:
        w: float weights (any shape).
        target: a fixed-point target (its ``weight_exponent_range`` is used).
        scale: integer units per float unit, shared with the post population's
            threshold (see :func:`population_scale`); ``None``: the scale at which
            ``w`` fills the 8-bit range with exponent 0 (finest possible rounding).
        sign_mode: Lava's sign mode; ``None``: from the values
            (``determine_sign_mode``). A plastic projection should pass the mode its
            rule's bounds imply (:func:`sign_mode_for`).

    The exponent is the smallest in the target's range at which ``w * scale``
    fits the integer range; weights are rounded to the nearest step, so the error
    is at most half a step (``lsb / 2``) unless even the largest exponent
    saturates (then ``saturated`` is set and ``max_error`` says by how much).
    """
    w = np.asarray(w, dtype=np.float64)
    if not np.all(np.isfinite(w)):
        raise QuantizationError("weights contain NaN or infinite values")
    sign_mode = sign_mode or determine_sign_mode(w)
    if sign_mode == SignMode.NULL:
        raise QuantizationError("SignMode.NULL weights cannot be quantized")
    if sign_mode == SignMode.EXCITATORY and w.size and w.min() < 0:
        raise QuantizationError(f"excitatory weights must be >= 0, got min {w.min():g}")
    if sign_mode == SignMode.INHIBITORY and w.size and w.max() > 0:
        raise QuantizationError(f"inhibitory weights must be <= 0, got max {w.max():g}")
    if scale is None:
        scale = full_range_scale(w, sign_mode)
    if not (scale > 0 and math.isfinite(scale)):
        raise QuantizationError(f"scale must be positive and finite, got {scale!r}")
    mixed = int(sign_mode == SignMode.MIXED)
    lo, hi = _DENSE_RANGE[sign_mode]
    e_min, e_max = _exponent_range(target)

    # Smallest exponent at which every scaled weight fits [lo, hi] (in Lava's Dense integer units).
    scaled = w * scale
    need = []
    if w.size and scaled.max() > 0:
        need.append(math.log2(scaled.max() / hi))
    if w.size and scaled.min() < 0:
        need.append(math.log2(scaled.min() / lo))
    e = math.ceil(max(need) - 1e-12) if need else 0
    e = min(max(e, e_min), e_max)
    step = 2 ** mixed  # mixed weights keep even Dense integers (one bit holds the sign)
    dense = np.rint(scaled / 2.0**e / step) * step
    saturated = bool(dense.size and (dense.max() > hi or dense.min() < lo))
    dense = np.clip(dense, lo, hi).astype(np.int32)

    # Lava's own preprocessing must leave these integers unchanged.
    lava_dense = truncate_weights(clip_weights(dense, sign_mode, num_bits=8), sign_mode, 8)
    assert np.array_equal(lava_dense, dense), "quantized weights are not on Lava's 8-bit grid"

    # Lava's Loihi 2 packing: fewest mantissa bits, exponent adjusted (lossless).
    opt = optimize_weight_bits(dense.copy(), sign_mode, loihi2=True)
    exponent = e + int(opt.weight_exp)
    if exponent < e_min or opt.num_weight_bits < 1:
        # Keep the plain 8-bit representation rather than leave the exponent range.
        mantissa, nb, exponent = (dense >> mixed).astype(np.int32), 8, e
    else:
        mantissa, nb = np.asarray(opt.weights, dtype=np.int32), int(opt.num_weight_bits)
    q = QuantizedWeights(
        mantissa=mantissa,
        exponent=exponent,
        scale=float(scale),
        max_error=0.0,
        lsb=step * 2.0**e / scale,
        sign_mode=sign_mode,
        num_weight_bits=nb,
        saturated=saturated,
    )
    exact = q.mantissa.astype(np.float64) * 2.0 ** (8 - nb + mixed + q.exponent)
    if not np.array_equal(exact, dense * 2.0**e):
        raise AssertionError("internal error: Lava's packing changed the quantized weights")
    q.max_error = float(np.max(np.abs(q.values() - w))) if w.size else 0.0
    if saturated:
        q.notes.append(
            f"weights saturate: they need an exponent above {e_max}; max error {q.max_error:.3g} "
            f"(> half step {q.lsb / 2:.3g})"
        )
    return q


@dataclass
class LifFixedPoint:
    """Lava ``LIF`` fixed-point parameters for one of our neuron models at a given scale."""

    du: int
    dv: int
    vth: int
    bias_mant: int
    bias_exp: int
    scale: float
    problems: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


def _decay_int(rate: float, offset: int) -> Tuple[int, float]:
    # Lava: effective decay = (4096 - (d + offset)) / 4096, so d = round(rate * 4096) - offset.
    d = int(round(rate * 4096)) - offset
    return d, (d + offset) / 4096


def lif_fixed_point(model, dt: float, scale: float, target: Target) -> LifFixedPoint:
    """Lava ``PyLifModelBitAcc`` parameters for ``model`` (LIF or IAF) at ``scale``.

    ``problems`` lists what cannot be represented (a threshold out of 17 bits,
    a decay out of 12 bits, ...); ``notes`` what is rounded.
    """
    from neuro.neurons import IAF, LIF

    problems: List[str] = []
    notes: List[str] = []
    if isinstance(model, LIF):
        du_f, dv_f = dt / model.tau_syn, dt / model.tau_mem
        v_th, v_leak = model.v_th / dv_f, model.v_leak
    elif isinstance(model, IAF):
        du_f, dv_f, v_th, v_leak = 1.0, 0.0, model.v_th, 0.0
    else:
        raise QuantizationError(f"no Lava LIF mapping for {type(model).__name__}")
    du, du_eff = _decay_int(du_f, 1)
    dv, dv_eff = _decay_int(dv_f, 0)
    for name, d, want, eff, offset in (("du", du, du_f, du_eff, 1), ("dv", dv, dv_f, dv_eff, 0)):
        if want > 1:
            problems.append(f"{name} = dt/tau = {want:.4g} exceeds 1, beyond Lava's 12-bit decay (needs tau >= dt)")
        elif d > 4095:  # dt/tau within half a step of 1: Lava's largest 12-bit decay
            d = 4095
            notes.append(f"{name} = dt/tau = {want:.6g} becomes Lava's largest 12-bit decay, "
                         f"{(d + offset) / 4096:.6g} (4095/4096)")
        elif d < 0:
            d = 0
            notes.append(
                f"{name} = dt/tau = {want:.4g} is below Lava's smallest decay {offset}/4096 per step; "
                f"it becomes {offset / 4096:.4g}"
            )
        elif want > 0 and abs(eff - want) / want > 1e-3:
            notes.append(f"{name} = {want:.4g} rounds to {eff:.4g} with 12 bits")
    du, dv = max(du, 0), max(dv, 0)
    vth_max = 2 ** target.lif_vth_bits.value - 1 if target.lif_vth_bits.value else None
    vth = int(round(v_th * scale))
    if v_th <= 0:
        problems.append(f"threshold {v_th:g} must be positive (Lava's vth is unsigned)")
    elif vth_max is not None and vth > vth_max:
        problems.append(f"threshold {v_th:g} x scale {scale:g} = {vth} exceeds {vth_max} (17 bits)")
    elif vth == 0:
        problems.append(f"threshold {v_th:g} rounds to 0 at scale {scale:g}")
    # Lava adds the bias to v without the 6-bit shift it gives the input and the threshold.
    bias = v_leak * 2**6 * scale
    bias_exp = 0
    while abs(bias) / 2**bias_exp > 4095 and bias_exp < 7:
        bias_exp += 1
    bias_mant = int(round(bias / 2**bias_exp))
    if abs(bias_mant) > 4095:
        problems.append(f"bias v_leak x scale = {bias:g} exceeds Lava's 13-bit mantissa x 2**7")
    return LifFixedPoint(du, dv, vth, bias_mant, bias_exp, scale, problems, notes)


def population_scale(
    model, dt: float, incoming: List[Tuple[np.ndarray, Optional[SignMode]]], target: Target
) -> float:
    """The largest common scale for a population's threshold and incoming weights.

    Bounded by the 17-bit threshold (``v_th / dv * scale <= 2**17 - 1``) and by
    every incoming matrix fitting the 8-bit range at the target's largest
    weight exponent. ``incoming`` holds ``(weights, sign_mode or None)`` pairs.
    """
    from neuro.neurons import IAF, LIF

    bounds = []
    vth_bits = target.lif_vth_bits.value
    if vth_bits is not None:
        if isinstance(model, LIF):
            v_th = model.v_th / (dt / model.tau_mem)
        elif isinstance(model, IAF):
            v_th = model.v_th
        else:
            v_th = 0.0
        if v_th > 0:
            bounds.append((2**vth_bits - 1) / v_th)
    _, e_max = _exponent_range(target)
    for w, mode in incoming:
        if not np.any(w):
            continue
        s = full_range_scale(w, mode or determine_sign_mode(np.asarray(w)))
        bounds.append(s * 2.0**e_max)
    return float(min(bounds)) if bounds else 1.0


__all__ = [
    "SignMode",
    "QuantizedWeights",
    "QuantizationError",
    "LifFixedPoint",
    "quantize_weights",
    "full_range_scale",
    "sign_mode_for",
    "lif_fixed_point",
    "population_scale",
]

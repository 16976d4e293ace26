"""Argument checks shared by the networks: configuration fields, images and labels.

Each check names the argument, what it must be and what it got, so that a bad call fails at its
entry point instead of deep inside torch (``mat1 and mat2 shapes cannot be multiplied``), or, worse,
returns a wrong number: numpy broadcasts predictions ``(n,)`` against labels ``(n, 1)`` into an
``(n, n)`` grid, and a NaN pixel turns every weight it reaches into NaN.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence]


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer proper (a Python or numpy int): not a bool, and not a float that
    happens to be whole (``8.0`` passes ``int(v) == v`` but breaks ``range``, ``bit_length`` and tensor
    shapes later)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """Refuse anything but an integer of at least ``minimum`` (1: a positive count such as epochs or a batch).

    Returns it as a Python ``int`` (a frozen config stores that, so that ``int`` methods work on it)."""
    if not is_int(value) or value < minimum:
        kind = {1: "a positive integer", 0: "a non-negative integer"}.get(minimum, f"an integer >= {minimum}")
        raise ValueError(f"{name} must be {kind}, got {value!r} ({type(value).__name__})")
    return int(value)


def check_number(name: str, value: Any, allow_zero: bool = False) -> None:
    """Refuse anything but a finite real number above 0 (``allow_zero``: at least 0), such as a learning
    rate. NaN fails every comparison, so a check written as ``if value <= 0`` would let it through."""
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
          and (value >= 0 if allow_zero else value > 0))
    if not ok:
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a finite {kind} number, got {value!r}")


def check_widths(name: str, value: Any) -> Tuple[int, ...]:
    """Hidden layer widths: a tuple (or list) of positive ints, e.g. ``(256,)``; ``()`` is no hidden layer.

    Returns them as a tuple of Python ints."""
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"{name} must be a tuple of layer widths, e.g. ({value!r},) for one layer, "
                        f"got {value!r} ({type(value).__name__})")
    return tuple(check_int(f"{name}[{k}]", width) for k, width in enumerate(value))


def check_images(where: str, x: ArrayLike, n_inputs: Optional[int] = None) -> None:
    """Images (or any inputs) ``x`` ``(n, n_inputs)``, ``n >= 1``, finite numbers; ``n_inputs=None``: any width.

    ``where`` names the function in the message. A numpy array, a torch tensor (checked where it lies)
    or a nested sequence."""
    tensor = isinstance(x, torch.Tensor)
    a = x if tensor else np.asarray(x)
    shape = tuple(a.shape)
    numeric = not a.is_complex() if tensor else a.dtype.kind in "biuf"
    width = "n_inputs" if n_inputs is None else n_inputs
    if len(shape) != 2 or (n_inputs is not None and shape[1] != n_inputs):
        raise ValueError(f"{where}: images must have shape (n, {width}), got {shape}")
    if shape[0] == 0:
        raise ValueError(f"{where}: no images (shape {shape})")
    if not numeric:
        raise ValueError(f"{where}: images must be real numbers, got dtype {a.dtype}")
    nonfinite = int((~torch.isfinite(a)).sum()) if tensor else int((~np.isfinite(a)).sum())
    if nonfinite:
        raise ValueError(f"{where}: images contain NaN or infinite values ({nonfinite} of {shape[0] * shape[1]})")


def check_labels(where: str, labels: ArrayLike, n: int, n_classes: Optional[int]) -> np.ndarray:
    """Labels of ``n`` images: shape ``(n,)``, integers in ``[0, n_classes)`` (``n_classes=None``: any
    non-negative integer, where the caller reads the class count from the labels). Returns them as a
    numpy array.

    A column ``(n, 1)`` is refused rather than flattened: compared with predictions ``(n,)`` numpy would
    broadcast the two into an ``(n, n)`` grid and report a wrong accuracy."""
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"{where}: labels must have shape ({n},), one per image, got {y.shape}")
    if y.dtype.kind not in "iu":
        raise ValueError(f"{where}: labels must be integer class indices, got dtype {y.dtype}")
    lo, hi = (int(y.min()), int(y.max())) if len(y) else (0, 0)
    if n_classes is None and lo < 0:
        raise ValueError(f"{where}: labels must be non-negative class indices, got values from {lo} to {hi}")
    if n_classes is not None and (lo < 0 or hi >= n_classes):
        raise ValueError(f"{where}: labels must lie in [0, {n_classes}) for {n_classes} classes, "
                         f"got values from {lo} to {hi}")
    return y


def check_dataset(where: str, x: ArrayLike, labels: ArrayLike, n_inputs: Optional[int],
                  n_classes: Optional[int]) -> np.ndarray:
    """:func:`check_images` and :func:`check_labels` together; returns the labels as a numpy array."""
    check_images(where, x, n_inputs)
    return check_labels(where, labels, len(x), n_classes)

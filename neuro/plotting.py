"""Pictures people would rather see than read: receptive fields, rasters, curves.

Each function writes a PNG and returns its path; matplotlib runs headless (Agg).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np

PathLike = Union[str, Path]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def receptive_fields(
    weights: np.ndarray,
    image_shape: Tuple[int, int],
    path: PathLike,
    title: str = "",
    max_fields: int = 100,
    per_field: bool = False,
) -> Path:
    """Draw each post neuron's incoming weights ``(post, pre)`` as an image of ``image_shape``.

    One colour scale for all fields, or with ``per_field`` each field on its own
    (for weights whose scales differ between neurons).
    """
    weights = np.asarray(weights)
    if weights.ndim != 2 or weights.shape[1] != image_shape[0] * image_shape[1]:
        raise ValueError(f"weights must be (post, {image_shape[0] * image_shape[1]}), got {weights.shape}")
    n = min(len(weights), max_fields)
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    plt = _pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 0.9 + (0.4 if title else 0)))
    lo, hi = float(weights[:n].min()), float(weights[:n].max())
    for k, ax in enumerate(np.atleast_1d(axes).flat):
        ax.axis("off")
        if k < n:
            vmin, vmax = (float(weights[k].min()), float(weights[k].max())) if per_field else (lo, hi)
            ax.imshow(weights[k].reshape(image_shape), cmap="hot", vmin=vmin, vmax=vmax, interpolation="nearest")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def raster(spikes: np.ndarray, path: PathLike, dt: float = 1e-3, title: str = "", labels: Optional[Sequence[str]] = None) -> Path:
    """Spike raster of ``spikes`` ``(steps, neurons)`` (0/1); time axis in seconds."""
    spikes = np.asarray(spikes)
    if spikes.ndim != 2:
        raise ValueError(f"spikes must be (steps, neurons), got {spikes.shape}")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    steps, neurons = np.nonzero(spikes)
    ax.scatter(steps * dt, neurons, s=3, marker="|", color="black")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("neuron")
    ax.set_xlim(0, len(spikes) * dt)
    ax.set_ylim(-0.5, spikes.shape[1] - 0.5)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def curves(
    x: Sequence[float],
    ys: dict,
    path: PathLike,
    xlabel: str,
    ylabel: str,
    title: str = "",
) -> Path:
    """Line plot of several named series ``ys[name]`` against ``x`` (learning curves)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, y in ys.items():
        ax.plot(x, y, marker="o", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path

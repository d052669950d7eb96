"""The HDF5 trace file: schema, writer helpers and reader.

Format ``neuron_hybrid.traces``, version 1 (:data:`FORMAT_NAME`, :data:`FORMAT_VERSION`).

File attributes (``/``)
    ``format`` = ``"neuron_hybrid.traces"``, ``format_version`` = 1,
    ``cell_name`` (the Cell's name), ``cell_builder`` (``"registry:<name>"`` or
    ``"python:<module>:<function>"``), ``cell_params_json`` (JSON object: every parameter the cell
    was built with, i.e. ``Cell.params``), ``morphology_sha256`` (hex, ``""`` if none),
    ``morphology_file`` (file name), ``n_sections``, ``n_segments``,
    ``soma_area_um2`` (area of the soma section, um2, summed over its segments),
    ``cm_uF_per_cm2`` (soma specific capacitance, uF/cm2), ``dt_ms``, ``integrator``
    (``"fixed_step_backward_euler"``: NEURON fixed step, ``secondorder = 0``),
    ``settle_ms``, ``settle_dt_ms``, ``settle_coarse_steps``, ``settle_coarse_dt_ms`` (the
    steady-state initialisation before t = 0: coarse implicit steps, then settle_ms at
    settle_dt_ms; see :func:`neuron_hybrid.datagen.run.steady_state_initialize`), ``v_init_mV``,
    ``celsius_degC`` (``h.celsius`` during the run), ``dend_sites_json`` (JSON list of
    ``{"name", "section", "x", "distance_um"}``), ``i_ion_form`` (which form ``i_ion_soma``
    follows, see below), ``units_json`` (dataset name -> unit), ``neuron_version``,
    ``neuron_hybrid_version``, ``numpy_version``, ``h5py_version``, ``python_version``.

Traces (``/traces/<name>``), one group per protocol; ``<name>`` is
:func:`trace_group_name`: ``p<index:06d>_<first 16 hex of sha256(protocol JSON)>``, so the
protocol's position in the list and its exact content are both part of the name. Datasets
(1-D float64, all the same length n = round(tstop/dt) + 1, sample k at t = k*dt, chunked,
gzip + shuffle + fletcher32 checksums):

    ========================  =====  ==========================================================
    ``t``                     ms     time, starts at 0 (after the steady-state initialisation)
    ``v_soma``                mV     soma(0.5) potential
    ``i_stim``                nA     current injected at the soma by the protocol's IClamp
                                     (positive depolarising; zeros for purely synaptic ones)
    ``i_axial``               nA     total axial current leaving the soma into every attached
                                     section, sum_c (v_parent(c) - v_first(c)) / ri(c)
    ``i_membrane_soma``       nA     soma's total membrane current (capacitive + ionic):
                                     NEURON ``i_membrane_`` with ``cvode.use_fast_imem(1)``,
                                     summed over the soma's segments, outward positive
    ``i_ion_soma``            nA     soma's ionic current in NEURON's implicit form:
                                     ``i_membrane_soma - cm*area*(v[k]-v[k-1])/dt`` (k >= 1),
                                     the channel conductances at the step's start times the
                                     driving force at its end; sample 0 equals i_membrane_soma
    ``v_dend/<site>``         mV     optional dendritic potentials (sites in ``dend_sites_json``)
    ========================  =====  ==========================================================

Current balance: ``i_membrane_soma + i_axial = i_stim`` from sample 1 on, to round-off (sample 0
is the post-initialisation value). Equivalently ``cm*area*dV/dt + i_ion_soma + i_axial = i_stim``
with the backward difference dV/dt.

Group attributes: ``index`` (position in the protocol list), ``protocol_json`` (canonical JSON,
:func:`protocol_json`), ``protocol_sha256``, ``protocol_type``, ``seed`` (the protocol's seed,
-1 if it has none; the first one for composites), ``seeds`` (every seed in the protocol, in
order), ``n_samples``, ``tstop_ms`` and, written last, ``complete = True``. A group without
``complete = True`` is a partially written trace: readers skip it and ``generate`` deletes and
redoes it.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

FORMAT_NAME = "neuron_hybrid.traces"
FORMAT_VERSION = 1
TRACES_GROUP = "traces"
V_DEND_GROUP = "v_dend"
INTEGRATOR = "fixed_step_backward_euler"
I_ION_FORM = ("implicit: i_membrane_soma - cm*area*(v[k]-v[k-1])/dt; conductances at the step start, "
              "driving force at the step end (closes the current balance exactly)")

#: dataset name -> (unit, description)
DATASETS: Dict[str, Tuple[str, str]] = {
    "t": ("ms", "time; 0 after the steady-state initialisation"),
    "v_soma": ("mV", "soma(0.5) membrane potential"),
    "i_stim": ("nA", "current injected at the soma (IClamp, positive depolarising)"),
    "i_axial": ("nA", "total axial current leaving the soma into every attached section"),
    "i_membrane_soma": ("nA", "soma total membrane current (capacitive + ionic), outward positive"),
    "i_ion_soma": ("nA", "soma ionic current, NEURON's implicit form, outward positive"),
}
DATASET_NAMES: Tuple[str, ...] = tuple(DATASETS)
V_DEND_UNIT = "mV"

#: file attributes that must agree before more traces are appended to a file
IDENTITY_ATTRS: Tuple[str, ...] = (
    "format_version", "cell_name", "cell_builder", "cell_params_json", "morphology_sha256",
    "n_sections", "n_segments", "soma_area_um2", "cm_uF_per_cm2", "dt_ms", "integrator",
    "settle_ms", "settle_dt_ms", "settle_coarse_steps", "settle_coarse_dt_ms", "v_init_mV", "celsius_degC",
    "dend_sites_json",
)
#: file attributes that may differ (a warning is printed)
VERSION_ATTRS: Tuple[str, ...] = ("neuron_version", "neuron_hybrid_version")
REQUIRED_FILE_ATTRS: Tuple[str, ...] = ("format", "format_version") + IDENTITY_ATTRS

_CHUNK = 1 << 15  # samples per chunk (256 KiB of float64)


class DatasetError(ValueError):
    """A trace file is missing a part, corrupt, foreign (not ours) or from a newer version."""


class DatasetMismatchError(DatasetError):
    """An existing trace file was made for another cell, parameters, dt or protocol list."""


# ------------------------------------------------------------------------------------------------
# naming


def protocol_json(protocol) -> str:
    """Canonical JSON of a protocol (object with ``to_dict()``, or its dict): sorted keys, no
    spaces. Its sha256 names the trace group."""
    d = protocol.to_dict() if hasattr(protocol, "to_dict") else protocol
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def protocol_sha256(pjson: str) -> str:
    return hashlib.sha256(pjson.encode()).hexdigest()


def trace_group_name(index: int, pjson: str) -> str:
    """``p000012_3f2a...`` (index, then 16 hex digits of the protocol JSON's sha256)."""
    if index < 0:
        raise ValueError("protocol index must be >= 0")
    return f"p{int(index):06d}_{protocol_sha256(pjson)[:16]}"


def protocol_seeds(d: Any) -> List[int]:
    """Every ``seed`` in a protocol dict (depth first, in order)."""
    out: List[int] = []
    if isinstance(d, dict):
        for k, v in d.items():
            if k == "seed" and isinstance(v, (int, np.integer)) and not isinstance(v, bool):
                out.append(int(v))
            else:
                out.extend(protocol_seeds(v))
    elif isinstance(d, (list, tuple)):
        for v in d:
            out.extend(protocol_seeds(v))
    return out


# ------------------------------------------------------------------------------------------------
# writing


def _attr_value(v):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if v is None:
        return ""
    return v


def write_file_attrs(f, meta: Dict[str, Any]) -> None:
    """Write the file attributes (``meta`` from :func:`neuron_hybrid.datagen.generate.cell_metadata`)."""
    f.attrs["format"] = FORMAT_NAME
    f.attrs["format_version"] = FORMAT_VERSION
    for k, v in meta.items():
        f.attrs[k] = _attr_value(v)
    f.attrs["units_json"] = json.dumps({**{k: u for k, (u, _) in DATASETS.items()},
                                        V_DEND_GROUP: V_DEND_UNIT}, sort_keys=True)
    f.attrs["i_ion_form"] = I_ION_FORM


def _norm(v):
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.generic):
        v = v.item()
    return v


def compare_file_attrs(attrs, meta: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    """(identity mismatches, version differences) between a file's attributes and ``meta``,
    as human-readable lines."""
    errors, notes = [], []
    expect = dict(meta)
    expect["format_version"] = FORMAT_VERSION
    for k in IDENTITY_ATTRS:
        have = _norm(attrs.get(k, None))
        want = _norm(_attr_value(expect.get(k)))
        if have is None:
            errors.append(f"{k}: missing in the file")
            continue
        if isinstance(want, float) or isinstance(have, float):
            same = (have == want) or (isinstance(have, (int, float)) and isinstance(want, (int, float))
                                      and np.isclose(have, want, rtol=1e-12, atol=0))
        else:
            same = have == want
        if not same:
            if k.endswith("_json"):
                errors.append(f"{k}: {_json_diff(have, want)}")
            else:
                errors.append(f"{k}: file has {have!r}, this run has {want!r}")
    for k in VERSION_ATTRS:
        have, want = _norm(attrs.get(k, None)), _norm(meta.get(k))
        if have != want:
            notes.append(f"{k}: file {have!r}, now {want!r}")
    return errors, notes


def _json_diff(have: str, want: str) -> str:
    try:
        a, b = json.loads(have), json.loads(want)
    except (TypeError, ValueError):
        return f"file has {have!r}, this run has {want!r}"
    if isinstance(a, dict) and isinstance(b, dict):
        diffs = [f"{k}={a.get(k, '<absent>')!r} in file vs {b.get(k, '<absent>')!r} now"
                 for k in sorted(set(a) | set(b)) if a.get(k, "<absent>") != b.get(k, "<absent>")]
        return "; ".join(diffs[:8]) + (f" (+{len(diffs) - 8} more)" if len(diffs) > 8 else "")
    return f"file has {have}, this run has {want}"


def write_trace(f, name: str, index: int, pjson: str, arrays: Dict[str, np.ndarray],
                v_dend: Optional[Dict[str, np.ndarray]] = None, tstop_ms: Optional[float] = None) -> None:
    """Write one trace group: datasets first, then attributes, ``complete = True`` last, then
    flush. An existing group of that name is replaced."""
    root = f.require_group(TRACES_GROUP)
    if name in root:
        del root[name]
    g = root.create_group(name)
    g.attrs["complete"] = False
    n = None
    for k in DATASET_NAMES:
        a = np.ascontiguousarray(arrays[k], dtype=np.float64)
        if a.ndim != 1:
            raise ValueError(f"dataset {k} must be 1-D, got shape {a.shape}")
        if n is None:
            n = len(a)
        elif len(a) != n:
            raise ValueError(f"dataset {k} has {len(a)} samples, t has {n}")
        _create(g, k, a)
    if v_dend:
        vg = g.create_group(V_DEND_GROUP)
        for site, a in v_dend.items():
            a = np.ascontiguousarray(a, dtype=np.float64)
            if len(a) != n:
                raise ValueError(f"v_dend/{site} has {len(a)} samples, t has {n}")
            _create(vg, site, a)
    d = json.loads(pjson)
    seeds = protocol_seeds(d)
    g.attrs["index"] = int(index)
    g.attrs["protocol_json"] = pjson
    g.attrs["protocol_sha256"] = protocol_sha256(pjson)
    g.attrs["protocol_type"] = str(d.get("type", ""))
    g.attrs["seed"] = seeds[0] if seeds else -1
    g.attrs["seeds"] = np.asarray(seeds, dtype=np.int64)
    g.attrs["n_samples"] = int(n or 0)
    if tstop_ms is not None:
        g.attrs["tstop_ms"] = float(tstop_ms)
    f.flush()
    g.attrs["complete"] = True  # last: a group without it is a partially written trace
    f.flush()


def _create(g, name, a):
    chunk = (max(1, min(len(a), _CHUNK)),)
    g.create_dataset(name, data=a, chunks=chunk, compression="gzip", compression_opts=4,
                     shuffle=True, fletcher32=True)


def is_complete(group) -> bool:
    try:
        return bool(group.attrs.get("complete", False))
    except Exception:
        return False


# ------------------------------------------------------------------------------------------------
# reading


@dataclass
class StoredTrace:
    """One complete trace read from a file (arrays as float64 numpy arrays)."""

    name: str
    index: int
    protocol: Dict[str, Any]
    protocol_json: str
    seed: int
    seeds: Tuple[int, ...]
    t: np.ndarray
    v_soma: np.ndarray
    i_stim: np.ndarray
    i_axial: np.ndarray
    i_membrane_soma: np.ndarray
    i_ion_soma: np.ndarray
    v_dend: Dict[str, np.ndarray] = field(default_factory=dict)

    def arrays(self) -> Dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in DATASET_NAMES}

    def protocol_object(self):
        """The protocol as a :mod:`neuron_hybrid.stimuli` object."""
        from ..stimuli import protocol_from_dict

        return protocol_from_dict(self.protocol)

    def to_trace(self):
        """As a :class:`neuron_hybrid.datagen.run.Trace`."""
        from .run import Trace

        return Trace(t_ms=self.t, v_soma=self.v_soma, i_stim=self.i_stim, i_axial=self.i_axial,
                     i_membrane_soma=self.i_membrane_soma, i_ion_soma=self.i_ion_soma,
                     v_dend=dict(self.v_dend))


def _decode_attrs(attrs) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k in attrs.keys():
        v = _norm(attrs[k])
        if isinstance(v, np.ndarray):
            v = v.tolist()
        if k.endswith("_json") and isinstance(v, str):
            try:
                out[k[:-5]] = json.loads(v)
            except ValueError:
                pass
        out[k] = v
    return out


def check_header(f, path) -> None:
    """Raise :class:`DatasetError` unless ``f`` is a trace file this code can read."""
    fmt = _norm(f.attrs.get("format", None))
    if fmt is None:
        raise DatasetError(f"{path}: not a neuron_hybrid trace file (an HDF5 file without a 'format' "
                           f"attribute; expected format {FORMAT_NAME!r})")
    if fmt != FORMAT_NAME:
        raise DatasetError(f"{path}: not a neuron_hybrid trace file (format {fmt!r}, expected "
                           f"{FORMAT_NAME!r})")
    ver = _norm(f.attrs.get("format_version", None))
    if not isinstance(ver, int):
        raise DatasetError(f"{path}: trace file without a valid 'format_version' attribute")
    if ver > FORMAT_VERSION:
        raise DatasetError(f"{path}: trace file format version {ver} is newer than this code reads "
                           f"({FORMAT_VERSION}); upgrade neuron_hybrid")
    missing = [k for k in REQUIRED_FILE_ATTRS if k not in f.attrs]
    if missing:
        raise DatasetError(f"{path}: corrupt trace file: file attribute(s) {', '.join(missing)} missing")


def open_h5(path, mode: str = "r"):
    """``h5py.File(path, mode)`` with clear errors for missing, locked and non-HDF5 files."""
    import h5py

    path = Path(path)
    if mode == "r" and not path.exists():
        raise FileNotFoundError(f"trace file not found: {path}")
    if path.exists() and not path.is_file():
        raise DatasetError(f"{path} is not a file")
    if path.exists() and path.stat().st_size > 0 and not h5py.is_hdf5(str(path)):
        raise DatasetError(f"{path}: not an HDF5 file (corrupt, truncated or foreign); "
                           f"expected a {FORMAT_NAME} file")
    try:
        return h5py.File(str(path), mode)
    except OSError as e:
        msg = str(e)
        if "lock" in msg.lower():
            raise DatasetError(f"{path}: the file is open for writing in another process ({msg})") from None
        raise DatasetError(f"{path}: cannot open as HDF5 (corrupt or truncated file?): {msg}") from None


class TraceDataset:
    """An open trace file (read only). ``len(ds)`` complete traces, ``ds[i]`` (position in index
    order) or ``ds["p000003_..."]`` gives a :class:`StoredTrace`; iteration yields every complete
    trace in protocol-index order. ``metadata``: the file attributes (``*_json`` also decoded
    under the name without the suffix, e.g. ``metadata["cell_params"]``). ``incomplete``: names of
    partially written groups, which are never returned. Use as a context manager or ``close()``."""

    def __init__(self, path):
        self.path = Path(path)
        self._f = open_h5(self.path, "r")
        try:
            check_header(self._f, self.path)
            self.metadata = _decode_attrs(self._f.attrs)
            root = self._f.get(TRACES_GROUP)
            if root is None:
                raise DatasetError(f"{self.path}: corrupt trace file: no /{TRACES_GROUP} group")
            complete, self.incomplete = [], []
            for name in root.keys():
                g = root[name]
                if is_complete(g):
                    try:
                        idx = int(g.attrs["index"])
                    except Exception:
                        raise DatasetError(f"{self.path}: corrupt trace {name}: no 'index' attribute") from None
                    complete.append((idx, name))
                else:
                    self.incomplete.append(name)
            self.names: List[str] = [n for _, n in sorted(complete)]
        except BaseException:
            self._f.close()
            raise

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[StoredTrace]:
        for n in self.names:
            yield self[n]

    def __getitem__(self, key: Union[int, str]) -> StoredTrace:
        name = self.names[key] if isinstance(key, (int, np.integer)) else key
        if name not in self.names:
            if name in self.incomplete:
                raise KeyError(f"trace {name} in {self.path} is incomplete (partially written)")
            raise KeyError(f"no trace {name!r} in {self.path}")
        return self._read(name)

    def _read(self, name: str) -> StoredTrace:
        g = self._f[TRACES_GROUP][name]
        try:
            arrays = {k: np.asarray(g[k][()], dtype=np.float64) for k in DATASET_NAMES}
            v_dend = ({k: np.asarray(v[()], dtype=np.float64) for k, v in g[V_DEND_GROUP].items()}
                      if V_DEND_GROUP in g else {})
            a = _decode_attrs(g.attrs)
            pjson = a["protocol_json"]
            protocol = json.loads(pjson)
        except (KeyError, OSError, ValueError) as e:
            raise DatasetError(f"{self.path}: trace {name} is marked complete but cannot be read "
                               f"(corrupt file): {e}") from None
        n = len(arrays["t"])
        bad = [k for k, v in list(arrays.items()) + list(v_dend.items()) if len(v) != n]
        if bad:
            raise DatasetError(f"{self.path}: trace {name} is corrupt: {', '.join(bad)} differ in length from t")
        return StoredTrace(name=name, index=int(a["index"]), protocol=protocol, protocol_json=pjson,
                           seed=int(a.get("seed", -1)), seeds=tuple(int(s) for s in a.get("seeds", [])),
                           v_dend=v_dend, **arrays)

    def protocols(self) -> list:
        """The stored traces' protocols as :mod:`neuron_hybrid.stimuli` objects (index order)."""
        from ..stimuli import protocol_from_dict

        root = self._f[TRACES_GROUP]
        return [protocol_from_dict(json.loads(_norm(root[n].attrs["protocol_json"]))) for n in self.names]

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "TraceDataset":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<TraceDataset {self.path}: {len(self)} traces of {self.metadata.get('cell_name')} "
                f"at dt {self.metadata.get('dt_ms')} ms>")


def open_dataset(path) -> TraceDataset:
    """Open a trace file for reading. Raises ``FileNotFoundError`` if it does not exist and
    :class:`DatasetError` if it is not HDF5, not a ``neuron_hybrid.traces`` file, from a newer
    format version, or corrupt. Incomplete (partially written) traces are never returned."""
    return TraceDataset(path)


def read_traces(path, warn_incomplete: bool = True) -> Tuple[List[StoredTrace], Dict[str, Any]]:
    """(every complete trace in protocol-index order, file metadata) of a trace file."""
    with open_dataset(path) as ds:
        if ds.incomplete and warn_incomplete:
            warnings.warn(f"{path}: {len(ds.incomplete)} partially written trace(s) skipped; rerun "
                          f"generate on this file to finish them", stacklevel=2)
        return list(ds), dict(ds.metadata)

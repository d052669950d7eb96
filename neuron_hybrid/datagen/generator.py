"""Simulate a list of protocols on a cell and store the traces in an HDF5 file (see
:mod:`neuron_hybrid.datagen.schema`), serially, with worker processes, or over MPI.

>>> from neuron_hybrid.datagen import generate
>>> generate("ball_and_stick", "protocols.json", "data.h5", workers=2)

Each worker builds the cell once and simulates the protocols it is given, one at a time, with
:func:`neuron_hybrid.datagen.run.simulate_trace` (fixed step ``dt_ms``, backward Euler, after a
``settle_ms`` steady-state initialisation). A trace depends only on the cell, its protocol (and
the protocol's seeds), dt and settle_ms, so the same inputs give bit-identical datasets whatever
the number of workers or MPI ranks. Only the parent process (MPI rank 0) writes the file, one
trace at a time (file opened, group written, ``complete`` set last, file closed), so an
interrupted run leaves at worst one partially written group, which readers ignore and the next
run deletes and redoes; traces already complete are not simulated again.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import pickle
import platform
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import schema
from .sites import DendSite

__all__ = ["generate", "GenerateResult", "GenerateError", "CellSpec", "Job", "cell_metadata",
           "load_protocol_list"]


class GenerateError(RuntimeError):
    """A worker failed (building the cell or simulating a protocol)."""


# ------------------------------------------------------------------------------------------------
# what to simulate


@dataclass(frozen=True)
class CellSpec:
    """How a worker builds the cell: a registered name, or a builder callable (must be
    picklable for worker processes / MPI: a module-level function), with keyword ``params``.
    ``mod_dirs``: extra MOD folders loaded with ``neuron_hybrid.load_mechanisms``."""

    name: Optional[str] = None
    builder: Optional[Callable[..., Any]] = None
    params: Tuple[Tuple[str, Any], ...] = ()
    mod_dirs: Tuple[str, ...] = ()
    load_mechanisms: bool = True

    @classmethod
    def make(cls, cell, params=None, mod_dirs=(), load_mechanisms=True) -> "CellSpec":
        params = tuple(sorted((params or {}).items()))
        mod_dirs = tuple(str(d) for d in mod_dirs)
        if isinstance(cell, CellSpec):
            return cell
        if isinstance(cell, str):
            from ..cells import registry

            registry._ensure_builtins()
            entry = registry._REGISTRY.get(cell)
            if entry is None:
                raise registry.CellError(f"unknown cell {cell!r}; available: "
                                         f"{', '.join(n for n, _ in registry.available_cells())}")
            builder = None
            if not getattr(entry.builder, "__module__", "").startswith("neuron_hybrid.cells.builtin"):
                builder = entry.builder  # a user-registered cell: child processes do not know the name
            return cls(name=cell, builder=builder, params=params, mod_dirs=mod_dirs,
                       load_mechanisms=load_mechanisms)
        if callable(cell):
            return cls(name=None, builder=cell, params=params, mod_dirs=mod_dirs,
                       load_mechanisms=load_mechanisms)
        raise TypeError(f"cell must be a registered cell name or a builder callable, got {type(cell).__name__}")

    def describe(self) -> str:
        if self.name is not None:
            return f"registry:{self.name}"
        b = self.builder
        return f"python:{getattr(b, '__module__', '?')}:{getattr(b, '__qualname__', repr(b))}"

    def build(self):
        from ..cells import Cell, build

        kwargs = dict(self.params)
        if self.builder is not None:
            cell = self.builder(**kwargs)
        else:
            cell = build(self.name, **kwargs)
        if not isinstance(cell, Cell):
            raise TypeError(f"cell builder {self.describe()} returned {type(cell).__name__}, not a "
                            f"neuron_hybrid.cells.Cell")
        return cell


@dataclass(frozen=True)
class Job:
    """Everything a worker needs besides the protocol: the cell, dt, settle time, sites."""

    cell: CellSpec
    dt_ms: float = 0.025
    settle_ms: float = 1000.0
    dend_sites: Tuple[DendSite, ...] = ()

    def key(self) -> str:
        try:
            blob = pickle.dumps(self)
        except Exception:  # an unpicklable builder (fine in-process): identify it by object
            blob = repr((self.cell.describe(), id(self.cell.builder), self.cell.params, self.cell.mod_dirs,
                         self.dt_ms, self.settle_ms, self.dend_sites)).encode()
        return hashlib.sha256(blob).hexdigest()

    def encode(self) -> str:
        """Pickled + base64 (a plain string travels through every channel, MPI included)."""
        try:
            blob = pickle.dumps(self)
        except Exception as e:
            raise TypeError(
                f"the cell builder {self.cell.describe()} (or its parameters) cannot be pickled for worker "
                f"processes ({e}); use a registered cell name or a module-level function") from None
        return base64.b64encode(blob).decode("ascii")

    @staticmethod
    def decode(text: str) -> "Job":
        return pickle.loads(base64.b64decode(text.encode("ascii")))


def load_protocol_list(protocols) -> List[Any]:
    """Protocol objects from a JSON file path, a list of protocol objects and/or dicts."""
    from ..stimuli import load_protocols, protocol_from_dict

    if isinstance(protocols, (str, Path)):
        return load_protocols(protocols)
    out = []
    for i, p in enumerate(protocols):
        out.append(protocol_from_dict(p) if isinstance(p, dict) else p)
        if not hasattr(out[-1], "to_dict"):
            raise TypeError(f"protocol #{i} is a {type(p).__name__}, not a protocol or dict")
    return out


# ------------------------------------------------------------------------------------------------
# the worker side (also used in-process for workers=1 and on every MPI rank)


def _versions() -> Dict[str, str]:
    import h5py
    import neuron

    import neuron_hybrid

    return {"neuron_version": str(neuron.__version__), "neuron_hybrid_version": neuron_hybrid.__version__,
            "numpy_version": np.__version__, "h5py_version": h5py.__version__,
            "python_version": platform.python_version()}


def cell_metadata(cell, spec: CellSpec, dt_ms: float, settle_ms: float, site_infos: Sequence[dict]) -> Dict[str, Any]:
    """The file attributes describing ``cell`` and the run settings (see the schema)."""
    from neuron import h

    cell.apply_globals()
    soma = cell.soma
    meta = {
        "cell_name": str(cell.name),
        "cell_builder": spec.describe(),
        "cell_params_json": json.dumps(cell.params, sort_keys=True, default=str),
        "morphology_sha256": cell.morphology_sha256 or "",
        "morphology_file": Path(cell.morphology_path).name if cell.morphology_path else "",
        "n_sections": int(cell.n_sections),
        "n_segments": int(cell.n_segments),
        "soma_nseg": int(soma.nseg),
        "n_soma_children": len(cell.soma_children()),
        "soma_area_um2": float(sum(seg.area() for seg in soma)),
        "cm_uF_per_cm2": float(soma(0.5).cm),
        "dt_ms": float(dt_ms),
        "integrator": schema.INTEGRATOR,
        "settle_ms": float(settle_ms),
        **_settle_defaults(),
        "v_init_mV": float(cell.v_init_mV if cell.v_init_mV is not None else -65.0),
        "celsius_degC": float(h.celsius),
        "dend_sites_json": json.dumps(list(site_infos), sort_keys=True),
    }
    meta.update(_versions())
    return meta


def _settle_defaults() -> Dict[str, Any]:
    """The fixed parts of the steady-state initialisation (run.steady_state_initialize defaults)."""
    import inspect

    from .run import steady_state_initialize

    sig = inspect.signature(steady_state_initialize).parameters
    out = {"settle_dt_ms": float(sig["settle_dt_ms"].default)}
    if "coarse_steps" in sig:
        out["settle_coarse_steps"] = int(sig["coarse_steps"].default)
        out["settle_coarse_dt_ms"] = float(sig["coarse_dt_ms"].default)
    return out


def meta_digest(meta: Dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps({k: meta[k] for k in schema.IDENTITY_ATTRS if k in meta},
                                     sort_keys=True).encode()).hexdigest()


_STATE: Dict[str, Any] = {}


def _mechanisms_loaded() -> bool:
    from neuron import h

    from ..runtime.build import loaded_library

    return loaded_library() is not None or hasattr(h, "nh_load")


def worker_state(job: Job, in_process: bool = False) -> Dict[str, Any]:
    """Build (once per process and job) the cell and resolve the sites; returns the state."""
    key = job.key()
    if _STATE.get("key") == key:
        return _STATE
    if job.cell.load_mechanisms and not _mechanisms_loaded():
        import neuron_hybrid

        neuron_hybrid.load_mechanisms(extra_mod_dirs=list(job.cell.mod_dirs), verbose=False)
    _STATE.clear()
    cell = job.cell.build()
    sites, infos = [], []
    for s in job.dend_sites:
        seg, info = s.resolve(cell)
        sites.append((s.name, seg))
        infos.append(info)
    meta = cell_metadata(cell, job.cell, job.dt_ms, job.settle_ms, infos)
    _STATE.update(key=key, job=job, cell=cell, sites=sites, meta=meta, digest=meta_digest(meta))
    return _STATE


def release_state() -> None:
    """Forget the worker's cell (its sections are deleted when no one else holds it)."""
    _STATE.clear()


def simulate_protocol(job: Job, index: int, pjson: str, in_process: bool = False) -> Dict[str, Any]:
    """Simulate protocol ``index`` (canonical JSON ``pjson``) and return the trace as a dict of
    arrays plus bookkeeping (what workers send to the writer)."""
    from neuron import h

    from ..stimuli import protocol_from_dict
    from .run import simulate_trace

    st = worker_state(job, in_process=in_process)
    protocol = protocol_from_dict(json.loads(pjson))
    h.CVode().active(0)
    h.secondorder = 0
    t0, c0 = time.perf_counter(), time.process_time()
    tr = simulate_trace(st["cell"], protocol, dt_ms=job.dt_ms, dend_sites=st["sites"],
                        settle_ms=job.settle_ms)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"index": int(index), "name": schema.trace_group_name(index, pjson), "pjson": pjson,
            "arrays": tr.arrays(), "v_dend": dict(tr.v_dend), "tstop_ms": float(protocol.tstop_ms),
            "digest": st["digest"], "wall_s": wall, "cpu_s": cpu, "pid": os.getpid()}


def _safe(fn, *args):
    try:
        return fn(*args)
    except BaseException:  # noqa: BLE001 - sent to the parent, which raises
        return {"error": traceback.format_exc(), "pid": os.getpid()}


# multiprocessing entry points (module level: picklable under spawn)
_POOL_JOB: Dict[str, str] = {}


def _pool_init(job_text: str) -> None:  # must not fail (a failing initializer respawns forever)
    _POOL_JOB["text"] = job_text


def _pool_describe(_=None):
    return _safe(lambda: {"meta": worker_state(Job.decode(_POOL_JOB["text"]))["meta"], "pid": os.getpid()})


def _pool_task(item):
    index, pjson = item
    return _safe(simulate_protocol, Job.decode(_POOL_JOB["text"]), index, pjson)


# ------------------------------------------------------------------------------------------------
# the writer (parent / rank 0 only)


class TraceFileWriter:
    """Creates or checks the output file and writes traces, one open/close per trace."""

    def __init__(self, path, expected: Dict[str, Tuple[int, str]], overwrite: bool = False):
        self.path = Path(path)
        self.expected = expected  # name -> (index, protocol json)
        self.overwrite = overwrite
        self.removed_incomplete: List[str] = []

    def prepare(self, meta: Dict[str, Any]) -> set:
        """Create the file, or check that it matches ``meta`` and the protocol list; delete
        partially written traces. Returns the names of the complete traces already there."""
        if self.overwrite and self.path.exists():
            self.path.unlink()
        if not self.path.exists() or self.path.stat().st_size == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with schema.open_h5(self.path, "w") as f:
                schema.write_file_attrs(f, meta)
                f.create_group(schema.TRACES_GROUP)
            return set()
        done = set()
        with schema.open_h5(self.path, "r+") as f:
            try:
                schema.check_header(f, self.path)
            except schema.DatasetError as e:
                raise schema.DatasetError(f"refusing to write to {self.path}: {e}") from None
            errors, notes = schema.compare_file_attrs(f.attrs, meta)
            if errors:
                raise schema.DatasetMismatchError(
                    f"{self.path} was made for another cell or settings; refusing to append:\n  - "
                    + "\n  - ".join(errors)
                    + "\nUse another output file, or overwrite=True (--overwrite) to start it again.")
            if notes:
                warnings.warn(f"{self.path}: appending with other software versions: {'; '.join(notes)}",
                              stacklevel=3)
            root = f.require_group(schema.TRACES_GROUP)
            by_index = {i: (n, pj) for n, (i, pj) in self.expected.items()}
            for name in list(root.keys()):
                g = root[name]
                if not schema.is_complete(g):
                    del root[name]
                    self.removed_incomplete.append(name)
                    continue
                if name in self.expected:
                    done.add(name)
                    continue
                idx = int(g.attrs.get("index", -1))
                if idx in by_index:
                    old = schema._norm(g.attrs.get("protocol_json", "?"))
                    moved = [i for i, (_, pj) in sorted(by_index.items()) if pj == old]
                    how = (f"reordered: it is now protocol #{moved[0]}" if moved
                           else "edited or reordered")
                    raise schema.DatasetMismatchError(
                        f"{self.path}: protocol #{idx} differs from the one its stored trace {name} was "
                        f"made with (the protocol list was {how}):\n  file: {old}\n  now:  "
                        f"{by_index[idx][1]}\nUse another output file, or overwrite=True (--overwrite).")
                raise schema.DatasetMismatchError(
                    f"{self.path}: holds trace {name} for protocol #{idx}, but the protocol list has only "
                    f"{len(self.expected)} protocols; use another output file, or overwrite=True (--overwrite).")
            f.flush()
        return done

    def write(self, res: Dict[str, Any]) -> None:
        with schema.open_h5(self.path, "r+") as f:
            schema.write_trace(f, res["name"], res["index"], res["pjson"], res["arrays"], res["v_dend"],
                               tstop_ms=res.get("tstop_ms"))


@dataclass
class GenerateResult:
    """What :func:`generate` did."""

    out: Path
    n_protocols: int
    n_existing: int                      # complete traces already in the file
    n_simulated: int
    simulated: List[str] = field(default_factory=list)
    removed_incomplete: List[str] = field(default_factory=list)
    wall_s: float = 0.0
    setup_s: float = 0.0                 # of wall_s: starting workers, building the cell, checking the file
    simulated_ms: float = 0.0
    workers: int = 1
    mode: str = "serial"                 # "serial", "processes" or "mpi"
    per_worker: Dict[str, int] = field(default_factory=dict)  # traces simulated per "pid N" / "rank N"
    trace_times: Dict[str, Tuple[float, float]] = field(default_factory=dict)  # name -> (wall_s, cpu_s)

    @property
    def complete(self) -> bool:
        return self.n_existing + self.n_simulated == self.n_protocols


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="trace", disable=not enabled or total == 0, file=sys.stderr,
                dynamic_ncols=True)


def _check(res, expected_digest: Optional[str], what: str):
    if "error" in res:
        raise GenerateError(f"{what} failed in worker process {res.get('pid')}:\n{res['error']}")
    if expected_digest is not None and res.get("digest") != expected_digest:
        raise GenerateError(f"worker process {res.get('pid')} built a different cell than the first one "
                            f"(the cell builder is not deterministic?)")
    return res


def prepare_job(cell, protocols, dt_ms=0.025, dend_sites=(), cell_params=None, settle_ms=1000.0,
                mod_dirs=(), load_mechanisms=True):
    """(Job, [(index, name, protocol json)]) from :func:`generate`'s arguments."""
    if not (isinstance(dt_ms, (int, float)) and dt_ms > 0):
        raise ValueError(f"dt_ms must be > 0, got {dt_ms!r}")
    if settle_ms < 0:
        raise ValueError(f"settle_ms must be >= 0, got {settle_ms!r}")
    plist = load_protocol_list(protocols)
    if not plist:
        raise ValueError("no protocols to simulate")
    sites = tuple(DendSite.coerce(s) for s in dend_sites)
    names = [s.name for s in sites]
    if len(set(names)) != len(names):
        raise ValueError(f"dendritic site names must be unique: {names}")
    spec = CellSpec.make(cell, cell_params, mod_dirs, load_mechanisms)
    job = Job(cell=spec, dt_ms=float(dt_ms), settle_ms=float(settle_ms), dend_sites=sites)
    items = []
    for i, p in enumerate(plist):
        pj = schema.protocol_json(p)
        items.append((i, schema.trace_group_name(i, pj), pj))
    return job, items


def generate(cell, protocols, out, workers: int = 1, dt_ms: float = 0.025, dend_sites=(),
             progress: bool = True, *, cell_params: Optional[Dict[str, Any]] = None,
             settle_ms: float = 1000.0, overwrite: bool = False, mod_dirs=(), load_mechanisms: bool = True,
             mpi: bool = False, on_trace: Optional[Callable[[str, int], None]] = None) -> GenerateResult:
    """Simulate every protocol on the cell and write the traces to ``out`` (HDF5).

    Args:
        cell: a registered cell name (``"l5pc_hay2011"``, see ``neuron_hybrid.cells.available_cells``)
            or a builder ``f(**cell_params) -> Cell``. With ``workers > 1`` or MPI the builder is
            pickled: use a module-level function (not a lambda or closure); a cell registered
            with ``register_cell`` in this process is sent as its builder function.
        protocols: a protocols JSON file, or a list of protocol objects / JSON dicts.
        out: output file; created, or resumed if it exists (only missing traces are simulated).
        workers: worker processes (spawn context); 1 simulates in this process (then every other
            section existing in this process is simulated too, so keep it clean).
        dt_ms: fixed time step (ms); the traces are sampled every step.
        dend_sites: :class:`~neuron_hybrid.datagen.sites.DendSite` objects or strings
            (``"d620=apical@620"``, ``"tuft=apic[36](0.5)"``) whose voltage goes to ``v_dend/<name>``.
        progress: show a progress bar (stderr).
        cell_params: keyword overrides for the builder (stored in the file with all defaults).
        settle_ms: steady-state initialisation before t = 0 (ms).
        overwrite: delete an existing ``out`` first instead of resuming it.
        mod_dirs: extra MOD folders to load with ``neuron_hybrid.load_mechanisms``;
            ``load_mechanisms=False`` loads nothing (cells using only NEURON's built-ins).
        mpi: distribute over MPI ranks with NEURON's ParallelContext (see
            :mod:`neuron_hybrid.datagen.mpi`; call under ``mpiexec`` on every rank).
        on_trace: called as ``on_trace(name, index)`` after each trace is written.

    Raises:
        DatasetMismatchError: ``out`` was made for another cell, parameters, dt or protocol list.
        DatasetError: ``out`` exists but is not a readable trace file.
        GenerateError: building the cell or a simulation failed (with the worker's traceback).
    """
    if mpi:
        from .mpi import generate_mpi

        return generate_mpi(cell, protocols, out, dt_ms=dt_ms, dend_sites=dend_sites, progress=progress,
                            cell_params=cell_params, settle_ms=settle_ms, overwrite=overwrite,
                            mod_dirs=mod_dirs, load_mechanisms=load_mechanisms, on_trace=on_trace)
    t_start = time.perf_counter()
    workers = int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    job, items = prepare_job(cell, protocols, dt_ms, dend_sites, cell_params, settle_ms, mod_dirs,
                             load_mechanisms)
    expected = {name: (i, pj) for i, name, pj in items}
    writer = TraceFileWriter(out, expected, overwrite=overwrite)
    result = GenerateResult(out=Path(out), n_protocols=len(items), n_existing=0, n_simulated=0,
                            workers=workers, mode="serial" if workers == 1 else "processes")
    if workers == 1:
        try:
            st = worker_state(job, in_process=True)
            _warn_other_sections(st["cell"])
            done = writer.prepare(st["meta"])
            todo = [(i, pj) for i, name, pj in items if name not in done]
            result.n_existing = len(items) - len(todo)
            result.removed_incomplete = list(writer.removed_incomplete)
            result.setup_s = time.perf_counter() - t_start
            with _progress(len(todo), f"generate {st['meta']['cell_name']}", progress) as bar:
                for i, pj in todo:
                    res = simulate_protocol(job, i, pj, in_process=True)
                    _record(writer, res, result, bar, on_trace)
        finally:
            release_state()  # do not leave the cell in the caller's NEURON
    else:
        import multiprocessing as mp

        text = job.encode()
        ctx = mp.get_context("spawn")
        with ctx.Pool(processes=workers, initializer=_pool_init, initargs=(text,)) as pool:
            desc = _check(pool.apply(_pool_describe), None, "building the cell")
            meta = desc["meta"]
            digest = meta_digest(meta)
            done = writer.prepare(meta)
            todo = [(i, pj) for i, name, pj in items if name not in done]
            result.n_existing = len(items) - len(todo)
            result.removed_incomplete = list(writer.removed_incomplete)
            result.setup_s = time.perf_counter() - t_start
            with _progress(len(todo), f"generate {meta['cell_name']} ({workers} workers)", progress) as bar:
                for res in pool.imap_unordered(_pool_task, todo, chunksize=1):
                    _check(res, digest, "a simulation")
                    _record(writer, res, result, bar, on_trace)
    result.wall_s = time.perf_counter() - t_start
    return result


def _warn_other_sections(cell) -> None:
    from neuron import h

    n_all = sum(1 for _ in h.allsec())
    if n_all > cell.n_sections:
        warnings.warn(f"{n_all - cell.n_sections} sections besides the cell's exist in this process; NEURON "
                      f"simulates them too (slower; and anything connected to them acts on the cell). Delete "
                      f"them, or use workers >= 2 (fresh processes).", stacklevel=3)


def _record(writer, res, result, bar, on_trace):
    writer.write(res)
    result.n_simulated += 1
    result.simulated.append(res["name"])
    result.simulated_ms += float(res["tstop_ms"])
    who = f"rank {res['rank']}" if "rank" in res else f"pid {res.get('pid')}"
    result.per_worker[who] = result.per_worker.get(who, 0) + 1
    result.trace_times[res["name"]] = (float(res["wall_s"]), float(res.get("cpu_s", float("nan"))))
    bar.update(1)
    if on_trace is not None:
        on_trace(res["name"], res["index"])

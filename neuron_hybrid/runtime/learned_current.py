"""``LearnedCurrent``: a loaded TorchScript learned current, inserted into NEURON sections.

    lc = LearnedCurrent.load("kdr.pt")          # validates the file, picks the fastest verified engine
    suffix = lc.insert(soma)                     # density current: a free nhlc<k> slot
    pp = LearnedCurrent.load("ax.pt").insert(soma(0.5))   # point process (kind "point")
    lc.latent_refs(soma(0.5))                    # pointers to z1..zK for h.Vector().record
"""
from __future__ import annotations

import ctypes
import itertools
from pathlib import Path

import numpy as np
import torch

from .build import DENSITY_SUFFIXES, density_suffixes_for, load_mechanisms, loaded_library, point_process_for
from .contract import ContractError, check_numerics, read_attributes

ENGINES = ("auto", "torchscript", "compiled", "table")
#: on_out_of_range mode -> the bridge's code (0: clamp and warn once, 1: raise, 2: clamp without a warning)
OUT_OF_RANGE_MODES = {"clamp": 0, "raise": 1, "clamp_quiet": 2}
_ERROR_FIELDS = ("z_inf", "tau", "current", "conductance")
_bridge_lib = None
_instance_ids = itertools.count()


def bridge() -> ctypes.CDLL:
    """ctypes handle to the bridge library loaded by NEURON (builds and loads the mechanisms if needed)."""
    global _bridge_lib
    if _bridge_lib is None:
        lib = loaded_library() or load_mechanisms()
        b = ctypes.CDLL(str(lib.bridge))
        d, i, p, c = ctypes.c_double, ctypes.c_int, ctypes.POINTER(ctypes.c_double), ctypes.c_char_p
        sig = {
            "nhb_load": (i, [c, c, i]), "nhb_last_error": (c, []), "nhb_n_latent": (i, [i]), "nhb_kind": (i, [i]),
            "nhb_v_min": (d, [i]), "nhb_v_max": (d, [i]), "nhb_engine": (c, [i]), "nhb_engine_error": (d, [i, i]),
            "nhb_set_raise": (i, [i, i]), "nhb_set_instance_name": (i, [i, i, c]),
            "nhb_out_of_range_count": (ctypes.c_long, [i]),
            "nhb_rates_batch": (i, [i, i, p, p, p]), "nhb_current_batch": (i, [i, i, p, p, p, p]),
        }
        for name, (res, args) in sig.items():
            fn = getattr(b, name)
            fn.restype, fn.argtypes = res, args
        _bridge_lib = b
    return _bridge_lib


def _last_error() -> str:
    return bridge().nhb_last_error().decode()


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))


def validate_file(path: Path):
    """Load a file in Python and check it against the contract; returns (module, info)."""
    if not path.is_file():
        raise FileNotFoundError(f"learned-current file {path} does not exist; create it with neuron_hybrid.export(module, '{path}')")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001
        raise ContractError(
            f"{path} is not a TorchScript file ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "save learned currents with neuron_hybrid.export(module, path)"
        ) from exc
    where = str(path)
    info = read_attributes(module, where)
    if not callable(getattr(module, "conductance", None)):
        raise ContractError(f"{path} has no conductance() method; it was not written by neuron_hybrid.export, re-export it")
    check_numerics(module, info, where, n_points=201)
    return module, info


class LearnedCurrent:
    """A learned current loaded into the bridge, ready to insert into sections or segments."""

    def __init__(self, path: Path, handle: int, module, engine_requested: str):
        self.path = path
        self.handle = handle
        self.module = module  # the TorchScript module, for use from Python
        self.engine_requested = engine_requested
        self._point_processes = []

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, path, engine: str = "auto", on_out_of_range: str = "clamp") -> "LearnedCurrent":
        """Load and verify a file written by :func:`neuron_hybrid.export`.

        engine: "auto" (fastest engine whose results match TorchScript), "torchscript", "compiled"
            (C++ tape for rates and current) or "table" (rates tabulated every 0.01 mV, current from the tape).
        on_out_of_range: "clamp" (clamp v to [v_min, v_max] and warn once), "raise", or "clamp_quiet" (clamp
            without a warning; :attr:`out_of_range_count` still counts, e.g. for candidate models scored in a loop).
        """
        path = Path(path).resolve()
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        if on_out_of_range not in OUT_OF_RANGE_MODES:
            raise ValueError(f"on_out_of_range must be one of {tuple(OUT_OF_RANGE_MODES)}, got {on_out_of_range!r}")
        module, info = validate_file(path)
        n_threads = torch.get_num_threads()
        handle = bridge().nhb_load(str(path).encode(), engine.encode(), OUT_OF_RANGE_MODES[on_out_of_range])
        # the bridge sets libtorch's process-wide intra-op threads to 1 for its per-segment calls; keep
        # this process's setting (training in the same process would otherwise run on one core)
        torch.set_num_threads(n_threads)
        if handle < 0:
            raise ContractError(_last_error())
        return cls(path, handle, module, engine)

    # -- properties ------------------------------------------------------------------------
    @property
    def n_latent(self) -> int:
        return bridge().nhb_n_latent(self.handle)

    @property
    def kind(self) -> str:
        return ("density", "point")[bridge().nhb_kind(self.handle)]

    @property
    def v_range(self) -> tuple[float, float]:
        """Trained voltage range (mV)."""
        return bridge().nhb_v_min(self.handle), bridge().nhb_v_max(self.handle)

    @property
    def engine(self) -> str:
        """Engines in use, e.g. "rates=table,current=compiled"."""
        return bridge().nhb_engine(self.handle).decode()

    @property
    def engine_errors(self) -> dict[str, float]:
        """Max error of the engine in use against TorchScript, measured at load (0 for torchscript).

        z_inf: absolute (table engine: relative to max(1, max |z_inf|)); tau: relative; current,
        conductance: relative to the largest magnitude.
        """
        return {k: bridge().nhb_engine_error(self.handle, j) for j, k in enumerate(_ERROR_FIELDS)}

    @property
    def out_of_range_count(self) -> int:
        """How many evaluations had v outside the trained range (and were clamped)."""
        return bridge().nhb_out_of_range_count(self.handle)

    def set_on_out_of_range(self, mode: str) -> None:
        """"clamp" (warn once), "raise" or "clamp_quiet" (see :meth:`load`)."""
        if mode not in OUT_OF_RANGE_MODES:
            raise ValueError(f"mode must be one of {tuple(OUT_OF_RANGE_MODES)}, got {mode!r}")
        bridge().nhb_set_raise(self.handle, OUT_OF_RANGE_MODES[mode])

    def __repr__(self):
        return f"LearnedCurrent({self.path.name!r}, kind={self.kind}, n_latent={self.n_latent}, engine={self.engine})"

    # -- evaluation through the engine used in NEURON -------------------------------------
    def rates(self, v_mV) -> tuple[np.ndarray, np.ndarray]:
        """(z_inf [N, K], tau [N, K] in ms) at voltages v_mV, through the engine NEURON uses."""
        v = np.ascontiguousarray(np.atleast_1d(v_mV), dtype=np.float64)
        K = self.n_latent
        zinf = np.empty((v.size, K))
        tau = np.empty((v.size, K))
        if bridge().nhb_rates_batch(self.handle, v.size, _ptr(v), _ptr(zinf), _ptr(tau)):
            raise FloatingPointError(_last_error())
        return zinf, tau

    def current(self, v_mV, z) -> tuple[np.ndarray, np.ndarray]:
        """(i, di/dv) at voltages v_mV [N] and latents z [N, K], through the engine NEURON uses."""
        v = np.ascontiguousarray(np.atleast_1d(v_mV), dtype=np.float64)
        zz = np.ascontiguousarray(np.reshape(z, (v.size, self.n_latent)), dtype=np.float64)
        i = np.empty(v.size)
        g = np.empty(v.size)
        if bridge().nhb_current_batch(self.handle, v.size, _ptr(v), _ptr(zz), _ptr(i), _ptr(g)):
            raise FloatingPointError(_last_error())
        return i, g

    # -- NEURON ----------------------------------------------------------------------------
    def _register(self, name: str) -> int:
        iid = next(_instance_ids)
        bridge().nhb_set_instance_name(self.handle, iid, name.encode())
        return iid

    def insert(self, target, x: float = 0.5):
        """Insert into NEURON.

        Density currents: ``target`` is a Section; returns the mechanism suffix used: the first
        slot free in that section of the most compact family that holds the model: ``nhlc0_k1`` ..
        ``nhlc5_k1`` (up to 1 latent), ``nhlc0_k2`` .. ``nhlc5_k2`` (up to 2), ``nhlc0_k4`` .. ``nhlc5_k4``
        (up to 4), ``nhlc0`` .. ``nhlc5`` (up to 8).
        Point currents: ``target`` is a Segment (or a Section, at ``x``); returns the point process.
        """
        from neuron import h

        if self.kind == "point":
            seg = target if not hasattr(target, "nseg") else target(x)
            name = point_process_for(self.n_latent)
            pp = getattr(h, name)(seg)
            pp.model_id = self.handle
            pp.instance_id = self._register(f"{seg} [{name} of {self.path.name}]")
            self._point_processes.append(pp)
            return pp
        if not hasattr(target, "nseg"):
            raise TypeError(f"a density learned current is inserted into a Section, got {target!r}; "
                            "for a point current export the module with kind='point'")
        sec = target
        suffix = next((s for s in density_suffixes_for(self.n_latent) if not sec.has_membrane(s)), None)
        if suffix is None:
            raise RuntimeError(f"{sec.name()} has no free learned-current slot for {self.n_latent} latents "
                               f"(at most {len(density_suffixes_for(self.n_latent))} per section)")
        sec.insert(suffix)
        for seg in sec:
            mech = getattr(seg, suffix)
            mech.model_id = self.handle
            mech.instance_id = self._register(f"{seg} [{suffix} of {self.path.name}]")
        return suffix

    def mechanism_in(self, sec) -> str | None:
        """The suffix under which this model runs in `sec` (None if absent)."""
        for s in DENSITY_SUFFIXES:
            if sec.has_membrane(s) and int(getattr(sec(0.5), s).model_id) == self.handle:
                return s
        return None

    def latent_refs(self, target) -> list:
        """NEURON pointers to the latents z1..zK of a segment (density) or point process."""
        if self.kind == "point":
            return [getattr(target, f"_ref_z{k + 1}") for k in range(self.n_latent)]
        suffix = self.mechanism_in(target.sec)
        if suffix is None:
            raise ValueError(f"{self.path.name} is not inserted in {target.sec.name()}")
        mech = getattr(target, suffix)
        return [getattr(mech, f"_ref_z{k + 1}") for k in range(self.n_latent)]



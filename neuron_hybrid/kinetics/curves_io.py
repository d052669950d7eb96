"""Gating curves of a channel: the :class:`ChannelCurves` container and its HDF5 file.

HDF5 schema (``format = "neuron_hybrid.channel_curves"``, ``format_version = 1``)::

    /                       attrs: format, format_version, mechanism (SUFFIX), source
                                   ("neuron" voltage clamp | "analytic" | "learned"), celsius (degC),
                                   mod_file (path or ""), v_unit "mV", tau_unit "ms"
    /gates/<STATE name>/    one group per gate
        v        (n_v,)          membrane potential, mV
        x_inf    (n_v,) or (n_cai, n_v)   steady state (1)
        tau      same shape      time constant, ms
        cai      (n_cai,)        only for calcium-dependent gates: intracellular Ca, mM
        i_open   (n_v,)          optional: the gated current with every gate of that current held at 1
                                 (open channel), mA/cm2 (nA for a POINT_PROCESS), at the default cai;
                                 i_open / (V - e_rev) is constant (= gbar) for an ohmic current
        attrs (when known):  power (int exponent in the current), ion ("na", "k", "ca" or "" for a
                             nonspecific current), current (e.g. "ik"), gbar_name, gbar (S/cm2),
                             e_rev (mV, the reversal potential used), depends_on_cai (bool),
                             gbar_unit ("S/cm2"; "uS" for a POINT_PROCESS), point_process (bool)

NaN entries (e.g. a 0/0 singularity that the MOD file does not guard) are allowed; fitting skips them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["GateCurve", "ChannelCurves", "CurvesFileError", "save_curves", "load_curves", "FORMAT", "FORMAT_VERSION"]

FORMAT = "neuron_hybrid.channel_curves"
FORMAT_VERSION = 1


class CurvesFileError(ValueError):
    """A curves file is missing, corrupt or does not follow the schema (message says how to fix it)."""


@dataclass
class GateCurve:
    """x_inf(V) and tau(V) of one gate; arrays are (n_v,) or (n_cai, n_v) for Ca-dependent gates."""

    name: str
    v: np.ndarray  # mV
    x_inf: np.ndarray
    tau: np.ndarray  # ms
    cai: np.ndarray | None = None  # mM
    power: int | None = None
    ion: str | None = None  # None: unknown; "" nonspecific
    current: str | None = None
    gbar_name: str | None = None
    gbar: float | None = None  # S/cm2
    e_rev: float | None = None  # mV
    i_open: np.ndarray | None = None  # (n_v,) open-channel current, mA/cm2 (see the module docstring)
    point_process: bool = False  # measured from a POINT_PROCESS (gbar in uS, i_open in nA)

    def __post_init__(self):
        self.v = np.asarray(self.v, dtype=float)
        self.x_inf = np.asarray(self.x_inf, dtype=float)
        self.tau = np.asarray(self.tau, dtype=float)
        if self.cai is not None:
            self.cai = np.asarray(self.cai, dtype=float)
        if self.x_inf.shape != self.tau.shape or self.x_inf.shape[-1] != self.v.shape[0]:
            raise CurvesFileError(f"gate {self.name}: x_inf {self.x_inf.shape}, tau {self.tau.shape} and v "
                                  f"{self.v.shape} do not match (x_inf and tau must be (n_v,) or (n_cai, n_v))")
        if self.x_inf.ndim == 2 and (self.cai is None or self.cai.shape[0] != self.x_inf.shape[0]):
            raise CurvesFileError(f"gate {self.name}: 2-D curves need a cai dataset of length {self.x_inf.shape[0]}")
        if self.i_open is not None:
            self.i_open = np.asarray(self.i_open, dtype=float)
            if self.i_open.shape != self.v.shape:
                raise CurvesFileError(f"gate {self.name}: i_open {self.i_open.shape} does not match v {self.v.shape}")

    def open_conductance(self, e_rev: float | None = None) -> np.ndarray | None:
        """i_open / (V - E) (S/cm2; NaN within 1 mV of E), or None when i_open or E is unknown."""
        e = self.e_rev if e_rev is None else e_rev
        if self.i_open is None or e is None:
            return None
        d = self.v - e
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(np.abs(d) > 1.0, self.i_open / d, np.nan)

    @property
    def depends_on_cai(self) -> bool:
        return self.x_inf.ndim == 2

    def at_cai(self, cai: float) -> "GateCurve":
        """1-D curves at the grid cai nearest to ``cai`` (mM, log scale); self if V-only."""
        if not self.depends_on_cai:
            return self
        k = int(np.argmin(np.abs(np.log(self.cai) - np.log(cai))))
        if abs(self.cai[k] / cai - 1) > 1e-6:
            import warnings

            warnings.warn(f"gate {self.name}: cai = {cai:g} mM is not on the measured grid; using the nearest grid value "
                          f"{self.cai[k]:g} mM (measure at exactly that value with channel-curves --cai {cai:g})",
                          stacklevel=2)
        return GateCurve(self.name, self.v, self.x_inf[k], self.tau[k], None, self.power, self.ion, self.current,
                         self.gbar_name, self.gbar, self.e_rev, self.i_open, self.point_process)


@dataclass
class ChannelCurves:
    """All gates of one mechanism (see the module docstring for the meaning of the fields)."""

    mechanism: str
    gates: dict[str, GateCurve]
    source: str = "neuron"
    celsius: float = 6.3
    mod_file: str = ""
    extra: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> GateCurve:
        return self.gates[name]

    def currents(self) -> dict[str, list[GateCurve]]:
        """Gates grouped by the current they gate (``"?"`` when unknown)."""
        out: dict[str, list[GateCurve]] = {}
        for g in self.gates.values():
            out.setdefault(g.current or "?", []).append(g)
        return out


def save_curves(curves: ChannelCurves, path) -> Path:
    """Write ``curves`` to ``path`` (HDF5, schema in the module docstring); atomic."""
    import os

    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with h5py.File(tmp, "w") as f:
        f.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, "mechanism": curves.mechanism,
                        "source": curves.source, "celsius": float(curves.celsius), "mod_file": str(curves.mod_file),
                        "v_unit": "mV", "tau_unit": "ms"})
        for k, val in curves.extra.items():
            f.attrs[k] = val
        grp = f.create_group("gates")
        for name, g in curves.gates.items():
            gg = grp.create_group(name)
            gg.create_dataset("v", data=g.v)
            gg.create_dataset("x_inf", data=g.x_inf)
            gg.create_dataset("tau", data=g.tau)
            if g.cai is not None:
                gg.create_dataset("cai", data=g.cai)
            if g.i_open is not None:
                gg.create_dataset("i_open", data=g.i_open)
            gg.attrs["depends_on_cai"] = bool(g.depends_on_cai)
            if g.point_process:
                gg.attrs["point_process"] = True
                gg.attrs["gbar_unit"] = "uS"
            elif g.gbar is not None:
                gg.attrs["gbar_unit"] = "S/cm2"
            for key in ("power", "ion", "current", "gbar_name", "gbar", "e_rev"):
                val = getattr(g, key)
                if val is not None:
                    gg.attrs[key] = val
    os.replace(tmp, path)
    return path


def load_curves(path) -> ChannelCurves:
    """Read a curves file written by :func:`save_curves` / ``neuron-hybrid channel-curves``."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"curves file {path} does not exist; make it with "
                                f"`neuron-hybrid channel-curves CHANNEL.mod --out {path}`")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise CurvesFileError(f"{path} is not a readable HDF5 file ({exc}); it may be truncated or corrupt: "
                              "regenerate it with `neuron-hybrid channel-curves`") from exc
    with f:
        if f.attrs.get("format") != FORMAT:
            raise CurvesFileError(f"{path} is not a channel-curves file (attribute format={f.attrs.get('format')!r}, "
                                  f"expected {FORMAT!r}); make one with `neuron-hybrid channel-curves`")
        ver = int(f.attrs.get("format_version", -1))
        if ver > FORMAT_VERSION:
            raise CurvesFileError(f"{path} has format_version {ver}, newer than this neuron-hybrid ({FORMAT_VERSION}); upgrade")
        if "gates" not in f or len(f["gates"]) == 0:
            raise CurvesFileError(f"{path} has no /gates/<name> groups: the channel has no gates recorded")
        gates = {}
        for name, gg in f["gates"].items():
            missing = [d for d in ("v", "x_inf", "tau") if d not in gg]
            if missing:
                raise CurvesFileError(f"{path}: /gates/{name} lacks dataset(s) {missing}; regenerate the file")
            a = gg.attrs

            def get(key, conv):
                return conv(a[key]) if key in a else None

            gates[name] = GateCurve(name, gg["v"][()], gg["x_inf"][()], gg["tau"][()],
                                    gg["cai"][()] if "cai" in gg else None, get("power", int), get("ion", str),
                                    get("current", str), get("gbar_name", str), get("gbar", float), get("e_rev", float),
                                    gg["i_open"][()] if "i_open" in gg else None, bool(a.get("point_process", False)))
        known = {"format", "format_version", "mechanism", "source", "celsius", "mod_file", "v_unit", "tau_unit"}
        extra = {k: v for k, v in f.attrs.items() if k not in known}
        return ChannelCurves(str(f.attrs.get("mechanism", path.stem)), gates, str(f.attrs.get("source", "")),
                             float(f.attrs.get("celsius", 6.3)), str(f.attrs.get("mod_file", "")), extra)

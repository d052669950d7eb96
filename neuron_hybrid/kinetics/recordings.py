"""Current-clamp sweeps from a lab (NWB, CSV, NumPy) and fitting channel gates from them.

Formats (all give a list of :class:`Sweep`: t (ms), v (mV), i (nA or mA/cm2), one per sweep):

* **NWB** (``.nwb``, needs ``pip install pynwb``): every ``CurrentClampSeries`` in ``acquisition`` is a
  sweep; its stimulus is the ``CurrentClampStimulusSeries`` in ``stimulus`` with the same sweep number
  (or the same position). Data are converted with the series' ``conversion`` (volts -> mV, amperes -> nA).
* **CSV** (``.csv``): columns ``t_ms``, ``v_mV``, ``i_nA`` (names configurable) and optionally ``sweep``
  (integer sweep index); one header line.
* **NumPy** (``.npz``): arrays ``t_ms`` [T], ``v_mV`` [S, T] (or [T]) and ``i_nA`` (same shape); ``.npy``:
  one array [3, T] or [S, 3, T] of (t, v, i).

The stimulus is given in nA with a membrane ``area_um2`` (converted to mA/cm2) or directly as a density
in mA/cm2 (``i_density=True``, column ``i_mA_cm2``). :func:`fit_recording` trains the gates of one
channel of a known single-compartment model (``hh`` or ``pospischil``) on the sweeps (several
independent seeds batched), keeps the member with the lowest error on the held-out sweep (the last
one when there are several), then writes the learned current, the distilled MOD file and a report via
the same path as curves (:func:`neuron_hybrid.kinetics.pipeline.fit_channel_from_curves`).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Sweep", "RecordingError", "read_sweeps", "write_csv", "write_nwb", "fit_recording"]


class RecordingError(ValueError):
    """The recording cannot be read (message names the problem and the fix)."""


@dataclass
class Sweep:
    t_ms: np.ndarray
    v_mV: np.ndarray
    i: np.ndarray  # nA (or mA/cm2 when density)
    density: bool = False
    name: str = ""


def read_sweeps(path, *, voltage_column="v_mV", stimulus_column="i_nA", time_column="t_ms", sweeps=None) -> list[Sweep]:
    """Read current-clamp sweeps from ``path`` (format by extension; see the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"recording {p} does not exist")
    ext = p.suffix.lower()
    if ext == ".nwb":
        out = _read_nwb(p)
    elif ext == ".csv":
        out = _read_csv(p, voltage_column, stimulus_column, time_column)
    elif ext in (".npz", ".npy"):
        out = _read_numpy(p)
    else:
        raise RecordingError(f"{p}: unknown recording format {ext!r}; use .nwb, .csv, .npz or .npy")
    if sweeps:
        out = [out[k] for k in sweeps]
    if not out:
        raise RecordingError(f"{p} contains no current-clamp sweeps")
    for s in out:
        if not (len(s.t_ms) == len(s.v_mV) == len(s.i)) or len(s.t_ms) < 10:
            raise RecordingError(f"{p} sweep {s.name}: t, v and i must have the same length (>= 10 samples)")
        d = np.diff(s.t_ms)
        if np.any(d <= 0) or np.ptp(d) > 1e-6 * max(1.0, d.mean()):
            raise RecordingError(f"{p} sweep {s.name}: time must be uniformly sampled and increasing")
    return out


def _read_csv(p, vcol, icol, tcol):
    with open(p, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise RecordingError(f"{p} is empty")
    cols = set(rows[0])
    density = False
    if icol not in cols and "i_mA_cm2" in cols:
        icol, density = "i_mA_cm2", True
    missing = [c for c in (tcol, vcol, icol) if c not in cols]
    if missing:
        raise RecordingError(f"{p}: missing column(s) {missing}; found {sorted(cols)} (set --time-column, "
                             "--voltage-column, --stimulus-column)")
    by = {}
    for r in rows:
        by.setdefault(int(float(r.get("sweep", 0) or 0)), []).append((float(r[tcol]), float(r[vcol]), float(r[icol])))
    return [Sweep(*map(np.asarray, zip(*by[k])), density=density, name=str(k)) for k in sorted(by)]


def _read_numpy(p):
    if p.suffix.lower() == ".npy":
        a = np.load(p)
        a = a[None] if a.ndim == 2 else a
        if a.ndim != 3 or a.shape[1] != 3:
            raise RecordingError(f"{p}: expected an array [3, T] or [S, 3, T] of (t_ms, v_mV, i_nA)")
        return [Sweep(x[0], x[1], x[2], name=str(k)) for k, x in enumerate(a)]
    z = np.load(p)
    if "t_ms" not in z or "v_mV" not in z or ("i_nA" not in z and "i_mA_cm2" not in z):
        raise RecordingError(f"{p}: needs arrays t_ms, v_mV and i_nA (or i_mA_cm2); found {list(z)}")
    density = "i_nA" not in z
    v, i = np.atleast_2d(z["v_mV"]), np.atleast_2d(z["i_mA_cm2" if density else "i_nA"])
    return [Sweep(np.asarray(z["t_ms"]), v[k], i[k], density, str(k)) for k in range(v.shape[0])]


def _read_nwb(p):
    try:
        from pynwb import NWBHDF5IO
        from pynwb.icephys import CurrentClampSeries, CurrentClampStimulusSeries
    except ImportError as exc:
        raise RecordingError("reading NWB files needs pynwb: pip install pynwb") from exc
    out = []
    with NWBHDF5IO(str(p), "r") as io:
        nwb = io.read()
        resp = [s for s in nwb.acquisition.values() if isinstance(s, CurrentClampSeries)]
        stims = [s for s in nwb.stimulus.values() if isinstance(s, CurrentClampStimulusSeries)]
        if not resp:
            raise RecordingError(f"{p} has no CurrentClampSeries in acquisition")
        by_sweep = {getattr(s, "sweep_number", None): s for s in stims}
        for k, r in enumerate(resp):
            s = by_sweep.get(getattr(r, "sweep_number", None)) or (stims[k] if k < len(stims) else None)
            if s is None:
                raise RecordingError(f"{p}: no CurrentClampStimulusSeries for {r.name}; store the injected current")
            v = np.asarray(r.data[:], dtype=float) * r.conversion * 1e3  # V -> mV
            i = np.asarray(s.data[:], dtype=float) * s.conversion * 1e9  # A -> nA
            rate = r.rate
            t = (r.starting_time or 0.0) * 1e3 + np.arange(len(v)) * 1e3 / rate
            out.append(Sweep(t, v, i, False, r.name))
    return out


def write_csv(path, sweeps: list[Sweep]) -> Path:
    """Write sweeps as CSV (columns sweep, t_ms, v_mV, i_nA or i_mA_cm2)."""
    p = Path(path)
    icol = "i_mA_cm2" if sweeps[0].density else "i_nA"
    with open(p, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sweep", "t_ms", "v_mV", icol])
        for k, s in enumerate(sweeps):
            for row in zip(s.t_ms, s.v_mV, s.i):
                w.writerow([k, *(repr(float(x)) for x in row)])
    return p


def write_nwb(path, sweeps: list[Sweep], area_um2: float | None = None) -> Path:
    """Write sweeps (i in nA, or mA/cm2 converted with ``area_um2``) as an NWB file (pynwb)."""
    from datetime import datetime, timezone

    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.icephys import CurrentClampSeries, CurrentClampStimulusSeries

    nwb = NWBFile("neuron-hybrid current clamp", "nh-sweeps", datetime.now(timezone.utc))
    dev = nwb.create_device("amplifier")
    el = nwb.create_icephys_electrode(name="elec0", description="simulated", device=dev)
    for k, s in enumerate(sweeps):
        i_nA = s.i * area_um2 * 1e-2 if s.density else s.i
        rate = 1e3 / float(s.t_ms[1] - s.t_ms[0])
        common = dict(electrode=el, gain=1.0, rate=rate, starting_time=float(s.t_ms[0]) * 1e-3,
                      sweep_number=np.uint32(k))  # NWB's type for sweep numbers
        nwb.add_stimulus(CurrentClampStimulusSeries(name=f"stim{k}", data=i_nA * 1e-9, **common))
        nwb.add_acquisition(CurrentClampSeries(name=f"resp{k}", data=s.v_mV * 1e-3, **common))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return Path(path)


def fit_recording(path, out_dir, config=None, *, model="hh", learn="k", seeds=4, seed=0, sweeps=None, dt_ms=None,
                  stimulus_column="i_nA", voltage_column="v_mV", time_column="t_ms", area_um2=None,
                  train_seconds=600.0, trace_config=None, known_parameters="both", trajectory: bool = True) -> dict:
    """Learn the ``learn`` gates of ``model`` from the sweeps in ``path``; write .pt, .mod, plot, report.

    known_parameters: "held", "refined" or "both": the compartment's assumed parameters in current matching
    (:attr:`.trace.TraceFitConfig.cm_refine_known` False / True / "both"); trajectory: estimate the denoised voltage
    with the gates on noisy sweeps (:attr:`.trace.TraceFitConfig.trajectory_levels`; False: the linear smoother
    only, 2-3x faster); both ignored with ``trace_config``."""
    import torch

    from .curves_io import ChannelCurves, GateCurve
    from .pipeline import FitChannelConfig, fit_channel_from_curves
    from .trace import LEARN, MODELS, TraceFitConfig, member_rmse, simulate, train_members

    cfg = config or FitChannelConfig()
    sw = read_sweeps(path, voltage_column=voltage_column, stimulus_column=stimulus_column, time_column=time_column,
                     sweeps=sweeps)
    cm = MODELS[model]
    dt = float(sw[0].t_ms[1] - sw[0].t_ms[0])
    if dt_ms is not None and abs(dt_ms - dt) > 1e-9:
        raise RecordingError(f"resampling is not supported: the recording has dt = {dt} ms; omit --dt")
    T = min(len(s.t_ms) for s in sw)
    stims, vs = [], []
    for s in sw:
        if s.density:
            i = s.i[:T]
        else:
            if area_um2 is None:
                raise RecordingError("the stimulus is in nA: give the membrane area (--area UM2) to convert it to mA/cm2")
            i = s.i[:T] * 100.0 / area_um2  # nA * 100/area(um2) = mA/cm2 (as NEURON's IClamp)
        stims.append(torch.as_tensor(i[:-1], dtype=torch.float64))
        vs.append(torch.as_tensor(s.v_mV[:T], dtype=torch.float64))
    train_idx = list(range(len(sw) - 1)) if len(sw) > 1 else [0]
    held_idx = [len(sw) - 1]
    # members: seeds x training sweeps (each member trains on one sweep; the best on held-out is kept)
    members = [(k, j) for k in range(seeds) for j in train_idx]
    stim = torch.stack([stims[j] for _, j in members])
    vobs = torch.stack([vs[j] for _, j in members])
    M = len(members)
    params = {k: torch.full((M,), v, dtype=torch.float64) for k, v in cm.default_params().items()}
    modes = {"held": False, "refined": True, "both": "both"}
    if known_parameters not in modes:
        raise RecordingError(f"known_parameters must be one of {sorted(modes)}, got {known_parameters!r}")
    tcfg = trace_config or TraceFitConfig(seed=seed, time_budget_s=train_seconds,
                                          cm_refine_known=modes[known_parameters])
    if trace_config is None and not trajectory:
        tcfg.trajectory_levels = ()
    nets = train_members(cm, learn, stim, vobs, dt, params, tcfg, progress=cfg.progress)
    with torch.no_grad():
        hs = torch.stack([stims[j] for j in held_idx]).repeat(M, 1)
        vh = simulate(cm, hs, dt, params, nets, LEARN[learn])
        err = member_rmse(vh, torch.stack([vs[j] for j in held_idx]).repeat(M, 1))
    best = int(torch.argmin(err))
    v = np.linspace(-100, 60, 161)
    from .trace import learned_curves

    lc = learned_curves(nets, v)
    cur = {"k": "ik", "na": "ina"}[learn]
    chan = next(c for c in cm.channels if c[0] == learn)
    gbar = chan[3] * float(torch.exp(nets.log_g.detach()[best]))  # log_g, de: 0 unless learn_conductance
    e_rev = chan[4] + float(nets.de.detach()[best])
    gates = {g: GateCurve(g, v, lc[g][0][best], lc[g][1][best], None, chan[2][g], learn, cur, "gbar", gbar, e_rev)
             for g in LEARN[learn]}
    curves = ChannelCurves(f"{model}_{learn}_learned", gates, "learned", cm.celsius, str(path),
                           {"heldout_rmse_mV": float(err[best]), "members": M})
    rep = fit_channel_from_curves(curves, out_dir, cfg)
    rep["recording"] = {"path": str(path), "sweeps": len(sw), "heldout_rmse_mV_best": float(err[best]),
                        "heldout_rmse_mV_all": err.tolist(), "visited_mV": [float(min(x.min() for x in vs)),
                                                                             float(max(x.max() for x in vs))]}
    if hasattr(nets, "describe"):  # the closed-form stage ran: the best member's gates (formulas or "network")
        rep["recording"]["trace_model"] = nets.describe(best)
        # the compartment's parameters refined with them (TraceFitConfig.refine_known): the learned channel was
        # fitted together with these values, so a model that uses it should use them too
        with torch.no_grad():
            one = nets.subset([best]).adjust_params({k: v[best:best + 1] for k, v in params.items()})
        refined = {k: {"assumed": float(params[k][best]), "refined": float(one[k][0])} for k in params
                   if float(one[k][0]) != float(params[k][best])}
        rep["recording"]["refined_parameters"] = refined
        if refined and cfg.progress:
            print("refined parameters of the known compartment (the learned channel was fitted with these): "
                  + ", ".join(f"{k} {d['assumed']:.4g} -> {d['refined']:.4g}" for k, d in refined.items()))
    import json

    (Path(out_dir) / "fit_report.json").write_text(json.dumps(rep, indent=1, default=float))
    return rep

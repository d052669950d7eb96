"""Measuring a channel's gating curves x_inf(V) and tau(V) in NEURON by voltage clamp.

Method (exact for first-order gates, whatever the rate functions): every (V, cai) point is one
single-segment section whose membrane potential is clamped: the conductance parameters found in
the BREAKPOINT are set to 0 (so V does not move at all; otherwise the capacitance of 1e9 uF/cm2 keeps it
within ~1e-8 mV) and V is reset before each step. For each
gate ``x`` NEURON is advanced by one fixed step ``dt`` starting from two values ``x = a`` and
``x = b`` (the other gates at their INITIAL values). Any first-order gate with frozen rates obeys
the affine map ``x' = A x + B`` over one step, so

* ``x_inf = B / (1 - A)`` (the fixed point; exact for cnexp, derivimplicit and euler alike), and
* ``tau`` from ``A``: ``-dt/ln A`` (``METHOD cnexp``), ``dt A/(1 - A)`` (``derivimplicit``, backward
  Euler), ``dt/(1 - A)`` (``euler``).

At a grid voltage where the MOD file's rates are 0/0 (an unguarded ``x/(1 - exp(-x/k))`` at x = 0) the
section is clamped 1e-6 mV higher (the continuous limit; listed in the file attribute ``singular_v_mV``).

A third probe checks that the map is affine, and the other gates are checked not to move with ``x``
(a Markov/KINETIC scheme is not made of independent gates and is refused). Ion concentrations are
fixed (no pool is inserted; cai is set per section for calcium-dependent mechanisms), reversal
potentials keep NEURON's defaults, rate TABLEs are switched off (``usetable_<suffix> = 0``) unless
``use_tables``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .curves_io import ChannelCurves, GateCurve, save_curves
from .modfile import ModInfo, ModParseError, parse_mod, parse_mod_text

__all__ = ["CurveConfig", "ChannelCurveError", "measure_channel_curves", "channel_curves_command", "plot_curves",
           "resolve_channel"]


#: offset (mV) of the clamp at grid voltages where the mechanism's rates are 0/0 (NaN): the limit is measured
NUDGE_MV = 1e-6


class ChannelCurveError(ValueError):
    """The channel cannot be measured (message names the problem and the fix)."""


@dataclass
class CurveConfig:
    """Settings of :func:`measure_channel_curves` (units in the names)."""

    v_min_mV: float = -100.0
    v_max_mV: float = 60.0
    v_step_mV: float = 1.0
    #: intracellular Ca grid (mM) for mechanisms that read cai, log-spaced 1e-5 .. 1e-1 by default
    cai_mM: tuple[float, ...] = tuple(float(x) for x in np.logspace(-5, -1, 17))
    #: cai (mM) for gates that do not depend on it (NEURON's cai0_ca_ion)
    cai_default_mM: float = 5e-5
    celsius_degC: float = 6.3
    dt_ms: float = 1e-3
    probes: tuple[float, float, float] = (0.2, 0.8, 0.5)
    use_tables: bool = False
    #: parameter overrides of the mechanism, e.g. {"vt": -55}
    parameters: dict = field(default_factory=dict)

    @property
    def v_grid(self) -> np.ndarray:
        n = int(round((self.v_max_mV - self.v_min_mV) / self.v_step_mV)) + 1
        return np.linspace(self.v_min_mV, self.v_max_mV, n)


def _builtin_mod_text(name: str) -> str | None:
    import neuron

    p = Path(neuron.__file__).parent / ".data" / "share" / "modfile" / f"{name}.mod"
    return p.read_text() if p.is_file() else None


def resolve_channel(channel, mod_dirs=()) -> ModInfo | tuple[str, None]:
    """ModInfo of ``channel`` (a .mod path, or a mechanism name found in ``mod_dirs``, neuron-hybrid's
    mod/ or NEURON's built-in sources); ``(name, None)`` if only the name is known."""
    from ..runtime.build import package_mod_dir

    p = Path(str(channel))
    if p.suffix == ".mod" or p.exists():
        return parse_mod(p)
    name = str(channel)
    for d in mod_dirs:
        q = Path(d) / f"{name}.mod"
        if q.is_file():
            return parse_mod(q)
    for q in package_mod_dir().rglob(f"{name}.mod"):
        return parse_mod(q)
    text = _builtin_mod_text(name)
    if text is not None:
        info = parse_mod_text(text, None)
        info.path = None
        return info
    return (name, None)


def _state_names_from_neuron(h, suffix: str) -> list[str]:
    ms = h.MechanismStandard(suffix, 3)
    name = h.ref("")
    out = []
    for i in range(int(ms.count())):
        ms.name(name, i)
        s = name[0]
        out.append(s[: -len(suffix) - 1] if s.endswith("_" + suffix) else s)
    return out


def measure_channel_curves(channel, mod_dirs=(), config: CurveConfig | None = None, *,
                           verbose: bool = False) -> ChannelCurves:
    """Measure x_inf(V) and tau(V) of every gate of ``channel`` in NEURON (see the module docstring).

    channel: path of a ``.mod`` file, or the SUFFIX of a mechanism (NEURON built-in such as ``hh``,
        one of neuron-hybrid's, or ``<name>.mod`` in ``mod_dirs``).
    mod_dirs: folders compiled together with the channel (other MOD files it needs).
    Returns a :class:`ChannelCurves` (``source="neuron"``).
    """
    from neuron import h

    from .nrn import ensure_mechanism, mechanism_registered, renamed_mod_text

    cfg = config or CurveConfig()
    info = resolve_channel(channel, mod_dirs)
    if isinstance(info, tuple):
        suffix, text, info = info[0], None, None
    else:
        suffix, text = info.suffix, info.text
        if info.point_process and info.text and re.search(r"\bARTIFICIAL_CELL\b", info.text):
            raise ChannelCurveError(f"{channel}: {suffix} is an ARTIFICIAL_CELL (no membrane current); channel-curves "
                                    "measures ion channels (SUFFIX or POINT_PROCESS mechanisms)")
        if info.kinetic:
            raise ChannelCurveError(f"{channel}: {suffix} uses a KINETIC (Markov) scheme, not independent HH gates; "
                                    "x_inf/tau per state are not defined for it")
        if not info.gates:
            what = f"only the concentration(s) {info.states}" if info.states else "no STATE variables"
            raise ChannelCurveError(f"{channel}: {suffix} has no gate STATE variables ({what}); channel-curves "
                                    "needs a voltage-gated channel with states x obeying x' = (xinf - x)/xtau")
    h.load_file("stdrun.hoc")
    source_dir = Path(info.path).parent if info is not None and info.path else None
    name = suffix  # the name the mechanism is used under in this process
    if not ensure_mechanism(h, suffix, None if info is None or info.path is None and _builtin_mod_text(suffix) else text,
                            mod_dirs, verbose=verbose, source_dir=source_dir):
        # a different mechanism of that name is loaded (NEURON's built-in hh, pas, ..., neuron-hybrid's own, or
        # an earlier file): compile this one under a unique name (NEURON cannot unload or replace a mechanism)
        import hashlib

        name = f"{suffix}_nh{hashlib.sha256(text.encode()).hexdigest()[:8]}"
        if not mechanism_registered(h, name):
            ensure_mechanism(h, name, renamed_mod_text(text, suffix, name), mod_dirs, verbose=verbose, skip_name=suffix,
                             source_dir=source_dir)
        if verbose:
            print(f"neuron-hybrid: a different mechanism {suffix} is already loaded; measuring this file's {suffix} "
                  f"compiled as {name}")
    gates = info.gates if info is not None else _state_names_from_neuron(h, suffix)
    if not gates:
        raise ChannelCurveError(f"{suffix} has no STATE variables; channel-curves needs a gated channel")
    curves = _measure(h, name, info, gates, cfg, str(info.path) if info is not None and info.path else suffix, verbose)
    curves.mechanism = suffix
    return curves


def _measure(h, suffix, info: ModInfo | None, gates, cfg: CurveConfig, source: str, verbose: bool) -> ChannelCurves:
    from tqdm import tqdm

    v_grid = cfg.v_grid
    reads_ca = info is not None and "cai" in info.read_concentrations
    cai_grid = np.asarray(cfg.cai_mM if reads_ca else (cfg.cai_default_mM,), dtype=float)
    method = (info.method if info is not None else None) or "cnexp"
    saved = {"celsius": h.celsius, "dt": h.dt}
    table_flag = f"usetable_{suffix}"
    has_table = hasattr(h, table_flag)
    if has_table:
        saved[table_flag] = getattr(h, table_flag)
    secs = []
    pps = []  # POINT_PROCESS objects, one per section (kept alive while measuring)
    point = info is not None and info.point_process
    gbar_names = {c.gbar for c in (info.currents if info is not None else []) if c.gbar}
    gbar_values = {}  # the conductance parameters' values (restored for the open-channel current)

    def get(k, name):
        return getattr(pps[k], name) if point else getattr(secs[k][1], f"{name}_{suffix}")

    def put(k, name, val):
        setattr(pps[k], name, val) if point else setattr(secs[k][1], f"{name}_{suffix}", val)

    try:
        h.celsius = cfg.celsius_degC
        h.dt = cfg.dt_ms
        if has_table and not cfg.use_tables:
            setattr(h, table_flag, 0)
        for ci in cai_grid:
            for vi in v_grid:
                sec = h.Section(name=f"_nh_vclamp_{len(secs)}")
                sec.L = sec.diam = 10.0
                sec.cm = 1e9
                seg = sec(0.5)
                if point:
                    pps.append(getattr(h, suffix)(seg))
                else:
                    sec.insert(suffix)
                secs.append((sec, seg, float(vi), float(ci)))
                k = len(secs) - 1
                for name, val in cfg.parameters.items():
                    put(k, name, val)
                for gname in gbar_names:  # no channel current: V stays exactly at the clamp value
                    try:
                        gbar_values.setdefault(gname, float(get(k, gname)))
                        put(k, gname, 0.0)
                    except (AttributeError, LookupError, RuntimeError, TypeError):
                        pass
                seg.v = float(vi)
        for sec, seg, vi, ci in secs:
            if reads_ca:
                seg.cai = ci
        h.t = 0
        h.finitialize()  # v as set per section
        for sec, seg, vi, ci in secs:
            if reads_ca:
                seg.cai = ci
        base = {g: np.array([get(k, g) for k in range(len(secs))]) for g in gates}
        # an unguarded 0/0 in the rates exactly at a grid voltage (e.g. (v + 40)/(1 - exp(-(v + 40)/10)) at -40 mV)
        # gives NaN states there; a NaN poisons the current, hence V and the other gates, and stops METHOD
        # derivimplicit ("matrix singular"): those sections are clamped NUDGE_MV higher (the continuous limit)
        nan_rows = np.flatnonzero(np.any([~np.isfinite(b) for b in base.values()], axis=0))
        for k in nan_rows:
            sec, seg, vi, ci = secs[k]
            secs[k] = (sec, seg, vi + NUDGE_MV, ci)
            seg.v = vi + NUDGE_MV
        if len(nan_rows):
            h.finitialize()
            for sec, seg, vi, ci in secs:
                seg.v = vi
                if reads_ca:
                    seg.cai = ci
            base = {g: np.array([get(k, g) for k in range(len(secs))]) for g in gates}
        nudged = sorted({round(secs[k][2] - NUDGE_MV, 9) for k in nan_rows})
        base = {g: np.where(np.isfinite(b), b, 0.0) for g, b in base.items()}  # still NaN: hold at 0
        shape = (len(cai_grid), len(v_grid))
        result = {}
        e_rev = {}
        for ion, rw in (info.ions if info is not None else {}).items():
            name = f"e{ion}"
            if name not in rw["read"]:  # e.g. USEION k WRITE ik with its own PARAMETER ek: the mechanism's
                continue                # variable (below), not the ion's reversal potential
            try:
                e_rev[name] = float(getattr(secs[0][1], name))
            except (AttributeError, LookupError, RuntimeError):
                pass
        e_par = {}  # reversal potentials that are parameters of the mechanism, as set in NEURON
        for c in (info.currents if info is not None else []):
            if c.reversal and c.reversal not in e_rev:
                try:
                    e_par[c.reversal] = float(get(0, c.reversal))
                except (AttributeError, LookupError, NameError, RuntimeError, TypeError):
                    pass
        it = tqdm(gates, desc=f"voltage clamp {suffix}", disable=not verbose, unit="gate")
        for g in it:
            after = []
            for a in cfg.probes:
                for k, (sec, seg, vi, ci) in enumerate(secs):
                    for g2 in gates:
                        put(k, g2, float(base[g2][k]))
                    put(k, g, a)
                    seg.v = vi
                    if reads_ca:
                        seg.cai = ci
                try:
                    h.fadvance()
                except RuntimeError as exc:
                    raise ChannelCurveError(
                        f"{suffix}.{g}: NEURON's integration of the mechanism failed ({exc}); its rates are probably "
                        "not finite somewhere in the clamp range (an unguarded 0/0 or overflow): guard the rate "
                        "functions (e.g. vtrap) or narrow --v-min/--v-max") from exc
                after.append({g2: np.array([get(k, g2) for k in range(len(secs))]) for g2 in gates})
            (a, b, c) = cfg.probes
            xa, xb, xc = after[0][g], after[1][g], after[2][g]
            A = (xa - xb) / (a - b)
            B = xa - A * a
            pred_c = A * c + B
            lin_err = np.nanmax(np.abs(pred_c - xc)) if np.isfinite(xc).any() else 0.0
            if lin_err > 1e-6 * max(1.0, np.nanmax(np.abs(xc))):
                raise ChannelCurveError(f"{suffix}.{g}: the one-step update is not affine in {g} (error {lin_err:.2e}); "
                                        "it is not a first-order gate x' = (xinf - x)/xtau")
            for g2 in gates:
                if g2 != g and np.nanmax(np.abs(after[0][g2] - after[1][g2])) > 1e-9:
                    raise ChannelCurveError(f"{suffix}: gate {g2} moves with {g}; coupled states (a Markov scheme) "
                                            "have no per-gate x_inf/tau")
            with np.errstate(divide="ignore", invalid="ignore"):
                x_inf = B / (1.0 - A)
                dt = cfg.dt_ms
                if method == "cnexp":
                    tau = -dt / np.log(A)
                elif method in ("euler",):
                    tau = dt / (1.0 - A)
                else:  # derivimplicit, sparse, ... : backward Euler
                    tau = dt * A / (1.0 - A)
            # constant gates (A == 1 exactly: tau beyond resolution) -> inf tau, x_inf undefined
            bad = ~np.isfinite(tau) | (tau <= 0)
            tau = np.where(bad, np.nan, tau)
            x_inf = np.where(bad, np.nan, x_inf)
            result[g] = (x_inf.reshape(shape), tau.reshape(shape))
        i_open, measured_powers = _open_currents(h, info, gates, secs, base, shape, cai_grid, cfg, reads_ca,
                                                 gbar_values, get, put, point)
    finally:
        pps.clear()
        for sec, *_ in secs:
            h.delete_section(sec=sec)
        for k, val in saved.items():
            setattr(h, k, val)
    out = {}
    for g, (xi, ta) in result.items():
        cur = info.gate_current(g) if info is not None else None
        dep = reads_ca and len(cai_grid) > 1 and (
            np.nanmax(np.abs(xi - xi[:1])) > 1e-9 or np.nanmax(np.abs(np.log(ta / ta[:1]))) > 1e-9)
        if not dep and reads_ca:
            k = int(np.argmin(np.abs(np.log(cai_grid) - math.log(cfg.cai_default_mM))))
            xi, ta = xi[k], ta[k]
        elif not reads_ca:
            xi, ta = xi[0], ta[0]
        gc = GateCurve(g, v_grid, xi, ta, cai_grid if dep else None, point_process=point)
        if cur is not None:
            gc.power = cur.powers.get(g)
            p = measured_powers.get(cur.variable, {}).get(g)
            if p is not None and p != gc.power:  # NEURON is the reference: i(x = 1/2) = 2^-p i(x = 1)
                if gc.power is not None:
                    import warnings

                    warnings.warn(f"{suffix}.{g}: the BREAKPOINT reads as {g}^{gc.power} but NEURON's current scales as "
                                  f"{g}^{p}; using {p}", stacklevel=2)
                gc.power = p
            gc.ion = cur.ion or ""
            gc.current = cur.variable
            gc.gbar_name = cur.gbar
            if cur.reversal in e_rev:
                gc.e_rev = e_rev[cur.reversal]
            elif cur.reversal in e_par:
                gc.e_rev = e_par[cur.reversal]
            elif cur.reversal and info is not None and cur.reversal in info.parameters:
                gc.e_rev = cfg.parameters.get(cur.reversal, info.parameters[cur.reversal])
            gc.i_open = i_open.get(cur.variable)
            # gbar: the effective open-channel conductance measured in NEURON (it includes unit factors such
            # as 1e-4 for pS/um2 and temperature factors); None when the current is not ohmic or E is unknown
            g_open = gc.open_conductance()
            if g_open is not None and np.isfinite(g_open).any():
                gm = float(np.nanmedian(g_open))
                if gm > 0 and np.nanmax(np.abs(g_open - gm)) <= 1e-6 * gm:
                    gc.gbar = gm
        out[g] = gc
    extra = {"method": method, "dt_ms": cfg.dt_ms, "use_tables": bool(cfg.use_tables)}
    if nudged:
        extra["singular_v_mV"] = np.asarray(nudged, dtype=float)  # measured at v + NUDGE_MV (0/0 in the rates at v)
    return ChannelCurves(suffix, out, "neuron", cfg.celsius_degC, source, extra)


def _open_currents(h, info, gates, secs, base, shape, cai_grid, cfg, reads_ca, gbar_values, get, put,
                   point) -> tuple[dict, dict]:
    """Open-channel currents and exponents measured in NEURON, at the default cai.

    Returns ({current variable: (n_v,) current with every gate of that current at 1 and the conductance
    parameter at its value (mA/cm2; nA for a POINT_PROCESS)}, {current variable: {gate: exponent}}): the
    exponent p of gate x from i(x = 1/2) = 2^-p i(x = 1) (None if not an integer: x is not a factor x^p).
    Currents that cannot be read are left out."""
    out, powers = {}, {}
    if info is None:
        return out, powers
    k0 = int(np.argmin(np.abs(np.log(cai_grid) - math.log(cfg.cai_default_mM)))) if reads_ca else 0
    rows = range(k0 * shape[1], (k0 + 1) * shape[1])

    def current(c, values):
        for k in rows:
            _, seg, vi, ci = secs[k]
            for g2 in gates:
                put(k, g2, float(base[g2][k]))
            for g2, x in values.items():
                put(k, g2, x)
            for gname, val in gbar_values.items():
                put(k, gname, val)
            seg.v = vi
            if reads_ca:
                seg.cai = ci
        h.fcurrent()
        vals = []
        for k in rows:
            try:  # the mechanism's own variable (RANGE, nonspecific, or a POINT_PROCESS's)
                vals.append(float(get(k, c.variable)))
            except (AttributeError, LookupError, NameError):
                if point:
                    raise
                vals.append(float(getattr(secs[k][1], c.variable)))  # the ion's current (only this mechanism writes it)
        return np.asarray(vals)

    for c in info.currents:
        opened = list(dict.fromkeys(list(c.powers) + list(c.gates)))
        if not opened or (c.gbar and c.gbar not in gbar_values):
            continue
        try:
            i1 = current(c, {g: 1.0 for g in opened})
            out[c.variable] = i1
            fin = np.isfinite(i1)
            ok = fin & (np.abs(np.where(fin, i1, 0.0)) > 1e-6 * np.max(np.abs(i1[fin]))) if fin.any() else fin
            powers[c.variable] = {}
            for g in opened:
                if not ok.any():
                    break
                ih = current(c, {**{g2: 1.0 for g2 in opened}, g: 0.5})
                with np.errstate(divide="ignore", invalid="ignore"):
                    p = np.log(ih[ok] / i1[ok]) / math.log(0.5)
                pm = float(np.median(p)) if np.isfinite(p).all() else float("nan")
                exact = np.isfinite(pm) and np.max(np.abs(p - round(pm))) < 1e-6 and round(pm) >= 1
                powers[c.variable][g] = int(round(pm)) if exact else None
        except (AttributeError, LookupError, NameError, RuntimeError, TypeError):
            pass
        finally:
            for k in rows:
                for gname in gbar_values:
                    put(k, gname, 0.0)
    return out, powers


def plot_curves(curves: ChannelCurves, path, fits: dict | None = None, title: str | None = None) -> Path:
    """Plot x_inf and tau (log axis) of every gate; ``fits`` = {gate: {label: (v, x_inf, tau)}} overlays."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(curves.gates)
    import textwrap

    lines = [w for line in (title or "").splitlines() for w in textwrap.wrap(line, 130, subsequent_indent="      ")]
    extra_h = 0.16 * len(lines)
    fig, axes = plt.subplots(2, len(names), figsize=(max(3.6 * len(names), 9.0), 6 + extra_h), squeeze=False)
    for j, name in enumerate(names):
        g = curves.gates[name]
        ax_x, ax_t = axes[0, j], axes[1, j]
        if g.depends_on_cai:
            for k in range(0, len(g.cai), max(1, len(g.cai) // 5)):
                ax_x.plot(g.v, g.x_inf[k], label=f"cai {g.cai[k]:.1e} mM")
                ax_t.plot(g.v, g.tau[k])
            ax_x.legend(fontsize=6)
        else:
            ax_x.plot(g.v, g.x_inf, "k.", ms=3, label=curves.source)
            ax_t.plot(g.v, g.tau, "k.", ms=3)
        for label, (v, xi, ta) in (fits or {}).get(name, {}).items():
            ax_x.plot(v, xi, "-", lw=1.2, label=label)
            ax_t.plot(v, ta, "-", lw=1.2)
        if not g.depends_on_cai:
            ax_x.legend(fontsize=6)
        p = f", power {g.power}" if g.power else ""
        ax_x.set_title(f"{curves.mechanism}.{name}{p}", fontsize=9)
        ax_x.set_ylabel("x_inf")
        ax_t.set_ylabel("tau (ms)")
        ax_t.set_xlabel("V (mV)")
        if np.nanmin(g.tau) > 0:
            ax_t.set_yscale("log")
    fig.tight_layout(rect=(0, extra_h / (6 + extra_h), 1, 1))
    if lines:
        fig.text(0.01, 0.005, "\n".join(lines), fontsize=6.5, family="monospace", va="bottom")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def channel_curves_command(channel, out, mod_dirs=(), config: CurveConfig | None = None, plot: bool = True,
                           verbose: bool = True) -> ChannelCurves:
    """What ``neuron-hybrid channel-curves`` does: measure, save HDF5 (and a PNG next to it), print a summary."""
    curves = measure_channel_curves(channel, mod_dirs, config, verbose=verbose)
    path = save_curves(curves, out)
    if verbose:
        print(f"{curves.mechanism}: {len(curves.gates)} gate(s) -> {path}")
        for g in curves.gates.values():
            extra = " (cai-dependent)" if g.depends_on_cai else ""
            unit = "uS" if g.point_process else "S/cm2"
            gbar = f"{g.gbar:.4g} {unit} (open channel, measured)" if g.gbar is not None else "not measured"
            print(f"  {g.name}: power={g.power} ion={g.ion!r} current={g.current} gbar ({g.gbar_name}) {gbar}, "
                  f"E={g.e_rev} mV, x_inf {np.nanmin(g.x_inf):.3g}..{np.nanmax(g.x_inf):.3g}, "
                  f"tau {np.nanmin(g.tau):.3g}..{np.nanmax(g.tau):.3g} ms{extra}")
    if plot:
        png = plot_curves(curves, Path(out).with_suffix(".png"))
        if verbose:
            print(f"  plot: {png}")
    return curves

"""Dynamic input conductances (DICs) of single-compartment conductance-based models.

Definitions (Drion et al. 2015; the Spike2Pop / NmodController.jl implementation; see
``shared/reference/dic_theory.md``). With C_m = 1 and ``dV/dt = -sum_k gbar_k G_k(x) (V - E_k)``,
at a voltage V with every gate at steady state:

* fast:      ``g_f = sum_k gbar_k G_k + sum_j w_fs,j dI/dx_j dx_j,inf/dV``
* slow:      ``g_s = sum_j (w_su,j - w_fs,j) dI/dx_j dx_j,inf/dV``
* ultraslow: ``g_u = sum_j (1 - w_su,j) dI/dx_j dx_j,inf/dV``

summed over gating variables j of every current (derivatives of x_inf by autograd, so learned
gates work too). The weights interpolate the gate's time constant on a log scale between
reference time constants tau_f < tau_s < tau_u (``w(tau; a, b) = 1`` below ``a``, 0 above ``b``,
``(ln b - ln tau)/(ln b - ln a)`` between). A gate that depends on the calcium concentration gets
a second path ``dI/dx dx_inf/dCa dCa_inf/dV`` weighted with the pool's time constant (20 ms for
STG), with Ca at its steady state ``Ca_inf(V)`` (which depends on the Ca conductances, so the
DICs are linear in every gbar except those feeding the pool). Instantaneous current factors
(NMDA Mg2+ block) are fast. Every DIC is divided by g_leak (dimensionless; the leak adds 1 to g_f).

Public functions: :func:`dics`, :func:`sensitivity_matrix`, :func:`threshold_voltage`,
:func:`log_weight`, and :class:`SensitivityAtV` (fast per-model matrices at one voltage).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .model import CompartmentModel, LearnedGates, as_gbar_array

__all__ = ["get_model", "log_weight", "sensitivity_matrix", "dics", "threshold_voltage", "SensitivityAtV"]

DT = torch.float64


def get_model(model) -> CompartmentModel:
    """``"stg"``, ``"da"`` or a :class:`CompartmentModel` -> the model object."""
    if isinstance(model, CompartmentModel):
        return model
    if isinstance(model, str):
        key = model.lower()
        if key == "stg":
            from .stg import STG
            return STG
        if key == "da":
            from .da import DA
            return DA
        raise ValueError(f"unknown model {model!r}: use 'stg', 'da' or a neuron_hybrid.dic.CompartmentModel")
    raise TypeError(f"model must be 'stg', 'da' or a CompartmentModel, not {type(model).__name__}")


def log_weight(tau, tau_a, tau_b):
    """Log-timescale weight: 1 if tau <= tau_a, 0 if tau > tau_b, else
    ``(ln tau_b - ln tau)/(ln tau_b - ln tau_a)`` (all in ms, torch or numpy broadcasting)."""
    tau, tau_a, tau_b = (torch.as_tensor(x, dtype=DT) for x in (tau, tau_a, tau_b))
    mid = (torch.log(tau_b) - torch.log(tau)) / (torch.log(tau_b) - torch.log(tau_a))
    w = torch.where(tau <= tau_a, torch.ones_like(mid), mid)
    return torch.where(tau > tau_b, torch.zeros_like(mid), w)


def _grad(y, x):
    (g,) = torch.autograd.grad(y.sum(), x, retain_graph=True, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def _gate_depends_on_cai(cond) -> bool:
    m = cond.mechanism
    return not isinstance(m, LearnedGates) and m.uses_cai


class _Pieces:
    """Per-voltage building blocks of the sensitivity matrix (torch, shape of V)."""

    def __init__(self, model: CompartmentModel, v: torch.Tensor, cai: torch.Tensor | None, only=None):
        self.model = model
        self.v = v
        self.cai = cai
        self.gates = []  # per conductance: list of dicts(name, power, inf, dinf_dv, dinf_dca, tau)
        for ci, c in enumerate(model.conductances):
            lst = []
            if c.gates and (only is None or ci in only):
                r = model.gate_rates(c, v, cai)
                for gname, p in c.gates:
                    xinf, tau = r[gname]
                    d_v = _grad(xinf, v) if xinf.requires_grad else torch.zeros_like(v)
                    d_ca = (_grad(xinf, cai) if (cai is not None and xinf.requires_grad and _gate_depends_on_cai(c))
                            else torch.zeros_like(v))
                    lst.append(dict(name=gname, power=p, inf=xinf.detach(), dv=d_v.detach(), dca=d_ca.detach(),
                                    tau=tau.detach()))
            self.gates.append(lst)
        self.factor = []
        for c in model.conductances:
            f = model.factor_value(c, v)
            if f is None:
                self.factor.append(None)
            else:
                self.factor.append((f.detach(), _grad(f, v).detach()))

    def tau_ref(self, spec):
        if spec is None:
            taus = [g["tau"] for lst in self.gates for g in lst]
            return torch.stack(taus).min(dim=0).values
        if isinstance(spec, (int, float)):
            return torch.full_like(self.v, float(spec))
        cname, gname = spec
        ci = self.model.index(cname)
        for g in self.gates[ci]:
            if g["name"] == gname:
                return g["tau"]
        raise KeyError(f"{self.model.name}: no gate {gname!r} in conductance {cname!r}")

    def unit_current_terms(self, ci):
        """Static G, and per gate dI1/dx (per unit gbar, mV) for conductance ci."""
        c = self.model.conductances[ci]
        lst = self.gates[ci]
        f = self.factor[ci]
        G = torch.ones_like(self.v)
        for g in lst:
            G = G * g["inf"] ** g["power"]
        fval = f[0] if f is not None else 1.0
        drive = self.v.detach() - c.reversal
        dI = []
        for j, g in enumerate(lst):
            others = torch.ones_like(self.v)
            for k, o in enumerate(lst):
                if k != j:
                    others = others * o["inf"] ** o["power"]
            dI.append(fval * g["power"] * g["inf"] ** (g["power"] - 1) * others * drive)
        return fval * G, G, dI


def _pool_steady(model: CompartmentModel, v: torch.Tensor, gbar_t: torch.Tensor):
    """Ca_inf(V) (mM) and its derivative dCa_inf/dV for each model (gbar_t (N, n_g) mS/cm2)."""
    ica = torch.zeros_like(v)
    for ci, c in enumerate(model.conductances):
        if c.ion != "ca":
            continue
        if _gate_depends_on_cai(c):
            raise NotImplementedError("calcium channels whose gates depend on calcium are not supported")
        r = model.gate_rates(c, v, None)
        G = torch.ones_like(v)
        for gname, p in c.gates:
            G = G * r[gname][0] ** p
        f = model.factor_value(c, v)
        if f is not None:
            G = G * f
        ica = ica + gbar_t[:, ci:ci + 1] * 1e-3 * G * (v - c.reversal)
    pool = model.pool
    fn = pool._functions()["inf"]
    args = pool._args(ica, dict(model.pool_params))
    cai = fn(*args)
    return cai, _grad(cai, v)


def sensitivity_matrix(model, v, gbar=None, *, normalize: bool = False) -> np.ndarray:
    """Sensitivity matrix ``S`` with ``(g_f, g_s, g_u) = S @ gbar``.

    ``model``: ``"stg"``, ``"da"`` or a :class:`CompartmentModel`; ``v``: voltages (mV), shape (M,);
    ``gbar``: maximal conductances (mS/cm2, dict or (N, n_g) array); needed only for models with a
    calcium pool (Ca_inf depends on the Ca conductances). Returns an array (N, M, 3, n_g)
    (dimensionless per unit gbar), or (M, 3, n_g) when ``gbar`` is a single dict / None. With
    ``normalize=True`` every row is divided by the models' g_leak (then ``S @ gbar`` gives the
    leak-normalised DICs).
    """
    model = get_model(model)
    v_in = np.atleast_1d(np.asarray(v, dtype=np.float64))
    single = gbar is None or isinstance(gbar, dict)
    if gbar is None:
        if model.pool is not None:
            raise ValueError(f"{model.name} has a calcium pool: pass gbar (Ca_inf depends on it)")
        gb = np.ones((1, len(model.conductances)))
    else:
        gb = as_gbar_array(model, gbar)
    S = _sensitivity_torch(model, torch.as_tensor(v_in, dtype=DT), torch.as_tensor(gb, dtype=DT)).numpy()
    if normalize:
        S = S / gb[:, model.leak_index][:, None, None, None]
    return S[0] if single else S


def _sensitivity_torch(model: CompartmentModel, v_in: torch.Tensor, gb: torch.Tensor) -> torch.Tensor:
    n, m = gb.shape[0], v_in.shape[0]
    with torch.enable_grad():
        v = v_in.reshape(1, m).expand(n, m).clone().requires_grad_(True)
        cai = dcai = None
        if model.pool is not None:
            cai_v, dcai = _pool_steady(model, v, gb)
            cai = cai_v.detach().clone().requires_grad_(True)
            dcai = dcai.detach()
        pieces = _Pieces(model, v, cai)
    return _assemble(model, pieces, dcai)


def _assemble(model: CompartmentModel, pieces: _Pieces, dcai, only=None, taurefs=None) -> torch.Tensor:
    conv = model.dic
    v = pieces.v
    if taurefs is None:
        tf, ts, tu = (pieces.tau_ref(x) for x in (conv.tau_f, conv.tau_s, conv.tau_u))
    else:
        tf, ts, tu = taurefs
    pool_tau = conv.pool_tau if conv.pool_tau is not None else model.pool_tau()
    cols = []
    for ci, c in enumerate(model.conductances):
        if only is not None and ci not in only:
            continue
        static, _, dI = pieces.unit_current_terms(ci)
        sf = static.clone()
        ss = torch.zeros_like(sf)
        su = torch.zeros_like(sf)
        f = pieces.factor[ci]
        if f is not None:  # instantaneous factor: fast
            G = torch.ones_like(sf)
            for g in pieces.gates[ci]:
                G = G * g["inf"] ** g["power"]
            sf = sf + f[1] * G * (v.detach() - c.reversal)
        for g, d in zip(pieces.gates[ci], dI):
            forced = conv.forced.get((c.name, g["name"]))
            if forced is not None:
                wfs = torch.full_like(sf, float(forced[0]))
                wsu = torch.full_like(sf, float(forced[1]))
            else:
                wfs = log_weight(g["tau"], tf, ts)
                wsu = log_weight(g["tau"], ts, tu)
            term = d * g["dv"]
            sf = sf + wfs * term
            ss = ss + (wsu - wfs) * term
            su = su + (1 - wsu) * term
            if dcai is not None and _gate_depends_on_cai(c):
                tp = torch.full_like(sf, float(pool_tau))
                wfs_c, wsu_c = log_weight(tp, tf, ts), log_weight(tp, ts, tu)
                term_c = d * g["dca"] * dcai
                sf = sf + wfs_c * term_c
                ss = ss + (wsu_c - wfs_c) * term_c
                su = su + (1 - wsu_c) * term_c
        cols.append(torch.stack([sf, ss, su], dim=-1))
    return torch.stack(cols, dim=-1).detach()  # (N, M, 3, n_g)


def dics(model, gbar, v) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leak-normalised DICs ``(g_f, g_s, g_u)`` at voltages ``v`` (mV).

    ``model``: ``"stg"``, ``"da"`` or a :class:`CompartmentModel`; ``gbar``: dict of maximal
    conductances in mS/cm2 named as in the model's documentation (``{"g_Na": ..., "g_leak": ...}``)
    or an (N, n_g) array. Returns three arrays of shape ``v`` (single dict) or (N, len(v)),
    dimensionless (conductance / g_leak).

    >>> g_f, g_s, g_u = dics("stg", STG_SPIKING, [-51.0])
    """
    model = get_model(model)
    single = isinstance(gbar, dict)
    gb = as_gbar_array(model, gbar)
    if np.any(gb[:, model.leak_index] <= 0):
        raise ValueError(f"{model.name}: g_{model.leak} must be > 0 (the DICs are divided by it)")
    scalar_v = np.ndim(v) == 0
    S = sensitivity_matrix(model, np.atleast_1d(v), gb)  # (N, M, 3, n_g)
    g = np.einsum("nmrk,nk->nmr", S, gb) / gb[:, model.leak_index][:, None, None]
    out = [g[..., r] for r in range(3)]
    if single:
        out = [x[0] for x in out]
    if scalar_v:
        out = [x[..., 0] for x in out]
    return tuple(out)


def threshold_voltage(model, gbar, *, v_min: float = -80.0, v_max: float = 0.0, step: float = 0.1,
                      tol: float = 1e-6) -> float | np.ndarray:
    """Threshold voltage V_th (mV): the first V in [v_min, v_max] where the total input
    conductance ``g_f + g_s + g_u`` crosses zero from positive to non-positive, refined by
    bisection to ``tol`` mV. NaN if there is no crossing. A single dict gives a float, an
    (N, n_g) array an (N,) array.
    """
    model = get_model(model)
    single = isinstance(gbar, dict)
    gb = as_gbar_array(model, gbar)
    grid = np.arange(v_min, v_max + 0.5 * step, step)

    def g_in(rows, volts):
        f, s, u = dics(model, gb[rows], volts)
        return f + s + u

    tot = g_in(np.arange(len(gb)), grid)  # (N, M)
    out = np.full(len(gb), np.nan)
    for k in range(len(gb)):
        cross = np.nonzero((tot[k, :-1] > 0) & (tot[k, 1:] <= 0))[0]
        if not cross.size:
            continue
        lo, hi = grid[cross[0]], grid[cross[0] + 1]
        while hi - lo > tol:
            mid = 0.5 * (lo + hi)
            if g_in([k], np.array([mid]))[0, 0] > 0:
                lo = mid
            else:
                hi = mid
        out[k] = 0.5 * (lo + hi)
    return float(out[0]) if single else out


class SensitivityAtV:
    """Fast sensitivity matrices of many models at one voltage (for population generation).

    Everything that does not depend on the calcium concentration is computed once; for each
    call only the Ca-dependent gates are re-evaluated at the models' Ca_inf. ``matrix(gbar)``
    returns (N, 3, n_g) (not normalised). Ca_inf uses ``gbar`` (including any provisional
    values of unknown Ca conductances: the iterative compensation of Brandoit et al.).
    """

    def __init__(self, model, v: float):
        self.model = get_model(model)
        self.v = float(v)
        m = self.model
        vt = torch.tensor([[self.v]], dtype=DT, requires_grad=True)
        self.ca_cols = [ci for ci, c in enumerate(m.conductances) if c.ion == "ca"]
        self.dep_cols = [ci for ci, c in enumerate(m.conductances) if _gate_depends_on_cai(c)]
        with torch.enable_grad():
            cai0 = torch.tensor([[m.cai0]], dtype=DT, requires_grad=True) if m.pool is not None else None
            base = _Pieces(m, vt, cai0)
            conv = m.dic
            self._taurefs = tuple(base.tau_ref(x) for x in (conv.tau_f, conv.tau_s, conv.tau_u))
            # columns that do not depend on calcium: computed once
            self._S0 = _assemble(m, base, torch.zeros_like(vt) if m.pool is not None else None)[0, 0].numpy()
            # per-unit-gbar Ca current (mA/cm2) and its V-derivative for the pool's Ca_inf
            if m.pool is not None:
                ica1, dica1 = [], []
                for ci in self.ca_cols:
                    c = m.conductances[ci]
                    r = m.gate_rates(c, vt, None)
                    G = torch.ones_like(vt)
                    for gname, p in c.gates:
                        G = G * r[gname][0] ** p
                    i1 = 1e-3 * G * (vt - c.reversal)
                    ica1.append(i1.item())
                    dica1.append(_grad(i1, vt).item())
                self.ica1 = np.array(ica1)
                self.dica1 = np.array(dica1)
                pool = m.pool
                fn = pool._functions()["inf"]
                c0 = fn(*pool._args(torch.tensor(0.0, dtype=DT), dict(m.pool_params))).item()
                c1 = fn(*pool._args(torch.tensor(1.0, dtype=DT), dict(m.pool_params))).item()
                self.pool_a, self.pool_b = c0, c1 - c0  # Ca_inf = a + b * ica (linear pool)

        self._np_cols = self._numpy_dep_columns()

    def _numpy_dep_columns(self):
        """Closed-form NumPy (x_inf, dx_inf/dV, dx_inf/dCa, tau) of the Ca-dependent gates at V
        (sympy derivatives of the channel definitions); None if a gate is not a sympy Channel."""
        import sympy
        from ..channels.core import CAI, CELSIUS, V as VS
        m = self.model
        out = {}
        for ci in self.dep_cols:
            c = m.conductances[ci]
            ch = c.mechanism
            if isinstance(ch, LearnedGates) or ch.coupled or c.factor is not None:
                return None
            sub = {p.symbol: sympy.Float(c.params.get(p.name, p.default)) for p in ch.parameters}
            sub[CELSIUS] = sympy.Float(m.celsius)
            gates = []
            for gname, p in c.gates:
                g = ch.gate(gname)
                inf = g.substituted_steady.subs(sub)
                tau = g.substituted_tau.subs(sub)
                exprs = [inf, sympy.diff(inf, VS), sympy.diff(inf, CAI), tau]
                fns = [sympy.lambdify([CAI], e.subs(VS, self.v), modules="numpy") for e in exprs]
                gates.append((gname, p, fns))
            out[ci] = gates
        return out

    def _numpy_matrix_columns(self, cai, dcai):
        m = self.model
        conv = m.dic
        tf, ts, tu = (float(x.reshape(-1)[0]) for x in self._taurefs)
        pool_tau = conv.pool_tau if conv.pool_tau is not None else m.pool_tau()

        def w(tau, a, b):
            mid = (np.log(b) - np.log(tau)) / (np.log(b) - np.log(a))
            return np.where(tau <= a, 1.0, np.where(tau > b, 0.0, mid))

        cols = []
        for ci in self.dep_cols:
            c = m.conductances[ci]
            vals = []
            for gname, p, fns in self._np_cols[ci]:
                vals.append((gname, p, *[np.broadcast_to(np.asarray(f(cai), dtype=np.float64), cai.shape) for f in fns]))
            G = np.ones_like(cai)
            for _, p, inf, *_ in vals:
                G = G * inf ** p
            sf, ss, su = G.copy(), np.zeros_like(G), np.zeros_like(G)
            drive = self.v - c.reversal
            for j, (gname, p, inf, dv, dca, tau) in enumerate(vals):
                others = np.ones_like(cai)
                for k, (_, pk, infk, *_) in enumerate(vals):
                    if k != j:
                        others = others * infk ** pk
                dI = p * inf ** (p - 1) * others * drive
                forced = conv.forced.get((c.name, gname))
                wfs, wsu = (forced if forced is not None else (w(tau, tf, ts), w(tau, ts, tu)))
                term = dI * dv
                sf, ss, su = sf + wfs * term, ss + (wsu - wfs) * term, su + (1 - wsu) * term
                wfs_c, wsu_c = w(pool_tau, tf, ts), w(pool_tau, ts, tu)
                term = dI * dca * dcai
                sf, ss, su = sf + wfs_c * term, ss + (wsu_c - wfs_c) * term, su + (1 - wsu_c) * term
            cols.append(np.stack([sf, ss, su], axis=-1))
        return np.stack(cols, axis=-1)  # (n, 3, len(dep_cols))

    def ca_inf(self, gbar: np.ndarray):
        """Ca_inf (mM) and dCa_inf/dV (mM/mV) at V for each model (gbar (N, n_g) mS/cm2)."""
        ica = gbar[:, self.ca_cols] @ self.ica1
        dica = gbar[:, self.ca_cols] @ self.dica1
        return self.pool_a + self.pool_b * ica, self.pool_b * dica

    def matrix(self, gbar) -> np.ndarray:
        m = self.model
        gb = as_gbar_array(m, gbar)
        n = gb.shape[0]
        S = np.broadcast_to(self._S0, (n, 3, len(m.conductances))).copy()
        if m.pool is None or not self.dep_cols:
            return S
        cai, dcai = self.ca_inf(gb)
        if self._np_cols is not None:
            S[:, :, self.dep_cols] = self._numpy_matrix_columns(cai, dcai)
            return S
        with torch.enable_grad():
            v = torch.full((n, 1), self.v, dtype=DT, requires_grad=True)
            cai_t = torch.as_tensor(cai, dtype=DT).reshape(n, 1).clone().requires_grad_(True)
            pieces = _Pieces(m, v, cai_t, only=self.dep_cols)
        taurefs = tuple(x.expand(n, 1) for x in self._taurefs)
        cols = _assemble(m, pieces, torch.as_tensor(dcai, dtype=DT).reshape(n, 1), only=self.dep_cols,
                         taurefs=taurefs)[:, 0].numpy()  # (n, 3, len(dep_cols))
        S[:, :, self.dep_cols] = cols
        return S

"""Closed-form gating functions: candidate families, least-squares fits and selection by AIC/BIC.

x_inf families: ``boltzmann`` 1/(1+exp(-(V-vh)/k)) and ``gsigmoid`` (generalised sigmoid)
a/(1+exp(-(V-vh)/k)) + b. tau families (ms): ``constant``, ``exponential`` c + a exp(V/k),
``sigmoid`` c + a/(1+exp(-(V-vh)/k)), ``bell`` c + a/(exp((V-vh)/k1) + exp(-(V-vh)/k2)),
``gaussian`` c + a exp(-((V-vh)/s)^2) and the HH alpha/beta form ``linoid`` c + 1/(alpha+beta) with
a linoid alpha = a (V-vh1)/(1-exp(-(V-vh1)/k1)) and an exponential beta = b exp(-(V-vh2)/k2).
The library baseline uses ``thermo``, the "flexible thermodynamic" tau of the omnimodel:
A/(exp(-sum_j a_j d^j) + exp(sum_j b_j d^j)), d = (V-vh)/50 mV, j = 1..4.

x_inf is fitted on its values, tau on ln(tau) (relative error). Each family is fitted from several
starting points (deterministic) with ``scipy.optimize.least_squares``; :func:`select` keeps the
family with the lowest information criterion ``n ln(RSS/n) + penalty * p`` (AIC: 2, BIC: ln n).
Every family also has a sympy expression of V (:data:`neuron_hybrid.channels.V`) so that the
winner can be written into NMODL (:mod:`neuron_hybrid.kinetics.distill`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import sympy
from scipy.optimize import least_squares

from ..channels.core import V as VSYM, vtrap

__all__ = ["Family", "FitResult", "X_INF_FAMILIES", "TAU_FAMILIES", "THERMO", "GSIGMOID", "fit_family", "select",
           "information_criterion"]

_EXP_CLIP = 300.0


def _ex(x):
    return np.exp(np.clip(x, -_EXP_CLIP, _EXP_CLIP))


def _sig(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _linoid(x):
    """x/(1-exp(-x)) with the limit 1 at x = 0 (dimensionless)."""
    x = np.asarray(x, dtype=float)
    small = np.abs(x) < 1e-6
    xs = np.where(small, 1.0, x)
    return np.where(small, 1.0 + x / 2.0, xs / -np.expm1(-np.clip(xs, -_EXP_CLIP, _EXP_CLIP)))


@dataclass
class Family:
    """A closed-form family: ``fn(v, p)`` (numpy), ``expr(p)`` (sympy in V), starting points, bounds."""

    name: str
    kind: str  # "x_inf" or "tau"
    params: tuple[str, ...]
    fn: Callable
    expr: Callable
    inits: Callable  # (v, y) -> list of parameter vectors
    lower: tuple
    upper: tuple
    template: str = ""

    @property
    def n_params(self) -> int:
        return len(self.params)


@dataclass
class FitResult:
    family: Family
    params: np.ndarray
    rss: float  # on x_inf, or on ln tau
    n: int
    rmse: float
    criteria: dict = field(default_factory=dict)

    def __call__(self, v) -> np.ndarray:
        return self.family.fn(np.asarray(v, dtype=float), self.params)

    def sympy(self) -> sympy.Expr:
        return self.family.expr(self.params)

    def formula(self, digits: int = 4) -> str:
        lhs = "x_inf" if self.family.kind == "x_inf" else "tau"
        e = self.sympy().evalf(digits)
        return f"{lhs}(v) = {sympy.sstr(e)}" + ("" if self.family.kind == "x_inf" else "  [ms]")

    def as_dict(self) -> dict:
        return {"family": self.family.name, "params": dict(zip(self.family.params, map(float, self.params))),
                "rmse": self.rmse, "n": self.n, **self.criteria, "formula": self.formula()}


def _f(x):
    return sympy.Float(float(x))


def _vh_grid(v):
    lo, hi = float(np.min(v)), float(np.max(v))
    return np.linspace(lo + 0.15 * (hi - lo), hi - 0.15 * (hi - lo), 5)


# ---- x_inf -----------------------------------------------------------------------------------
def _boltz_inits(v, y):
    out = []
    for vh in _vh_grid(v):
        for k in (-12.0, -5.0, 5.0, 12.0):
            out.append([vh, k])
    # from the data: midpoint crossing and slope sign
    rising = y[-1] > y[0]
    j = int(np.argmin(np.abs(y - 0.5 * (np.nanmax(y) + np.nanmin(y)))))
    out.append([v[j], 6.0 if rising else -6.0])
    return out


BOLTZMANN = Family(
    "boltzmann", "x_inf", ("vh", "k"),
    lambda v, p: _sig((v - p[0]) / p[1]),
    lambda p: 1 / (1 + sympy.exp(-(VSYM - _f(p[0])) / _f(p[1]))),
    _boltz_inits, (-200.0, -200.0), (200.0, 200.0), "1/(1+exp(-(v-vh)/k))")


def _gsig_inits(v, y):
    lo, hi = float(np.nanmin(y)), float(np.nanmax(y))
    return [[p[0], p[1], max(hi - lo, 1e-3), lo] for p in _boltz_inits(v, y)]


GSIGMOID = Family(
    "gsigmoid", "x_inf", ("vh", "k", "a", "b"),
    lambda v, p: p[2] * _sig((v - p[0]) / p[1]) + p[3],
    lambda p: _f(p[2]) / (1 + sympy.exp(-(VSYM - _f(p[0])) / _f(p[1]))) + _f(p[3]),
    _gsig_inits, (-200.0, -200.0, -1.0, -0.5), (200.0, 200.0, 2.0, 1.0), "a/(1+exp(-(v-vh)/k)) + b")


# ---- tau (fitted in log space; parameters a, b, c > 0) ------------------------------------------
def _tau_scale(y):
    return float(np.nanmax(y)), float(np.nanmin(y))


CONSTANT = Family("constant", "tau", ("c",), lambda v, p: np.full_like(v, p[0], dtype=float),
                  lambda p: _f(p[0]), lambda v, y: [[float(np.exp(np.nanmean(np.log(y))))]],
                  (1e-6,), (1e7,), "c")


def _exp_inits(v, y):
    mx, mn = _tau_scale(y)
    out = []
    for k in (-40.0, -15.0, 15.0, 40.0):
        ref = v[0] if k < 0 else v[-1]
        a = max(mx - mn, 1e-6) * math.exp(-ref / k)
        out.append([max(mn * 0.5, 1e-6), a, k])
    return out


EXPONENTIAL = Family("exponential", "tau", ("c", "a", "k"),
                     lambda v, p: p[0] + p[1] * _ex(v / p[2]),
                     lambda p: _f(p[0]) + _f(p[1]) * sympy.exp(VSYM / _f(p[2])),
                     _exp_inits, (1e-7, 1e-30, -200.0), (1e7, 1e30, 200.0), "c + a*exp(v/k)")


def _sigtau_inits(v, y):
    mx, mn = _tau_scale(y)
    return [[max(mn, 1e-6), max(mx - mn, 1e-6), vh, k] for vh in _vh_grid(v) for k in (-10.0, 10.0)]


SIGMOID_TAU = Family("sigmoid", "tau", ("c", "a", "vh", "k"),
                     lambda v, p: p[0] + p[1] * _sig((v - p[2]) / p[3]),
                     lambda p: _f(p[0]) + _f(p[1]) / (1 + sympy.exp(-(VSYM - _f(p[2])) / _f(p[3]))),
                     _sigtau_inits, (1e-7, 1e-7, -200.0, -200.0), (1e7, 1e7, 200.0, 200.0), "c + a/(1+exp(-(v-vh)/k))")


def _bell_inits(v, y):
    mx, mn = _tau_scale(y)
    vpk = float(v[int(np.nanargmax(y))])
    out = []
    for vh in (vpk, *_vh_grid(v)[::2]):
        for k1, k2 in ((10.0, 10.0), (25.0, 15.0), (15.0, 25.0), (5.0, 5.0)):
            out.append([max(mn * 0.5, 1e-6), 2 * max(mx - mn, 1e-6), vh, k1, k2])
    return out


BELL = Family("bell", "tau", ("c", "a", "vh", "k1", "k2"),
              lambda v, p: p[0] + p[1] / (_ex((v - p[2]) / p[3]) + _ex(-(v - p[2]) / p[4])),
              lambda p: _f(p[0]) + _f(p[1]) / (sympy.exp((VSYM - _f(p[2])) / _f(p[3])) + sympy.exp(-(VSYM - _f(p[2])) / _f(p[4]))),
              _bell_inits, (1e-7, 1e-7, -250.0, 0.5, 0.5), (1e7, 1e8, 250.0, 300.0, 300.0),
              "c + a/(exp((v-vh)/k1) + exp(-(v-vh)/k2))")


def _gauss_inits(v, y):
    mx, mn = _tau_scale(y)
    vpk = float(v[int(np.nanargmax(y))])
    return [[max(mn, 1e-6), max(mx - mn, 1e-6), vpk, s] for s in (10.0, 25.0, 50.0)]


GAUSSIAN = Family("gaussian", "tau", ("c", "a", "vh", "s"),
                  lambda v, p: p[0] + p[1] * _ex(-((v - p[2]) / p[3]) ** 2),
                  lambda p: _f(p[0]) + _f(p[1]) * sympy.exp(-((VSYM - _f(p[2])) / _f(p[3])) ** 2),
                  _gauss_inits, (1e-7, 1e-7, -250.0, 1.0), (1e7, 1e7, 250.0, 300.0), "c + a*exp(-((v-vh)/s)^2)")


def _lin_inits(v, y):
    mx, mn = _tau_scale(y)
    r = 1.0 / max(mn, 1e-6)
    out = []
    for vh1 in _vh_grid(v)[::2]:
        for k in (5.0, 10.0, 20.0):
            out.append([1e-6, 0.1 * r / k, vh1, k, 0.1 * r, vh1 - 10.0, 2 * k])
    return out


def _linoid_tau(v, p):
    c, a, vh1, k1, b, vh2, k2 = p
    alpha = a * k1 * _linoid((v - vh1) / k1)
    beta = b * _ex(-(v - vh2) / k2)
    return c + 1.0 / (alpha + beta)


def _linoid_expr(p):
    c, a, vh1, k1, b, vh2, k2 = map(_f, p)
    alpha = a * vtrap(-(VSYM - vh1), k1)
    beta = b * sympy.exp(-(VSYM - vh2) / k2)
    return c + 1 / (alpha + beta)


LINOID = Family("linoid", "tau", ("c", "a", "vh1", "k1", "b", "vh2", "k2"), _linoid_tau, _linoid_expr, _lin_inits,
                (0.0, 1e-9, -250.0, 0.5, 1e-9, -300.0, 0.5), (1e7, 1e4, 250.0, 200.0, 1e4, 300.0, 300.0),
                "c + 1/(a*(v-vh1)/(1-exp(-(v-vh1)/k1)) + b*exp(-(v-vh2)/k2))")


def _lin2_inits(v, y):
    mx, mn = _tau_scale(y)
    r = 1.0 / max(mn, 1e-6)
    out = []
    vpk = float(v[int(np.nanargmax(y))])
    for vh in sorted({vpk, *_vh_grid(v)[::3]}):
        for k in (5.0, 10.0, 20.0):
            out.append([1e-6, 0.1 * r / k, vh, k, 0.1 * r / k, vh, k])
    return out


def _linoid2_tau(v, p):
    c, a, vh1, k1, b, vh2, k2 = p
    alpha = a * k1 * _linoid((v - vh1) / k1)
    beta = b * k2 * _linoid(-(v - vh2) / k2)
    return c + 1.0 / (alpha + beta)


def _linoid2_expr(p):
    c, a, vh1, k1, b, vh2, k2 = map(_f, p)
    return c + 1 / (a * vtrap(-(VSYM - vh1), k1) + b * vtrap(VSYM - vh2, k2))


#: both rates linoid (alpha rising, beta falling), as in the trap0/vtrap rates of Mainen- and Traub-style files
LINOID2 = Family("linoid2", "tau", ("c", "a", "vh1", "k1", "b", "vh2", "k2"), _linoid2_tau, _linoid2_expr, _lin2_inits,
                 (0.0, 1e-9, -250.0, 0.5, 1e-9, -250.0, 0.5), (1e7, 1e4, 250.0, 200.0, 1e4, 250.0, 200.0),
                 "c + 1/(a*(v-vh1)/(1-exp(-(v-vh1)/k1)) + b*(vh2-v)/(1-exp((v-vh2)/k2)))")


def _thermo_tau(v, p):
    d = (v - p[1]) / 50.0
    p1 = p[2] * d + p[3] * d**2 + p[4] * d**3 + p[5] * d**4
    p2 = p[6] * d + p[7] * d**2 + p[8] * d**3 + p[9] * d**4
    return np.clip(p[0] * np.exp(-np.logaddexp(-p1, p2)), 1e-3, 1e4)


def _thermo_expr(p):
    d = (VSYM - _f(p[1])) / 50
    p1 = sum(_f(p[2 + j]) * d ** (j + 1) for j in range(4))
    p2 = sum(_f(p[6 + j]) * d ** (j + 1) for j in range(4))
    return _f(p[0]) / (sympy.exp(-p1) + sympy.exp(p2))


def _thermo_inits(v, y):
    mx, mn = _tau_scale(y)
    vpk = float(v[int(np.nanargmax(y))])
    out = []
    for vh in (vpk, float(np.mean(v))):
        for s in (1.0, 3.0):
            out.append([2 * mx, vh, s, 0, 0, 0, s, 0, 0, 0])
    out.append([2 * mx, vpk, 0.01, 0, 0, 0, 0.01, 0, 0, 0])
    return out


THERMO = Family("thermo", "tau", ("A", "vh", "a1", "a2", "a3", "a4", "b1", "b2", "b3", "b4"), _thermo_tau, _thermo_expr,
                _thermo_inits, (1e-6, -250.0) + (-60.0,) * 8, (1e6, 250.0) + (60.0,) * 8,
                "A/(exp(-sum a_j d^j) + exp(sum b_j d^j)), d=(v-vh)/50")

def _linx_inits(v, y):
    rising = y[-1] > y[0]
    out = []
    for vh1 in _vh_grid(v)[::2]:
        for k1 in (5.0, 10.0, 20.0):
            for k2 in (20.0, 60.0):
                out.append([vh1, k1, 0.0, k2 if rising else -k2])
    return out


def _linx(v, p):
    vh1, k1, lr, k2 = p
    alpha = k1 * _linoid((v - vh1) / k1)
    beta = np.exp(np.clip(lr - v / k2, -_EXP_CLIP, _EXP_CLIP))
    return alpha / (alpha + beta)


def _linx_expr(p):
    vh1, k1, lr, k2 = map(_f, p)
    alpha = vtrap(-(VSYM - vh1), k1)
    return alpha / (alpha + sympy.exp(lr - VSYM / k2))


LINOID_X = Family("linoid_ab", "x_inf", ("vh1", "k1", "lnr", "k2"), _linx, _linx_expr, _linx_inits,
                  (-250.0, 0.5, -60.0, -400.0), (250.0, 200.0, 60.0, 400.0),
                  "alpha/(alpha+beta), alpha=(v-vh1)/(1-exp(-(v-vh1)/k1)), beta=exp(lnr - v/k2)")


def _esx_inits(v, y):
    out = []
    for v2 in _vh_grid(v)[::2]:
        for k1 in (10.0, 20.0, -20.0):
            for lr in (-3.0, 0.0):
                out.append([lr, k1, v2, 10.0])
    return out


def _esx(v, p):
    lr, k1, v2, k2 = p
    alpha = np.exp(np.clip(lr - v / k1, -_EXP_CLIP, _EXP_CLIP))
    beta = _sig((v - v2) / k2)
    return alpha / (alpha + beta)


def _esx_expr(p):
    lr, k1, v2, k2 = map(_f, p)
    alpha = sympy.exp(lr - VSYM / k1)
    return alpha / (alpha + 1 / (1 + sympy.exp(-(VSYM - v2) / k2)))


EXPSIG_X = Family("expsig_ab", "x_inf", ("lnr", "k1", "v2", "k2"), _esx, _esx_expr, _esx_inits,
                  (-60.0, -400.0, -250.0, -200.0), (60.0, 400.0, 250.0, 200.0),
                  "alpha/(alpha+beta), alpha=exp(lnr - v/k1), beta=1/(1+exp(-(v-v2)/k2))")


def _est_inits(v, y):
    mx, mn = _tau_scale(y)
    r = 1.0 / max(mn, 1e-6)
    out = []
    for v2 in _vh_grid(v)[::2]:
        for k1 in (10.0, 20.0, -20.0):
            out.append([1e-6, 0.1 * r * math.exp(-float(np.mean(v)) / k1) if abs(float(np.mean(v)) / k1) < 50 else 0.1 * r,
                        k1, r, v2, 10.0])
    return out


def _est(v, p):
    c, a, k1, b, v2, k2 = p
    return c + 1.0 / (a * _ex(-v / k1) + b * _sig((v - v2) / k2))


def _est_expr(p):
    c, a, k1, b, v2, k2 = map(_f, p)
    return c + 1 / (a * sympy.exp(-VSYM / k1) + b / (1 + sympy.exp(-(VSYM - v2) / k2)))


EXPSIG_TAU = Family("expsig_ab", "tau", ("c", "a", "k1", "b", "v2", "k2"), _est, _est_expr, _est_inits,
                    (0.0, 1e-30, -400.0, 1e-9, -250.0, -200.0), (1e7, 1e30, 400.0, 1e4, 250.0, 200.0),
                    "c + 1/(a*exp(-v/k1) + b/(1+exp(-(v-v2)/k2)))")

X_INF_FAMILIES = (BOLTZMANN, GSIGMOID, LINOID_X, EXPSIG_X)
TAU_FAMILIES = (CONSTANT, EXPONENTIAL, SIGMOID_TAU, BELL, GAUSSIAN, LINOID, LINOID2, EXPSIG_TAU)


def _residual_fn(fam: Family, v, y):
    if fam.kind == "x_inf":
        return lambda p: fam.fn(v, p) - y
    ly = np.log(y)

    def res(p):
        t = fam.fn(v, p)
        return np.log(np.maximum(t, 1e-30)) - ly
    return res


def fit_family(fam: Family, v, y, *, max_nfev: int = 400) -> FitResult:
    """Least-squares fit of ``fam`` to samples (v [mV], y); NaN samples are ignored."""
    v = np.asarray(v, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(y) & np.isfinite(v) & ((y > 0) if fam.kind == "tau" else True)
    v, y = v[ok], y[ok]
    if len(v) < fam.n_params + 1:
        raise ValueError(f"{fam.name}: {len(v)} valid samples are too few for {fam.n_params} parameters")
    res = _residual_fn(fam, v, y)
    lo, hi = np.asarray(fam.lower, float), np.asarray(fam.upper, float)
    best = None
    for p0 in fam.inits(v, y):
        p0 = np.clip(np.asarray(p0, float), lo + 1e-12 * (np.abs(lo) + 1), hi - 1e-12 * (np.abs(hi) + 1))
        p0 = np.where(np.abs(p0) < 1e-12, np.where(lo < 0, 1e-9, p0), p0)
        try:
            with np.errstate(all="ignore"):
                r = least_squares(res, p0, bounds=(lo, hi), method="trf", max_nfev=max_nfev, x_scale="jac")
        except (ValueError, FloatingPointError):
            continue
        if not np.all(np.isfinite(r.fun)):
            continue
        rss = float(np.sum(r.fun ** 2))
        if best is None or rss < best[1]:
            best = (r.x, rss)
    if best is None:
        return FitResult(fam, np.full(fam.n_params, np.nan), math.inf, len(v), math.inf)
    return FitResult(fam, best[0], best[1], len(v), math.sqrt(best[1] / len(v)))


def information_criterion(rss: float, n: int, k: int, kind: str = "bic") -> float:
    """``n ln(RSS/n) + penalty*k`` with penalty 2 (AIC) or ln n (BIC); RSS floored at 1e-300."""
    pen = 2.0 if kind == "aic" else math.log(n)
    return n * math.log(max(rss, 1e-300) / n) + pen * k


def select(v, y, kind: str, families=None, criterion: str = "bic") -> tuple[FitResult, list[FitResult]]:
    """Fit every family of ``kind`` ("x_inf"/"tau") and return (best by ``criterion``, all fits)."""
    fams = families or (X_INF_FAMILIES if kind == "x_inf" else TAU_FAMILIES)
    fits = []
    for fam in fams:
        r = fit_family(fam, v, y)
        for c in ("aic", "bic"):
            r.criteria[c] = information_criterion(r.rss, r.n, fam.n_params, c) if math.isfinite(r.rss) else math.inf
        fits.append(r)
    best = min(fits, key=lambda r: r.criteria[criterion])
    return best, fits

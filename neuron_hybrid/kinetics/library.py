"""A generated library of HH-type channel kinetics for benchmarking gate fits.

:func:`generate_library` draws channels (1-2 gates each) of the classes Na, K, Ca and Ih with parameter
ranges typical of published models, using the standard rate families: exponential, sigmoid and
linoid (alpha/beta) rates giving x_inf = a/(a+b), tau = 1/(a+b); Boltzmann / saturating
(c * Boltzmann + d, plateau below 1) steady states with bell, Gaussian, sigmoid, constant or
two-bump (non-monotonic) time constants. Deterministic for a given seed.
"""
from __future__ import annotations

import numpy as np

__all__ = ["generate_library", "V_GRID"]

#: voltages of the library curves (mV)
V_GRID = np.linspace(-100.0, 60.0, 81)

CLASSES = {  # class: [(gate kind, vh range, |k| range, tau range ms)]
    "Na": [("act", (-50, -20), (4, 10), (0.03, 1.0)), ("inact", (-80, -45), (4, 10), (0.3, 20))],
    "K": [("act", (-45, 15), (5, 22), (0.5, 120)), ("inact", (-85, -30), (5, 15), (5, 1500))],
    "Ca": [("act", (-65, -5), (3, 10), (0.3, 25)), ("inact", (-95, -40), (3, 12), (10, 400))],
    "Ih": [("inact", (-110, -65), (5, 14), (15, 2000))],
}


def _sig(x):
    return 0.5 * (1 + np.tanh(0.5 * x))


def _lin(x):
    x = np.where(np.abs(x) < 1e-9, 1e-9, x)
    return x / -np.expm1(-x)


def _gate(rng, kind, vh_r, k_r, tau_r, v):
    vh = rng.uniform(*vh_r)
    k = rng.uniform(*k_r) * (1 if kind == "act" else -1)
    tmin, tmax = tau_r
    tpk = float(np.exp(rng.uniform(np.log(tmin), np.log(tmax))))
    family = rng.choice(["ab_exp", "ab_linoid", "ab_sig", "boltz_bell", "boltz_gauss", "sat_bell", "boltz_sigtau",
                         "boltz_const", "boltz_twobump"], p=[.12, .14, .08, .16, .12, .14, .1, .04, .1])
    if family.startswith("ab_"):
        # alpha, beta (1/ms) with the requested midpoint and slope; scale sets the tau peak
        r = 1.0 / tpk
        s = abs(k)
        if family == "ab_exp":
            a = r * np.exp(np.clip((v - vh) / (2 * s), -50, 50))
            b = r * np.exp(np.clip(-(v - vh) / (2 * s), -50, 50))
        elif family == "ab_linoid":
            a = r * _lin((v - vh) / s)
            b = r * np.exp(np.clip(-(v - vh) / (rng.uniform(1.5, 4) * s), -50, 50))
        else:
            a = r * np.exp(np.clip(-(v - vh) / (rng.uniform(1.5, 3) * s), -50, 50))
            b = r / (1 + np.exp(np.clip(-(v - vh) / s, -50, 50)))
        if kind == "inact" and family != "ab_sig":
            a, b = b, a
        x = a / (a + b)
        tau = 1.0 / (a + b)
        tau = tau * tpk / tau.max()
        return x, tau, str(family)
    x = _sig((v - vh) / k)
    if family == "sat_bell":
        c = rng.uniform(0.5, 0.95)
        x = c * x + rng.uniform(0, 0.05)
    t0 = tpk * rng.uniform(0.02, 0.3)
    vt = vh + rng.uniform(-15, 15)
    if family in ("boltz_bell", "sat_bell"):
        k1, k2 = rng.uniform(8, 40), rng.uniform(8, 40)
        tau = t0 + (tpk - t0) * 2 / (np.exp(np.clip((v - vt) / k1, -50, 50)) + np.exp(np.clip(-(v - vt) / k2, -50, 50)))
    elif family == "boltz_gauss":
        tau = t0 + (tpk - t0) * np.exp(-((v - vt) / rng.uniform(10, 50)) ** 2)
    elif family == "boltz_sigtau":
        tau = t0 + (tpk - t0) * _sig((v - vt) / rng.choice([-1, 1]) / rng.uniform(4, 15))
    elif family == "boltz_const":
        tau = np.full_like(v, tpk)
    else:  # two bumps: non-monotonic with a shoulder
        tau = t0 + (tpk - t0) * (np.exp(-((v - vt) / rng.uniform(8, 20)) ** 2)
                                 + rng.uniform(0.2, 0.6) * np.exp(-((v - vt - rng.uniform(25, 50)) / rng.uniform(8, 20)) ** 2))
    return x, tau, str(family)


def generate_library(n_channels: int, seed: int = 0, v=V_GRID) -> list[dict]:
    """``n_channels`` channels: ``{"name", "class", "gates": {gate: {"x_inf", "tau", "family"}}}``."""
    rng = np.random.default_rng(seed)
    out = []
    classes = list(CLASSES)
    weights = np.array([0.27, 0.45, 0.18, 0.10])
    for i in range(n_channels):
        cls = classes[int(rng.choice(len(classes), p=weights))]
        spec = CLASSES[cls]
        gates = {}
        use = spec if (len(spec) == 1 or rng.uniform() < 0.6) else spec[:1]
        for name, (kind, vh_r, k_r, tau_r) in zip(("m", "h"), use):
            x, tau, fam = _gate(rng, kind, vh_r, k_r, tau_r, v)
            gates[name] = {"x_inf": x, "tau": tau, "family": fam}
        out.append({"name": f"gen_{cls}_{i:05d}", "class": cls, "gates": gates})
    return out

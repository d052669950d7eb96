"""Degenerate populations: many maximal-conductance sets with the same DICs at V_th.

Algorithm (Fyon et al. 2024; Brandoit et al. 2025, ``shared/reference/dic_theory.md`` section 3):

1. sample the free conductances (uniform ranges) and g_leak (gamma with the mean and variance of
   a uniform range); optionally multiply the sampled conductances by g_leak / mean(g_leak);
2. stage 1 ("spiking seed"): solve the 3x3 linear system S_c x = g_target - S_r g_r for three
   compensated conductances so that (g_f, g_s, g_u)(V_th) hit the model's base targets;
3. stage 2 (neuromodulation): re-solve a 2x2 system for two conductances (chosen by a
   reachability rule from the target) so that (g_s, g_u)(V_th) hit the requested target;
   when a compensated conductance feeds the calcium pool, Ca_inf (hence S) depends on it: start
   from a prior guess, solve, plug the solution back in, repeat ``iterations`` times;
4. discard models with any negative (or non-finite) conductance.

Everything is seeded (``numpy.random.default_rng(seed)``): same seed, same population.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from .dics import SensitivityAtV, get_model
from .model import CompartmentModel

__all__ = ["PopulationConfig", "PopulationResult", "population", "generate_population", "STG_POPULATION",
           "DA_POPULATION", "population_config"]


@dataclass(frozen=True)
class PopulationConfig:
    """How to generate a degenerate population of a model (all conductances in mS/cm2).

    ``v_th`` mV; ``sampled``: ``{name: (low, high)}`` uniform ranges of the free conductances;
    ``fixed``: ``{name: value}``; ``leak_range``: (a, b) for the gamma-distributed g_leak (mean
    and variance of Uniform(a, b)); ``scale_by_leak``: multiply sampled/fixed conductances by
    g_leak/mean(g_leak); ``base_targets``: (g_f, g_s, g_u) of stage 1 with ``base_compensated``
    (3 names); ``modulation_rule``: ``f(g_s, g_u) -> (name, name)`` compensated in stage 2;
    ``priors``: ``{name: f(g_s) -> initial guess}`` for compensated conductances that feed the
    calcium pool; ``iterations``: iterative compensation steps.
    """

    v_th: float
    sampled: Mapping[str, tuple[float, float]]
    leak_range: tuple[float, float]
    base_targets: tuple[float, float, float]
    base_compensated: tuple[str, str, str]
    modulation_rule: Callable[[float, float], tuple[str, str]]
    fixed: Mapping[str, float] = field(default_factory=dict)
    priors: Mapping[str, Callable[[float], float]] = field(default_factory=dict)
    iterations: int = 5
    scale_by_leak: bool = True


def _stg_rule(g_s, g_u):
    if g_u < 0:
        return ("CaS", "A")
    return ("A", "H") if g_s >= 0 else ("CaS", "H")


def _da_rule(g_s, g_u):
    return ("ERG", "CaL") if g_s < 0 else ("ERG", "Kd")


#: Spike2Pop's STG settings (V_th -51 mV, seed targets (-6.2, 4, 5) solved for Na, A, H)
STG_POPULATION = PopulationConfig(
    v_th=-51.0, sampled={"Kd": (70.0, 140.0), "CaT": (3.0, 7.0), "CaS": (6.0, 22.0), "KCa": (140.0, 180.0)},
    leak_range=(0.007, 0.014), base_targets=(-6.2, 4.0, 5.0), base_compensated=("Na", "A", "H"),
    modulation_rule=_stg_rule,
    priors={"CaS": lambda g_s: 34.1202 - 2.32966 * g_s, "CaT": lambda g_s: 24.6 - 5.14 * g_s},
)

#: Spike2Pop's DA settings (V_th -55.5 mV, seed targets (-12.95, 0.5, 5) solved for Na, CaN, ERG)
DA_POPULATION = PopulationConfig(
    v_th=-55.5, sampled={"Kd": (6.0, 10.0), "CaL": (0.015, 0.075)}, fixed={"NMDA": 0.012},
    leak_range=(0.0087, 0.017), base_targets=(-12.95, 0.5, 5.0), base_compensated=("Na", "CaN", "ERG"),
    modulation_rule=_da_rule,
)


def population_config(model) -> PopulationConfig:
    model = get_model(model)
    if model.name == "stg":
        return STG_POPULATION
    if model.name == "da":
        return DA_POPULATION
    raise ValueError(f"no default population settings for {model.name!r}: pass config=PopulationConfig(...)")


@dataclass
class PopulationResult:
    """``gbar`` (n_kept, n_g) mS/cm2; ``achieved`` (n_kept, 3) leak-normalised (g_f, g_s, g_u) at
    V_th; ``target`` (g_s, g_u); ``compensated`` names; ``n_requested``; ``seconds`` wall time of
    the generation (sampling + solves, without the final check)."""

    model: CompartmentModel
    gbar: np.ndarray
    achieved: np.ndarray
    target: tuple[float, float]
    compensated: tuple[str, str]
    n_requested: int
    seconds: float
    v_th: float

    @property
    def error(self) -> np.ndarray:
        """L2 distance of achieved (g_s, g_u) to the target, per model."""
        return np.hypot(self.achieved[:, 1] - self.target[0], self.achieved[:, 2] - self.target[1])

    def as_dicts(self) -> list[dict[str, float]]:
        return self.model.as_dicts(self.gbar) if len(self.gbar) else []


_CACHE: dict = {}


def _sens(model, v):
    key = (id(model), float(v))
    if key not in _CACHE:
        _CACHE[key] = SensitivityAtV(model, v)
    return _CACHE[key]


def _solve(model, sens, gb, unknown, rows, targets, iterations, feeds_pool):
    """Solve S[rows][:, unknown] x = target - S[rows][:, known] g_known (normalised by g_leak)."""
    idx = [model.index(u) for u in unknown]
    known = [k for k in range(gb.shape[1]) if k not in idx]
    n_iter = iterations if feeds_pool else 1
    pool_idx = [k for k in idx if model.conductances[k].ion == "ca"]
    for _ in range(max(1, n_iter)):
        g_lin = gb
        if pool_idx:
            # linearisation point for Ca_inf: the current guess, kept physical (>= 0) so that the
            # iteration cannot wander through negative calcium
            g_lin = gb.copy()
            g_lin[:, pool_idx] = np.clip(np.nan_to_num(g_lin[:, pool_idx], nan=0.0), 0.0, None)
        S = sens.matrix(g_lin) / gb[:, model.leak_index][:, None, None]
        A = S[:, rows][:, :, idx]
        b = np.asarray(targets)[None, :] - np.einsum("nrk,nk->nr", S[:, rows][:, :, known], gb[:, known])
        with np.errstate(all="ignore"):
            try:
                x = np.linalg.solve(A, b[..., None])[..., 0]
            except np.linalg.LinAlgError:
                x = np.full((gb.shape[0], len(idx)), np.nan)
                for k in range(gb.shape[0]):
                    try:
                        x[k] = np.linalg.solve(A[k], b[k])
                    except np.linalg.LinAlgError:
                        pass
        gb = gb.copy()
        gb[:, idx] = x
    return gb


def generate_population(model, g_s: float, g_u: float, n: int, seed: int, *,
                        config: PopulationConfig | None = None, iterations: int | None = None,
                        compensated: tuple[str, str] | None = None, clean: bool = True) -> PopulationResult:
    """A degenerate population for target (g_s, g_u) at the model's V_th; see the module doc.

    ``n`` models are sampled (fewer are returned when ``clean`` discards non-physical ones).
    ``iterations`` overrides the config's iterative-compensation count; ``compensated`` the
    stage-2 pair (names such as ``("CaS", "A")``).
    """
    model = get_model(model)
    cfg = config or population_config(model)
    if n < 1:
        raise ValueError("n must be >= 1")
    g_s, g_u = float(g_s), float(g_u)
    if not (np.isfinite(g_s) and np.isfinite(g_u)):
        raise ValueError(f"target (g_s, g_u) = ({g_s}, {g_u}) must be finite")
    iters = cfg.iterations if iterations is None else int(iterations)
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    a, b = cfg.leak_range
    shape_k = 3 * (a + b) ** 2 / (b - a) ** 2
    theta = (b - a) ** 2 / (6 * (a + b))
    leak = rng.gamma(shape_k, theta, size=n)
    scale = leak / (shape_k * theta) if cfg.scale_by_leak else np.ones(n)
    gb = np.zeros((n, len(model.conductances)))
    gb[:, model.leak_index] = leak
    for name, (lo, hi) in cfg.sampled.items():
        gb[:, model.index(name)] = rng.uniform(lo, hi, size=n) * scale
    for name, val in cfg.fixed.items():
        gb[:, model.index(name)] = val * scale
    sens = _sens(model, cfg.v_th)
    pool_cols = {c.name for c in model.conductances if c.ion == "ca"} if model.pool is not None else set()
    # stage 1: spiking seed
    base = cfg.base_compensated
    for name in base:
        if name in cfg.priors and name in pool_cols:
            gb[:, model.index(name)] = cfg.priors[name](cfg.base_targets[1])
    gb = _solve(model, sens, gb, base, [0, 1, 2], cfg.base_targets, iters, bool(set(base) & pool_cols))
    # stage 2: neuromodulation to (g_s, g_u)
    pair = tuple(compensated) if compensated is not None else tuple(cfg.modulation_rule(g_s, g_u))
    for name in pair:
        model.index(name)
        if name in pool_cols and name in cfg.priors:
            gb[:, model.index(name)] = cfg.priors[name](g_s)
    gb = _solve(model, sens, gb, pair, [1, 2], (g_s, g_u), iters, bool(set(pair) & pool_cols))
    seconds = time.perf_counter() - t0
    ok = np.all(np.isfinite(gb), axis=1)
    if clean:
        ok &= np.all(gb >= 0, axis=1)
    gb = gb[ok]
    if len(gb):
        S = sens.matrix(gb) / gb[:, model.leak_index][:, None, None]
        achieved = np.einsum("nrk,nk->nr", S, gb)
    else:
        achieved = np.zeros((0, 3))
    return PopulationResult(model, gb, achieved, (g_s, g_u), pair, n, seconds, cfg.v_th)


def population(model, g_s: float, g_u: float, n: int, seed: int, **kwargs) -> list[dict[str, float]]:
    """``n`` sampled models with DICs (g_s, g_u) at V_th, as a list of gbar dicts (mS/cm2).

    Non-physical models (negative conductances) are discarded, so fewer than ``n`` may be
    returned. Keyword arguments as :func:`generate_population`.
    """
    return generate_population(model, g_s, g_u, n, seed, **kwargs).as_dicts()

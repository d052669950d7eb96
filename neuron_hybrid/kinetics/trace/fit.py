""":func:`train_members`: the training pipeline (prior, current matching, on noisy traces the trajectory estimated
with the networks, multiple shooting, closed loop, closed forms), restarts, restart rounds to the noise floor, and
training both ways.
"""
from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch

from ...train.memory import retained_heap
from ..gatenet import seeded_generator
from .choice import MemberChoice, _Best
from .closed_forms import _parametric_stage, _refined_names
from .compartment import CompartmentModel, DT, LEARN
from .config import TraceFitConfig
from .current_matching import match_currents
from .optim import _adam_step, _finite, _flat_params
from .shooting import _TraceData, _shooting
from .smoothing import estimate_noise_sd
from .trajectory import estimate_trajectory
from .twin import LearnedGates, simulate


@retained_heap()
def train_members(model: CompartmentModel, learn: str, stim, v_obs, dt: float, params: dict,
                  config: TraceFitConfig | None = None, progress: bool = False, log: list | None = None,
                  member_seeds=None):
    """Train M members at once; stim/v_obs [M, T] / [M, T+1]; params tensors [M] (the *assumed* parameters).

    ``member_seeds`` (M ints, default 0 .. M-1) key each member's random initialisations (networks, restart and
    closed-form jitter) together with ``config.seed``: a member's fit does not depend on which members share the
    batch (up to floating-point rounding). Members whose fit stays above the noise floor of their trace
    (:func:`noise_floor_rmse`) get up to ``restart_rounds`` further rounds of ``restarts`` new initialisations; each
    keeps its best. Returns the trained gates (:class:`LearnedGates`, :class:`SelectedGates` with the closed-form
    stage, or a :class:`MemberChoice` among ways or rounds), with ``train_rmse`` [M] (free-running RMSE on the
    training trace, mV) and ``train_seconds``.
    """
    cfg = config or TraceFitConfig()
    M0, T = stim.shape
    seeds = list(range(M0)) if member_seeds is None else [int(s) for s in member_seeds]
    if len(seeds) != M0:
        raise ValueError(f"train_members: {len(seeds)} member_seeds for {M0} members")
    t0 = time.perf_counter()
    out = _train_round(model, learn, stim, v_obs, dt, params, cfg, progress, log, seeds, 0)
    floor = noise_floor_rmse(v_obs, cfg)
    for k in range(1, int(cfg.restart_rounds) + 1):
        left = cfg.time_budget_s - (time.perf_counter() - t0)
        idx = torch.nonzero(~(out.train_rmse <= floor)).reshape(-1).tolist()  # above the floor (or not finite)
        if not idx or left <= 0:
            break
        if log is not None:
            log.append(("restart_round", float(k), 0, np.array(idx, dtype=float)))
        sub = {key: torch.as_tensor(val, dtype=DT).reshape(-1).expand(M0)[idx] for key, val in params.items()}
        more = _train_round(model, learn, stim[idx], v_obs[idx], dt, sub, dataclasses.replace(cfg, time_budget_s=left),
                            progress, log, [seeds[i] for i in idx], k)
        prev = out.train_rmse[idx]
        better = more.train_rmse < torch.where(torch.isfinite(prev), prev, torch.full_like(prev, math.inf))
        pick, rows = torch.zeros(M0, dtype=torch.long), torch.arange(M0)
        won = torch.as_tensor(idx)[better]
        pick[won], rows[won] = 1, torch.nonzero(better).reshape(-1)
        out = MemberChoice([out, more], pick, ("restart round 0" if k == 1 else "", f"restart round {k}"), rows=rows)
    out.train_seconds = time.perf_counter() - t0
    return out


def noise_floor_rmse(v_obs, cfg: "TraceFitConfig") -> torch.Tensor:
    """[M] the free-running training-trace RMSE (mV) below which a fit counts as at the noise floor:
    ``restart_floor_factor`` x sqrt(sigma^2 + ``restart_floor_mV``^2), sigma the trace's estimated white-noise sd."""
    sd = estimate_noise_sd(v_obs)
    return cfg.restart_floor_factor * torch.sqrt(sd ** 2 + cfg.restart_floor_mV ** 2)


def _train_round(model, learn, stim, v_obs, dt, params, cfg, progress, log, seeds, round_: int):
    """One round of restarts (``cfg.restarts`` initialisations per member, keyed by (seed, restart index) with the
    indices of round ``round_``), trained one way or both (``cm_refine_known``)."""
    if cfg.cm_refine_known == "both":
        return _train_both_ways(model, learn, stim, v_obs, dt, params, cfg, progress, log, seeds, round_)
    return _train_once(model, learn, stim, v_obs, dt, params, cfg, progress, log, seeds, round_)


def _train_once(model, learn, stim, v_obs, dt, params, cfg, progress, log, seeds, round_: int = 0):
    """Stages 1-5 for M members with ``cfg.restarts`` initialisations each (restart indices round_ x R .. + R - 1;
    index 0, the unjittered generic prior, only in round 0); each member keeps its best. Returns the fitted gates
    with ``train_rmse`` [M]."""
    from tqdm import tqdm

    M0, T = stim.shape
    t0 = time.perf_counter()
    learned = LEARN[learn]
    R = max(1, int(cfg.restarts))
    M = M0 * R  # member m, restart r -> row m * R + r
    stim = stim.repeat_interleave(R, 0)
    v_obs = v_obs.repeat_interleave(R, 0)
    params = {k: torch.as_tensor(v, dtype=DT).reshape(-1).expand(M0).repeat_interleave(R) for k, v in params.items()}
    cm_known = _refined_names(model, learn, cfg.cm_refine_names or cfg.refine_known) if cfg.cm_refine_known else ()
    keys = [(sd, r) for sd in seeds for r in range(round_ * R, round_ * R + R)]
    nets = LearnedGates(M, learned, cfg.width, cfg.depth, cfg.seed, channel=learn,
                        learn_conductance=cfg.learn_conductance, known=cm_known, member_keys=keys)

    def over_budget():
        return time.perf_counter() - t0 > cfg.time_budget_s

    # 1. prior (restart 0: the generic prior; other restarts: jittered)
    _fit_prior(nets, keys, R, round_, cfg)
    best = _Best(nets, model, stim, v_obs, dt, params, learned)
    # 2. current matching along the smoothed trace
    vs, kn, at_vs = match_currents(nets, model, learn, stim, v_obs, dt, params, cfg, progress, log, over_budget)
    best.update(nets)
    if cfg.trajectory_levels and not over_budget():  # 2b. noisy traces: the trajectory estimated with the networks
        vs, kn, at_vs = estimate_trajectory(nets, model, learn, stim, v_obs, vs, dt, params, cfg, progress, log,
                                            over_budget)
        best.update(nets)
    if log is not None:
        log.append(("time", 0.0, 0, np.array([time.perf_counter() - t0])))
    # 3. multiple shooting: windows from the smoothed trace with teacher-forced gates
    ctx = _TraceData(stim, v_obs, vs, kn, at_vs, params)
    _shooting(nets, model, learn, ctx, dt, cfg.window_ms, cfg.tf_steps, cfg, best, over_budget, log, progress,
              t_start=t0)
    # 4. closed loop from rest
    if cfg.cl_steps > 0:
        opt = torch.optim.Adam(_flat_params(nets), lr=cfg.cl_lr)
        for frac in cfg.cl_fractions:
            n = max(2, int(T * frac))
            for step in tqdm(range(cfg.cl_steps), desc=f"closed loop {frac:.0%}", disable=not progress, mininterval=2):
                if over_budget():
                    break
                V = simulate(model, stim[:, :n], dt, params, nets, learned)
                per = ((V - v_obs[:, :n + 1]) ** 2).mean(1)
                _adam_step(opt, nets, _finite(per).sum())
                if log is not None and step % 20 == 0:
                    log.append(("cl", frac, step, per.detach().numpy().copy()))
            best.update(nets)
    out = best.nets
    err = best.err.reshape(M0, R)
    pick = (torch.arange(M0) * R + err.argmin(1)).tolist()
    out = out.subset(pick) if R > 1 else out
    out.train_rmse = best.err[pick].sqrt()
    out.restart_train_rmse = err.sqrt()
    if cfg.parametric != "off" and not over_budget():
        out = _parametric_stage(out, model, learn, stim[::R], v_obs[::R], dt, {k: v[::R] for k, v in params.items()},
                                cfg, over_budget, log, progress, t0, seeds, round_,
                                vs=vs[pick])
    out.train_seconds = time.perf_counter() - t0
    return out


def _train_both_ways(model, learn, stim, v_obs, dt, params, cfg, progress, log, seeds, round_: int = 0):
    """``cm_refine_known="both"``: train every member with the known parameters held at their assumed values in
    current matching (``False``) and refined there (``True``), each with half the time budget, and keep for each
    member the fit that runs closer to its (noisy) training trace. Both end in the same model class (the closed-form
    stage refines the known parameters either way); they are two optimisation paths, chosen like restarts."""
    t0 = time.perf_counter()
    fits = [_train_once(model, learn, stim, v_obs, dt, params,
                        dataclasses.replace(cfg, cm_refine_known=mode, time_budget_s=cfg.time_budget_s / 2),
                        progress, log, seeds, round_) for mode in (False, True)]
    err = torch.stack([f.train_rmse for f in fits])  # [2, M]
    err = torch.where(torch.isfinite(err), err, torch.full_like(err, math.inf))
    out = MemberChoice(fits, err.argmin(0), ("known parameters held in current matching",
                                             "known parameters refined in current matching"))
    out.train_seconds = time.perf_counter() - t0
    if log is not None:
        log.append(("mode_choice", 0.0, 0, out.pick.numpy().astype(float)))
    return out


def _fit_prior(nets, keys, R: int, round_: int, cfg):
    """Stage 1: fit the gate networks to the generic starting curves (:func:`_prior_targets`), jittered per restart
    (shift +-10 mV, slope x e^+-0.4, tau x e^+-0.8, drawn from each member key); restart 0 of round 0 unjittered."""
    M = nets.M
    jit = torch.stack([torch.rand(3, generator=seeded_generator(cfg.seed, *k, 7), dtype=DT) * 2 - 1 for k in keys])
    if round_ == 0:
        jit[::R] = 0.0
    shift, slope, tauf = 10.0 * jit[:, :1], torch.exp(0.4 * jit[:, 1:2]), torch.exp(0.8 * jit[:, 2:3])
    vpr = torch.linspace(-100, 60, 81, dtype=DT).repeat(M, 1)
    opt = torch.optim.Adam(_flat_params(nets), lr=1e-2)
    for _ in range(cfg.prior_steps):
        r = nets(vpr)
        loss = 0
        for g, (xi, ta) in r.items():
            tx, tt = _prior_targets(g, vpr, shift, slope, tauf)
            loss = loss + ((xi - tx) ** 2).mean() * 100 + ((torch.log(ta) - torch.log(tt)) ** 2).mean()
        _adam_step(opt, nets, loss * M)
    with torch.no_grad():
        nets.log_g.zero_()
        nets.de.zero_()


def _prior_targets(gate: str, v, shift=0.0, slope=1.0, tau_f=1.0):
    """Generic starting curves: activation (m, n, p) or inactivation (h) Boltzmann, tau constant."""
    if gate == "h":
        return torch.sigmoid(-(v + 60.0 - shift) / (7.0 * slope)), torch.full_like(v, 3.0) * tau_f
    if gate == "m":
        return torch.sigmoid((v + 40.0 - shift) / (8.0 * slope)), torch.full_like(v, 0.3) * tau_f
    return torch.sigmoid((v + 50.0 - shift) / (12.0 * slope)), torch.full_like(v, 3.0) * tau_f

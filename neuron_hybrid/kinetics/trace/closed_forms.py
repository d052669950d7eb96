"""Stage 5: closed-form gates (:mod:`..parametric`) fitted to the networks' curves, then refined by
Levenberg-Marquardt on the free-running error of the whole trace (the maximum-likelihood output-error fit).
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ..gatenet import seeded_generator
from .choice import SelectedGates, _Best
from .compartment import CompartmentModel, DT, LEARN
from .optim import _get_flat, _lm, _set_flat, _with_params
from .shooting import _TraceData, _shooting
from .smoothing import _gauss_smooth, estimate_noise_sd
from .twin import simulate


def _parametric_stage(nets, model, learn, stim, v_obs, dt, params, cfg, over_budget, log, progress, t0, seeds,
                      round_: int = 0, *, vs):
    """5. closed forms: fit every family of :mod:`..parametric` to each member's learned curves (over the voltages
    its trace visited), refine the ``parametric_top`` best per gate (all combinations across gates) by short
    multiple shooting and Levenberg-Marquardt on the free-running error, keep each member's best, and choose it
    over the networks by the free-running training error (``parametric="select"``) or always (``"always"``). vs
    [M, T+1] (mV): the trace the shooting windows start from (current matching's or the estimated trajectory).
    Returns a :class:`SelectedGates`."""
    import itertools

    from ..parametric import ParametricGates, fit_to_curves

    learned = LEARN[learn]
    M, T = stim.shape
    G = len(learned)
    vg = torch.arange(-100.0, 60.5, 1.0, dtype=DT)
    lo, hi = vs.min(1).values.reshape(-1, 1), vs.max(1).values.reshape(-1, 1)
    w = ((vg >= lo) & (vg <= hi)).to(DT)  # [M, N]: the voltages each member's trace visited
    with torch.no_grad():
        cur = nets(vg.repeat(M, 1))
    X = torch.stack([cur[g][0] for g in learned], 1).reshape(M * G, -1)  # row m * G + j
    TAU = torch.stack([cur[g][1] for g in learned], 1).reshape(M * G, -1)
    losses, theta, fams = fit_to_curves(vg, X, TAU, w.repeat_interleave(G, 0), iters=cfg.parametric_fit_iters)
    K = max(1, min(int(cfg.parametric_top), len(fams)))
    top = torch.argsort(losses, 1)[:, :K].reshape(M, G, K)
    S = max(1, int(cfg.parametric_lm_starts))
    combos = [c for c in itertools.product(range(K), repeat=G) for _ in range(S)]  # S starts per combination
    C = len(combos)
    fam = torch.zeros(M * C, G, dtype=torch.long)
    th = torch.zeros(M * C, G, theta.shape[-1], dtype=DT)
    for m in range(M):
        for c, combo in enumerate(combos):
            for j, k in enumerate(combo):
                f = int(top[m, j, k])
                fam[m * C + c, j] = fams[f]
                th[m * C + c, j] = theta[m * G + j, f]
    jittered = (torch.arange(M * C) % S) > 0
    ids = torch.arange(M).repeat_interleave(C)
    known = _refined_names(model, learn, cfg.refine_known)
    u0 = torch.zeros(M, len(known), dtype=DT)  # the networks' corrections (current matching), if any
    for i, k in enumerate(known):
        if k in nets.known:
            u0[:, i] = nets.known_u.detach()[:, nets.known.index(k)]
    pg = ParametricGates(fam, th, learned, learn, nets.learn_conductance, nets.log_g.detach()[ids],
                         nets.de.detach()[ids], known, u0[ids])
    if S > 1:
        key = (round_,) if round_ else ()  # round 0: the keys from before restart rounds existed
        draws = [torch.randn(th.shape[1:], generator=seeded_generator(cfg.seed, seeds[i // C], i % C, 11, *key),
                             dtype=DT)
                 for i in range(M * C)]  # row m * C + c: member m's random stream
        with torch.no_grad():
            step = torch.stack(draws) * cfg.parametric_start_sd * pg.free_mask()
            pg.theta += step * jittered.reshape(-1, 1, 1)
    p_ids = {k: torch.as_tensor(v, dtype=DT).reshape(-1).expand(M)[ids] for k, v in params.items()}
    ctx = _TraceData.build(model, learned, stim[ids], v_obs[ids], vs[ids], dt, p_ids)
    bestp = _Best(pg, model, stim[ids], v_obs[ids], dt, p_ids, learned)
    _shooting(pg, model, learn, ctx, dt, cfg.parametric_window_ms, cfg.parametric_steps, cfg, bestp, over_budget, log,
              progress, tag="param_", t_start=t0)
    if cfg.parametric_lm_iters > 0:
        hold = cfg.cm_refine_known and cfg.cm_known_fixed_until_polish  # current matching estimated them
        start = bestp.nets.subset(list(range(pg.M))).set_refine_known(not hold)
        for fractions in cfg.parametric_lm_curricula:  # each from the same start; every row keeps its best
            pgc = start.subset(list(range(pg.M)))
            lm_output_error(pgc, model, learn, ctx, dt, cfg.parametric_lm_iters, over_budget, log, fractions,
                            cfg.refine_known_sd, progress)
            bestp.update(pgc)
            if log is not None:
                log.append(("param_time", -1.0, 0, np.array([time.perf_counter() - t0])))
    err = bestp.err.reshape(M, C)
    rows = (torch.arange(M) * C + err.argmin(1)).tolist()
    chosen = bestp.nets.subset(rows)
    mse_p = err.min(1).values
    if cfg.parametric_lm_iters > 0 and cfg.parametric_polish_iters > 0 and not over_budget():
        chosen, mse_p = _polish(chosen, mse_p, model, learn, ctx.subset(rows), dt, cfg, over_budget, log, progress)
        if log is not None:
            log.append(("param_time", -2.0, 0, np.array([time.perf_counter() - t0])))
    mse_n = nets.train_rmse ** 2
    if cfg.parametric == "always":
        use = torch.isfinite(mse_p)
    else:  # the closed form unless the networks run clearly closer to the training trace
        use = torch.isfinite(mse_p) & (mse_p.sqrt() <= mse_n.sqrt() * (1.0 + cfg.parametric_tolerance))
    out = SelectedGates(nets, chosen, use)
    out.train_rmse = torch.where(use, mse_p, mse_n).sqrt()
    out.network_train_rmse, out.parametric_train_rmse = mse_n.sqrt(), mse_p.sqrt()
    out.restart_train_rmse = nets.restart_train_rmse
    if log is not None:
        log.append(("param_choice", 0.0, 0, use.numpy().astype(float)))
    return out


def _polish(pg, mse, model, learn, ctx: "_TraceData", dt, cfg, over_budget, log, progress=False):
    """``cfg.parametric_polish_iters`` Levenberg-Marquardt iterations on the whole raw trace for one closed form
    per member (``pg`` [M], its exact free-running training MSE ``mse`` [M], the members' trace data ``ctx``);
    each member keeps the polished form only if its exact (not tabulated) MSE is lower. Returns (gates, mse)."""
    out = pg.subset(list(range(pg.M))).set_refine_known(bool(pg.known))
    lm_output_error(out, model, learn, ctx, dt, cfg.parametric_polish_iters, over_budget, log, (1.0,),
                    cfg.refine_known_sd, progress)
    best = _Best(pg, model, ctx.stim, ctx.v_obs, dt, ctx.params, LEARN[learn], err=mse)
    best.update(out)
    return best.nets, best.err


def lm_output_error(nets, model, learn, ctx: "_TraceData", dt, iters: int = 10, over_budget=lambda: False, log=None,
                    fractions=(1.0,), known_sd: float = 0.05, progress: bool = False, **lm_options):
    """Levenberg-Marquardt for few-parameter gates (:class:`~..parametric.ParametricGates`) on the free-running
    error from rest over growing prefixes of the trace (``fractions`` of its length, the last normally 1; an entry
    (fraction, smooth_ms) compares Gaussian-filtered traces, sd smooth_ms, which widens the basin of spike timing).
    Residual: simulated (tabulated :func:`simulate`) - observed V (mV). (Free windows of 10/30/100 ms started
    from the smoothed trace, before the whole trace, were tried: HH K, 1 % noise, 2 seeds, 2.8/5.8 mV on the
    training trace against 0.79/0.78 mV without them.) With refined known parameters (``nets.refine_known``) the
    residuals also hold their Gaussian prior (``known_sd``, see :class:`TraceFitConfig`), weighted by the trace's
    estimated noise sd (maximum a posteriori). ``lm_options`` go to the optimiser (``lam_up``, ``lam_down``,
    ``retries``); ``progress``: a bar per prefix. Updates ``nets`` in place; returns the cost [M] (mV^2) of the last
    prefix."""
    learned = LEARN[learn]
    M, T = ctx.stim.shape
    pr_all = {k: torch.as_tensor(v, dtype=DT).reshape(-1).expand(M) for k, v in ctx.params.items()}
    K = len(nets.known) if nets.refine_known else 0
    if K:
        prior_w = estimate_noise_sd(ctx.v_obs).reshape(-1, 1) / _known_prior_sd(nets, ctx.params, known_sd)

    def prefix_resid(n, smooth_ms=0.0):
        def fn(x, rows):
            sub = _with_params(nets, rows, x)
            with torch.no_grad():
                V = simulate(model, ctx.stim[rows, :n], dt, {k: v[rows] for k, v in pr_all.items()}, sub, learned,
                             tabulated=True)
            r = V - ctx.v_obs[rows, :n + 1]
            if smooth_ms > 0:
                r = _gauss_smooth(r, smooth_ms / dt)
            return torch.cat([r, x[:, -K:] * prior_w[rows]], 1) if K else r
        return fn

    x = _get_flat(nets, M)
    free = torch.ones_like(x, dtype=torch.bool)
    free[:, :nets.theta[0].numel()] = nets.free_mask().reshape(M, -1)
    for f in fractions:
        f, w = (float(f[0]), float(f[1])) if isinstance(f, (tuple, list)) else (float(f), 0.0)
        n = max(2, min(T, int(round(T * f))))
        tag = f"lm_prefix{f:g}" + (f"_smooth{w:g}" if w else "")
        x, cost = _lm(x, prefix_resid(n, w), iters, over_budget, log, tag, free=free, progress=progress,
                      desc=f"closed forms: Levenberg-Marquardt, {f:.0%} of the trace"
                      + (f", smoothed {w:g} ms" if w else ""),
                      **lm_options)
    _set_flat(nets, M, x)
    return cost


def _refined_names(model: CompartmentModel, learn: str, spec) -> tuple:
    """The known parameters named by ``TraceFitConfig.refine_known`` (validated)."""
    allowed = [k for k in model.default_params() if k not in (f"g_{learn}", f"e_{learn}")]
    if spec == "all":
        return tuple(allowed)
    spec = (spec,) if isinstance(spec, str) else tuple(spec)
    bad = [k for k in spec if k not in allowed]
    if bad:
        raise ValueError(f"refine_known: {bad} are not known parameters of {model.name} learning {learn!r}; "
                         f"choose from {allowed} or 'all' (the learned channel has its own scale and shift)")
    return spec


def _known_prior_sd(nets, params: dict, rel_sd: float):
    """[M, K] prior sd of the known-parameter corrections in their own units (log factor; 10 mV for E)."""
    cols = []
    for k in nets.known:
        base = torch.as_tensor(params[k], dtype=DT).reshape(-1).expand(nets.M)
        cols.append((rel_sd * base.abs()).clamp_min(0.5) / 10.0 if k.startswith("e_")
                    else torch.full((nets.M,), rel_sd, dtype=DT))
    return torch.stack(cols, 1)

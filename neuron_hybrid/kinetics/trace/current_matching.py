"""Stage 2 of the trace fit: current matching. Along the smoothed trace, the learned channel's current (teacher-forced
gates from the networks' tables) is fitted to what current balance leaves for it: I_stim - C dV/dt - I_known, with a
relative, floored weight per sample, time constants kept above ``cm_tau_floor_dt`` x dt and, optionally, the known
parameters refined under their prior.
"""
from __future__ import annotations

import math

import torch

from .closed_forms import _known_prior_sd
from .compartment import _known_rates
from .optim import _adam_stage, _finite, _member_reg, batched_lbfgs
from .smoothing import _gauss_rows, _smooth_auto, estimate_noise_sd
from .tables import _along, _grid, _positions, _tables, _tf_integrate


def tau_floor_penalty(tab, learned, cfg, dt: float):
    """Per member [M] (or 0): cm_tau_floor_weight x mean(relu(ln(cm_tau_floor_dt x dt) - ln tau)^2) over the learned
    gates' tabulated time constants: keeps them resolvable by the sampling step."""
    if cfg.cm_tau_floor_dt <= 0:
        return 0.0
    lt = torch.stack([torch.log(tab[g][1]) for g in learned], 1)  # [M, G, N]
    return cfg.cm_tau_floor_weight * (torch.relu(math.log(cfg.cm_tau_floor_dt * dt) - lt) ** 2).mean((1, 2))


def match_currents(nets, model, learn: str, stim, v_obs, dt: float, params: dict, cfg, progress, log, over_budget,
                   trace=None):
    """Fit ``nets`` (M members) by current matching; stim/v_obs [M, T] / [M, T+1], params {name: [M]} (assumed).
    ``trace`` [M, T+1] (mV): match along this denoised trace instead of the smoothed one (the current balance is
    filtered alike). Returns (vs, kn, at_vs): the trace matched along [M, T+1], the known gates teacher-forced along
    it and its grid positions, which multiple shooting reuses."""
    M = stim.shape[0]
    learned = nets.gates
    vg = _grid()
    vs, filt = _smooth_auto(v_obs, dt, cfg.smooth_ms, cfg.smooth_auto)
    if trace is not None:
        vs = trace
    filt = filt * cfg.cm_filter
    known = _known_rates(model, vs, learned)
    with torch.no_grad():
        kn = {g: _tf_integrate(known[g][0], known[g][1], dt) for g in known}
    pr = {k: v.reshape(-1, 1) for k, v in params.items()}
    vnew = vs[:, 1:]

    def balance(p):
        """I_stim - C dV/dt - I_known (mA/cm2) with parameters p {name: [M, 1]}, averaged over a few samples."""
        out = stim - p["cm"] * 1e-3 / dt * (vs[:, 1:] - vs[:, :-1]) - p["g_leak"] * (vnew - p["e_leak"])
        for cur, _, powers, _, _, _ in model.channels:
            if cur != learn:
                gk = p[f"g_{cur}"]
                for g, pw in powers.items():
                    gk = gk * kn[g][:, :-1] ** pw
                out = out - gk * (vnew - p[f"e_{cur}"])
        return _gauss_rows(out, filt)  # noisy dV/dt

    with torch.no_grad():
        target = balance(pr)
        rms = (target ** 2).mean(1, keepdim=True).sqrt() + 1e-12
        wgt = 1.0 / (target.abs() + cfg.cm_floor * rms) ** 2  # relative error, floored
        wgt = wgt / wgt.mean(1, keepdim=True)
        norm = (target ** 2 * wgt).mean(1) + 1e-12
    powers_l = next(c[2] for c in model.channels if c[0] == learn)
    at_vs = _positions(vs)  # fixed: the smoothed trace
    refine = bool(nets.known)
    if refine:
        prior_w = cfg.cm_known_prior * (1.0 + (estimate_noise_sd(v_obs) / cfg.cm_known_noise_mV) ** 2)
        prior_w = prior_w.reshape(-1, 1) / _known_prior_sd(nets, params, cfg.refine_known_sd) ** 2
        nets.set_refine_known(True)

    def cm_loss():
        tgt = target
        if refine:
            tgt = balance({k: v.reshape(-1, 1) for k, v in nets.adjust_params(params).items()})
        tab = _tables(nets, vg)
        gk = pr[f"g_{learn}"] * torch.exp(nets.log_g).reshape(-1, 1)
        along = _along(tab, tuple(powers_l), at_vs)
        for g, pw in powers_l.items():
            x = _tf_integrate(*along[g], dt)
            gk = gk * x[:, :-1] ** pw
        pred = _gauss_rows(gk * (vnew - pr[f"e_{learn}"] - nets.de.reshape(-1, 1)), filt)
        per = ((pred - tgt) ** 2 * wgt).mean(1) / norm
        per = per + tau_floor_penalty(tab, learned, cfg, dt)
        if refine:
            per = per + (prior_w * nets.known_u ** 2).sum(1)
        return per, (_finite(per) + _member_reg(nets)).sum()

    _adam_stage(nets, cm_loss, cfg.cm_steps, cfg.cm_lr, cfg.cm_lr * 0.01, "current matching", progress, over_budget,
                log, ("cm", 0.0), 50)
    if cfg.cm_lbfgs_steps > 0 and not over_budget():
        batched_lbfgs(nets, M, cm_loss, cfg.cm_lbfgs_steps, log=log, tag="cm_lbfgs", progress=progress,
                      desc="current matching (L-BFGS)")
    nets.set_refine_known(False)
    return vs, kn, at_vs

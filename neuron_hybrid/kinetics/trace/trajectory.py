"""Stage 2b of the trace fit on noisy traces: the denoised trajectory estimated jointly with the gate networks
(weak-constraint state and parameter estimation with precision annealing, as in Ye et al. 2015, Phys Rev E 92,
052901).

Current matching (:mod:`.current_matching`) fits the learned current along a fixed smoothed trace; a linear
smoother cannot remove much of the noise without flattening the spikes (HH at 5 % noise, sd 3.8 mV: the best
Savitzky-Golay width leaves ~1.1-1.5 mV RMS, and its noise in C dV/dt dominates the small currents between spikes).
Here the trajectory x [M, T+1] (mV) is a free variable with the networks, and the cost per member is

    mean((x - v_obs)^2) / sigma^2 + mean(r^2) / sigma_I^2,   r = I_stim - C dx/dt - I_known(x) - I_learned(x)

(sigma: the trace's estimated noise sd, mV; r: the current balance of the compartment along x, mA/cm2; gates
teacher-forced along x). ``sigma_I`` falls through ``TraceFitConfig.trajectory_levels`` (mA/cm2), so x moves from
the smoothed data toward a trajectory the model itself can produce, and the networks with it; the later stages
(multiple shooting, closed forms) start from x instead of the linear smoother's trace.
"""
from __future__ import annotations

import torch

from .compartment import DT, _known_rates
from .current_matching import match_currents, tau_floor_penalty
from .optim import _adam_step, _iterations, _member_reg
from .smoothing import estimate_noise_sd
from .tables import _grid, _interp, _positions, _tables, _tf_integrate


#: mV: a trace whose estimated noise sd is below this is treated as noise-free (its members skip the stage)
NOISE_FREE_SD_MV = 0.05


class _Joint(torch.nn.Module):
    """The gate networks and the trajectory x [M, T+1] (mV) as one module whose tensors split into members."""

    def __init__(self, nets, x0):
        super().__init__()
        self.nets = nets
        self.x = torch.nn.Parameter(x0.detach().clone())


def refine_trajectory(nets, model, learn: str, stim, v_obs, vs, dt: float, params: dict, cfg, progress=False,
                      log=None, over_budget=lambda: False):
    """Anneal the trajectory and ``nets`` (trained in place) jointly; stim [M, T] mA/cm2, v_obs and the smoothed
    vs [M, T+1] mV, params {name: [M]} (the assumed parameters, with the networks' corrections if any). Returns the
    trajectory [M, T+1] (detached). Members whose trace is noise-free (estimated sd < NOISE_FREE_SD_MV) keep vs."""
    M = stim.shape[0]
    learned = nets.gates
    sigma = estimate_noise_sd(v_obs)
    noisy = sigma >= NOISE_FREE_SD_MV
    if not bool(noisy.any()) or not cfg.trajectory_levels:
        return vs
    p = {k: torch.as_tensor(v, dtype=DT).reshape(-1).expand(M).reshape(-1, 1).detach()
         for k, v in (nets.adjust_params(params) if nets.known else params).items()}
    powers_l = next(c[2] for c in model.channels if c[0] == learn)
    vg = _grid()
    rows = torch.arange(M).reshape(-1, 1).expand_as(vs)
    joint = _Joint(nets, vs)
    w_data = 1.0 / sigma.clamp_min(NOISE_FREE_SD_MV).reshape(-1, 1) ** 2
    cap = p["cm"] * 1e-3 / dt

    def balance(x):
        """The current balance along x (mA/cm2, [M, T]) with the known and the learned gates teacher-forced."""
        vnew = x[:, 1:]
        r = stim - cap * (x[:, 1:] - x[:, :-1]) - p["g_leak"] * (vnew - p["e_leak"])
        kr = _known_rates(model, x, learned)
        kn = {g: _tf_integrate(a, b, dt) for g, (a, b) in kr.items()}
        tab = _tables(nets, vg)
        for cur, _, powers, _, _, _ in model.channels:
            gk = p[f"g_{cur}"]
            e = p[f"e_{cur}"]
            if cur == learn:
                gk = gk * torch.exp(nets.log_g).reshape(-1, 1)
                e = e + nets.de.reshape(-1, 1)
            for g, pw in powers.items():
                if g in learned:
                    gate = _tf_integrate(_interp(tab[g][0], x, rows), _interp(tab[g][1], x, rows), dt)
                else:
                    gate = kn[g]
                gk = gk * gate[:, :-1] ** pw
            r = r - gk * (vnew - e)
        return r, tab

    for level in cfg.trajectory_levels:
        if over_budget():
            break
        w_model = 1.0 / float(level) ** 2

        def loss_fn():
            x = joint.x
            r, tab = balance(x)
            per = (((x - v_obs) ** 2) * w_data).mean(1) + (r ** 2).mean(1) * w_model
            per = per + tau_floor_penalty(tab, learned, cfg, dt)
            per = torch.where(noisy, per, torch.zeros_like(per))
            return per, (torch.nan_to_num(per, nan=0.0, posinf=0.0) + _member_reg(nets)).sum()

        opt = torch.optim.Adam([{"params": [joint.x], "lr": cfg.trajectory_lr_mV},
                                {"params": [q for q in nets.parameters() if q.requires_grad], "lr": cfg.cm_lr * 0.1}])
        bar, its = _iterations(int(cfg.trajectory_iters), f"trajectory (model error {level:g} mA/cm2)", progress)
        for _ in its:
            f, total = loss_fn()
            _adam_step(opt, joint, total)
            if bar is not None:
                bar.set_postfix(median_loss=f"{float(f[noisy].detach().median()):.4g}", refresh=False)
        if log is not None:
            log.append(("trajectory", float(level), 0, f.detach().numpy().copy()))
    with torch.no_grad():
        x = torch.where(noisy.reshape(-1, 1), joint.x, vs)
    return x.detach()


def estimate_trajectory(nets, model, learn: str, stim, v_obs, vs, dt: float, params: dict, cfg, progress=False,
                        log=None, over_budget=lambda: False):
    """``cfg.trajectory_rounds`` rounds of :func:`refine_trajectory` (from the previous round's trajectory), each
    followed by current matching along the new trajectory (``cfg.trajectory_rematch``). Members with a noise-free
    trace keep their networks and trace. Returns (trace [M, T+1], known gates teacher-forced along it, its grid
    positions), as :func:`.current_matching.match_currents` does."""
    noisy = estimate_noise_sd(v_obs) >= NOISE_FREE_SD_MV
    before, vs0 = nets.subset(list(range(nets.M))), vs
    matched = None  # (trace, known gates, positions) of the last current matching, reused when nothing changed after
    for _ in range(max(1, int(cfg.trajectory_rounds))):
        if not bool(noisy.any()) or over_budget():
            break
        x = refine_trajectory(nets, model, learn, stim, v_obs, vs, dt, params, cfg, progress, log, over_budget)
        if cfg.trajectory_rematch:
            matched = match_currents(nets, model, learn, stim, v_obs, dt, params, cfg, progress, log, over_budget,
                                     trace=x)
            vs = matched[0]
        else:
            vs, matched = x, None
    if not bool(noisy.all()):  # noise-free members: as current matching left them
        nets.copy_members_from(before, ~noisy)
        vs, matched = torch.where(noisy.reshape(-1, 1), vs, vs0), None
    if matched is not None:
        return matched
    with torch.no_grad():
        kn = {g: _tf_integrate(a, b, dt) for g, (a, b) in _known_rates(model, vs, nets.gates).items()}
    return vs, kn, _positions(vs)

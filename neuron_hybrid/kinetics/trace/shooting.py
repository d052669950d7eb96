"""Multiple shooting: short free-running windows started on the smoothed trace with teacher-forced gates."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .compartment import DT, LEARN, _known_rates
from .optim import _adam_stage, _finite, _member_reg, batched_lbfgs
from .tables import _along, _grid, _interp, _positions, _tables, _tf_integrate
from .twin import _run


@dataclass
class _TraceData:
    """One row per member: stimulus [M, T] mA/cm2, observed and smoothed V [M, T+1] mV, teacher-forced known
    gates {gate: [M, T+1]}, interpolation positions of the smoothed V on the table grid, parameters [M]."""

    stim: torch.Tensor
    v_obs: torch.Tensor
    vs: torch.Tensor
    kn: dict
    at_vs: object  # FixedInterpolation at vs
    params: dict

    @staticmethod
    def build(model, learned, stim, v_obs, vs, dt, params):
        """From the observed and the smoothed trace (:func:`_smooth_auto`): teacher-forced known gates along vs."""
        known = _known_rates(model, vs, learned)
        with torch.no_grad():
            kn = {g: _tf_integrate(known[g][0], known[g][1], dt) for g in known}
        return _TraceData(stim, v_obs, vs, kn, _positions(vs), params)

    def subset(self, rows) -> "_TraceData":
        """The rows ``rows`` (no smoothing or teacher forcing again; params must be per-row tensors)."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        vs = self.vs[rows]
        return _TraceData(self.stim[rows], self.v_obs[rows], vs, {g: x[rows] for g, x in self.kn.items()},
                          _positions(vs), {k: v[rows] for k, v in self.params.items()})


def _shooting(nets, model, learn, ctx: _TraceData, dt, window_ms, iters, cfg, best, over_budget, log, progress, tag="",
              t_start=None):
    """Multiple shooting: from window starts on the smoothed trace (teacher-forced gates) the model runs free for
    each of ``window_ms`` (ms, growing); loss = MSE to the observed V; L-BFGS (``iters`` per length) or Adam.
    ``best`` keeps each member's best parameters by free-running error after every length."""
    learned = LEARN[learn]
    M, T = ctx.stim.shape
    vg = _grid()
    stride = max(1, int(round(cfg.window_stride_ms / dt)))
    t0 = time.perf_counter() if t_start is None else t_start
    for wi, wms in enumerate(window_ms):
        if iters <= 0 or over_budget():
            break
        H = max(1, int(round(wms / dt)))
        if H >= T:
            H = T - 1
        starts = torch.arange(0, T - H, max(stride, H // 4))
        if len(starts) > cfg.max_windows:
            starts = starts[torch.linspace(0, len(starts) - 1, cfg.max_windows).round().long()]
        W = len(starts)
        s_idx = starts.tolist()
        pW = {k: torch.as_tensor(v, dtype=DT).detach().reshape(-1, 1).expand(M, W).reshape(-1)
              for k, v in nets.adjust_params(ctx.params).items()}  # corrections frozen here
        stimW = torch.stack([ctx.stim[:, s:s + H] for s in s_idx], 1).reshape(M * W, H)
        targ = torch.stack([ctx.v_obs[:, s + 1:s + H + 1] for s in s_idx], 1).reshape(M * W, H)
        rowsW = torch.arange(M).reshape(-1, 1).expand(M, W).reshape(-1)

        def win_loss():
            tab = _tables(nets, vg)
            state0 = {"v": ctx.vs[:, starts].reshape(-1)}
            along = _along(tab, learned, ctx.at_vs)
            for g in learned:
                state0[g] = _tf_integrate(*along[g], dt)[:, starts].reshape(-1)
            for g in ctx.kn:
                state0[g] = ctx.kn[g][:, starts].reshape(-1)

            def rate_fn(v):
                return {g: (_interp(tab[g][0], v, rowsW), _interp(tab[g][1], v, rowsW)) for g in learned}

            mods = (learn, torch.exp(nets.log_g)[rowsW], nets.de[rowsW])
            V = _run(model, stimW, dt, pW, rate_fn, learned, state0["v"], {k: x for k, x in state0.items() if k != "v"},
                     mods, False)
            per = ((V[:, 1:] - targ) ** 2).reshape(M, -1).mean(1)
            return per, (_finite(per) + _member_reg(nets)).sum()

        if cfg.tf_optimizer == "lbfgs":
            batched_lbfgs(nets, M, win_loss, iters, log=log, tag=f"{tag}tf{wms:g}", progress=progress,
                          desc=f"{'closed forms: ' if tag else ''}shooting windows {wms:g} ms")
        else:
            _adam_stage(nets, win_loss, iters, cfg.tf_lr / (1 + wi), cfg.tf_lr * 0.05,
                        f"{tag}shooting windows {wms:g} ms", progress, over_budget, log, (f"{tag}tf", wms), 25)
        best.update(nets)
        if log is not None:
            log.append((f"{tag}time", wms, 0, np.array([time.perf_counter() - t0])))

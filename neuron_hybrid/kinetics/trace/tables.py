"""Gate tables on a fixed voltage grid, linear interpolation along a trace, and cnexp integration of gates along
a given voltage (the teacher-forced gates of current matching and multiple shooting).
"""
from __future__ import annotations

import torch

from .compartment import DT


_GRID = (-120.0, 80.0, 0.25)


def _grid():
    lo, hi, h = _GRID
    return torch.arange(lo, hi + h / 2, h, dtype=DT)


def _tables(nets, vg):
    return nets(vg.repeat(nets.M, 1))


def _interp_at(v, rows, Ng: int, grid=_GRID):
    """(flat index, weight) of linear interpolation on ``grid`` (lowest, highest, step mV; Ng points) at v (any
    shape) in table rows ``rows``."""
    lo, _, h = grid
    x = torch.nan_to_num((v - lo) / h, nan=0.0).clamp(0.0, Ng - 1 - 1e-9)
    i = x.detach().floor().long()
    return rows * Ng + i, x - i


def _positions(vs) -> "FixedInterpolation":
    """The interpolation at the smoothed trace vs [M, T+1] (fixed) from per-member tables on the _GRID."""
    from ...train.interp import FixedInterpolation

    M, T1 = vs.shape
    Ng = len(_grid())
    base, f = _interp_at(vs, torch.arange(M).reshape(-1, 1).expand(M, T1), Ng)
    return FixedInterpolation(base, f, M * Ng)


def _along(tab, gates, at) -> dict:
    """{gate: (x_inf, tau) [M, T+1]} along the trace of ``at`` (:func:`_positions`) from tables {gate: ([M, Ng],
    [M, Ng])}: one sparse product for every gate."""
    cols = torch.stack([c.reshape(-1) for g in gates for c in tab[g]], 1)  # [M Ng, 2 G]
    M = tab[gates[0]][0].shape[0]
    out = at(cols).reshape(M, -1, 2 * len(gates))
    return {g: (out[..., 2 * j], out[..., 2 * j + 1]) for j, g in enumerate(gates)}


def _interp(tab, v, rows):
    """Linear interpolation of tab [R, Ng] (on the _GRID) at v (any shape) for table rows ``rows`` (same shape)."""
    base, f = _interp_at(v, rows, tab.shape[1])
    flat = tab.reshape(-1)
    return flat[base] * (1 - f) + flat[base + 1] * f


def _tf_integrate(x_inf, tau, dt):
    """cnexp integration of dx/dt = (x_inf - x)/tau along a given V: x_inf, tau [M, T+1] -> x [M, T+1].

    x[0] = x_inf[0]; x[k+1] = a x[k] + (1 - a) x_inf[k+1] with a = exp(-dt/tau[k+1]) (rates at the new V); the
    recurrence runs compiled, forward and adjoint (:func:`..compiled.recurrence`)."""
    from ..compiled import recurrence

    a = torch.exp(-dt / tau)
    b = (1 - a) * x_inf
    a = torch.cat([torch.zeros_like(a[:, :1]), a[:, 1:]], 1)  # x[0] = x_inf[0]
    b = torch.cat([x_inf[:, :1], b[:, 1:]], 1)
    return recurrence(a.expand_as(b), b)

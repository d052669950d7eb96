"""Compiled (numba) loops of the trace fit: the single compartment's fixed-step scheme with tabulated gate rates
(no autograd), and the gates' first-order recurrence along a given voltage with its adjoint.

The Levenberg-Marquardt stage of the trace fit (:mod:`.trace`) simulates every member x parameter of its
forward-difference Jacobians over the whole training trace many times; in PyTorch each time step costs ~25
small tensor operations whatever the batch (~4 us each: ~1 s per 200 ms trace for 40 rows, eager or TorchScript).
Here each row is one compiled loop over time (~0.1 us per row and step). The scheme is :func:`.trace.twin._run`'s:
currents at the old V, backward Euler for V linearised in V, then cnexp for every gate at the new V.

The recurrence x[k] = a[k] x[k-1] + b[k] (current matching integrates every gate along the whole observed trace at
each optimisation step) runs sequentially per row, forward and adjoint: exact for any a in [0, 1] (a chunked scan
in log space, :mod:`neuron_hybrid.train.scan`, needs a > exp(-575 / chunk), which fast gates with tau << dt break)
and far cheaper than the parallel (Hillis-Steele) scan it replaced, whose log2(T) levels each touched the whole
[M, T] array forward and backward (140 rows x 8001 samples, forward + backward: 1.9 s -> 15 ms).
"""
import numpy as np
import torch
from numba import njit

# every loop uses numpy's floating-point semantics (x / 0 -> inf or nan, as in the torch code it replaced), not
# Python's ZeroDivisionError: a Levenberg-Marquardt trial step far out (e.g. every conductance and the capacitance
# scaled to 0) must come back as a non-finite residual, which the optimiser rejects, not abort the fit


@njit(cache=True, error_model="numpy")
def run_rows(stim, v0, st0, tab_k, tab_l, lidx, gbar, erev, powers, dt, cap, lo, h, record):  # pragma: no cover
    """stim [B, T] (mA/cm2); v0 [B] (mV); st0 [B, G] gates (the Gk known ones first, then the learned ones);
    tab_k [Ng, 2 Gk] (shared; x_inf columns, then tau in ms) and tab_l [U, Ng, 2] (x_inf, tau of learned gates:
    row b's learned gate j is table lidx[b, j], so rows may share tables) on the grid lo + h i (mV); gbar/erev
    [B, C] leak (column 0) and channel conductances (S/cm2) and reversals (mV); powers
    [G, C] int: each gate's power in each channel; cap [B]: cm / dt (mS/cm2/mV). Returns V [B, T+1] and, with
    record, the gates [B, T+1, G] (else [B, 0, G])."""
    B, T = stim.shape
    G = st0.shape[1]
    C = gbar.shape[1]
    Ng = tab_k.shape[0]
    Gk = tab_k.shape[1] // 2
    Gl = G - Gk
    V = np.empty((B, T + 1))
    S = np.empty((B, T + 1 if record else 0, G))
    st = np.empty(G)
    for b in range(B):
        v = v0[b]
        for j in range(G):
            st[j] = st0[b, j]
        V[b, 0] = v
        if record:
            for j in range(G):
                S[b, 0, j] = st[j]
        for k in range(T):
            i_tot = 0.0
            g_tot = 0.0
            for c in range(C):
                g = gbar[b, c]
                for j in range(G):
                    for _ in range(powers[j, c]):
                        g *= st[j]
                i_tot += g * (v - erev[b, c])
                g_tot += g
            v = v + (stim[b, k] - i_tot) / (cap[b] + g_tot)
            x = (v - lo) / h
            if x != x:
                x = 0.0
            x = min(max(x, 0.0), Ng - 1 - 1e-9)
            i = int(np.floor(x))
            f = x - i
            for j in range(Gk):
                xi = tab_k[i, j] + f * (tab_k[i + 1, j] - tab_k[i, j])
                ta = tab_k[i, Gk + j] + f * (tab_k[i + 1, Gk + j] - tab_k[i, Gk + j])
                st[j] += (1.0 - np.exp(-dt / ta)) * (xi - st[j])
            for j in range(Gl):
                u = lidx[b, j]
                xi = tab_l[u, i, 0] + f * (tab_l[u, i + 1, 0] - tab_l[u, i, 0])
                ta = tab_l[u, i, 1] + f * (tab_l[u, i + 1, 1] - tab_l[u, i, 1])
                st[Gk + j] += (1.0 - np.exp(-dt / ta)) * (xi - st[Gk + j])
            V[b, k + 1] = v
            if record:
                for j in range(G):
                    S[b, k + 1, j] = st[j]
    return V, S


@njit(cache=True, error_model="numpy")
def _recurrence_forward(a, b):  # pragma: no cover (compiled)
    M, T = a.shape
    x = np.empty((M, T))
    for m in range(M):
        s = 0.0
        for k in range(T):
            s = a[m, k] * s + b[m, k]
            x[m, k] = s
    return x


@njit(cache=True, error_model="numpy")
def _recurrence_adjoint(a, x, g):  # pragma: no cover (compiled)
    M, T = a.shape
    ga = np.zeros((M, T))
    gb = np.empty((M, T))
    for m in range(M):
        lam = 0.0
        for k in range(T - 1, -1, -1):
            lam = g[m, k] + (a[m, k + 1] * lam if k + 1 < T else 0.0)
            gb[m, k] = lam
            if k > 0:
                ga[m, k] = lam * x[m, k - 1]
    return ga, gb


class _Recurrence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b):
        x = torch.from_numpy(_recurrence_forward(a.detach().contiguous().numpy(), b.detach().contiguous().numpy()))
        ctx.save_for_backward(a, x)
        return x

    @staticmethod
    def backward(ctx, g):
        a, x = ctx.saved_tensors
        ga, gb = _recurrence_adjoint(a.detach().contiguous().numpy(), x.numpy(), g.contiguous().numpy())
        return torch.from_numpy(ga), torch.from_numpy(gb)


def recurrence(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x[:, k] = a[:, k] x[:, k-1] + b[:, k] with x[:, -1] = 0, for float64 a, b [M, T]; differentiable in both
    (the adjoint: lambda[k] = dL/dx[k] + a[k+1] lambda[k+1], dL/db[k] = lambda[k], dL/da[k] = lambda[k] x[k-1])."""
    if a.dtype != torch.float64 or b.dtype != torch.float64 or a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"recurrence needs float64 [M, T] a and b of one shape, got {a.dtype} {tuple(a.shape)} and "
                         f"{b.dtype} {tuple(b.shape)}")
    return _Recurrence.apply(a, b)

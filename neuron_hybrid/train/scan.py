"""Differentiable linear recurrences z[n] = alpha[n] * z[n-1] + b[n] over long sequences.

Computed chunk by chunk with cumulative products in log space (exact in float64 while the product
of alphas within a chunk stays above ~1e-250) and a short sequential pass over chunks, so a
million-step recurrence costs a few vectorised operations instead of a million Python steps.
Leading batch dimensions (several sequences at once) share the sequential pass.

The gradient is the adjoint recurrence, itself a linear recurrence run backwards in time
(lambda[n] = dL/dz[n] + alpha[n+1] lambda[n+1]; dL/db[n] = lambda[n], dL/dlog_alpha[n] =
lambda[n] (z[n] - b[n])), computed by the same chunked scan: one scan forward and one backward,
instead of differentiating every operation of the forward scan (ca1 teacher forcing, 1.2 M
samples x 4 latents: 0.15 -> 0.07 s per forward and backward pass on 2 cores).
"""
import torch


CHUNK = 512


def _scan(log_alpha, b, z0, chunk, restart, z_restart):
    """The chunked forward scan on padded inputs [..., C * chunk, K] (no autograd bookkeeping needed)."""
    *batch, L, K = b.shape
    C = L // chunk
    la = log_alpha.reshape(*batch, C, chunk, K)
    cum = torch.cumsum(la, dim=-2)                 # log prod_{j<=n} alpha_j within each chunk
    A = torch.exp(cum)
    S = torch.cumsum(b.reshape(*batch, C, chunk, K) * torch.exp(-cum), dim=-2)
    A_last, B_last = A[..., -1, :], A[..., -1, :] * S[..., -1, :]
    starts = []
    z = z0
    for c in range(C):                             # sequential over chunks only
        if restart is not None:
            z = torch.where(restart[..., c, None], z_restart[..., c, :], z)
        starts.append(z)
        z = A_last[..., c, :] * z + B_last[..., c, :]
    z_start = torch.stack(starts, dim=-2)          # [..., C, K]
    return (A * (z_start.unsqueeze(-2) + S)).reshape(*batch, L, K)


class _LinearRecurrence(torch.autograd.Function):
    """z = scan(log_alpha, b, z0, restarts) with the adjoint recurrence as its backward pass."""

    @staticmethod
    def forward(ctx, log_alpha, b, z0, z_restart, chunk, restart):
        with torch.no_grad():
            z = _scan(log_alpha, b, z0, chunk, restart, z_restart)
        ctx.save_for_backward(log_alpha, b, z)
        ctx.chunk, ctx.restart = chunk, restart
        ctx.has_z_restart = z_restart is not None
        return z

    @staticmethod
    def backward(ctx, gz):
        log_alpha, b, z = ctx.saved_tensors
        chunk, restart = ctx.chunk, ctx.restart
        *batch, L, K = b.shape
        C = L // chunk
        # lambda[n] = gz[n] + alpha[n+1] lambda[n+1], in reversed time a forward recurrence with the alphas shifted
        # by one; a restart before chunk c cuts the carry from chunk c into chunk c-1
        la_next = torch.cat([log_alpha[..., 1:, :], torch.zeros_like(log_alpha[..., :1, :])], dim=-2)
        rev_restart = None
        if restart is not None:
            cut = torch.zeros_like(restart)
            cut[..., 1:] = torch.flip(restart[..., 1:], dims=[-1])  # reversed chunk c' = C - c starts at the cut
            rev_restart = cut
        with torch.no_grad():
            lam = _scan(torch.flip(la_next, dims=[-2]), torch.flip(gz, dims=[-2]), torch.zeros_like(gz[..., 0, :]),
                        chunk, rev_restart, torch.zeros(*batch, C, K, dtype=gz.dtype) if restart is not None else None)
            lam = torch.flip(lam, dims=[-2])
            g_la = lam * (z - b)                   # alpha[n] z[n-1] = z[n] - b[n]
            g_start = torch.exp(log_alpha[..., ::chunk, :]) * lam[..., ::chunk, :]  # dL/d(state before chunk c)
            if restart is None:
                g_z0, g_zr = g_start[..., 0, :], None
            else:
                g_z0 = torch.where(restart[..., 0, None], torch.zeros_like(g_start[..., 0, :]), g_start[..., 0, :])
                g_zr = torch.where(restart[..., None], g_start, torch.zeros_like(g_start))
        return g_la, lam, g_z0, (g_zr if ctx.has_z_restart else None), None, None


def linear_recurrence(log_alpha: torch.Tensor, b: torch.Tensor, z0: torch.Tensor, chunk: int = CHUNK,
                      restart: torch.Tensor = None, z_restart: torch.Tensor = None) -> torch.Tensor:
    """z[..., n, :] = exp(log_alpha[..., n, :]) * z[..., n-1, :] + b[..., n, :], with z[..., -1, :] = z0.

    log_alpha, b: [..., T, K] (log_alpha <= 0); z0: [..., K]. Returns z: [..., T, K].
    Requires chunk * max(-log_alpha) < ~575 (float64 range).
    restart [..., C] (bool, C = ceil(T / chunk)) with z_restart [..., C, K]: where set, the state
    before chunk c is replaced by z_restart (independent sequences packed into one row, each
    starting at a multiple of `chunk`).
    """
    *batch, T, K = b.shape
    pad = (-T) % chunk
    z0 = z0.expand(*batch, K)
    if pad:
        zeros = torch.zeros(*batch, pad, K, dtype=b.dtype)
        log_alpha = torch.cat([log_alpha.expand(*batch, T, K), zeros], dim=-2)
        b = torch.cat([b, zeros], dim=-2)
    log_alpha = log_alpha.expand(*batch, T + pad, K)
    C = (T + pad) // chunk
    if restart is not None:
        restart, z_restart = restart[..., :C], z_restart[..., :C, :]
    if torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in (log_alpha, b, z0, z_restart)):
        z = _LinearRecurrence.apply(log_alpha, b, z0, z_restart, chunk, restart)
    else:
        z = _scan(log_alpha, b, z0, chunk, restart, z_restart)
    return z[..., :T, :]

"""Differentiable linear recurrences z[n] = alpha[n] * z[n-1] + b[n] over long sequences.

Computed chunk by chunk with cumulative products in log space (exact in float64 while the product
of alphas within a chunk stays above ~1e-250) and a short sequential pass over chunks, so a
million-step recurrence costs a few vectorised operations instead of a million Python steps.
Leading batch dimensions (several sequences at once) share the sequential pass.
"""
import torch


CHUNK = 512


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
    if pad:
        zeros = torch.zeros(*batch, pad, K, dtype=b.dtype)
        log_alpha = torch.cat([log_alpha, zeros], dim=-2)
        b = torch.cat([b, zeros], dim=-2)
    C = (T + pad) // chunk
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
    out = A * (z_start.unsqueeze(-2) + S)
    return out.reshape(*batch, C * chunk, K)[..., :T, :]

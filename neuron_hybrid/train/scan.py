"""Differentiable linear recurrences z[n] = alpha[n] * z[n-1] + b[n] over long sequences.

Computed chunk by chunk with cumulative products in log space (exact in float64 for chunk lengths
where the product of alphas stays above ~1e-300) and a short sequential pass over chunks, so a
million-step recurrence costs a few vectorised operations instead of a million Python steps.
"""
import torch


def linear_recurrence(log_alpha: torch.Tensor, b: torch.Tensor, z0: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """z[n] = exp(log_alpha[n]) * z[n-1] + b[n] for n = 0..T-1 with z[-1] = z0.

    log_alpha, b: [T, K] (log_alpha <= 0); z0: [K]. Returns z: [T, K].
    Requires chunk * max(-log_alpha) < ~600 (float64 range).
    """
    T, K = b.shape
    pad = (-T) % chunk
    if pad:
        log_alpha = torch.cat([log_alpha, torch.zeros(pad, K, dtype=b.dtype)])
        b = torch.cat([b, torch.zeros(pad, K, dtype=b.dtype)])
    C = (T + pad) // chunk
    la = log_alpha.reshape(C, chunk, K)
    cum = torch.cumsum(la, dim=1)                  # log of prod_{j<=n} alpha_j within the chunk
    A = torch.exp(cum)
    S = torch.cumsum(b.reshape(C, chunk, K) * torch.exp(-cum), dim=1)
    A_last, S_last = A[:, -1], S[:, -1]
    starts = []
    z = z0
    for c in range(C):                             # sequential over chunks only
        starts.append(z)
        z = A_last[c] * (z + S_last[c])
    z_start = torch.stack(starts)                  # [C, K]
    out = A * (z_start.unsqueeze(1) + S)
    return out.reshape(C * chunk, K)[:T]

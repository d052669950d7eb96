"""Noise estimate and smoothing of observed voltage traces (mV) before current matching."""
from __future__ import annotations

import math

import numpy as np
import torch

from .compartment import DT


def _gauss_smooth(v, sd_samples):
    """Gaussian filter (sd in samples) of every row of v [B, N], edges replicated; wide kernels by FFT (conv1d's
    unfolded input would need B x kernel x N memory)."""
    if sd_samples <= 0:
        return v
    r = int(math.ceil(4 * sd_samples))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=DT) / sd_samples) ** 2)
    k = k / k.sum()
    x = torch.nn.functional.pad(v.unsqueeze(1), (r, r), mode="replicate")
    if r <= 16:
        return torch.nn.functional.conv1d(x, k.reshape(1, 1, -1)).squeeze(1)
    x = x.squeeze(1)
    n = x.shape[1] + 2 * r
    y = torch.fft.irfft(torch.fft.rfft(x, n) * torch.fft.rfft(k, n), n)
    return y[:, 2 * r:2 * r + v.shape[1]]


def _savgol(v, half: int, order: int = 3):
    """Savitzky-Golay smoothing of every row of v [M, N] (window 2 half + 1, polynomial ``order``)."""
    if half <= 0:
        return v
    x = np.arange(-half, half + 1, dtype=float)
    A = np.vander(x, order + 1, increasing=True)
    c = np.linalg.pinv(A)[0]  # value at the centre
    k = torch.as_tensor(c[::-1].copy(), dtype=DT).reshape(1, 1, -1)
    xx = torch.nn.functional.pad(v.unsqueeze(1), (half, half), mode="replicate")
    return torch.nn.functional.conv1d(xx, k).squeeze(1)


def estimate_noise_sd(v):
    """Robust white-noise sd (mV) of every row of v [M, N]: MAD of the second difference / sqrt(6)."""
    d2 = v[:, 2:] - 2 * v[:, 1:-1] + v[:, :-2]
    mad = (d2 - d2.median(1, keepdim=True).values).abs().median(1).values
    return mad / 0.6745 / math.sqrt(6.0)


def _smooth_auto(v, dt, smooth_ms, auto):
    """(smoothed rows of v, residual filter sd in samples [M]): fixed Gaussian sd ``smooth_ms`` (>= 0), or
    automatic cubic Savitzky-Golay (None) whose half-width grows with the estimated noise sd sigma (mV):
    none below 0.05 mV, else auto[0] + auto[1] sigma samples (at most 20; ``TraceFitConfig.smooth_auto``)."""
    M = v.shape[0]
    if smooth_ms is not None:
        return _gauss_smooth(v, smooth_ms / dt), torch.full((M,), smooth_ms / dt, dtype=DT)
    sd = estimate_noise_sd(v)
    out, filt = v.clone(), torch.zeros(M, dtype=DT)
    for i in range(M):
        s = float(sd[i])
        if s < 0.05:
            continue
        half = int(min(20, round(auto[0] + auto[1] * s)))
        out[i] = _savgol(v[i:i + 1], half)[0]
        filt[i] = half
    return out, filt


def _gauss_rows(x, sd_samples):
    """Gaussian filter of every row of x [M, N] with its own sd (samples, [M]; 0: unfiltered)."""
    if not bool((sd_samples > 0).any()):
        return x
    parts, idxs = [], []
    for sdv in torch.unique(sd_samples).tolist():
        idx = torch.nonzero(sd_samples == sdv).reshape(-1)
        parts.append(x[idx] if sdv <= 0 else _gauss_smooth(x[idx], sdv))
        idxs.append(idx)
    order = torch.argsort(torch.cat(idxs))
    return torch.cat(parts, 0)[order]

"""Spike-train utilities: classification, parsing, perturbations (times in ms)."""
from __future__ import annotations

import ast
import math

import numpy as np

__all__ = ["SILENT", "SPIKING", "BURSTING", "CLASSES", "classify", "parse_spike_list", "jitter_and_drop",
           "firing_metrics"]

SILENT, SPIKING, BURSTING = "silent", "spiking", "bursting"
CLASSES = (SPIKING, BURSTING)
CV_THRESHOLD = 0.15  # Spike2Pop: CV of ISIs <= 0.15 -> tonic spiking


def classify(spike_times, cv_threshold: float = CV_THRESHOLD) -> str:
    """``"silent"`` (fewer than 3 spikes), ``"spiking"`` (ISI coefficient of variation <=
    ``cv_threshold``) or ``"bursting"`` (Spike2Pop's rule)."""
    s = np.asarray(spike_times, dtype=np.float64)
    if s.size < 3:
        return SILENT
    isi = np.diff(np.sort(s))
    cv = isi.std() / isi.mean() if isi.mean() > 0 else np.inf
    return SPIKING if cv <= cv_threshold else BURSTING


def firing_metrics(spike_times) -> dict[str, float]:
    """Simple descriptors: number of spikes, mean rate (Hz), ISI CV, and for bursting trains the
    number of spikes per burst and the burst period (ms), bursts split at the ISI threshold
    (max + min)/2 (Spike2Pop's rule)."""
    s = np.sort(np.asarray(spike_times, dtype=np.float64))
    out = {"n_spikes": float(s.size), "rate_hz": np.nan, "cv": np.nan, "spikes_per_burst": np.nan,
           "burst_period_ms": np.nan}
    if s.size < 3:
        return out
    isi = np.diff(s)
    out["rate_hz"] = 1000.0 / isi.mean()
    out["cv"] = float(isi.std() / isi.mean())
    if classify(s) == BURSTING:
        thr = 0.5 * (isi.max() + isi.min())
        starts = np.concatenate([[0], np.nonzero(isi > thr)[0] + 1])
        if starts.size >= 2:
            out["spikes_per_burst"] = float(np.mean(np.diff(starts)))
            out["burst_period_ms"] = float(np.mean(np.diff(s[starts])))
    return out


def parse_spike_list(text) -> np.ndarray:
    """Parse a bracketed list such as ``"[12.5, 80.1, ...]"`` into a float array (ms).

    Raises ``ValueError`` naming the problem for anything else (not a list, non-numeric or
    non-finite entries, decreasing times).
    """
    if isinstance(text, (list, tuple, np.ndarray)):
        vals = list(text)
    else:
        t = str(text).strip()
        if not t:
            raise ValueError("empty spike list")
        if not (t.startswith("[") and t.endswith("]")):
            raise ValueError(f"expected a bracketed list like '[12.5, 80.1]', got {t[:40]!r}")
        try:
            vals = ast.literal_eval(t)
        except (ValueError, SyntaxError):
            # tolerate whitespace-separated lists as written by numpy: "[1. 2. 3.]"
            try:
                vals = [float(x) for x in t[1:-1].replace(",", " ").split()]
            except ValueError:
                raise ValueError(f"could not parse the spike list {t[:40]!r}: use numbers separated by commas") from None
    if not isinstance(vals, (list, tuple)):
        raise ValueError("expected a list of spike times")
    try:
        arr = np.array([float(x) for x in vals], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("spike times must be numbers (ms)") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError("spike times must be finite numbers (ms)")
    if arr.size > 1 and np.any(np.diff(arr) < 0):
        raise ValueError("spike times must be in increasing order")
    return arr


def jitter_and_drop(spike_times, *, jitter_ms: float = 0.0, drop_fraction: float = 0.0,
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """Perturbed copy of a spike train: Gaussian jitter (sd ``jitter_ms``) on every time, then
    each spike dropped with probability ``drop_fraction``; re-sorted. ``rng`` for reproducibility."""
    rng = rng or np.random.default_rng(0)
    s = np.asarray(spike_times, dtype=np.float64)
    if jitter_ms > 0:
        s = s + rng.normal(0.0, jitter_ms, size=s.shape)
    if drop_fraction > 0:
        s = s[rng.uniform(size=s.shape) >= drop_fraction]
    return np.sort(s)

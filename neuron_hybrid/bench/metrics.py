"""Spike and voltage metrics comparing a model's soma voltage with a reference (the full cell).

Times in ms, voltages in mV. Spikes are upward crossings of `threshold_mV` (default 0 mV), located
by linear interpolation between samples.
"""
import math

import numpy as np


def spike_times(t_ms, v_mV, threshold_mV: float = 0.0) -> np.ndarray:
    """Times (ms) of upward threshold crossings, linearly interpolated."""
    t = np.asarray(t_ms, dtype=float)
    v = np.asarray(v_mV, dtype=float)
    idx = np.nonzero((v[:-1] < threshold_mV) & (v[1:] >= threshold_mV))[0]
    frac = (threshold_mV - v[idx]) / (v[idx + 1] - v[idx])
    return t[idx] + frac * (t[idx + 1] - t[idx])


def fractional_spike_count(t_ms, v_mV, t_end_ms: float, threshold_mV: float = 0.0) -> float:
    """Spikes up to t_end_ms plus the elapsed fraction of the next interval, (t_end - last) / last ISI,
    capped at 1: a count that changes continuously as a spike moves across t_end (for fitting rates)."""
    s = spike_times(t_ms, v_mV, threshold_mV)
    s = s[s <= t_end_ms]
    if len(s) < 2:
        return float(len(s))
    return len(s) + min((t_end_ms - s[-1]) / (s[-1] - s[-2]), 1.0)


def coincidences(ref_ms, model_ms, delta_ms: float = 2.0) -> int:
    """Number of reference spikes matched one-to-one by a model spike within +-delta_ms."""
    ref = np.sort(np.asarray(ref_ms, dtype=float))
    mod = np.sort(np.asarray(model_ms, dtype=float))
    i = j = n = 0
    while i < len(ref) and j < len(mod):
        d = mod[j] - ref[i]
        if abs(d) <= delta_ms:
            n += 1
            i += 1
            j += 1
        elif d < 0:
            j += 1
        else:
            i += 1
    return n


def coincidence_factor(ref_ms, model_ms, duration_ms: float, delta_ms: float = 2.0) -> float:
    """Kistler et al. (1997) coincidence factor Gamma (1: identical, 0: chance level).

    Gamma = (N_coinc - 2 nu delta N_ref) / (0.5 (N_ref + N_model)) / (1 - 2 nu delta), nu = N_model / T.
    Returns 1.0 when neither train has spikes and NaN if the formula is undefined.
    """
    n_ref, n_mod = len(ref_ms), len(model_ms)
    if n_ref == 0 and n_mod == 0:
        return 1.0
    nu = n_mod / duration_ms
    norm = 1.0 - 2.0 * nu * delta_ms
    if norm <= 0:
        return float("nan")
    expected = 2.0 * nu * delta_ms * n_ref
    return (coincidences(ref_ms, model_ms, delta_ms) - expected) / (0.5 * (n_ref + n_mod)) / norm


def subthreshold_mask(t_ms, spikes_a, spikes_b, before_ms: float = 2.0, after_ms: float = 8.0) -> np.ndarray:
    """True for samples farther than [-before, +after] ms from every spike of either train."""
    t = np.asarray(t_ms, dtype=float)
    mask = np.ones(t.shape, dtype=bool)
    for s in np.concatenate([np.asarray(spikes_a, float), np.asarray(spikes_b, float)]):
        mask &= ~((t >= s - before_ms) & (t <= s + after_ms))
    return mask


def longest_depolarised_ms(t_ms, v_mV, above_mV: float = -30.0) -> float:
    """Longest stretch (ms) of uninterrupted V > above_mV: ~1 ms per action potential, the whole stretch
    where a cell is held depolarised (depolarisation block, a stuck fixed point)."""
    t = np.asarray(t_ms, dtype=float)
    up = np.asarray(v_mV, dtype=float) > above_mV
    if not up.any():
        return 0.0
    edges = np.diff(np.concatenate([[0], up.astype(np.int8), [0]]))
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
    dt = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
    return float(((ends - starts) * dt).max())


def stuck_depolarised(t_ms, v_ref, v_model, above_mV: float = -30.0, min_ms: float = 50.0) -> bool:
    """True if the model stays above above_mV for over min_ms and over twice as long as the reference ever
    does: the model left for a depolarised state (e.g. block) that the reference does not enter."""
    ref, mod = longest_depolarised_ms(t_ms, v_ref, above_mV), longest_depolarised_ms(t_ms, v_model, above_mV)
    return bool(mod > max(min_ms, 2.0 * ref))


def compare_traces(t_ms, v_ref, v_model, delta_ms: float = 2.0, threshold_mV: float = 0.0) -> dict:
    """All scalar comparison metrics of one protocol (reference = full cell)."""
    t = np.asarray(t_ms, dtype=float)
    v_ref = np.asarray(v_ref, dtype=float)
    v_model = np.asarray(v_model, dtype=float)
    s_ref = spike_times(t, v_ref, threshold_mV)
    s_mod = spike_times(t, v_model, threshold_mV)
    duration = float(t[-1] - t[0])
    mask = subthreshold_mask(t, s_ref, s_mod)
    sub = float(np.sqrt(np.mean((v_ref[mask] - v_model[mask]) ** 2))) if mask.any() else float("nan")
    latency = float(s_mod[0] - s_ref[0]) if len(s_ref) and len(s_mod) else float("nan")
    finite = np.isfinite(v_model)
    stuck = stuck_depolarised(t, v_ref, np.where(finite, v_model, 0.0))
    return {
        "n_spikes_ref": int(len(s_ref)),
        "n_spikes_model": int(len(s_mod)),
        "spike_count_error": int(len(s_mod) - len(s_ref)),
        "gamma": coincidence_factor(s_ref, s_mod, duration, delta_ms),
        "first_spike_latency_error_ms": latency,
        "subthreshold_rmse_mV": sub,
        "subthreshold_fraction": float(mask.mean()),
        "max_abs_v_model_mV": float(np.nanmax(np.abs(v_model))) if finite.any() else float("inf"),
        "stuck_depolarised": stuck,
        # a run the model cannot recover from: non-finite, outside [-120, 80] mV, or held depolarised
        "runaway": bool((~finite).any() or np.nanmin(v_model) < -120.0 or np.nanmax(v_model) > 80.0 or stuck),
        "spike_times_ref_ms": s_ref.tolist(),
        "spike_times_model_ms": s_mod.tolist(),
    }


def efel_features(t_ms, v_mV, stim_start_ms: float, stim_end_ms: float) -> dict:
    """eFEL's AP amplitude (mV), AHP depth (mV) and ISI CV, averaged over spikes; NaN if undefined."""
    import efel

    trace = {"T": np.asarray(t_ms, float), "V": np.asarray(v_mV, float), "stim_start": [stim_start_ms],
             "stim_end": [stim_end_ms]}
    names = ["AP_amplitude", "AHP_depth", "ISI_CV"]
    try:
        res = efel.get_feature_values([trace], names, raise_warnings=False)[0]
    except Exception:  # noqa: BLE001 - eFEL raises on degenerate traces
        return {n: float("nan") for n in names}
    out = {}
    for n in names:
        val = res.get(n)
        out[n] = float(np.mean(val)) if val is not None and len(val) else float("nan")
    return out


def nanmean(values) -> float:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(vals)) if vals else float("nan")

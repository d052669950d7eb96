"""Calibration of the learned conductances on spike counts, in NEURON (the last stage of ``reduce``).

Teacher forcing fits the axial current sample by sample; the firing rate on long steps depends on
the current's mean over each interspike interval, where a 1-2 % error of a conductance moves the
count of a 2 s step by several spikes (ca1_pospischil). This stage scales the K conductances g_k
by exp(x_k) and fits x (Nelder-Mead, a few dozen NEURON runs of the reduced cell) so that the
fractional spike counts (:func:`neuron_hybrid.bench.metrics.fractional_spike_count`) on the
*training* current-clamp steps and ramps match the full cell's, and the voltage on the training
steps where the full cell stays silent (hyperpolarising and subthreshold: the conductances also set
the steady-state load there); (x / x_scale)^2 keeps the factors near 1. Validation protocols stay
unseen (they judge whether the result is kept).
"""
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from neuron_hybrid.bench.metrics import fractional_spike_count, spike_times


@dataclass
class CalibrationConfig:
    """enabled: off by default (`reduce --calibrate`): on ca1_pospischil it brings the held-out step counts
    to +-1 at a cost in Gamma on noise (see the README); max_evals: NEURON evaluations (each runs every target protocol); step: the initial simplex's
    step in log conductance; x_scale: the regulariser's scale (a log factor of x_scale costs as much
    as one spike of count error); v_scale_mV: a voltage RMSE on a silent step that costs as much as
    one spike; max_noise_gamma_drop: the calibrated model is kept only if the mean
    Gamma on the noisy validation protocols falls by at most this much and nothing runs away."""

    enabled: bool = False
    max_evals: int = 60
    step: float = 0.03
    x_scale: float = 0.3
    v_scale_mV: float = 1.0
    max_noise_gamma_drop: float = 0.05


@dataclass
class CountTarget:
    """A training protocol and the full cell's fractional spike count up to the stimulus end (ms);
    where it is 0, the full cell's soma voltage v_mV (sampled at the simulation's dt) is the target."""

    protocol: object
    t_end_ms: float
    count: float
    v_mV: np.ndarray = None


def count_targets(traces) -> list:
    """Targets from the training traces: current-clamp steps and ramps. Empty if the full cell fires
    in none of them (a passive cell: nothing to calibrate)."""
    out = []
    for tr in traces:
        p = tr.protocol
        if p.get("type") not in ("step", "ramp"):
            continue
        t_end = p["delay_ms"] + p["dur_ms"]
        count = fractional_spike_count(tr.t, tr.v_soma, t_end)
        silent = count == 0 and len(spike_times(tr.t, tr.v_soma)) == 0
        out.append(CountTarget(tr.protocol_object(), t_end, count, np.asarray(tr.v_soma) if silent else None))
    return out if any(t.count > 0 for t in out) else []


def calibrate_conductances(model, soma_desc: dict, targets, write_model_dir, config: CalibrationConfig = None,
                           dt_ms: float = 0.025, log=None) -> dict:
    """Fit log factors x of the conductances of `model` (a LatentAxialCurrent, changed in place) to
    `targets` (:func:`count_targets`). write_model_dir(path, model): writes a loadable model directory.
    Returns {"x", "residuals_before", "residuals_after" (per target: count error, or voltage RMSE /
    v_scale_mV on silent targets), "evaluations"}."""
    from scipy.optimize import minimize

    from neuron_hybrid.datagen.run import simulate_voltage

    from .reduced_cell import ReducedCell

    config = config or CalibrationConfig()
    w0 = model.w.detach().clone()
    seen = {}

    def residual(tg, t, v):
        if tg.v_mV is None:
            return fractional_spike_count(t, v, tg.t_end_ms) - tg.count
        n = min(len(v), len(tg.v_mV))
        return float(np.sqrt(np.mean((np.asarray(v[:n]) - tg.v_mV[:n]) ** 2))) / config.v_scale_mV

    def errors(x):
        key = tuple(np.round(x, 12))
        if key not in seen:
            with torch.no_grad():
                model.w.copy_(w0 * torch.exp(torch.as_tensor(x, dtype=w0.dtype) / 2))
            with tempfile.TemporaryDirectory(prefix="nh_cal_") as d:
                write_model_dir(Path(d), model)
                red = ReducedCell.load(d, name="calibration", on_out_of_range="clamp_quiet")
                res = []
                for tg in targets:
                    t, v, _, _ = simulate_voltage(red, tg.protocol, dt_ms=dt_ms)
                    res.append(residual(tg, t, v))
                del red
            seen[key] = np.array(res)
        return seen[key]

    def objective(x):
        return float((errors(x) ** 2).sum() + ((np.asarray(x) / config.x_scale) ** 2).sum())

    K = len(w0)
    x0 = np.zeros(K)
    simplex = np.vstack([x0] + [x0 + config.step * np.eye(K)[k] for k in range(K)])
    before = errors(x0)
    res = minimize(objective, x0, method="Nelder-Mead",
                   options={"maxfev": config.max_evals, "initial_simplex": simplex, "xatol": 1e-4, "fatol": 1e-3})
    best = min(seen, key=lambda k: objective(np.array(k)))
    x = np.array(best)
    with torch.no_grad():
        model.w.copy_(w0 * torch.exp(torch.as_tensor(x, dtype=w0.dtype) / 2))
    out = {"x": x.tolist(), "residuals_before": before.tolist(), "residuals_after": errors(x).tolist(),
           "evaluations": len(seen), "nelder_mead_iterations": int(res.nit)}
    if log:
        spiking = np.array([tg.v_mV is None for tg in targets])
        after = np.abs(out["residuals_after"])
        log(f"calibration: {len(seen)} NEURON evaluations; on {spiking.sum()} training steps/ramps max |fractional "
            f"count error| {np.abs(before[spiking]).max():.2f} -> {after[spiking].max():.2f}, on {(~spiking).sum()} "
            f"silent ones max voltage RMSE {np.abs(before[~spiking]).max(initial=0) * config.v_scale_mV:.2f} -> "
            f"{after[~spiking].max(initial=0) * config.v_scale_mV:.2f} mV; conductance factors "
            f"{np.round(np.exp(x), 4).tolist()}")
    return out

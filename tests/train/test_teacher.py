"""Teacher forcing: the closed-form warm start is the least-squares optimum, the recurrence matches
NEURON's cnexp order, and the loss weights mark the approach to each spike."""
import math

import numpy as np
import torch

from neuron_hybrid.models.axial import LatentAxialCurrent
from neuron_hybrid.train.teacher import (Sequence, TeacherConfig, current_rmse, make_batch, sample_weights,
                                         teacher_latents, warm_start)

DT = 0.025


def _lti_data(seed=0, n=8000):
    """V: a smooth random trace (mV); I: an exact 2-latent linear model of it (nA)."""
    rng = np.random.default_rng(seed)
    v = -70 + np.cumsum(rng.normal(0, 0.3, n))
    v = -70 + 10 * np.tanh((v + 70) / 10)
    true = LatentAxialCurrent(n_latent=2, tau_init_ms=[1.0, 30.0], e0_mV=-70.0)
    true.set_linear([0.01, 0.02], [0.4, 0.9], [0.0, 0.0], [1.0, 30.0])
    grid = torch.arange(true.v_min, true.v_max + 0.05, 0.1, dtype=torch.float64)
    b = make_batch([Sequence(v, np.zeros(n), DT)], grid)
    with torch.no_grad():
        z = teacher_latents(true, b)[0].numpy()
    g = np.array([0.01, 0.02])
    i = np.concatenate([[0.0], ((v[1:, None] - z[:-1]) * g).sum(1)])
    return v, i, z


def test_teacher_latents_follow_cnexp():
    v, _, z = _lti_data()
    tau = np.array([1.0, 30.0])
    zinf = -70 + np.array([0.4, 0.9]) * (v[:, None] + 70)
    ref = np.empty_like(z)
    ref[0] = zinf[0]
    for n in range(1, len(v)):  # NEURON's order: rates at the new v, exponential update
        ref[n] = ref[n - 1] + (1 - np.exp(-DT / tau)) * (zinf[n] - ref[n - 1])
    np.testing.assert_allclose(z, ref, atol=1e-9)


def test_warm_start_recovers_an_exact_linear_model():
    v, i, _ = _lti_data()
    model = LatentAxialCurrent(n_latent=2, tau_init_ms=[1.0, 30.0], e0_mV=-70.0)
    fit = warm_start(model, [Sequence(v, i, DT)])
    assert fit["rmse_nA"] < 1e-8
    assert current_rmse(model, [Sequence(v, i, DT)]) < 1e-6
    assert math.isclose(float(model.conductances_uS().sum()), 0.03, rel_tol=1e-6)


def test_sample_weights_mark_the_approach_to_each_spike():
    t = np.arange(0, 100, DT)
    v = np.full_like(t, -65.0)
    spike = (t >= 50) & (t < 51)
    v[spike] = 20.0                       # one spike: 0 mV crossed upwards at t = 50 ms
    seq = Sequence(v, np.zeros_like(v), DT)
    grid = torch.arange(-110.0, 60.05, 0.1, dtype=torch.float64)
    b = make_batch([seq], grid)
    w = sample_weights(b, TeacherConfig(spike_weight=0.5, pre_spike_weight=7.0, pre_spike_ms=8.0))[0].numpy()
    tw = t[1:]                            # weights belong to targets I[1..T-1]
    assert np.all(w[(tw > 42.1) & (tw < 49.4)] == 7.0)   # 8 .. 0.5 ms before the crossing
    assert np.all(w[(tw > 50.1) & (tw < 50.9)] == 0.5)   # the spike itself
    assert np.all(w[(tw < 41.9) | (tw > 51.1)] == 1.0)
    w_off = sample_weights(b, TeacherConfig(spike_weight=0.5))[0].numpy()
    assert np.all(w_off[(tw > 42.1) & (tw < 49.4)] == 1.0)

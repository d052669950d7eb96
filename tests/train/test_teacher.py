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


def test_packed_batch_equals_one_sequence_per_row():
    """Short protocols packed into shared rows (latents restarted at each) give the same currents."""
    from neuron_hybrid.train.teacher import _pack, batch_current
    from neuron_hybrid.train.scan import CHUNK

    rng = np.random.default_rng(3)
    seqs = [Sequence(-65 + np.cumsum(rng.normal(0, 0.5, n)), rng.normal(0, 0.1, n), DT) for n in (3000, 700, 1100, 513, 2900)]
    model = LatentAxialCurrent(n_latent=3, seed=1, v_rest_mV=-65.0)
    model.set_linear([0.01, 0.02, 0.005], [0.5, 0.8, 0.2], [0.0, 1.0, -1.0], [0.5, 8.0, 200.0])
    with torch.no_grad():
        model.net[-1].weight.normal_(0, 0.1)
    grid = torch.arange(model.v_min, model.v_max + 0.05, 0.1, dtype=torch.float64)
    plain, packed = make_batch(seqs, grid), make_batch(seqs, grid, pack=True)
    assert packed.v.shape[0] < len(seqs) and packed.n_samples == plain.n_samples
    with torch.no_grad():
        i_plain, i_packed = batch_current(model, plain), batch_current(model, packed)
    where, _, _ = _pack([len(s.v_mV) for s in seqs], CHUNK)
    for j, ((r, o), s) in enumerate(zip(where, seqs)):
        n = len(s.v_mV)
        np.testing.assert_allclose(i_packed[r, o:o + n - 1].numpy(), i_plain[j, :n - 1].numpy(), rtol=0, atol=1e-12)
        np.testing.assert_array_equal(packed.target[r, o:o + n - 1].numpy(), s.i_nA[1:])
    assert math.isclose(current_rmse(model, seqs), math.sqrt(float((((i_plain - plain.target) * plain.mask) ** 2).sum())
                                                             / plain.n_samples), rel_tol=1e-9)


def _nonlinear_target(seed=1, n=6000):
    """V of _lti_data; I (nA) from a 2-latent model whose rate network is a random perturbation of a
    linear one: nonlinear, and exactly representable."""
    v, _, _ = _lti_data(seed, n)
    true = LatentAxialCurrent(n_latent=2, tau_init_ms=[1.0, 30.0], e0_mV=-70.0, seed=seed)
    true.set_linear([0.01, 0.02], [0.4, 0.9], [0.0, 0.0], [1.0, 30.0])
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in true.net.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    grid = torch.arange(true.v_min, true.v_max + 0.05, 0.1, dtype=torch.float64)
    b = make_batch([Sequence(v, np.zeros(n), DT)], grid)
    with torch.no_grad():
        z = teacher_latents(true, b)[0].numpy()
    i = np.concatenate([[0.0], ((v[1:, None] - z[:-1]) * np.array([0.01, 0.02])).sum(1)])
    return [Sequence(v, i, DT)]


def test_lbfgs_polish_lowers_the_loss_and_resumes_exactly(tmp_path):
    from neuron_hybrid.train.teacher import train_teacher_forced

    seqs = _nonlinear_target()

    def fresh():
        m = LatentAxialCurrent(n_latent=2, tau_init_ms=[1.0, 30.0], e0_mV=-70.0, seed=3)
        warm_start(m, seqs)
        return m

    adam_only = fresh()
    train_teacher_forced(adam_only, seqs, TeacherConfig(epochs=20, lr=3e-3), progress=False)
    polished = fresh()
    hist = train_teacher_forced(polished, seqs, TeacherConfig(epochs=20, lr=3e-3, lbfgs_iters=10, lbfgs_chunk=5),
                                progress=False)
    assert [d for d, _ in hist["lbfgs_loss"]] == [5, 10]
    assert current_rmse(polished, seqs) < 0.8 * current_rmse(adam_only, seqs)
    # interrupted after the first L-BFGS chunk (its checkpoint), then resumed: the same model
    ck = tmp_path / "teacher.ckpt"
    part = fresh()
    train_teacher_forced(part, seqs, TeacherConfig(epochs=20, lr=3e-3, lbfgs_iters=5, lbfgs_chunk=5), checkpoint=ck,
                         progress=False)
    assert torch.load(ck, weights_only=False)["lbfgs"]["done"] == 5
    resumed = fresh()
    train_teacher_forced(resumed, seqs, TeacherConfig(epochs=20, lr=3e-3, lbfgs_iters=10, lbfgs_chunk=5), checkpoint=ck,
                         progress=False)
    for k, val in polished.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], val, rtol=0, atol=1e-12)

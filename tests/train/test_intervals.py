"""The closed loop's inter-spike-interval stage: spike times from sampled voltage, the interval loss and the
recorded intervals it trains on (checked against analytic crossings, not against earlier output)."""
import numpy as np
import torch

from neuron_hybrid.train.closed_loop import ClosedLoopConfig, IntervalSampler, interval_loss, next_spike_time


def _ramps(slopes, dt=0.1, n=400, v0=-70.0):
    t = torch.arange(n + 1, dtype=torch.float64) * dt
    return v0 + torch.as_tensor(slopes, dtype=torch.float64).reshape(-1, 1) * t


def test_next_spike_time_is_the_interpolated_crossing_and_differentiable():
    slopes = torch.tensor([2.0, 5.0, 0.1], dtype=torch.float64, requires_grad=True)  # mV/ms; the last never gets there
    v = _ramps(slopes)
    t = next_spike_time(v, 0.1, -20.0)
    assert torch.allclose(t[:2], 50.0 / slopes[:2].detach(), atol=1e-9)  # -70 + s t = -20
    assert torch.isnan(t[2])
    t[:2].sum().backward()
    assert torch.allclose(slopes.grad[:2], -50.0 / slopes.detach()[:2] ** 2, rtol=1e-6)


def test_next_spike_time_skips_the_repolarisation_the_window_starts_on():
    dt = 0.1
    v = torch.full((1, 301), -60.0, dtype=torch.float64)
    v[0, :5] = torch.tensor([10.0, -10.0, -30.0, -50.0, -60.0])  # end of the previous spike
    v[0, 200:] = torch.linspace(-60.0, 20.0, 101, dtype=torch.float64)  # the next one
    t = float(next_spike_time(v, dt, -20.0)[0])
    assert abs(t - (200 + 50) * dt) < 1e-9  # -60 + 0.8 k = -20 at k = 50 samples after 200


def test_interval_loss_prefers_the_right_time_and_pushes_a_missing_spike_up():
    dt = 0.1
    target = torch.tensor([25.0], dtype=torch.float64)  # ms: slope 2 mV/ms
    losses = {s: float(interval_loss(_ramps([s], dt), target, dt, -20.0)) for s in (1.5, 2.0, 2.5)}
    assert losses[2.0] < 1e-12 and losses[1.5] > 0 and losses[2.5] > 0
    slope = torch.tensor([0.05], dtype=torch.float64, requires_grad=True)  # peaks at -68 mV: no spike
    loss = interval_loss(_ramps(slope, dt), target, dt, -20.0)
    loss.backward()
    assert loss.item() > 1.0 and slope.grad.item() < 0  # raising the slope lowers the loss


def test_interval_sampler_finds_recorded_intervals():
    dt = 0.1
    n = 3000
    v = np.full((1, n), -65.0)
    spikes = [500, 1200, 1500, 2900]  # intervals 70, 30 and 140 ms
    for k in spikes:
        v[0, k:k + 10] = np.linspace(0.0, 30.0, 10)  # upward crossing of -20 mV between k-1 and k
        v[0, k - 1] = -40.0
    cfg = ClosedLoopConfig(isi_range_ms=(10.0, 100.0), isi_start_ms=3.0)
    s = IntervalSampler(v, np.array([n]), dt, cfg)
    assert len(s) == 2  # 140 ms is outside the range
    assert sorted(s.starts.tolist()) == [499 + 30, 1199 + 30]
    # the crossings lie half a sample after the indices 499 / 1199 / 1499, the windows start 30 samples after them
    assert np.allclose(sorted(s.t_next.tolist()), [27.05, 67.05], atol=1e-9)
    rows, starts, t_next, L = s.sample(5)
    assert len(rows) == 2 and L * dt >= max(t_next) + min(0.5 * max(t_next), 30.0) - dt

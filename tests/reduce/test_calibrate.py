"""Calibration of the learned current on spike counts: the fractional count is continuous, and in
NEURON the calibration finds conductances, or a slow latent's spike drive, back from counts made by a
known model (the drive leaving subthreshold voltage unchanged)."""
import numpy as np
import pytest

from neuron_hybrid import cells
from neuron_hybrid.bench.metrics import fractional_spike_count
from neuron_hybrid.datagen.run import simulate_voltage
from neuron_hybrid.models.axial import LatentAxialCurrent
from neuron_hybrid.reduce.calibrate import (CalibrationConfig, CalibrationTarget, calibrate_current,
                                            calibration_targets, soft_unmatched_spikes)
from neuron_hybrid.reduce.pipeline import candidate_cell
from neuron_hybrid.reduce.soma import describe_soma
from neuron_hybrid.stimuli import OU, Step


def _spiking(spike_ms, t_end=200.0, dt=0.025):
    t = np.arange(0.0, t_end + dt / 2, dt)
    v = np.full_like(t, -65.0)
    for s in spike_ms:
        v[(t >= s) & (t < s + 1.0)] = 20.0
    return t, v


def test_fractional_count_is_continuous_as_a_spike_crosses_the_end():
    t, v = _spiking([20.0, 60.0, 100.0])
    assert fractional_spike_count(t, v, 99.99) == pytest.approx(3.0, abs=1e-3)  # 2 spikes + a whole interval
    assert fractional_spike_count(t, v, 100.01) == pytest.approx(3.0, abs=1e-3)  # 3 spikes + nothing
    assert fractional_spike_count(t, v, 120.0) == pytest.approx(3.5, abs=1e-3)
    assert fractional_spike_count(t, v, 10.0) == 0.0
    assert fractional_spike_count(t, v, 30.0) == 1.0


def test_soft_unmatched_spikes():
    ref = np.array([10.0, 50.0, 90.0])
    assert soft_unmatched_spikes(ref, ref, 2.0) == 0.0
    assert soft_unmatched_spikes(ref, [], 2.0) == 1.5
    assert soft_unmatched_spikes(ref, [10.0, 50.0, 90.0, 130.0], 2.0) == pytest.approx(0.5)  # one extra
    near = soft_unmatched_spikes(ref, ref + 0.5, 2.0)
    assert 0 < near < soft_unmatched_spikes(ref, ref + 1.0, 2.0) < soft_unmatched_spikes(ref, ref + 4.0, 2.0) < 3.0


class _Stored:
    def __init__(self, protocol, t, v):
        self.protocol, self._p, self.t, self.v_soma = protocol.to_dict(), protocol, t, v

    def protocol_object(self):
        return self._p


def test_calibration_targets_skip_cells_that_never_fire_and_keep_the_voltage_of_silent_steps():
    t, v = _spiking([])
    step = Step(amp_nA=0.2, delay_ms=10.0, dur_ms=100.0, tstop_ms=200.0)
    assert calibration_targets([_Stored(step, t, v)]) == []
    hyper = Step(amp_nA=-0.2, delay_ms=10.0, dur_ms=100.0, tstop_ms=200.0)
    t_s, v_s = _spiking([50.0, 90.0])
    ou = OU(mean_nA=0.1, sd_nA=0.1, tau_ms=5.0, seed=1, delay_ms=10.0, dur_ms=150.0, tstop_ms=200.0)
    spiking, silent, noisy = calibration_targets([_Stored(step, t_s, v_s), _Stored(hyper, t, v), _Stored(ou, t_s, v_s),
                                                  _Stored(ou, t, v)])  # (a silent noisy current: no target)
    np.testing.assert_allclose(noisy.spikes_ms, [50.0, 90.0], atol=0.03)
    assert calibration_targets([_Stored(step, t_s, v_s), _Stored(ou, t_s, v_s)], noise=False)[1:] == []
    assert spiking.count == pytest.approx(2.0 + 20.0 / 40.0, abs=1e-3) and spiking.v_mV is None
    assert silent.count == 0 and np.array_equal(silent.v_mV, v)  # silent: its voltage is the target


def test_calibration_finds_the_conductances_back_in_neuron(h, mechanisms):
    full = cells.build("ca1_pospischil")
    desc = describe_soma(full)
    del full

    def model(scale):
        m = LatentAxialCurrent(n_latent=2, seed=1, v_rest_mV=-70.0, e0_mV=-70.0, tau_init_ms=[1.0, 40.0])
        m.set_linear(np.array([0.008, 0.004]) * np.array(scale), [0.6, 0.3], [0.0, 0.0], [1.0, 40.0])
        return m

    def reduced_cell(m):
        return candidate_cell(m, desc)

    def counts(m, steps):
        with reduced_cell(m) as red:
            return np.array([fractional_spike_count(*simulate_voltage(red, s)[:2], s.delay_ms + s.dur_ms) for s in steps])

    steps = [Step(amp_nA=a, delay_ms=20.0, dur_ms=300.0, tstop_ms=330.0) for a in (0.16, 0.3)]
    true = counts(model([1.0, 1.0]), steps)
    assert true.min() >= 2, "the steps must make the soma fire"
    wrong = model([1.3, 0.8])
    targets = [CalibrationTarget(s, s.delay_ms + s.dur_ms, c) for s, c in zip(steps, true)]
    rec = calibrate_current(wrong, targets, reduced_cell, CalibrationConfig(max_evals=30, step=0.05))
    before, after = np.abs(rec["residuals_before"]), np.abs(rec["residuals_after"])
    assert before.max() > 1.0
    assert after.max() < 0.3 * before.max()
    np.testing.assert_allclose(counts(wrong, steps) - true, rec["residuals_after"], atol=1e-9)  # applied in place


def test_spike_drive_calibration_finds_the_drive_back_and_leaves_subthreshold_voltage_alone(h, mechanisms):
    full = cells.build("ca1_pospischil")
    desc = describe_soma(full)
    del full

    def model(drive_mV):  # only the 40 ms latent is slow enough to be driven (spike_drive_min_tau_ms=20 below)
        m = LatentAxialCurrent(n_latent=2, seed=1, v_rest_mV=-70.0, e0_mV=-70.0, tau_init_ms=[1.0, 40.0])
        m.set_linear([0.008, 0.004], [0.6, 0.3], [0.0, 0.0], [1.0, 40.0])
        m.spike_dz[1] = drive_mV
        return m

    def runs(m, steps):
        with candidate_cell(m, desc) as red:
            return [simulate_voltage(red, s)[:2] for s in steps]

    steps = [Step(amp_nA=a, delay_ms=20.0, dur_ms=300.0, tstop_ms=330.0) for a in (0.16, 0.3)]
    true = np.array([fractional_spike_count(t, v, 320.0) for t, v in runs(model(10.0), steps)])
    wrong = model(0.0)
    targets = [CalibrationTarget(s, s.delay_ms + s.dur_ms, c) for s, c in zip(steps, true)]
    config = CalibrationConfig(parameters="spike_drive", max_evals=20, spike_drive_step_mV=2.0,
                               spike_drive_min_tau_ms=20.0)
    rec = calibrate_current(wrong, targets, lambda m: candidate_cell(m, desc), config)
    assert np.abs(rec["residuals_before"]).max() > 1.5
    assert np.abs(rec["residuals_after"]).max() < 0.3
    assert rec["spike_drive_mV"][0] == 0.0 and abs(rec["spike_drive_mV"][1] - 10.0) < 1.5  # fast latent untouched
    assert rec["conductance_factors"] is None
    # below spike threshold the drive changes nothing: a subthreshold step runs the same in NEURON
    silent = Step(amp_nA=0.05, delay_ms=20.0, dur_ms=300.0, tstop_ms=330.0)
    (t0, v0), = runs(model(0.0), [silent])
    (t1, v1), = runs(wrong, [silent])
    assert v0.max() < -55.0 and np.abs(v1 - v0).max() < 1e-4


def test_spike_drive_and_tau_calibration_fits_counts_and_leaves_subthreshold_voltage_alone(h, mechanisms):
    """parameters="spike_drive_tau": the drive d and the log time constant during spikes q of the slow latent."""
    full = cells.build("ca1_pospischil")
    desc = describe_soma(full)
    del full

    def model(drive_mV, dlogtau):
        m = LatentAxialCurrent(n_latent=2, seed=1, v_rest_mV=-70.0, e0_mV=-70.0, tau_init_ms=[1.0, 40.0])
        m.set_linear([0.008, 0.004], [0.6, 0.3], [0.0, 0.0], [1.0, 40.0])
        m.spike_dz[1], m.spike_dlogtau[1] = drive_mV, dlogtau
        return m

    def runs(m, steps):
        with candidate_cell(m, desc) as red:
            return [simulate_voltage(red, s)[:2] for s in steps]

    steps = [Step(amp_nA=a, delay_ms=20.0, dur_ms=300.0, tstop_ms=330.0) for a in (0.16, 0.22, 0.3)]
    true = np.array([fractional_spike_count(t, v, 320.0) for t, v in runs(model(10.0, -1.0), steps)])
    wrong = model(0.0, 0.0)
    targets = [CalibrationTarget(s, s.delay_ms + s.dur_ms, c) for s, c in zip(steps, true)]
    config = CalibrationConfig(parameters="spike_drive_tau", max_evals=40, spike_drive_step_mV=2.0,
                               spike_tau_step=0.5, spike_drive_min_tau_ms=20.0,
                               spike_drive_scale_mV=100.0, spike_tau_scale=10.0)  # weak pull to zero
    rec = calibrate_current(wrong, targets, lambda m: candidate_cell(m, desc), config)
    assert np.abs(rec["residuals_before"]).max() > 1.5
    assert np.abs(rec["residuals_after"]).max() < 0.3
    assert rec["spike_drive_mV"][0] == 0.0 and rec["spike_dlogtau"][0] == 0.0  # the fast latent untouched
    assert rec["spike_drive_mV"][1] > 2.0 and rec["spike_dlogtau"][1] != 0.0
    silent = Step(amp_nA=0.05, delay_ms=20.0, dur_ms=300.0, tstop_ms=330.0)
    (t0, v0), = runs(model(0.0, 0.0), [silent])
    (t1, v1), = runs(wrong, [silent])
    assert v0.max() < -55.0 and np.abs(v1 - v0).max() < 1e-4


def test_calibration_rejects_unknown_parameters():
    with pytest.raises(ValueError, match="spike_drive"):
        CalibrationConfig(parameters="tau")

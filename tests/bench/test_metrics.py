"""Benchmark metrics on constructed traces with known answers."""
import numpy as np
import pytest

from neuron_hybrid.bench.metrics import (coincidence_factor, compare_traces, longest_depolarised_ms, spike_times,
                                         stuck_depolarised)

DT = 0.025


def _trace(spikes_ms, t_end_ms=1000.0, rest_mV=-65.0, plateau=None):
    """A resting trace with 1 ms 'spikes' to +20 mV and optionally a plateau (start_ms, end_ms, mV)."""
    t = np.arange(0.0, t_end_ms, DT)
    v = np.full(t.shape, rest_mV)
    for s in spikes_ms:
        v[(t >= s) & (t < s + 1.0)] = 20.0
    if plateau is not None:
        a, b, level = plateau
        v[(t >= a) & (t < b)] = level
    return t, v


def test_spike_times_and_coincidence_factor_against_kistler():
    t, v = _trace([100.0, 300.0, 500.0, 700.0])
    ref = spike_times(t, v)
    np.testing.assert_allclose(ref, [100.0, 300.0, 500.0, 700.0], atol=DT)
    assert coincidence_factor(ref, ref, 1000.0) == pytest.approx(1.0)
    # two of four within +-2 ms, two far off: (N_coinc - 2 nu delta N_ref) / (0.5 (N_ref + N_mod)) / (1 - 2 nu delta)
    mod = np.array([101.0, 298.5, 550.0, 650.0])
    nu = 4 / 1000.0
    expected = (2 - 2 * nu * 2.0 * 4) / 4.0 / (1 - 2 * nu * 2.0)
    assert coincidence_factor(ref, mod, 1000.0) == pytest.approx(expected)


def test_a_model_held_depolarised_counts_as_runaway():
    t, v_ref = _trace([100.0, 300.0, 500.0])
    _, v_ok = _trace([100.5, 301.0, 499.0])
    _, v_block = _trace([100.5, 301.0], plateau=(320.0, 900.0, -17.0))   # stuck near -17 mV after a burst
    assert longest_depolarised_ms(t, v_ref) == pytest.approx(1.0, abs=2 * DT)
    assert longest_depolarised_ms(t, v_block) == pytest.approx(580.0, abs=2 * DT)
    assert not stuck_depolarised(t, v_ref, v_ok) and not compare_traces(t, v_ref, v_ok)["runaway"]
    m = compare_traces(t, v_ref, v_block)
    assert m["stuck_depolarised"] and m["runaway"]
    # a reference that itself sits depolarised (a long plateau potential) is not held against the model
    _, v_ref_plateau = _trace([100.0], plateau=(320.0, 700.0, -20.0))
    assert not stuck_depolarised(t, v_ref_plateau, v_block)
    # the other runaways: non-finite values, voltages beyond [-120, 80] mV
    assert compare_traces(t, v_ref, np.where(t > 800, np.nan, v_ok))["runaway"]
    assert compare_traces(t, v_ref, np.where(t > 800, 150.0, v_ok))["runaway"]

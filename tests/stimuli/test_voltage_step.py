"""Somatic voltage-clamp steps in real NEURON runs, against the passive membrane's analytic solution."""
import math

import numpy as np
import pytest
from neuron import h

from neuron_hybrid.stimuli import ProtocolError, VoltageStep, protocol_from_dict

h.load_file("stdrun.hoc")
DT = 0.025
G_PAS, E_PAS = 1e-4, -65.0  # S/cm2, mV: tau = cm / g = 10 ms


def _passive_soma():
    soma = h.Section(name="vstep_soma")
    soma.L = soma.diam = 20.0
    soma.insert("pas")
    soma.g_pas, soma.e_pas = G_PAS, E_PAS
    return soma


def test_voltage_step_clamps_then_releases_like_the_analytic_passive_membrane():
    soma = _passive_soma()
    p = VoltageStep(v_step_mV=-50.0, delay_ms=20.0, dur_ms=50.0, tstop_ms=100.0)
    hd = p.attach(soma, dt_ms=DT, record=True)
    v = h.Vector().record(soma(0.5)._ref_v, DT)
    h.dt = DT
    h.finitialize(E_PAS)
    h.continuerun(p.tstop_ms)
    t, v, i = hd.times_ms(), np.array(v), hd.current_nA()
    free = t < 19.9
    assert np.abs(v[free] - E_PAS).max() < 1e-3 and np.abs(i[free]).max() < 1e-6  # open clamp: ~1e-8 nA
    held = (t > 25) & (t < 69.9)
    assert np.abs(v[held] + 50.0).max() < 0.01
    area_cm2 = soma(0.5).area() * 1e-8
    i_expected = G_PAS * area_cm2 * (-50.0 - E_PAS) * 1e6  # S * mV = mA -> nA; positive = into the cell
    np.testing.assert_allclose(i[(t > 40) & (t < 69.9)], i_expected, rtol=2e-3)
    k = np.argmin(np.abs(t - 100.0))  # 30 ms after release: exponential relaxation with tau = cm/g
    assert v[k] == pytest.approx(E_PAS + 15.0 * math.exp(-30.0 / 10.0), abs=0.05)
    del hd


def test_voltage_step_json_round_trip_and_errors():
    p = VoltageStep(v_step_mV=-55.0, delay_ms=100.0, dur_ms=1000.0, tstop_ms=1500.0)
    assert protocol_from_dict(p.to_dict()) == p
    assert p.to_dict()["type"] == "vstep"
    with pytest.raises(ProtocolError, match="v_step_mV"):
        VoltageStep(v_step_mV=-500.0, delay_ms=0.0, dur_ms=1.0, tstop_ms=2.0)
    with pytest.raises(ProtocolError, match="rs_MOhm"):
        VoltageStep(v_step_mV=-50.0, delay_ms=0.0, dur_ms=1.0, tstop_ms=2.0, rs_MOhm=0.0)

"""The generated hh_nh reproduces NEURON's built-in hh (usetable_hh = 0) in a spiking simulation."""
import numpy as np
import pytest


def _run(h, mech, celsius, amp=0.1, tstop=60.0):
    sec = h.Section(name=f"cmp_{mech}")
    sec.L = sec.diam = 20.0
    sec.insert(mech)
    stim = h.IClamp(sec(0.5))
    stim.delay, stim.dur, stim.amp = 10.0, 100.0, amp
    rec = h.Vector().record(sec(0.5)._ref_v)
    h.dt = 0.025
    h.celsius = celsius
    h.finitialize(-65.0)
    h.continuerun(tstop)
    return rec.as_numpy().copy()


@pytest.mark.parametrize("celsius", [6.3, 16.3])
def test_hh_nh_reproduces_builtin_hh(neuron_globals, celsius):
    h = neuron_globals
    h.usetable_hh = 0
    v_hh = _run(h, "hh", celsius)
    v_nh = _run(h, "hh_nh", celsius)
    spikes = int(np.sum((v_hh[1:] > 0) & (v_hh[:-1] <= 0)))
    assert spikes >= 3
    diff = np.max(np.abs(v_hh - v_nh))
    print(f"celsius {celsius}: {spikes} spikes, max |v_hh - v_hh_nh| = {diff:.3e} mV")
    assert diff < 1e-6

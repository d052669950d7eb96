"""A one-compartment hh cell driven by an IClamp, used by several runtime tests."""
import numpy as np


def hh_soma(h, name="soma"):
    soma = h.Section(name=name)
    soma.L = soma.diam = 20.0
    soma.insert("hh")
    h.usetable_hh = 0
    return soma


def run_spiking(h, soma, tstop=60.0, amp=0.12, cvode=False, atol=1e-3, record=()):
    """Step current 5..50 ms; returns (t, v[, *records]) sampled every 0.025 ms."""
    stim = h.IClamp(soma(0.5))
    stim.delay, stim.dur, stim.amp = 5.0, 45.0, amp
    tvec = h.Vector(np.arange(0.0, tstop + 1e-9, 0.025))
    vvec = h.Vector()
    vvec.record(soma(0.5)._ref_v, tvec)
    recs = []
    for ref in record:
        r = h.Vector()
        r.record(ref, tvec)
        recs.append(r)
    h.cvode_active(int(cvode))
    if cvode:
        h.cvode.atol(atol)
    h.dt = 0.025
    h.finitialize(-65.0)
    h.continuerun(tstop)
    out = [np.array(tvec), np.array(vvec)] + [np.array(r) for r in recs]
    del stim
    return out


def n_spikes(v):
    return int(np.sum(np.diff((np.asarray(v) > 0).astype(int)) == 1))

"""Protocols attached in real NEURON runs (tiny sections, a few ms)."""
import numpy as np
import pytest
from neuron import h

from neuron_hybrid.stimuli import (OU, Chirp, Ramp, Step, Synaptic, fixed_step_current_nA,
                                   playback_vectors, resolve_segment)

h.load_file("stdrun.hoc")
DT = 0.025


class TinyCell:
    """Two passive sections, soma + dendrite (stands in for a Cell: has .soma and lists)."""

    def __init__(self):
        self.soma = h.Section(name="tiny_soma")
        self.soma.L = self.soma.diam = 20
        self.dend = h.Section(name="tiny_dend")
        self.dend.L, self.dend.diam, self.dend.nseg = 200, 2, 5
        self.dend.connect(self.soma(0.5))
        self.dend2 = h.Section(name="tiny_dend2")
        self.dend2.L, self.dend2.diam = 20, 2
        self.dend2.connect(self.soma(0.5))
        for s in (self.soma, self.dend, self.dend2):
            s.insert("pas")
            s.g_pas, s.e_pas = 1e-4, -65
        self.basal = [self.dend, self.dend2]
        self.apical = []


@pytest.fixture
def cell():
    c = TinyCell()
    yield c
    h.cvode_active(0)


def run(tstop, cvode=False):
    h.cvode_active(1 if cvode else 0)
    h.dt = DT
    h.finitialize(-65)
    h.continuerun(tstop)


PROTOCOLS = [
    Step(amp_nA=0.3, delay_ms=1.0, dur_ms=2.0, tstop_ms=4.0),
    Ramp(amp_start_nA=0.0, amp_end_nA=0.5, delay_ms=0.5, dur_ms=3.0, tstop_ms=4.0),
    OU(mean_nA=0.1, sd_nA=0.05, tau_ms=1.0, seed=4, delay_ms=0.5, dur_ms=3.0, tstop_ms=4.0),
    OU(mean_nA=0.1, sd_nA=0.05, tau_ms=1.0, seed=4, delay_ms=0.5, dur_ms=3.0, tstop_ms=4.0,
       grid_dt_ms=0.0173),
    Chirp(amp_nA=0.2, f0_hz=100, f1_hz=400, delay_ms=0.5, dur_ms=3.0, tstop_ms=4.0),
    Step(0.2, 1.0, 2.0, 4.0) + Ramp(0.0, 0.5, 0.0, 4.0, 4.0)
    + OU(0.0, 0.05, 1.0, 2, 0.0, 4.0, 4.0),
]


@pytest.mark.parametrize("proto", PROTOCOLS, ids=lambda p: p.type_name)
@pytest.mark.parametrize("cvode", [False, True], ids=["fixed", "cvode"])
def test_iclamp_injects_the_waveform(cell, proto, cvode):
    hd = proto.attach(cell, dt_ms=DT, record=True)
    assert hd.segment.sec == cell.soma and hd.segment.x == 0.5
    run(proto.tstop_ms, cvode)
    t, i = hd.times_ms(), hd.current_nA()
    assert len(t) >= int(proto.tstop_ms / DT)
    assert np.allclose(t, np.arange(len(t)) * DT)
    # fixed step: NEURON applies (and records at t_n) the value at the step midpoint t_n - dt/2
    expected = proto.waveform(t) if cvode else fixed_step_current_nA(proto, t, DT)
    np.testing.assert_allclose(i, expected, rtol=0, atol=1e-12)
    assert np.abs(i).max() > 0.01


def test_playback_is_sparse_for_piecewise_linear():
    t, i = playback_vectors(Step(0.5, 1.0, 2.0, 5.0), DT)
    np.testing.assert_allclose(t, [0, 1, 1, 3, 3, 5], atol=1e-12)
    assert i.tolist() == [0, 0, 0.5, 0.5, 0, 0]
    assert np.all(np.diff(t) >= 0)
    t, _ = playback_vectors(Chirp(0.1, 1, 2, 0, 5, 5), DT)
    assert len(t) > 5 / DT


def test_resolve_segment(cell):
    assert resolve_segment(cell).sec == cell.soma
    assert resolve_segment(cell.dend).sec == cell.dend
    assert resolve_segment(cell.dend(0.1)).x == pytest.approx(0.1)
    with pytest.raises(TypeError, match="soma"):
        resolve_segment(object())


def test_step_depolarises_soma(cell):
    proto = Step(amp_nA=0.1, delay_ms=1.0, dur_ms=3.0, tstop_ms=4.0)
    hd = proto.attach(cell, dt_ms=DT)
    v = h.Vector().record(cell.soma(0.5)._ref_v)
    run(4.0)
    assert v[-1] > -64 and hd.iclamp is not None


def test_synaptic_placement_reproducible_on_cell(cell):
    s = Synaptic(tstop_ms=5, seed=3, n_exc=40, n_inh=10)
    a = s.placements(cell)
    b = s.placements(cell)
    assert a == b
    assert {sec for _, sec, _ in a} <= {cell.dend, cell.dend2}
    assert sum(sec is cell.dend for _, sec, _ in a) > 30       # 200 um vs 20 um
    assert s.copy(seed=4).placements(cell) != a
    only = s.copy(section_lists=("apical", "basal"))
    assert only.placements(cell) == a                           # empty apical list is fine
    with pytest.raises(ValueError, match="section list"):
        s.copy(section_lists=("nonexistent",)).placements(cell)
    assert all(sec is cell.dend for _, sec, _ in s.placements(cell, sections=[cell.dend]))


def test_synaptic_barrage_runs(cell):
    s = Synaptic(tstop_ms=20, seed=1, n_exc=20, n_inh=5, rate_exc_hz=200, rate_inh_hz=50,
                 weight_exc_uS=0.002, weight_inh_uS=0.002)
    hd = s.attach(cell, dt_ms=DT, record=True)
    assert len(hd.synapses) == 25 and hd.kinds.count("inh") == 5
    assert hd.synapses[0].e == 0 and hd.synapses[-1].e == -80
    v = h.Vector().record(cell.soma(0.5)._ref_v)
    run(20)
    i1 = hd.current_nA()
    assert np.any(i1 > 1e-4)                       # net inward (excitatory) current flowed
    assert np.max(np.array(v)) > -64
    assert hd.synapse_currents_nA().shape[0] == 25
    # a second run replays the same events (queued at every finitialize)
    run(20)
    np.testing.assert_allclose(hd.current_nA(), i1, atol=1e-12)


def test_composite_with_synaptic(cell):
    comp = Step(0.05, 1, 2, 5) + Synaptic(tstop_ms=5, seed=2, n_exc=5, n_inh=0,
                                           rate_exc_hz=500)
    hd = comp.attach(cell, dt_ms=DT, record=True)
    run(5)
    assert len(hd.children) == 2
    tot = hd.current_nA()
    ic = hd.children[0].current_nA()
    assert len(tot) == len(ic) and not np.allclose(tot, ic)

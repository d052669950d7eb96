"""Built-in cells with compiled channels (ca1_pospischil, l5pc_hay2011, Allen cells).

They use the ``mechanisms`` fixture (``neuron_hybrid.load_mechanisms()``). Simulations use
CVode, which is fast here because step protocols are played from their few knots.
Reference numbers: shared/reference/reduction_feasibility.md (CA1) and hay2011_l5pc.md (Hay).
"""
import numpy as np
import pytest
from neuron import h

from neuron_hybrid.cells import build
from neuron_hybrid.stimuli import Step

from .conftest import slow

h.load_file("stdrun.hoc")


def run(cell, proto):
    """CVode run; returns (soma V sampled every 1 ms, spike times)."""
    hd = proto.attach(cell, dt_ms=0.025)
    nc = h.NetCon(cell.soma(0.5)._ref_v, None, sec=cell.soma)
    nc.threshold = -20
    spikes = h.Vector()
    nc.record(spikes)
    v = h.Vector().record(cell.soma(0.5)._ref_v, 1.0)
    cell.apply_globals()  # celsius (tests/conftest.py resets it after every test)
    h.cvode_active(1)
    try:
        h.finitialize(cell.v_init_mV)
        h.continuerun(proto.tstop_ms)
    finally:
        h.cvode_active(0)
    del hd
    return np.array(v), np.array(spikes)


@pytest.fixture(scope="module")
def ca1(mechanisms):
    return build("ca1_pospischil")


def test_ca1_structure(ca1):
    assert ca1.section_counts() == {"somatic": 1, "basal": 58, "apical": 134, "axonal": 1, "all": 194}
    assert ca1.n_segments == 1108
    for sec in ca1.all:
        for mech in ("na_pos", "kdr_pos", "km_pos", "pas"):
            assert h.ismembrane(mech, sec=sec), (mech, sec)
    seg = ca1.apical[10](0.5)
    assert seg.na_pos.gbar == 0.05 and seg.kdr_pos.gbar == 0.005 and seg.km_pos.gbar == 7e-5
    assert seg.na_pos.vt == -58 and seg.km_pos.tau_max == 1000
    assert seg.pas.g == 1e-4 and seg.pas.e == -70 and seg.ena == 50 and seg.ek == -90
    assert seg.cm == 1 and ca1.apical[10].Ra == 100
    assert ca1.params["gm_S_cm2"] == 7e-5 and ca1.morphology_path.endswith("c91662.swc")
    assert len(ca1.soma_children()) == 5


def test_ca1_rest_and_input_resistance(ca1):
    v, spikes = run(ca1, Step(amp_nA=-0.05, delay_ms=1000, dur_ms=1000, tstop_ms=2000))
    assert len(spikes) == 0
    assert v[999] == pytest.approx(-70.4, abs=0.2)
    rin = (v[999] - v[1998]) / 0.05
    assert rin == pytest.approx(73, abs=2)


def test_ca1_rheobase(ca1):
    # 500 ms steps: 0.22 nA -> 0 Hz, 0.25 -> 2 Hz, 0.28 -> 8 Hz in the reference
    counts = {amp: len(run(ca1, Step(amp, 100, 500, 600))[1]) for amp in (0.22, 0.25, 0.28)}
    assert counts[0.22] == 0
    assert 1 <= counts[0.25] <= 2
    assert 3 <= counts[0.28] <= 5


def test_ca1_overrides(mechanisms):
    cell = build("ca1_pospischil", gm_S_cm2=0.0, d_lambda=0.3)
    assert not h.ismembrane("km_pos", sec=cell.soma)
    assert cell.n_segments < 1108 and cell.params["d_lambda"] == 0.3


@pytest.fixture(scope="module")
def hay(mechanisms):
    return build("l5pc_hay2011")


def test_hay_structure(hay):
    assert hay.section_counts() == {"somatic": 1, "basal": 84, "apical": 109, "axonal": 2, "all": 196}
    assert hay.n_segments == 642
    assert hay.total_area_um2() == pytest.approx(31192, abs=5)
    a0, a1 = hay.axonal
    assert (a0.L, a0.diam, a1.L, a1.diam) == (30, 1, 30, 1)
    assert a0.parentseg().sec == hay.soma and a0.parentseg().x == 0.5
    assert a1.parentseg().sec == a0 and a1.parentseg().x == 1
    assert hay.params["apical_max_length_um"] == pytest.approx(1300.53, abs=0.01)
    hay.apply_globals()
    assert h.celsius == 34 and hay.v_init_mV == -80 and hay.celsius_degC == 34
    s = hay.soma(0.5)
    assert s.NaTa_t.gNaTa_tbar == 2.04 and s.SKv3_1.gSKv3_1bar == 0.693 and s.cm == 1
    assert s.CaDynamics_E2.decay == 460 and s.ek == -85 and s.ena == 50 and s.pas.e == -90
    b = hay.basal[3](0.5)
    assert b.cm == 2 and b.Ih.gIhbar == 2e-4 and not h.ismembrane("NaTa_t", sec=hay.basal[3])
    assert not h.ismembrane("Ih", sec=a0) and a0(0.5).pas.g == 3.25e-5


def test_hay_apical_distributions(hay):
    gih = np.array([seg.Ih.gIhbar for sec in hay.apical for seg in sec])
    assert gih.max() == pytest.approx(0.0002 * (-0.8696 + 2.087 * np.exp(3.6161)), rel=1e-6)
    assert gih.min() > 2.43e-4
    lva = {round(seg.Ca_LVAst.gCa_LVAstbar, 9) for sec in hay.apical for seg in sec}
    hva = {round(seg.Ca_HVA.gCa_HVAbar, 10) for sec in hay.apical for seg in sec}
    assert lva == {0.0187, 0.000187} and hva == {0.000555, 0.0000555}
    origin = hay.apical[0](0)
    for sec in hay.apical:
        for seg in list(sec)[:-1]:  # last segment holds the 1-end value (hoc for(x) quirk)
            d = h.distance(origin, seg)
            assert (seg.Ca_LVAst.gCa_LVAstbar == 0.0187) == (685 < d < 885)


def test_hay_rest_and_input_resistance(hay):
    v, spikes = run(hay, Step(amp_nA=-0.05, delay_ms=1000, dur_ms=1000, tstop_ms=2000))
    assert len(spikes) == 0
    assert v[999] == pytest.approx(-77.2, abs=0.1)
    assert (v[999] - v[1998]) / 0.05 == pytest.approx(40.8, abs=0.5)


@slow
def test_hay_step_firing(hay):
    # hay2011_l5pc.md: 2 s step of 0.793 nA at 700 ms -> 25 spikes at 34 C
    _, spikes = run(hay, Step(0.793, 700, 2000, 2800))
    assert len(spikes) == 25


@pytest.mark.parametrize("name, counts, amp, lo, hi", [
    ("allen_scnn1a", (1, 80, 39, 3), 0.2, 3, 10),
    ("allen_pvalb", (1, 36, 0, 1), 0.15, 6, 18),
])
def test_allen_cells(mechanisms, name, counts, amp, lo, hi):
    cell = build(name)
    c = cell.section_counts()
    assert (c["somatic"], c["basal"], c["apical"], c["axonal"]) == counts
    assert all(s.nseg % 2 == 1 for s in cell.all)
    assert all(h.ismembrane("na_pos", sec=s) for s in cell.all)
    assert h.ismembrane("km_pos", sec=cell.soma) == (name == "allen_scnn1a")
    v, spikes = run(cell, Step(amp, 50, 100, 150))
    assert v[49] == pytest.approx(-70, abs=1)
    assert lo <= len(spikes) <= hi

"""Registry, ball-and-stick and user cells (built-in hh/pas only: no compiled mechanisms)."""
import numpy as np
import pytest
from neuron import h

from neuron_hybrid.cells import (Cell, CellError, MechanismError, available_cells, build,
                                 from_hoc_template, from_morphology, morphology_path,
                                 register_cell, require_mechanisms, unregister_cell)
from neuron_hybrid.stimuli import Step

h.load_file("stdrun.hoc")


def count_spikes(cell, proto, dt=0.025):
    hd = proto.attach(cell, dt_ms=dt)
    nc = h.NetCon(cell.soma(0.5)._ref_v, None, sec=cell.soma)
    nc.threshold = -10
    tv = h.Vector()
    nc.record(tv)
    h.cvode_active(0)
    h.dt = dt
    h.finitialize(cell.v_init_mV)
    h.continuerun(proto.tstop_ms)
    del hd
    return np.array(tv)


def test_available_cells():
    cells = dict(available_cells())
    assert {"ball_and_stick", "ca1_pospischil", "l5pc_hay2011", "allen_scnn1a",
            "allen_pvalb"} <= set(cells)
    assert all(isinstance(d, str) and d and "\n" not in d for d in cells.values())
    assert "not the Allen fit" in cells["allen_pvalb"]


def test_unknown_cell_and_parameter():
    with pytest.raises(CellError, match="unknown cell 'nope'.*ball_and_stick"):
        build("nope")
    with pytest.raises(CellError, match="unknown parameter.*gnabar.*allowed.*gnabar_hh_S_cm2"):
        build("ball_and_stick", gnabar=1)


def test_ball_and_stick_active_spikes_with_step():
    cell = build("ball_and_stick")
    assert isinstance(cell, Cell) and cell.name == "ball_and_stick"
    assert cell.section_counts() == {"somatic": 1, "basal": 1, "apical": 0, "axonal": 0, "all": 2}
    assert h.ismembrane("hh", sec=cell.soma) and not h.ismembrane("hh", sec=cell.basal[0])
    assert h.ismembrane("pas", sec=cell.basal[0])
    assert cell.params["passive"] is False and cell.params["Ra_ohm_cm"] == 100.0
    assert cell.n_segments == sum(s.nseg for s in cell.all) and cell.basal[0].nseg % 2 == 1
    assert h.celsius == pytest.approx(6.3)
    spikes = count_spikes(cell, Step(amp_nA=0.5, delay_ms=2, dur_ms=20, tstop_ms=25))
    assert len(spikes) >= 2 and spikes[0] > 2
    assert len(count_spikes(cell, Step(amp_nA=0.0, delay_ms=2, dur_ms=20, tstop_ms=25))) == 0


def test_ball_and_stick_passive():
    cell = build("ball_and_stick", passive=True, g_pas_S_cm2=2e-4)
    assert all(h.ismembrane("pas", sec=s) and not h.ismembrane("hh", sec=s) for s in cell.all)
    assert cell.soma(0.5).pas.g == 2e-4 and cell.params["g_pas_S_cm2"] == 2e-4
    v = h.Vector().record(cell.soma(0.5)._ref_v)
    count_spikes(cell, Step(amp_nA=0.1, delay_ms=2, dur_ms=30, tstop_ms=32))
    v = np.array(v)
    assert np.all(np.diff(v[int(2.1 / 0.025):]) >= -1e-9)  # passive: monotonic charging
    assert -55 < v.max() < -40                               # ~20 mV for 0.1 nA, no spike


def test_user_cell_from_morphology_and_registry():
    def biophysics(cell):
        for sec in cell.all:
            sec.Ra = cell.params["Ra"]
            sec.insert("pas")
        for sec in cell.somatic:
            sec.insert("hh")

    cell = from_morphology(morphology_path("ball_and_stick.swc"), biophysics,
                           params={"Ra": 150.0, "v_init_mV": -65.0}, name="mine", d_lambda=0.1)
    assert cell.name == "mine" and cell.params["Ra"] == 150.0 and cell.params["d_lambda"] == 0.1
    assert cell.soma.Ra == 150.0 and h.ismembrane("hh", sec=cell.soma)
    assert cell.basal[0].nseg > 1
    assert len(count_spikes(cell, Step(amp_nA=0.5, delay_ms=1, dur_ms=10, tstop_ms=12))) >= 1

    def my_builder(**overrides):
        """My toy cell."""
        params = {"Ra": 100.0}
        params.update(overrides)
        return from_morphology(morphology_path("bluepyopt_simple.swc"), biophysics,
                               params=params, name="toy")

    register_cell("test_toy", my_builder)
    try:
        assert ("test_toy", "My toy cell.") in available_cells()
        toy = build("test_toy", Ra=80.0)
        assert toy.soma.Ra == 80.0 and toy.n_sections == 1
        with pytest.raises(CellError, match="already registered"):
            register_cell("test_toy", my_builder)
    finally:
        unregister_cell("test_toy")


def test_require_mechanisms_message():
    with pytest.raises(MechanismError) as e:
        require_mechanisms(["pas", "definitely_not_loaded_xyz"], "my cell")
    msg = str(e.value)
    assert "definitely_not_loaded_xyz" in msg and "my cell" in msg and "load_mechanisms" in msg
    assert "pas," not in msg


def test_from_hoc_template(tmp_path):
    hoc = tmp_path / "toy.hoc"
    hoc.write_text("""
begintemplate ToyCellNH
public soma, dend, all, somatic, basal
create soma, dend[2]
objref all, somatic, basal
proc init() {
    all = new SectionList()  somatic = new SectionList()  basal = new SectionList()
    soma { L = 20 diam = 20 insert hh all.append() somatic.append() }
    for i = 0, 1 { dend[i] { L = 100 diam = 1 insert pas all.append() basal.append() } }
    for i = 0, 1 connect dend[i](0), soma(0.5)
}
endtemplate ToyCellNH
""")
    cell = from_hoc_template(hoc, "ToyCellNH", params={"v_init_mV": -65.0})
    assert cell.section_counts() == {"somatic": 1, "basal": 2, "apical": 0, "axonal": 0, "all": 3}
    assert h.ismembrane("hh", sec=cell.soma) and cell.hoc_object is not None
    assert len(cell.soma_children()) == 2
    assert len(count_spikes(cell, Step(amp_nA=0.5, delay_ms=1, dur_ms=10, tstop_ms=12))) >= 1
    with pytest.raises(CellError, match="does not define a template"):
        from_hoc_template(hoc, "NoSuchTemplate")
    with pytest.raises(FileNotFoundError):
        from_hoc_template(tmp_path / "missing.hoc", "X")


def test_synaptic_protocol_on_a_built_cell():
    from neuron_hybrid.stimuli import Synaptic

    cell = build("ball_and_stick")
    syn = Synaptic(tstop_ms=10, seed=9, n_exc=8, n_inh=2, rate_exc_hz=300)
    place = syn.placements(cell)            # section_lists basal + apical: the dendrite
    assert all(sec is cell.basal[0] for _, sec, _ in place)
    other = syn.placements(build("ball_and_stick"))
    assert [(k, x) for k, _, x in other] == [(k, x) for k, _, x in place]
    hd = syn.attach(cell, dt_ms=0.025, record=True)
    h.cvode_active(0)
    h.finitialize(cell.v_init_mV)
    h.continuerun(10)
    assert np.abs(hd.current_nA()).max() > 0

"""Point-process form, NEURON threads, and several models in one simulation."""
import numpy as np

import neuron_hybrid as nh

from .conftest import PointHHPotassium
from .hh_cell import hh_soma, n_spikes, run_spiking


def test_point_process_reproduces_hh(h, tmp_path):
    soma = hh_soma(h)
    _, vref = run_spiking(h, soma)
    area = soma(0.5).area()
    path = nh.export(PointHHPotassium(area), tmp_path / "k_point.pt")
    k = nh.LearnedCurrent.load(path)
    assert k.kind == "point"
    soma.gkbar_hh = 0.0
    pp = k.insert(soma(0.5))
    assert pp.hname().startswith("NhPoint")
    (zref,) = k.latent_refs(pp)
    _, v, z = run_spiking(h, soma, record=[zref])
    assert n_spikes(v) == n_spikes(vref) >= 3
    assert np.abs(v - vref).max() < 0.1
    assert 0 < z.min() < z.max() < 1


def test_kind_mismatch_is_an_error(h, tmp_path, hh_files):
    soma = hh_soma(h)
    k = nh.LearnedCurrent.load(hh_files["k"])
    try:
        k.insert(soma(0.5))
    except TypeError as exc:
        assert "Section" in str(exc)
    else:
        raise AssertionError("inserting a density current into a segment must fail")


def _two_cells_trace(h, k, nthread):
    pc = h.ParallelContext()
    pc.nthread(nthread)
    cells, stims, recs = [], [], []
    for j, amp in enumerate((0.08, 0.15)):
        soma = hh_soma(h, f"cell{j}")
        soma.gkbar_hh = 0.0
        k.insert(soma)
        stim = h.IClamp(soma(0.5))
        stim.delay, stim.dur, stim.amp = 2.0, 40.0, amp
        r = h.Vector().record(soma(0.5)._ref_v)
        cells.append(soma)
        stims.append(stim)
        recs.append(r)
    h.dt = 0.025
    h.finitialize(-65.0)
    pc.set_maxstep(10)
    pc.psolve(45.0)
    out = np.array([np.array(r) for r in recs])
    pc.nthread(1)
    return out


def test_two_threads_equal_one_thread(h, hh_files):
    k = nh.LearnedCurrent.load(hh_files["k"])
    one = _two_cells_trace(h, k, 1)
    two = _two_cells_trace(h, k, 2)
    assert one.shape == two.shape
    assert n_spikes(one[1]) >= 2
    np.testing.assert_array_equal(one, two)


def test_two_threads_with_torchscript_engine(h, hh_files):
    k = nh.LearnedCurrent.load(hh_files["k"], engine="torchscript")
    one = _two_cells_trace(h, k, 1)
    two = _two_cells_trace(h, k, 2)
    np.testing.assert_array_equal(one, two)


def test_different_models_in_different_sections(h, hh_files):
    """Different models in different sections; one slot runs different models (chosen per segment)."""
    k = nh.LearnedCurrent.load(hh_files["k"])
    na = nh.LearnedCurrent.load(hh_files["na"])
    k_again = nh.LearnedCurrent.load(hh_files["k"])  # a second handle: another model for the slot
    assert k_again.handle != k.handle
    a, b, c = hh_soma(h, "a"), hh_soma(h, "b"), hh_soma(h, "c")
    a.gkbar_hh = c.gkbar_hh = 0.0
    b.gnabar_hh = 0.0
    assert k.insert(a) == k_again.insert(c) == "nhlc0_k1"  # the compact families for 1 and 2 latents
    assert na.insert(b) == "nhlc0_k2"
    ref = hh_soma(h, "ref")
    stims = []
    for sec in (a, b, c, ref):
        s = h.IClamp(sec(0.5))
        s.delay, s.dur, s.amp = 5.0, 40.0, 0.12
        stims.append(s)
    rec = [h.Vector().record(sec(0.5)._ref_v) for sec in (a, b, c, ref)]
    h.finitialize(-65.0)
    h.continuerun(50.0)
    va, vb, vc, vr = (np.array(r) for r in rec)
    assert n_spikes(vr) >= 3
    assert max(np.abs(x - vr).max() for x in (va, vb, vc)) < 0.1

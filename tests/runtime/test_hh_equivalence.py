"""Learned currents that re-express hh's channels reproduce NEURON's built-in hh (independent reference)."""
import numpy as np
import pytest

import neuron_hybrid as nh

from .hh_cell import hh_soma, n_spikes, run_spiking

ENGINES = ["torchscript", "compiled", "table", "auto"]


@pytest.fixture(scope="module")
def reference(h):
    soma = hh_soma(h)
    t, v = run_spiking(h, soma)
    assert n_spikes(v) >= 3, "the reference protocol must make hh spike"
    return t, v


@pytest.mark.parametrize("engine", ENGINES)
def test_learned_k_reproduces_hh(h, hh_files, reference, engine):
    k = nh.LearnedCurrent.load(hh_files["k"], engine=engine)
    soma = hh_soma(h)
    soma.gkbar_hh = 0.0
    k.insert(soma)
    t, v = run_spiking(h, soma)
    assert np.abs(v - reference[1]).max() < 0.1
    assert n_spikes(v) == n_spikes(reference[1])


@pytest.mark.parametrize("engine", ENGINES)
def test_learned_na_and_k_in_one_section(h, hh_files, reference, engine):
    k = nh.LearnedCurrent.load(hh_files["k"], engine=engine)
    na = nh.LearnedCurrent.load(hh_files["na"], engine=engine)
    soma = hh_soma(h)
    soma.gkbar_hh = soma.gnabar_hh = 0.0
    assert k.insert(soma) != na.insert(soma)  # two slots in the same section
    t, v = run_spiking(h, soma)
    assert np.abs(v - reference[1]).max() < 0.1


def test_learned_na_alone(h, hh_files, reference):
    na = nh.LearnedCurrent.load(hh_files["na"])
    soma = hh_soma(h)
    soma.gnabar_hh = 0.0
    na.insert(soma)
    _, v = run_spiking(h, soma)
    assert np.abs(v - reference[1]).max() < 0.1


def test_latents_are_recordable_and_match_hh_gates(h, hh_files):
    k = nh.LearnedCurrent.load(hh_files["k"])
    soma = hh_soma(h)
    soma.gkbar_hh = 0.0
    k.insert(soma)
    (zref,) = k.latent_refs(soma(0.5))
    _, v, z, n = run_spiking(h, soma, record=[zref, soma(0.5)._ref_n_hh])
    # hh's own n still integrates (gkbar 0 only removes its current): the latent is the same gate
    assert np.abs(z - n).max() < 1e-6
    assert 0.2 < z.min() and z.max() < 0.9


def test_cvode(h, hh_files):
    """Under CVODE at a tolerance where the integrator has converged (atol 1e-5)."""
    soma = hh_soma(h)
    _, vref = run_spiking(h, soma, cvode=True, atol=1e-5)
    k = nh.LearnedCurrent.load(hh_files["k"])
    soma2 = hh_soma(h, "soma2")
    soma2.gkbar_hh = 0.0
    k.insert(soma2)
    del soma
    _, v = run_spiking(h, soma2, cvode=True, atol=1e-5)
    assert n_spikes(v) == n_spikes(vref) >= 3
    assert np.abs(v - vref).max() < 0.5


def test_engine_errors_are_recorded(hh_files):
    for engine in ("compiled", "table"):
        k = nh.LearnedCurrent.load(hh_files["k"], engine=engine)
        errs = k.engine_errors
        assert set(errs) == {"z_inf", "tau", "current", "conductance"}
        assert errs["current"] < 1e-12 and errs["conductance"] < 1e-12
        assert errs["z_inf"] < 1e-6 and errs["tau"] < 1e-5
        assert engine in k.engine
    auto = nh.LearnedCurrent.load(hh_files["k"])
    assert auto.engine == "rates=table,current=compiled"


def test_loading_keeps_the_process_torch_threads(hh_files):
    """The bridge runs libtorch on one intra-op thread; Python's training must keep its own setting."""
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        nh.LearnedCurrent.load(hh_files["na"], engine="torchscript")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_python_evaluation_matches_module(hh_files):
    import torch

    k = nh.LearnedCurrent.load(hh_files["k"], engine="compiled")
    v = np.linspace(-90, 50, 57)
    zinf, tau = k.rates(v)
    zr, tr = k.module.rates(torch.tensor(v))
    np.testing.assert_allclose(zinf, zr.numpy(), rtol=1e-12)
    np.testing.assert_allclose(tau, tr.numpy(), rtol=1e-12)
    i, g = k.current(v, zinf)
    np.testing.assert_allclose(i, 0.036 * zinf[:, 0] ** 4 * (v + 77), rtol=1e-12, atol=1e-18)
    np.testing.assert_allclose(g, 0.036 * zinf[:, 0] ** 4, rtol=1e-12)

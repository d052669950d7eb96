"""Degenerate populations: round trips, seeds, iterative compensation, and simulated behaviour."""
import numpy as np
import pytest

from neuron_hybrid.dic import population as popmod
from neuron_hybrid.dic.dics import dics
from neuron_hybrid.dic.population import generate_population, population
from neuron_hybrid.dic.spikes import BURSTING, SPIKING, classify
from neuron_hybrid.dic.stg import STG


def test_stg_round_trip_and_seed():
    """(A, H) compensation (no Ca dependence): exact DICs; same seed -> same population."""
    pop = population("stg", 5.0, 6.0, 50, seed=3)
    assert 40 <= len(pop) <= 50 and set(pop[0]) == set(STG.columns)
    assert all(v >= 0 for g in pop for v in g.values())
    for g in pop[:5]:
        _, gs, gu = dics("stg", g, -51.0)
        assert gs == pytest.approx(5.0, abs=1e-8) and gu == pytest.approx(6.0, abs=1e-8)
    assert population("stg", 5.0, 6.0, 50, seed=3) == pop
    assert population("stg", 5.0, 6.0, 50, seed=4) != pop
    # degenerate: the free conductances really vary
    kd = np.array([g["g_Kd"] for g in pop])
    assert kd.std() / kd.mean() > 0.1


def test_stage_one_spiking_seed():
    """Before neuromodulation, models have (g_f, g_s, g_u) = (-6.2, 4, 5) at -51 mV."""
    r = generate_population("stg", 4.0, 5.0, 20, seed=0)
    np.testing.assert_allclose(r.achieved, np.tile([-6.2, 4.0, 5.0], (len(r.gbar), 1)), atol=1e-8)


def test_iterative_compensation_converges():
    """(CaS, A) compensated: Ca_inf depends on the unknown g_CaS; the error shrinks with iterations
    (thesis: mean L2 0.407 / 0.154 / 0.067 / 0.0106 after 1 / 3 / 5 / 10)."""
    rng = np.random.default_rng(1)
    targets = np.c_[rng.uniform(-15, 15, 12), rng.uniform(0.5, 15, 12)]
    means = []
    for it in (1, 3, 5, 10):
        pops = [generate_population("stg", gs, gu, 100, seed=k, compensated=("CaS", "A"), iterations=it)
                for k, (gs, gu) in enumerate(targets)]
        means.append(np.mean([p.error.mean() for p in pops if len(p.gbar)]))
    print("mean L2 error after 1/3/5/10 iterations:", np.round(means, 4))
    assert means[0] > means[1] > means[2] > means[3]
    assert means[2] < 0.25 and means[3] < 0.05


def test_da_round_trip():
    pop = generate_population("da", -3.0, 4.0, 40, seed=0)
    assert pop.compensated == ("ERG", "CaL") and len(pop.gbar) > 20
    np.testing.assert_allclose(pop.achieved[:, 1:], np.tile([-3.0, 4.0], (len(pop.gbar), 1)), atol=1e-8)
    assert np.all(pop.gbar[:, DA_NMDA] > 0)
    assert generate_population("da", 3.0, 4.0, 10, seed=0).compensated == ("ERG", "Kd")


DA_NMDA = 5


def test_populations_spike_or_burst_as_targeted():
    """>= 90 % of models of a bursting target burst and of a spiking target spike (simulated)."""
    n = 30
    burst = generate_population("stg", -8.0, 6.0, n, seed=11).gbar
    spike = generate_population("stg", 4.0, 5.0, n, seed=12).gbar
    sim = STG.simulate(np.concatenate([burst, spike]), tstop=2500.0, transient=1000.0, dt=0.1)
    cls = [classify(s) for s in sim.spikes]
    frac_burst = np.mean([c == BURSTING for c in cls[:len(burst)]])
    frac_spike = np.mean([c == SPIKING for c in cls[len(burst):]])
    print(f"bursting target: {frac_burst:.0%} burst; spiking target: {frac_spike:.0%} spike")
    assert frac_burst >= 0.9 and frac_spike >= 0.9


def test_bad_population_inputs():
    with pytest.raises(ValueError, match="finite"):
        population("stg", float("nan"), 1.0, 10, seed=0)
    with pytest.raises(KeyError, match="g_Foo|Foo"):
        population("stg", 1.0, 1.0, 10, seed=0, compensated=("Foo", "A"))

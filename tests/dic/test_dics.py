"""DICs: published values, linearity, finite differences, learned gates, signs, V_th."""
import numpy as np
import pytest
import torch

import neuron_hybrid.channels as nc
from neuron_hybrid.dic import CompartmentModel, Conductance, DICConvention, LearnedGates
from neuron_hybrid.dic.da import DA, DA_EXAMPLES
from neuron_hybrid.dic.dics import dics, log_weight, sensitivity_matrix, threshold_voltage
from neuron_hybrid.dic.stg import STG, STG_EXAMPLES
from neuron_hybrid.models import HHPotassium

# channel_kinetics.md section 7.3 / 7.4: (g_f, g_s, g_u) at V_th (STG -51 mV, DA -55.5 mV)
STG_REF = {"spiking": (-1.559, 1.838, 4.457), "bursting": (-0.162, -9.213, 6.435),
           "nmod_spiking": (-3.241, 3.313, 5.383), "nmod_bursting": (-3.521, -6.315, 5.312)}
DA_REF = {"fast": (-13.184, -3.612, 2.160), "spiking": (-12.246, 1.625, 7.063),
          "bursting": (-13.157, -2.397, 2.839), "nmod_spiking": (-14.066, 0.473, 5.283),
          "nmod_bursting": (-13.763, -4.064, 5.290)}


@pytest.mark.parametrize("name", sorted(STG_REF))
def test_stg_published_dics(name):
    got = dics("stg", STG_EXAMPLES[name], -51.0)
    print(name, np.round(got, 5), STG_REF[name])
    np.testing.assert_allclose(got, STG_REF[name], atol=6e-4, rtol=0)


@pytest.mark.parametrize("name", sorted(DA_REF))
def test_da_published_dics(name):
    got = dics("da", DA_EXAMPLES[name], -55.5)
    print(name, np.round(got, 5), DA_REF[name])
    np.testing.assert_allclose(got, DA_REF[name], atol=6e-4, rtol=0)


def test_signs_on_known_configurations():
    """g_f < 0 (spike generation); g_s > 0 for tonic spikers, g_s < 0 for bursters; g_u > 0."""
    for model, ex, v in ((STG, STG_EXAMPLES, -51.0), (DA, DA_EXAMPLES, -55.5)):
        for name, g in ex.items():
            gf, gs, gu = dics(model, g, v)
            assert gf < 0 and gu > 0, name
            if "bursting" in name:
                assert gs < 0, name
            elif "spiking" in name:
                assert gs > 0, name


def test_linearity_in_maximal_conductances():
    v = np.linspace(-70, -30, 9)
    rng = np.random.default_rng(0)
    # DA: no calcium pool, exactly linear in every gbar (un-normalised DICs = S @ gbar)
    S = sensitivity_matrix("da", v)
    g1, g2 = rng.uniform(0.01, 1, size=(2, 7)) * np.array([30, 8, 0.05, 0.05, 0.1, 0.01, 0.01])
    for a, b in ((2.0, 0.5), (0.3, 1.7)):
        g = a * g1 + b * g2
        full = np.stack(dics("da", g, v), -1)[0] * g[6]
        parts = a * np.stack(dics("da", g1, v), -1)[0] * g1[6] + b * np.stack(dics("da", g2, v), -1)[0] * g2[6]
        np.testing.assert_allclose(full, parts, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(full, S @ g, rtol=1e-10, atol=1e-12)
    # STG: linear in every gbar except CaT and CaS (they set Ca_inf)
    base = np.array(list(STG_EXAMPLES["spiking"].values()))
    other = base * rng.uniform(0.5, 1.5, size=8)
    other[[2, 3]] = base[[2, 3]]
    S = sensitivity_matrix("stg", v, dict(zip(STG.columns, base)))
    for g in (base, other, 0.3 * base + 0.7 * other):
        S_g = sensitivity_matrix("stg", v, dict(zip(STG.columns, g)))
        np.testing.assert_allclose(S_g, S, rtol=1e-12, atol=1e-14)
        un = np.stack(dics("stg", dict(zip(STG.columns, g)), v), -1) * g[7]
        np.testing.assert_allclose(un, S @ g, rtol=1e-10, atol=1e-12)
    # normalisation: scaling every gbar (leak included) leaves non-pool models' DICs unchanged
    np.testing.assert_allclose(np.stack(dics("da", 3 * g1, v)), np.stack(dics("da", g1, v)), rtol=1e-12)


def _steady_current(model, g, v, cai=None, frozen=None):
    """Total steady-state membrane current (uA/cm2) at v with gates at x_inf(v) except `frozen`
    ({(conductance, gate): value}); calcium at `cai` (mM) for Ca-dependent gates."""
    i = 0.0
    for c, gk in zip(model.conductances, g):
        r = model.gate_rates(c, torch.tensor(v, dtype=torch.float64),
                             None if cai is None else torch.tensor(cai, dtype=torch.float64))
        G = 1.0
        for gname, p in c.gates:
            x = (frozen or {}).get((c.name, gname), float(r[gname][0]))
            G *= x ** p
        f = model.factor_value(c, torch.tensor(v, dtype=torch.float64))
        G *= 1.0 if f is None else float(f)
        i += gk * G * (v - c.reversal)
    return i


def _stg_ca_inf(g, v):
    ica = 0.0
    for k in (2, 3):
        c = STG.conductances[k]
        r = c.mechanism.steady_state(v)
        ica += g[k] * 1e-3 * float(r["m"]) ** 3 * float(r["h"]) * (v - 80.0)
    return 5e-5 - 0.94 * ica


@pytest.mark.parametrize("model_name", ["stg", "da"])
def test_total_dic_is_slope_of_steady_state_iv(model_name):
    """g_f + g_s + g_u = d I_ss/dV / g_leak (weights sum to one), by central differences,
    with calcium at its steady state for STG."""
    model, ex = (STG, STG_EXAMPLES) if model_name == "stg" else (DA, DA_EXAMPLES)
    h = 1e-4
    for g in ex.values():
        gv = np.array(list(g.values()))
        for v in (-65.0, -51.0, -40.0):
            if model is STG:
                iss = lambda x: _steady_current(model, gv, x, cai=_stg_ca_inf(gv, x))
            else:
                iss = lambda x: _steady_current(model, gv, x)
            fd = (iss(v + h) - iss(v - h)) / (2 * h) / gv[-1]
            assert sum(dics(model, g, v)) == pytest.approx(fd, rel=1e-6, abs=1e-6)


def _hh_model(k_gates=None):
    k_mech = k_gates if k_gates is not None else nc.hh_nh
    return CompartmentModel(
        "hh", [Conductance("Na", nc.hh_nh, 50.0, current="ina"),
               Conductance("K", k_mech, -77.0, current=None if k_gates is not None else "ik",
                           gbar_param="gkbar"),
               Conductance("leak", nc.pas, -54.3)],
        leak="leak",
        # integer weights: Na m fast, Na h slow (forced), K n slow (tau_s), nothing ultraslow
        dic=DICConvention(tau_f=("Na", "m"), tau_s=("K", "n"), tau_u=1e6, forced={("Na", "h"): (0.0, 1.0)}),
    )


def test_fast_and_slow_dics_by_finite_differences():
    """With integer weights: g_f = dI/dV with only the fast gate following V; g_f + g_s = with all."""
    model = _hh_model()
    g = np.array([120.0, 36.0, 0.3])
    h = 1e-4
    for v in (-70.0, -60.0, -50.0):
        r = nc.hh_nh.steady_state(v)
        frozen = {("Na", "h"): float(r["h"]), ("K", "n"): float(r["n"])}
        fd_fast = (_steady_current(model, g, v + h, frozen=frozen) - _steady_current(model, g, v - h, frozen=frozen)) / (2 * h)
        fd_all = (_steady_current(model, g, v + h) - _steady_current(model, g, v - h)) / (2 * h)
        gf, gs, gu = dics(model, dict(g_Na=g[0], g_K=g[1], g_leak=g[2]), v)
        assert gf * g[2] == pytest.approx(fd_fast, rel=1e-6)
        assert (gf + gs) * g[2] == pytest.approx(fd_all, rel=1e-6)
        assert gu == pytest.approx(0.0, abs=1e-12)


def test_learned_gates_by_autograd():
    """A K current whose gate is a torch module (the learned-current contract) gives the same
    DICs as the symbolic channel; an MLP gate matches finite differences."""
    ref = _hh_model()
    learned = _hh_model(LearnedGates(HHPotassium(), names=("n",), powers=(4,)))
    g = dict(g_Na=120.0, g_K=36.0, g_leak=0.3)
    v = np.linspace(-80, -40, 5)
    np.testing.assert_allclose(np.stack(dics(learned, g, v)), np.stack(dics(ref, g, v)), rtol=1e-10, atol=1e-12)

    torch.manual_seed(0)

    class MLPGate(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()

        def rates(self, v):
            out = self.net(((v + 60.0) / 30.0).unsqueeze(-1))
            return torch.sigmoid(out[:, :1]), 1.0 + torch.nn.functional.softplus(out[:, 1:]) * 5.0

    mlp = MLPGate()
    model = _hh_model(LearnedGates(mlp, names=("n",), powers=(4,)))
    h = 1e-5
    for vv in (-70.0, -55.0):
        fd = (_steady_current(model, [120.0, 36.0, 0.3], vv + h) - _steady_current(model, [120.0, 36.0, 0.3], vv - h)) / (2 * h)
        assert sum(dics(model, g, vv)) * 0.3 == pytest.approx(fd, rel=1e-6)


def test_log_weights():
    w = log_weight(torch.tensor([0.5, 1.0, np.sqrt(10.0), 10.0, 20.0]), 1.0, 10.0).numpy()
    np.testing.assert_allclose(w, [1.0, 1.0, 0.5, 0.0, 0.0], atol=1e-15)


def test_threshold_voltage():
    for model, ex in ((STG, STG_EXAMPLES), (DA, DA_EXAMPLES)):
        for name in ("nmod_spiking", "nmod_bursting"):
            vth = threshold_voltage(model, ex[name])
            assert -80 < vth < 0
            before = sum(dics(model, ex[name], vth - 0.05))
            after = sum(dics(model, ex[name], vth + 0.05))
            assert before > 0 >= after
            assert abs(sum(dics(model, ex[name], vth))) < 1e-3
    # thesis: STG V_th of spiking-range models is near -51 mV
    assert threshold_voltage("stg", STG_EXAMPLES["spiking"]) == pytest.approx(-51.0, abs=2.0)


def test_bad_inputs():
    with pytest.raises(KeyError, match="g_Kd"):
        dics("stg", {"g_Na": 1.0}, -51.0)
    with pytest.raises(ValueError, match="unknown model"):
        dics("xyz", {}, -51.0)
    bad = dict(STG_EXAMPLES["spiking"], g_leak=0.0)
    with pytest.raises(ValueError, match="g_leak"):
        dics("stg", bad, -51.0)

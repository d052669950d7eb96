"""Torch gating functions vs NEURON (the generated MOD files) and vs the reference sheets."""
import math

import numpy as np
import pytest
import torch

import neuron_hybrid.channels as nc

CHANNELS = [m for m in nc.CHANNELS.values() if isinstance(m, nc.Channel)]

# exact singular points of the rate expressions (0/0 guards) and piecewise boundaries
SPECIAL_V = [-40.0, -55.0,  # hh alpha_m, alpha_n
             -45.0, -18.0, -43.0,  # Pospischil (vt = -58): u = 13, 40, 15
             -38.0, -66.0, -32.0, -60.0,  # NaTa_t / NaTs2_t
             -17.0, -64.4,  # Nap_Et2 h
             -27.0,  # Ca_HVA m
             -154.9,  # Ih
             -60.0 - 1e-9, -60.0 + 1e-9]  # K_Pst tau_m branch boundary (u = -50)
VOLTAGES = sorted(set(np.round(np.linspace(-120.0, 60.0, 25), 6).tolist() + SPECIAL_V))
CAI_VALUES = [5e-8, 1e-7, 5e-5, 1e-4, 4.3e-4, 2e-3]  # mM; below 1e-7 SK_E2 adds 1e-7


def _neuron_rates(h, seg, ch, v, celsius):
    """x_inf and tau read from the mechanism's RANGE variables after INITIAL ran at v."""
    h.celsius = celsius
    h.finitialize(v)
    return {g: (getattr(seg, f"{ch.inf_name.format(g)}_{ch.suffix}"),
                getattr(seg, f"{ch.tau_name.format(g)}_{ch.suffix}")) for g in ch.gate_names}


def _rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


@pytest.mark.parametrize("ch", CHANNELS, ids=lambda c: c.suffix)
def test_rates_match_neuron(neuron_globals, ch):
    h = neuron_globals
    sec = h.Section(name=f"rates_{ch.suffix}")
    sec.insert(ch.suffix)
    seg = sec(0.5)
    cais = CAI_VALUES if ch.uses_cai else [None]
    worst = 0.0
    for celsius in (6.3, 34.0):
        for cai in cais:
            if cai is not None:
                # no mechanism in this section writes cai, so NEURON leaves it as set here
                seg.cai = cai
            for v in VOLTAGES:
                ref = _neuron_rates(h, seg, ch, v, celsius)
                if cai is not None:
                    assert seg.cai == cai
                mine = ch.rates(torch.tensor(v, dtype=torch.float64), celsius=celsius, cai=cai)
                for g, (xinf, tau) in mine.items():
                    for a, b in ((xinf.item(), ref[g][0]), (tau.item(), ref[g][1])):
                        assert math.isfinite(a) and b > 0
                        worst = max(worst, _rel(a, b))
                        assert _rel(a, b) < 1e-9, (ch.suffix, g, v, celsius, cai, a, b)
    print(f"{ch.suffix}: max relative difference torch vs NEURON {worst:.2e}")


def test_rates_vectorised_and_broadcast():
    v = torch.linspace(-100, 50, 7, dtype=torch.float64)
    for ch in CHANNELS:
        r = ch.rates(v, celsius=34.0, cai=torch.full_like(v, 1e-4) if ch.uses_cai else None)
        for g, (xinf, tau) in r.items():
            assert xinf.shape == v.shape and tau.shape == v.shape and xinf.dtype == torch.float64
            one = ch.rates(v[3].item(), celsius=34.0, cai=1e-4 if ch.uses_cai else None)[g]
            assert torch.allclose(one[0], xinf[3], rtol=1e-15, atol=0)
            assert torch.allclose(one[1], tau[3], rtol=1e-15, atol=0)


def test_gradients_finite_at_singular_points():
    v = torch.tensor(SPECIAL_V, dtype=torch.float64, requires_grad=True)
    for ch in CHANNELS:
        r = ch.rates(v, celsius=6.3, cai=1e-4 if ch.uses_cai else None)
        total = sum(x.sum() + t.sum() for x, t in r.values())
        if not total.requires_grad:  # SK_E2 does not depend on v
            continue
        (grad,) = torch.autograd.grad(total, v)
        assert torch.isfinite(grad).all(), ch.suffix


# --- reference-sheet values ----------------------------------------------------------------------
# channel_kinetics.md section 1, "Unit-test values" (NEURON hh, 6.3 degC; at integer mV the hh
# tables coincide with the analytic functions)
HH_TABLE = {
    -65.0: (0.052932, 0.596121, 0.317677, 0.236767, 8.516011, 5.458585),
    -50.0: (0.250812, 0.153443, 0.550814, 0.430966, 4.640561, 4.334571),
    0.0: (0.974159, 0.002788, 0.908728, 0.239079, 1.027325, 1.645480),
}


@pytest.mark.parametrize("v", sorted(HH_TABLE))
def test_hh_nh_sheet_values(v):
    minf, hinf, ninf, mtau, htau, ntau = HH_TABLE[v]
    r = nc.hh_nh.rates(v, celsius=6.3)
    for got, want in [(r["m"][0], minf), (r["h"][0], hinf), (r["n"][0], ninf),
                      (r["m"][1], mtau), (r["h"][1], htau), (r["n"][1], ntau)]:
        assert got.item() == pytest.approx(want, abs=1.5e-6, rel=1e-5)


def test_hh_nh_temperature_and_guards():
    assert nc.hh_nh.time_constant(-65.0, celsius=16.3)["m"].item() == pytest.approx(0.078922, abs=1e-6)
    loc = nc.hh_nh.rate_locals(torch.tensor([-40.0, -55.0], dtype=torch.float64))
    assert loc["m"]["alpha"][0].item() == pytest.approx(1.0, rel=1e-12)
    assert loc["n"]["alpha"][1].item() == pytest.approx(0.1, rel=1e-12)


def test_pospischil_limits_and_values():
    vt = -58.0
    v = torch.tensor([vt + 13, vt + 40, vt + 15], dtype=torch.float64)
    na = nc.na_pos.rate_locals(v)
    kd = nc.kdr_pos.rate_locals(v)
    assert na["m"]["alpha"][0].item() == pytest.approx(1.28, rel=1e-12)
    assert na["m"]["beta"][1].item() == pytest.approx(1.4, rel=1e-12)
    assert kd["n"]["alpha"][2].item() == pytest.approx(0.16, rel=1e-12)
    # away from the singular points: the sheet's formulas written out independently
    for vv in (-80.0, -61.3, -20.0, 10.0):
        u = vv - vt
        am = 0.32 * (u - 13) / (1 - math.exp(-(u - 13) / 4))
        bm = 0.28 * (u - 40) / (math.exp((u - 40) / 5) - 1)
        ah = 0.128 * math.exp(-(u - 17) / 18)
        bh = 4 / (1 + math.exp(-(u - 40) / 5))
        an = 0.032 * (u - 15) / (1 - math.exp(-(u - 15) / 5))
        bn = 0.5 * math.exp(-(u - 10) / 40)
        r = nc.na_pos.rates(vv)
        assert r["m"][0].item() == pytest.approx(am / (am + bm), rel=1e-12)
        assert r["m"][1].item() == pytest.approx(1 / (am + bm), rel=1e-12)
        assert r["h"][0].item() == pytest.approx(ah / (ah + bh), rel=1e-12)
        assert r["h"][1].item() == pytest.approx(1 / (ah + bh), rel=1e-12)
        r = nc.kdr_pos.rates(vv, vt=vt)
        assert r["n"][0].item() == pytest.approx(an / (an + bn), rel=1e-12)
        assert r["n"][1].item() == pytest.approx(1 / (an + bn), rel=1e-12)
        r = nc.km_pos.rates(vv, tau_max=4000.0)  # parameter override
        assert r["p"][0].item() == pytest.approx(1 / (1 + math.exp(-(vv + 35) / 10)), rel=1e-12)
        tau = 4000.0 / (3.3 * math.exp((vv + 35) / 20) + math.exp(-(vv + 35) / 20))
        assert r["p"][1].item() == pytest.approx(tau, rel=1e-12)
    # vt is a per-channel parameter: shifting it shifts the curves
    assert nc.na_pos.steady_state(-50.0, vt=-60.0)["m"].item() == pytest.approx(
        nc.na_pos.steady_state(-48.0, vt=-58.0)["m"].item(), rel=1e-12)


def _hay_sheet(v, cai):
    """hay2011_l5pc.md section 4, written out independently with `math` (v not singular)."""
    qt = 2.3 ** ((34 - 21) / 10)
    ex = math.exp
    out = {}
    am = 0.182 * (v + 38) / (1 - ex(-(v + 38) / 6))
    bm = 0.124 * (-v - 38) / (1 - ex(-(-v - 38) / 6))
    ah = -0.015 * (v + 66) / (1 - ex((v + 66) / 6))
    bh = -0.015 * (-v - 66) / (1 - ex((-v - 66) / 6))
    out["NaTa_t"] = {"m": (am / (am + bm), 1 / (am + bm) / qt), "h": (ah / (ah + bh), 1 / (ah + bh) / qt)}
    w = v - 6
    am2 = 0.182 * (w + 38) / (1 - ex(-(w + 38) / 6))
    bm2 = 0.124 * (-w - 38) / (1 - ex(-(-w - 38) / 6))
    ah2 = -0.015 * (w + 66) / (1 - ex((w + 66) / 6))
    bh2 = -0.015 * (-w - 66) / (1 - ex((-w - 66) / 6))
    out["NaTs2_t"] = {"m": (am2 / (am2 + bm2), 1 / (am2 + bm2) / qt),
                      "h": (ah2 / (ah2 + bh2), 1 / (ah2 + bh2) / qt)}
    aph = -2.88e-6 * (v + 17) / (1 - ex((v + 17) / 4.63))
    bph = 6.94e-6 * (v + 64.4) / (1 - ex(-(v + 64.4) / 2.63))
    out["Nap_Et2"] = {"m": (1 / (1 + ex((v + 52.6) / -4.6)), 6 / (am + bm) / qt),
                      "h": (1 / (1 + ex((v + 48.8) / 10)), 1 / (aph + bph) / qt)}
    u = v + 10
    mt = (1.25 + 175.03 * ex(0.026 * u)) / qt if u < -50 else (1.25 + 13 * ex(-0.026 * u)) / qt
    out["K_Pst"] = {"m": (1 / (1 + ex(-(u + 1) / 12)), mt),
                    "h": (1 / (1 + ex((u + 54) / 11)),
                          (360 + (1010 + 24 * (u + 55)) * ex(-((u + 75) / 48) ** 2)) / qt)}
    out["K_Tst"] = {"m": (1 / (1 + ex(-u / 19)), (0.34 + 0.92 * ex(-((u + 71) / 59) ** 2)) / qt),
                    "h": (1 / (1 + ex((u + 66) / 10)), (8 + 49 * ex(-((u + 73) / 23) ** 2)) / qt)}
    out["SKv3_1"] = {"m": (1 / (1 + ex((v - 18.7) / -9.7)), 4 / (1 + ex(-(v + 46.56) / 44.14)))}
    ca = cai + 1e-7 if cai < 1e-7 else cai
    out["SK_E2"] = {"z": (1 / (1 + (0.00043 / ca) ** 4.8), 1.0)}
    aq = 0.055 * (-27 - v) / (ex((-27 - v) / 3.8) - 1)
    bq = 0.94 * ex((-75 - v) / 17)
    ar = 0.000457 * ex((-13 - v) / 50)
    br = 0.0065 / (ex((-v - 15) / 28) + 1)
    out["Ca_HVA"] = {"m": (aq / (aq + bq), 1 / (aq + bq)), "h": (ar / (ar + br), 1 / (ar + br))}
    out["Ca_LVAst"] = {"m": (1 / (1 + ex((u + 30) / -6)), (5 + 20 / (1 + ex((u + 25) / 5))) / qt),
                       "h": (1 / (1 + ex((u + 80) / 6.4)), (20 + 50 / (1 + ex((u + 40) / 7))) / qt)}
    aih = 0.001 * 6.43 * (v + 154.9) / (ex((v + 154.9) / 11.9) - 1)
    bih = 0.001 * 193 * ex(v / 33.1)
    out["Ih"] = {"m": (aih / (aih + bih), 1 / (aih + bih))}
    aim = 3.3e-3 * ex(2.5 * 0.04 * (v + 35))
    bim = 3.3e-3 * ex(-2.5 * 0.04 * (v + 35))
    out["Im"] = {"m": (aim / (aim + bim), 1 / (aim + bim) / qt)}
    return out


@pytest.mark.parametrize("v", [-95.3, -71.1, -52.7, -30.2, -5.5, 22.2])
@pytest.mark.parametrize("cai", [5e-8, 2e-4])
def test_hay_sheet_formulas(v, cai):
    ref = _hay_sheet(v, cai)
    assert nc.QT == pytest.approx(2.95288, abs=1e-5)
    for suffix, gates in ref.items():
        ch = nc.CHANNELS[suffix]
        r = ch.rates(v, celsius=34.0, cai=cai if ch.uses_cai else None)
        for g, (xinf, tau) in gates.items():
            assert r[g][0].item() == pytest.approx(xinf, rel=1e-9), (suffix, g)
            assert r[g][1].item() == pytest.approx(tau, rel=1e-9), (suffix, g)
    # Ca_HVA alpha_m limit at v = -27 (channel_kinetics.md: 0.209)
    assert nc.Ca_HVA.rate_locals(-27.0)["m"]["alpha"].item() == pytest.approx(0.209, rel=1e-12)


def test_current_api():
    v = torch.tensor([-70.0, 0.0], dtype=torch.float64)
    st = nc.hh_nh.steady_state(v)
    parts = nc.hh_nh.currents_by_variable(v, st)
    assert set(parts) == {"ina", "ik", "il"}
    # outward positive: K current at 0 mV (ek = -77) is outward, Na (ena = 50) inward
    assert parts["ik"][1] > 0 and parts["ina"][1] < 0
    total = nc.hh_nh.current(v, st, gbar={"gnabar": 0.0}, e_rev={"k": -90.0}, el=-60.0)
    g = nc.hh_nh.conductances(st)
    expect = g["ik"] * (v + 90.0) + 0.0003 * (v + 60.0)
    assert torch.allclose(total, expect, rtol=1e-14, atol=0)
    assert nc.hh_nh.gate_powers == {"ina": {"m": 3, "h": 1}, "ik": {"n": 4}, "il": {}}
    assert nc.hh_nh.gate_names == ("m", "h", "n")
    assert nc.hh_nh.powers == {"m": 3, "h": 1, "n": 4}
    assert nc.K_Tst.powers == {"m": 4, "h": 1} and nc.SK_E2.powers == {"z": 1}
    # single-current channels take scalars
    st = nc.Ca_HVA.steady_state(v)
    i = nc.Ca_HVA.current(v, st, gbar=1e-3, e_rev=120.0)
    assert torch.allclose(i, 1e-3 * st["m"] ** 2 * st["h"] * (v - 120.0), rtol=1e-14, atol=0)
    # default eca is NEURON's Nernst value at cai0 = 5e-5 mM, cao0 = 2 mM
    assert nc.default_reversal("ca", 6.3).item() == pytest.approx(127.5895, abs=1e-3)
    with pytest.raises(TypeError):
        nc.hh_nh.current(v, nc.hh_nh.steady_state(v), gbar=0.1)
    with pytest.raises(TypeError):
        nc.SK_E2.steady_state(v)  # needs cai


def test_cnexp_step_matches_formula():
    x, xinf, tau, dt = 0.2, 0.7, 3.0, 0.025
    got = nc.cnexp_step(x, xinf, tau, dt).item()
    assert got == pytest.approx(x + (1 - math.exp(-dt / tau)) * (xinf - x), rel=1e-15)


def test_pool_matches_sheet():
    # d cai/dt = -10000 ica gamma/(2 F depth) - (cai - minCai)/decay
    p = nc.CaDynamics_E2
    ica, cai = -2e-4, 3e-4
    want = -10000 * ica * 0.05 / (2 * nc.FARADAY_VALUE * 0.1) - (cai - 1e-4) / 80.0
    assert p.derivative_value(cai, ica).item() == pytest.approx(want, rel=1e-12)
    assert p.time_constant(ica, decay=460.0).item() == pytest.approx(460.0, rel=1e-14)
    ss = p.steady_state(ica)
    assert p.derivative_value(ss, ica).item() == pytest.approx(0.0, abs=1e-15)


def test_faraday_matches_neuron(nrn):
    assert nc.FARADAY_VALUE == nrn.FARADAY
    from neuron_hybrid.channels.core import GAS_CONSTANT_VALUE
    assert GAS_CONSTANT_VALUE == nrn.R

"""A single compartment in NEURON vs the pure-torch cnexp integrator built from the same definitions."""
import numpy as np
import torch

import neuron_hybrid.channels as nc
from neuron_hybrid.channels.simulate import Inserted, iclamp, simulate_compartment


def _neuron_trace(h, mechs, setup, *, amp, delay, dur, tstop, v_init, celsius, dt):
    sec = h.Section(name="twin")
    sec.L = sec.diam = 20.0
    for m in mechs:
        sec.insert(m)
    seg = sec(0.5)
    setup(sec, seg)
    stim = h.IClamp(seg)
    stim.delay, stim.dur, stim.amp = delay, dur, amp
    v = h.Vector().record(seg._ref_v)
    cai = h.Vector().record(seg._ref_cai) if h.ismembrane("ca_ion", sec=sec) else h.Vector()
    h.dt = dt
    h.celsius = celsius
    h.finitialize(v_init)
    h.continuerun(tstop)
    return sec, seg, torch.tensor(v.as_numpy().copy()), torch.tensor(cai.as_numpy().copy())


def _spikes(v):
    v = v.numpy()
    return int(np.sum((v[1:] > 0) & (v[:-1] <= 0)))


def test_pospischil_compartment(neuron_globals):
    """Pospischil Na + Kdr + Km + pas, 36 degC, ena 50, ek -90: NEURON vs torch."""
    h = neuron_globals
    kw = dict(amp=0.2, delay=10.0, dur=60.0, tstop=80.0, v_init=-70.0, celsius=36.0, dt=0.025)

    def setup(sec, seg):
        seg.g_pas, seg.e_pas = 1e-4, -70.0
        sec.ena, sec.ek = 50.0, -90.0
        seg.km_pos.gbar = 2e-4

    sec, seg, v_nrn, _ = _neuron_trace(h, ["na_pos", "kdr_pos", "km_pos", "pas"], setup, **kw)
    out = simulate_compartment(
        [nc.na_pos, nc.kdr_pos, Inserted(nc.km_pos, 2e-4), Inserted(nc.pas, 1e-4, {"e": -70.0})],
        tstop=kw["tstop"], dt=kw["dt"], v_init=kw["v_init"], area=seg.area(),
        stimulus=iclamp(kw["delay"], kw["dur"], kw["amp"]), celsius=kw["celsius"],
        e_rev={"na": 50.0, "k": -90.0})
    assert out["v"].shape == v_nrn.shape
    n = _spikes(v_nrn)
    diff = (out["v"] - v_nrn).abs().max().item()
    print(f"Pospischil: {n} spikes, max |v_neuron - v_torch| = {diff:.3e} mV")
    assert n >= 5 and _spikes(out["v"]) == n
    assert diff < 0.5  # the requirement; in practice ~1e-10 mV
    assert diff < 1e-6


def test_hh_nh_compartment(neuron_globals):
    h = neuron_globals
    kw = dict(amp=0.1, delay=5.0, dur=100.0, tstop=40.0, v_init=-65.0, celsius=6.3, dt=0.025)
    sec, seg, v_nrn, _ = _neuron_trace(h, ["hh_nh"], lambda sec, seg: None, **kw)
    out = simulate_compartment([nc.hh_nh], tstop=kw["tstop"], dt=kw["dt"], v_init=kw["v_init"],
                               area=seg.area(), stimulus=iclamp(kw["delay"], kw["dur"], kw["amp"]),
                               celsius=kw["celsius"])
    diff = (out["v"] - v_nrn).abs().max().item()
    print(f"hh_nh: {_spikes(v_nrn)} spikes, max |v_neuron - v_torch| = {diff:.3e} mV")
    assert _spikes(v_nrn) >= 2
    assert diff < 1e-6


HAY_SOMA = {"NaTa_t": 2.04, "Nap_Et2": 0.00172, "K_Pst": 0.00223, "K_Tst": 0.0812, "SKv3_1": 0.693,
            "SK_E2": 0.0441, "Ca_HVA": 0.000992, "Ca_LVAst": 0.00343, "Ih": 0.0002}


def test_hay_soma_with_calcium_pool(neuron_globals):
    """Hay 2011 somatic densities (biophys3) + CaDynamics_E2 + pas, 34 degC, Nernst eca."""
    h = neuron_globals
    kw = dict(amp=0.15, delay=5.0, dur=100.0, tstop=40.0, v_init=-80.0, celsius=34.0, dt=0.025)

    def setup(sec, seg):
        for m, g in HAY_SOMA.items():
            setattr(seg, f"g{m}bar_{m}", g)
        seg.gamma_CaDynamics_E2, seg.decay_CaDynamics_E2 = 0.000501, 460.0
        seg.g_pas, seg.e_pas = 3.38e-5, -90.0
        sec.ena, sec.ek = 50.0, -85.0

    mechs = list(HAY_SOMA) + ["CaDynamics_E2", "pas"]
    sec, seg, v_nrn, cai_nrn = _neuron_trace(h, mechs, setup, **kw)
    out = simulate_compartment(
        [Inserted(nc.CHANNELS[m], g) for m, g in HAY_SOMA.items()]
        + [Inserted(nc.CaDynamics_E2, params={"gamma": 0.000501, "decay": 460.0}),
           Inserted(nc.pas, 3.38e-5, {"e": -90.0})],
        tstop=kw["tstop"], dt=kw["dt"], v_init=kw["v_init"], area=seg.area(),
        stimulus=iclamp(kw["delay"], kw["dur"], kw["amp"]), celsius=kw["celsius"],
        e_rev={"na": 50.0, "k": -85.0})
    n = _spikes(v_nrn)
    diff = (out["v"] - v_nrn).abs().max().item()
    cai_rel = ((out["cai"] - cai_nrn).abs() / cai_nrn).max().item()
    print(f"Hay soma: {n} spikes, max |dv| = {diff:.3e} mV, max rel |dcai| = {cai_rel:.3e}, "
          f"peak cai {cai_nrn.max().item():.3e} mM")
    assert n >= 1 and cai_nrn.max() > 2 * cai_nrn[0]
    assert diff < 1e-6
    assert cai_rel < 1e-9


def test_simulation_is_differentiable():
    gbar = torch.tensor(0.05, dtype=torch.float64, requires_grad=True)
    out = simulate_compartment([Inserted(nc.na_pos, gbar), nc.kdr_pos, Inserted(nc.pas, 1e-4, {"e": -70.0})],
                               tstop=5.0, dt=0.05, v_init=-70.0, area=1256.6, celsius=36.0,
                               stimulus=iclamp(1.0, 10.0, 0.5), e_rev={"na": 50.0, "k": -90.0},
                               record_states=True)
    out["v"][-1].backward()
    assert torch.isfinite(gbar.grad) and gbar.grad != 0
    assert set(out["states"]) == {"na_pos", "kdr_pos", "pas"}
    assert out["states"]["na_pos"]["m"].shape == out["v"].shape

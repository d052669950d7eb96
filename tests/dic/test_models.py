"""STG and DA: the generated NEURON mechanisms vs the vectorised NumPy models (and the sheet)."""
import numpy as np
import pytest

import neuron_hybrid.channels as nc
from neuron_hybrid.dic.da import DA, DA_EXAMPLES
from neuron_hybrid.dic.stg import STG, STG_EXAMPLES


def _neuron_v(h, model, gbar, tstop, dt):
    sec = model.build_neuron(h, gbar, name=f"{model.name}_cmp")
    rec = h.Vector().record(sec(0.5)._ref_v)
    h.dt = dt
    h.finitialize(model.v_init)
    h.continuerun(tstop)
    v = rec.as_numpy().copy()
    h.delete_section(sec=sec)
    return v[1:]


def _spike_times(v, dt, thr=10.0):
    i = np.nonzero((v[1:] >= thr) & (v[:-1] < thr))[0]
    return (i + 1) * dt


@pytest.mark.parametrize("model,example,kind,tstop,dt", [
    (STG, "nmod_spiking", "spiking", 450.0, 0.05),
    (STG, "nmod_bursting", "bursting", 450.0, 0.05),
    (DA, "fast", "spiking", 600.0, 0.05),
    (DA, "bursting", "bursting", 1600.0, 0.05),
], ids=["stg-spiking", "stg-bursting", "da-spiking", "da-bursting"])
def test_neuron_and_numpy_agree(h, model, example, kind, tstop, dt):
    """Same scheme, same arithmetic: traces agree to ~1e-8 mV at first (rounding differences grow
    slowly during fast spiking), identical spike times, on a spiking and a bursting set."""
    g = dict((STG_EXAMPLES if model is STG else DA_EXAMPLES)[example])
    sim = model.simulate([g], tstop=tstop, dt=dt, record=[0])
    v_nrn = _neuron_v(h, model, g, tstop, dt)
    v_np = sim.v[0]
    assert v_np.shape == v_nrn.shape
    diff = np.abs(v_np - v_nrn).max()
    n_spk = len(_spike_times(v_nrn, dt))
    print(f"{model.name} {example}: {n_spk} spikes, max |V_neuron - V_numpy| = {diff:.2e} mV")
    assert n_spk >= 4
    assert diff < 0.05
    np.testing.assert_allclose(_spike_times(v_np, dt), _spike_times(v_nrn, dt))
    isi = np.diff(sim.spikes[0])
    if kind == "spiking":
        assert isi.max() < 2 * np.median(isi)  # tonic: no pauses
    else:
        assert isi.max() > 4 * isi.min()  # bursts separated by long pauses
    if model is STG and kind == "bursting":
        # NmodController's STG_bursting: intra-burst ISI ~6.9 ms (channel_kinetics.md 7.3)
        late = np.diff(sim.spikes[0][sim.spikes[0] > 200.0])
        assert late.min() == pytest.approx(6.9, rel=0.05)


def test_sheet_gate_values():
    """channel_kinetics.md unit-test values (sections 3.2 and 4.2)."""
    r = nc.stg_na.rates(-51.0)
    assert r["m"][0].item() == pytest.approx(0.00799893, rel=1e-5)
    assert r["h"][1].item() == pytest.approx(1.27849, rel=1e-5)
    assert nc.stg_kd.rates(-20.0)["m"][1].item() == pytest.approx(3.31891, rel=1e-5)
    assert nc.stg_h.rates(-51.0)["m"][1].item() == pytest.approx(672.784, rel=1e-5)
    assert nc.stg_cas.rates(-70.0)["h"][1].item() == pytest.approx(156.419, rel=1e-5)
    assert nc.stg_kca.steady_state(-51.0, cai=1e-3)["m"].item() == pytest.approx(0.0354145, rel=1e-5)
    assert nc.da_na.rates(-55.5)["m"][1].item() == pytest.approx(0.228677, rel=1e-5)
    assert nc.da_na.rates(-90.0)["h"][1].item() == pytest.approx(7.06189, rel=1e-5)
    assert nc.da_kd.rates(-20.0)["n"][1].item() == pytest.approx(4.55332, rel=1e-5)
    assert nc.da_can.rates(-55.5)["m"][1].item() == pytest.approx(18.0205, rel=1e-5)
    assert nc.da_erg.steady_state(-90.0)["o"].item() == pytest.approx(7.3944e-4, rel=1e-4)
    assert nc.da_erg.steady_state(-55.5)["o"].item() == pytest.approx(0.093176, rel=1e-4)
    b = nc.da_nmda.conductances({}, gbar=1.0, v=-55.5)["inmda"].item()
    assert b == pytest.approx(0.0777092, rel=1e-5)
    # the Na tau pole near -38.725 mV is clamped at 0.01 ms, never negative
    v = np.linspace(-38.74, -38.70, 4001)
    tau = nc.da_na.time_constant(v)["m"].numpy()
    assert np.all(tau >= 0.01) and np.all(np.isfinite(tau))


def test_erg_scheme_matches_kinetic_equations():
    """The coupled-gate form (inf/tau at frozen other state) is the C<->O<->I scheme."""
    import torch
    v = torch.tensor([-70.0, -20.0], dtype=torch.float64)
    o, i = torch.tensor([0.2, 0.3], dtype=torch.float64), torch.tensor([0.1, 0.5], dtype=torch.float64)
    r = nc.da_erg.rates(v, states={"o": o, "inac": i})
    a0, b0 = 0.0036 * torch.exp(0.0759 * v), 1.2523e-5 * torch.exp(-0.0671 * v)
    ai, bi = 0.1 * torch.exp(0.1189 * v), 0.003 * torch.exp(-0.0733 * v)
    do = a0 * (1 - o - i) + bi * i - (ai + b0) * o
    di = ai * o - bi * i
    assert torch.allclose((r["o"][0] - o) / r["o"][1], do, rtol=1e-12)
    assert torch.allclose((r["inac"][0] - i) / r["inac"][1], di, rtol=1e-12)


def test_instantaneous_mod_files_are_generated():
    for suffix, m in nc.INSTANTANEOUS.items():
        assert (nc.INSTANTANEOUS_MOD_DIR / f"{suffix}.mod").read_text() == m.mod_text()

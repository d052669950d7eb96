"""Part 1: gating curves measured in NEURON by voltage clamp vs the known equations."""
import h5py
import numpy as np
import pytest

import neuron_hybrid.channels as nc
from neuron_hybrid.kinetics import (ChannelCurveError, CurveConfig, CurvesFileError, load_curves,
                                    measure_channel_curves, save_curves)

from .conftest import MOD


def _hh_rates(v):
    """NEURON's hh.mod rates at 6.3 degC, written out independently (alpha, beta in 1/ms)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        am = np.where(np.abs(v + 40) < 1e-9, 1.0, 0.1 * (v + 40) / (1 - np.exp(-(v + 40) / 10)))
        an = np.where(np.abs(v + 55) < 1e-9, 0.1, 0.01 * (v + 55) / (1 - np.exp(-(v + 55) / 10)))
    bm = 4 * np.exp(-(v + 65) / 18)
    ah, bh = 0.07 * np.exp(-(v + 65) / 20), 1 / (1 + np.exp(-(v + 35) / 10))
    bn = 0.125 * np.exp(-(v + 65) / 80)
    return {"m": (am / (am + bm), 1 / (am + bm)), "h": (ah / (ah + bh), 1 / (ah + bh)), "n": (an / (an + bn), 1 / (an + bn))}


def test_hh_matches_analytic_rates(hh_curves):
    c = hh_curves
    assert c.mechanism == "hh" and set(c.gates) == {"m", "h", "n"}
    ref = _hh_rates(c["n"].v)
    assert c["n"].v[0] == -100 and c["n"].v[-1] == 60
    for g, (xi, tau) in ref.items():
        np.testing.assert_allclose(c[g].x_inf, xi, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(c[g].tau, tau, rtol=1e-7)
    assert (c["m"].power, c["h"].power, c["n"].power) == (3, 1, 4)
    assert (c["m"].ion, c["n"].ion, c["n"].current, c["n"].gbar_name) == ("na", "k", "ik", "gkbar")
    assert c["n"].e_rev == pytest.approx(-77.0) and c["m"].e_rev == pytest.approx(50.0)


@pytest.mark.parametrize("suffix", ["na_pos", "kdr_pos", "km_pos", "NaTa_t", "K_Pst", "Ca_HVA", "Ih", "Nap_Et2"])
def test_pospischil_and_hay_match_their_equations(h, suffix):
    c = measure_channel_curves(MOD / f"{suffix}.mod", config=CurveConfig(v_step_mV=2.0))
    ch = nc.get(suffix)
    v = c[ch.gate_names[0]].v
    for g, (xi, tau) in ch.rates(v).items():
        np.testing.assert_allclose(c[g].x_inf, xi.numpy(), rtol=1e-6, atol=1e-9, err_msg=f"{suffix}.{g} x_inf")
        np.testing.assert_allclose(c[g].tau, tau.numpy(), rtol=1e-6, err_msg=f"{suffix}.{g} tau")
        assert c[g].power == ch.powers[g]


def test_hand_written_hay_equations(h):
    """K_Tst and Ih from the published formulas (Hay et al. 2011), not from the channel definitions."""
    qt = 2.3 ** ((34 - 21) / 10)
    c = measure_channel_curves(MOD / "K_Tst.mod", config=CurveConfig(v_step_mV=5.0))
    v = c["m"].v + 10
    np.testing.assert_allclose(c["m"].x_inf, 1 / (1 + np.exp(-(v + 0) / 19)), rtol=1e-7)
    np.testing.assert_allclose(c["m"].tau, (0.34 + 0.92 * np.exp(-((v + 71) / 59) ** 2)) / qt, rtol=1e-7)
    np.testing.assert_allclose(c["h"].tau, (8 + 49 * np.exp(-((v + 73) / 23) ** 2)) / qt, rtol=1e-7)
    c = measure_channel_curves(MOD / "Ih.mod", config=CurveConfig(v_step_mV=5.0))
    v = c["m"].v
    a = 0.001 * 6.43 * (v + 154.9) / (np.exp((v + 154.9) / 11.9) - 1)
    b = 0.001 * 193 * np.exp(v / 33.1)
    np.testing.assert_allclose(c["m"].x_inf, a / (a + b), rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(c["m"].tau, 1 / (a + b), rtol=1e-7)
    assert c["m"].ion == "" and c["m"].current == "ihcn" and c["m"].e_rev == pytest.approx(-45.0)


def test_calcium_gate_on_a_cai_grid(h):
    c = measure_channel_curves(MOD / "SK_E2.mod", config=CurveConfig(v_step_mV=20.0, cai_mM=(1e-5, 1e-4, 5e-4, 1e-2)))
    z = c["z"]
    assert z.depends_on_cai and z.x_inf.shape == (4, len(z.v))
    ref = 1 / (1 + (0.00043 / z.cai) ** 4.8)
    np.testing.assert_allclose(z.x_inf, np.repeat(ref[:, None], len(z.v), 1), rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(z.tau, 1.0, rtol=1e-7)


USER_MOD = """
NEURON { SUFFIX kbtest_nh USEION k READ ek WRITE ik RANGE gbar }
PARAMETER { gbar = 0.01 (S/cm2) }
ASSIGNED { v (mV) ek (mV) ik (mA/cm2) ninf ntau (ms) }
STATE { n }
BREAKPOINT { SOLVE states METHOD derivimplicit
    ik = gbar*n*n*(v - ek) }
INITIAL { rates(v) n = ninf }
DERIVATIVE states { rates(v) n' = (ninf - n)/ntau }
PROCEDURE rates(v (mV)) {
    ninf = 1/(1 + exp(-(v + 30)/8))
    ntau = 2 + 10*exp(-((v + 40)/20)^2)
}
"""


def test_user_mod_compiled_on_its_own(h, tmp_path):
    p = tmp_path / "kbtest_nh.mod"
    p.write_text(USER_MOD)
    c = measure_channel_curves(p, config=CurveConfig(v_step_mV=5.0))
    n = c["n"]
    np.testing.assert_allclose(n.x_inf, 1 / (1 + np.exp(-(n.v + 30) / 8)), rtol=1e-7)
    np.testing.assert_allclose(n.tau, 2 + 10 * np.exp(-((n.v + 40) / 20) ** 2), rtol=1e-6)  # backward Euler formula
    assert (n.power, n.ion, n.gbar, n.e_rev) == (2, "k", 0.01, -77.0)


def test_hdf5_roundtrip_and_bad_files(hh_curves, tmp_path):
    p = save_curves(hh_curves, tmp_path / "hh.h5")
    with h5py.File(p) as f:
        assert f.attrs["format_version"] == 1 and set(f["gates"]) == {"m", "h", "n"}
        assert f["gates/n"].attrs["power"] == 4 and f["gates/n"].attrs["ion"] == "k"
    back = load_curves(p)
    np.testing.assert_array_equal(back["n"].tau, hh_curves["n"].tau)
    with pytest.raises(FileNotFoundError, match="channel-curves"):
        load_curves(tmp_path / "missing.h5")
    bad = tmp_path / "corrupt.h5"
    bad.write_bytes(p.read_bytes()[:500])
    with pytest.raises(CurvesFileError, match="corrupt"):
        load_curves(bad)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(CurvesFileError, match="not a channel-curves file"):
        load_curves(other)


def test_bad_channels_are_named(h, tmp_path):
    with pytest.raises(ChannelCurveError, match="no gate STATE"):
        measure_channel_curves(MOD / "CaDynamics_E2.mod")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        measure_channel_curves(tmp_path / "nothing.mod")
    junk = tmp_path / "junk.mod"
    junk.write_text("this is not NMODL\n")
    with pytest.raises(ValueError, match="no NEURON"):
        measure_channel_curves(junk)


def test_cli_channel_curves(h, tmp_path, capsys):
    from neuron_hybrid.kinetics.__main__ import main

    out = tmp_path / "kdr.h5"
    assert main(["channel-curves", str(MOD / "kdr_pos.mod"), "--out", str(out), "--v-step", "4", "--quiet"]) == 0
    c = load_curves(out)
    assert c["n"].power == 4 and out.with_suffix(".png").is_file()
    for cmd in ("channel-curves", "fit-channel"):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
    assert "--mod-dir" in capsys.readouterr().out

"""channel-curves on MOD-file styles found in published models (ModelDB), each against its analytic formula.

All MOD files are written into one folder and compiled together (one nrnivmodl run).
"""
from pathlib import Path

import numpy as np
import pytest

from neuron_hybrid.kinetics import CurveConfig, GateFitConfig, gated_channel_from_curves, measure_channel_curves

# POINT_PROCESS channel (conductance in uS, current in nA)
PP_MOD = """
NEURON { POINT_PROCESS auditpp_nh NONSPECIFIC_CURRENT i RANGE gmax, e, i }
UNITS { (nA) = (nanoamp) (mV) = (millivolt) (uS) = (microsiemens) }
PARAMETER { gmax = 0.001 (uS) e = -90 (mV) }
ASSIGNED { v (mV) i (nA) ninf ntau (ms) }
STATE { n }
BREAKPOINT { SOLVE states METHOD cnexp
    i = gmax*n^4*(v - e) }
INITIAL { rates(v) n = ninf }
DERIVATIVE states { rates(v) n' = (ninf - n)/ntau }
PROCEDURE rates(v (mV)) { UNITSOFF
    ninf = 1/(1 + exp(-(v + 35)/10))
    ntau = 1 + 6/(1 + exp((v + 40)/15))
    UNITSON }
"""

# Mainen & Sejnowski style: SOLVE without METHOD (explicit exponential update), gbar in pS/um2, tadj
EXP_MOD = """
NEURON { SUFFIX auditexp_nh USEION k READ ek WRITE ik RANGE gbar GLOBAL ninf, ntau, tadj }
PARAMETER { gbar = 300 (pS/um2) q10 = 3 temp = 23 (degC) dt (ms) celsius (degC) v (mV) }
ASSIGNED { ik (mA/cm2) ek (mV) ninf ntau (ms) tadj }
STATE { n }
INITIAL { rates(v) n = ninf }
BREAKPOINT { SOLVE states
    ik = (1e-4)*tadj*gbar*n*(v - ek) }
PROCEDURE states() { LOCAL nexp
    rates(v)
    nexp = 1 - exp(-dt*tadj/ntau)
    n = n + nexp*(ninf - n) }
PROCEDURE rates(v (mV)) { UNITSOFF
    tadj = q10^((celsius - temp)/10)
    ninf = 1/(1 + exp(-(v + 20)/9))
    ntau = 2 + 8*exp(-((v + 30)/30)^2)
    UNITSON }
"""

# persistent Na: instantaneous activation minf (no STATE) in the BREAKPOINT, slow inactivation h
NAP_MOD = """
NEURON { SUFFIX auditnap_nh USEION na READ ena WRITE ina RANGE gnapbar }
PARAMETER { gnapbar = 0.0001 (S/cm2) }
ASSIGNED { v (mV) ena (mV) ina (mA/cm2) minf hinf htau (ms) }
STATE { h }
BREAKPOINT { SOLVE states METHOD cnexp
    rates(v)
    ina = gnapbar*minf*h*(v - ena) }
INITIAL { rates(v) h = hinf }
DERIVATIVE states { rates(v) h' = (hinf - h)/htau }
PROCEDURE rates(v (mV)) { UNITSOFF
    minf = 1/(1 + exp(-(v + 52.6)/4.6))
    hinf = 1/(1 + exp((v + 48.8)/10))
    htau = 200 + 1800*exp(-((v + 60)/25)^2)
    UNITSON }
"""

# high-voltage Ca with a GHK driving force written by a FUNCTION of the file
GHK_MOD = """
NEURON { SUFFIX auditghk_nh USEION ca READ cai, cao WRITE ica RANGE pcabar }
PARAMETER { pcabar = 1e-4 (cm/s) }
ASSIGNED { v (mV) celsius (degC) cai (mM) cao (mM) ica (mA/cm2) minf mtau (ms) }
STATE { m }
BREAKPOINT { SOLVE states METHOD cnexp
    ica = pcabar*m*m*ghk(v, cai, cao) }
INITIAL { rates(v) m = minf }
DERIVATIVE states { rates(v) m' = (minf - m)/mtau }
PROCEDURE rates(v (mV)) { UNITSOFF
    minf = 1/(1 + exp(-(v + 20)/6))
    mtau = 0.5 + 2*exp(-((v + 30)/20)^2)
    UNITSON }
FUNCTION ghk(v, ci, co) { LOCAL z
    UNITSOFF
    z = 2e-3*96485.3*v/(8.3145*(celsius + 273.15))
    if (fabs(z) < 1e-4) { ghk = 2*96.4853*(ci - co)*(1 - z/2) } else { ghk = 2*96.4853*z*(ci - co*exp(-z))/(1 - exp(-z)) }
    UNITSON }
"""

# file name differs from its SUFFIX (as kdrca1.mod: SUFFIX kdr), alpha/beta form x' = a*(1 - x) - b*x
MISMATCH_MOD = """
NEURON { SUFFIX auditmis_nh USEION k READ ek WRITE ik RANGE gmax }
PARAMETER { gmax = 0.002 (S/cm2) }
ASSIGNED { v (mV) ek (mV) ik (mA/cm2) a_s (/ms) b_s (/ms) a_r (/ms) b_r (/ms) }
STATE { s1 r }
BREAKPOINT { SOLVE states METHOD derivimplicit
    ik = gmax*s1*s1*r*(v - ek) }
INITIAL { rates(v) s1 = a_s/(a_s + b_s) r = a_r/(a_r + b_r) }
DERIVATIVE states { rates(v)
    s1' = a_s*(1 - s1) - b_s*s1
    r' = a_r*(1 - r) - b_r*r }
PROCEDURE rates(v (mV)) { UNITSOFF
    a_s = 0.1*exp((v + 40)/20)
    b_s = 0.1*exp(-(v + 40)/20)
    a_r = 0.01*(v + 40)/(1 - exp(-(v + 40)/10))  : 0/0 at -40 mV, not guarded (as in many published files)
    b_r = 0.125*exp(-(v + 65)/80)
    UNITSON }
"""

# exponent given by a PARAMETER (not readable from the text): measured in NEURON
POW_MOD = """
NEURON { SUFFIX auditpow_nh USEION k READ ek WRITE ik RANGE gbar }
PARAMETER { gbar = 0.004 (S/cm2) p = 3 }
ASSIGNED { v (mV) ek (mV) ik (mA/cm2) }
STATE { n }
BREAKPOINT { SOLVE states METHOD cnexp
    ik = gbar*n^p*(v - ek) }
INITIAL { n = 1/(1 + exp(-(v + 30)/10)) }
DERIVATIVE states { n' = (1/(1 + exp(-(v + 30)/10)) - n)/3 }
"""

# Lazarewicz style: rate FUNCTIONs in an INCLUDEd file (here in a subfolder), the current assigned in a
# PROCEDURE called from BREAKPOINT, and the mechanism's own reversal potential (USEION k WRITE ik, no READ ek)
INC_MOD = """
NEURON { SUFFIX auditinc_nh USEION k WRITE ik RANGE gkdr, ek }
UNITS { (mA) = (milliamp) (mV) = (millivolt) (mS) = (millisiemens) }
PARAMETER { gkdr = 3 (mS/cm2) ek = -85 (mV) }
ASSIGNED { v (mV) ik (mA/cm2) ninf ntau (ms) }
STATE { n }
PROCEDURE iassign() { ik = (1e-3)*gkdr*n^4*(v - ek) }
INITIAL { rates(v) n = ninf iassign() }
BREAKPOINT { SOLVE states METHOD cnexp
    iassign() }
DERIVATIVE states { rates(v) n' = (ninf - n)/ntau }
PROCEDURE rates(v (mV)) { LOCAL a, b
    a = linoid_nh(v, -34, -0.01, -10)
    b = expo_nh(v, -44, 0.125, -80)
    ninf = a/(a + b)
    ntau = 1/(a + b) }
INCLUDE "inc/auditinc_rates.inc"
"""
INC_RATES = """
UNITSOFF
FUNCTION expo_nh(v, v0, A, k) { expo_nh = A*exp((v - v0)/k) }
FUNCTION linoid_nh(v, v0, A, k) {
    if (fabs((v - v0)/k) < 1e-6) { linoid_nh = A*k*(1 - (v - v0)/k/2) }
    else { linoid_nh = A*(v - v0)/(exp((v - v0)/k) - 1) } }
UNITSON
"""

CELSIUS = 34.0


@pytest.fixture(scope="module")
def styles(h, tmp_path_factory):
    d = tmp_path_factory.mktemp("styles")
    names = ("auditpp_nh", "auditexp_nh", "auditnap_nh", "auditghk_nh", "mismatch_file", "auditpow_nh", "auditinc_nh")
    for name, text in zip(names, (PP_MOD, EXP_MOD, NAP_MOD, GHK_MOD, MISMATCH_MOD, POW_MOD, INC_MOD)):
        (d / f"{name}.mod").write_text(text)
    (d / "inc").mkdir()
    (d / "inc" / "auditinc_rates.inc").write_text(INC_RATES)
    cfg = CurveConfig(v_step_mV=5.0, celsius_degC=CELSIUS, cai_mM=(1e-4, 1e-3))
    return {n: measure_channel_curves(d / f"{n}.mod", mod_dirs=[d], config=cfg) for n in names}


def _fit_cfg():
    return GateFitConfig(width=8, steps=5, lbfgs_steps=0)


def test_point_process_channel(styles):
    n = styles["auditpp_nh"]["n"]
    v = n.v
    np.testing.assert_allclose(n.x_inf, 1 / (1 + np.exp(-(v + 35) / 10)), rtol=1e-7)
    np.testing.assert_allclose(n.tau, 1 + 6 / (1 + np.exp((v + 40) / 15)), rtol=1e-7)
    assert n.point_process and (n.power, n.ion, n.current, n.e_rev) == (4, "", "i", -90.0)
    assert n.gbar == pytest.approx(0.001, rel=1e-6)  # uS
    np.testing.assert_allclose(n.i_open, 0.001 * (v + 90), rtol=1e-9, atol=1e-15)  # nA
    with pytest.raises(ValueError, match="POINT_PROCESS.*--gbar"):
        gated_channel_from_curves(styles["auditpp_nh"], _fit_cfg())


def test_explicit_update_and_unit_factors(styles):
    """SOLVE without METHOD (n = n + nexp*(ninf - n)); the conductance is (1e-4)*tadj*gbar (pS/um2)."""
    n = styles["auditexp_nh"]["n"]
    v = n.v
    tadj = 3 ** ((CELSIUS - 23) / 10)
    np.testing.assert_allclose(n.x_inf, 1 / (1 + np.exp(-(v + 20) / 9)), rtol=1e-7)
    np.testing.assert_allclose(n.tau, (2 + 8 * np.exp(-((v + 30) / 30) ** 2)) / tadj, rtol=1e-7)
    assert (n.power, n.ion, n.gbar_name) == (1, "k", "gbar")
    assert n.gbar == pytest.approx(1e-4 * 300 * tadj, rel=1e-7)  # effective S/cm2, not the 300 pS/um2 parameter


def test_instantaneous_factor_is_refused(styles):
    c = styles["auditnap_nh"]
    hg = c["h"]
    v = hg.v
    np.testing.assert_allclose(hg.x_inf, 1 / (1 + np.exp((v + 48.8) / 10)), rtol=1e-7, atol=1e-9)  # tau/dt ~ 2e6
    np.testing.assert_allclose(hg.tau, 200 + 1800 * np.exp(-((v + 60) / 25) ** 2), rtol=1e-6)
    minf = 1 / (1 + np.exp(-(v + 52.6) / 4.6))
    np.testing.assert_allclose(hg.i_open, 1e-4 * minf * (v - 50), rtol=1e-7, atol=1e-15)
    assert hg.gbar is None and hg.power == 1
    with pytest.raises(ValueError, match="instantaneous voltage-dependent factor.*STATE"):
        gated_channel_from_curves(c, _fit_cfg())
    model, info = gated_channel_from_curves(c, _fit_cfg(), gbar_S_cm2=1e-4)  # explicit ohmic approximation
    assert info["gbar"] == 1e-4


def test_ghk_current(styles):
    c = styles["auditghk_nh"]
    m = c["m"]
    assert not m.depends_on_cai  # reads cai (GHK) but the gate does not depend on it
    np.testing.assert_allclose(m.x_inf, 1 / (1 + np.exp(-(m.v + 20) / 6)), rtol=1e-7)
    np.testing.assert_allclose(m.tau, 0.5 + 2 * np.exp(-((m.v + 30) / 20) ** 2), rtol=1e-7)
    assert (m.power, m.ion, m.current, m.gbar_name, m.e_rev, m.gbar) == (2, "ca", "ica", "pcabar", None, None)
    with pytest.raises(ValueError, match="GHK.*--e-rev.*--gbar"):
        gated_channel_from_curves(c, _fit_cfg())
    with pytest.raises(ValueError, match="non-ohmic"):
        gated_channel_from_curves(c, _fit_cfg(), e_rev_mV=120.0)


def test_file_name_differs_from_suffix(styles):
    c = styles["mismatch_file"]
    assert c.mechanism == "auditmis_nh"
    s1 = c["s1"]
    a, b = 0.1 * np.exp((s1.v + 40) / 20), 0.1 * np.exp(-(s1.v + 40) / 20)
    np.testing.assert_allclose(s1.x_inf, a / (a + b), rtol=1e-7)
    np.testing.assert_allclose(s1.tau, 1 / (a + b), rtol=1e-6)  # finite at -40 mV although r is NaN there
    assert (s1.power, s1.gbar) == (2, pytest.approx(0.002, rel=1e-9))
    r = c["r"]  # derivimplicit with NaN rates at -40 mV used to stop NEURON ("matrix singular")
    with np.errstate(invalid="ignore"):
        a = np.where(r.v == -40, 0.1, 0.01 * (r.v + 40) / (1 - np.exp(-(r.v + 40) / 10)))  # limit at -40 mV
    b = 0.125 * np.exp(-(r.v + 65) / 80)
    assert list(c.extra["singular_v_mV"]) == [-40.0] and np.isfinite(r.x_inf).all()
    np.testing.assert_allclose(r.x_inf, a / (a + b), rtol=1e-6)
    np.testing.assert_allclose(r.tau, 1 / (a + b), rtol=1e-6)


def test_included_rates_current_in_a_procedure_and_own_reversal(styles):
    """INCLUDE "inc/x.inc" is found beside the MOD file; ik assigned in a PROCEDURE called from BREAKPOINT still
    gives the exponent and gbar; E is the mechanism's own ek (-85 mV), not the k ion's (-77 mV)."""
    n = styles["auditinc_nh"]["n"]
    v = n.v
    a = 0.01 * (v + 34) / (1 - np.exp(-(v + 34) / 10))
    b = 0.125 * np.exp(-(v + 44) / 80)
    np.testing.assert_allclose(n.x_inf, a / (a + b), rtol=1e-7)
    np.testing.assert_allclose(n.tau, 1 / (a + b), rtol=1e-7)
    assert (n.power, n.ion, n.current, n.gbar_name, n.e_rev) == (4, "k", "ik", "gkdr", -85.0)
    assert n.gbar == pytest.approx(3e-3, rel=1e-9)  # S/cm2 (3 mS/cm2 times the file's 1e-3)


def test_missing_include_names_the_file_and_the_fix(h, tmp_path):
    from neuron_hybrid.runtime.build import BuildError

    p = tmp_path / "auditinc2_nh.mod"  # a name not loaded yet, without inc/auditinc_rates.inc beside it
    p.write_text(INC_MOD.replace("auditinc_nh", "auditinc2_nh"))
    with pytest.raises(BuildError, match=r'INCLUDE "inc/auditinc_rates.inc".*not found.*--mod-dir'):
        measure_channel_curves(p, config=CurveConfig(v_step_mV=20.0))


def test_suffix_taken_by_a_builtin(h, tmp_path):
    """An edited copy of NEURON's hh.mod (SUFFIX hh, already built in) is measured under another name."""
    import neuron

    src = (Path(neuron.__file__).parent / ".data" / "share" / "modfile" / "hh.mod").read_text()
    assert src.count(".07 * exp(-(v+65)/20)") == 1
    p = tmp_path / "myhh.mod"
    p.write_text(src.replace(".07 * exp(-(v+65)/20)", ".05 * exp(-(v+65)/20)"))
    c = measure_channel_curves(p, config=CurveConfig(v_step_mV=10.0))
    assert c.mechanism == "hh" and set(c.gates) == {"m", "h", "n"}
    v = c["h"].v
    ah, bh = 0.05 * np.exp(-(v + 65) / 20), 1 / (1 + np.exp(-(v + 35) / 10))
    np.testing.assert_allclose(c["h"].x_inf, ah / (ah + bh), rtol=1e-7)
    np.testing.assert_allclose(c["h"].tau, 1 / (ah + bh), rtol=1e-7)
    assert (c["h"].power, c["n"].gbar) == (1, pytest.approx(0.036))


def test_cli_reports_user_errors_without_traceback(styles, tmp_path, capsys):
    from neuron_hybrid.kinetics import save_curves
    from neuron_hybrid.kinetics.__main__ import main

    p = save_curves(styles["auditnap_nh"], tmp_path / "nap.h5")
    assert main(["fit-channel", str(p), "--out", str(tmp_path / "fit"), "--quiet", "--no-check"]) == 2
    err = capsys.readouterr().err
    assert "fit-channel: error:" in err and "instantaneous" in err and "Traceback" not in err
    assert main(["channel-curves", str(tmp_path / "missing.mod"), "--out", str(tmp_path / "c.h5")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_parse_statements_sharing_a_line():
    """No separator is needed between NMODL statements; several PARAMETERs may share a line."""
    from neuron_hybrid.kinetics.modfile import parse_mod_text

    info = parse_mod_text("""
NEURON { SUFFIX one USEION k READ ek WRITE ik USEION na READ ena WRITE ina RANGE gbar, gnabar }
PARAMETER { gbar = 0.01 (S/cm2) gnabar = .1 (S/cm2) }
STATE { n m h }
BREAKPOINT { SOLVE states METHOD cnexp ik = gbar*n*n*(v - ek)
  gna = gnabar*m*m*m*h  ina = gna*(v - ena)
  if (v > 100) { ina = 0 } }
""")
    assert info.parameters == {"gbar": 0.01, "gnabar": 0.1}
    got = {c.variable: (c.ion, c.powers, c.gbar, c.reversal) for c in info.currents}
    assert got == {"ik": ("k", {"n": 2}, "gbar", "ek"), "ina": ("na", {"m": 3, "h": 1}, "gnabar", "ena")}


def test_exponent_measured_when_not_readable(styles):
    n = styles["auditpow_nh"]["n"]
    np.testing.assert_allclose(n.x_inf, 1 / (1 + np.exp(-(n.v + 30) / 10)), rtol=1e-7)
    np.testing.assert_allclose(n.tau, 3.0, rtol=1e-7)
    assert (n.power, n.current, n.gbar) == (3, "ik", pytest.approx(0.004, rel=1e-9))

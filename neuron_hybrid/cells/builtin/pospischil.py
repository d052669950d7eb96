"""Cells with Pospischil et al. (2008) channels: ``ca1_pospischil``, ``allen_scnn1a``,
``allen_pvalb``.

Mechanisms (generated .mod files in ``mod/channels/``, loaded by
``neuron_hybrid.load_mechanisms()``): ``na_pos`` (RANGE ``gbar`` S/cm2, ``vt`` mV), ``kdr_pos``
(``gbar``, ``vt``), ``km_pos`` (``gbar``, ``tau_max`` ms); leak is NEURON's ``pas``.
"""
from __future__ import annotations

from typing import Dict

from ..cell import Cell
from ..mechanisms import require_mechanisms, set_mech_param
from ..morphology import load_morphology
from ..nseg import set_nseg_d_lambda
from ..paths import morphology_path

MECHANISMS = ("na_pos", "kdr_pos", "km_pos", "pas")


def insert_pospischil(sec, *, gna: float, gkdr: float, gm: float, vt: float, tau_max: float,
                      g_leak: float, e_leak: float, ena: float, ek: float) -> None:
    """Insert Na, Kdr, (Km if gm > 0) and leak into ``sec`` with the given densities (S/cm2) and
    potentials (mV)."""
    sec.insert("pas")
    for seg in sec:
        seg.pas.g = g_leak
        seg.pas.e = e_leak
    sec.insert("na_pos")
    set_mech_param(sec, "na_pos", "gbar", gna)
    set_mech_param(sec, "na_pos", "vt", vt)
    sec.insert("kdr_pos")
    set_mech_param(sec, "kdr_pos", "gbar", gkdr)
    set_mech_param(sec, "kdr_pos", "vt", vt)
    if gm > 0:
        sec.insert("km_pos")
        set_mech_param(sec, "km_pos", "gbar", gm)
        set_mech_param(sec, "km_pos", "tau_max", tau_max)
    for seg in sec:
        seg.ena = ena
        seg.ek = ek


# ----------------------------------------------------------------------------------------------
# ca1_pospischil

CA1_MORPHOLOGY = "c91662.swc"

CA1_DEFAULTS = {
    "gna_S_cm2": 0.05,
    "gkdr_S_cm2": 0.005,
    "gm_S_cm2": 7e-5,
    "g_leak_S_cm2": 1e-4,
    "e_leak_mV": -70.0,
    "ena_mV": 50.0,
    "ek_mV": -90.0,
    "vt_mV": -58.0,
    "km_tau_max_ms": 1000.0,
    "cm_uF_cm2": 1.0,
    "Ra_ohm_cm": 100.0,
    "d_lambda": 0.1,
    "d_lambda_freq_hz": 100.0,
    "v_init_mV": -70.0,
    "celsius_degC": 36.0,
}


def build_ca1_pospischil(**overrides) -> Cell:
    """Hippocampal pyramidal cell c91662 with uniform Pospischil Na/Kdr/Km + leak everywhere.

    Morphology ``c91662.swc`` (NeuroMorpho.Org, Amaral archive; diameters not rescaled). In every
    section (soma, dendrites, axon): gNa 0.05, gKdr 0.005, gM 7e-5 S/cm2 (Km tau_max 1000 ms),
    VT -58 mV, leak 1e-4 S/cm2 at -70 mV, ENa 50, EK -90 mV, cm 1 uF/cm2, Ra 100 Ohm cm; nseg
    by d_lambda 0.1 at 100 Hz (1108 segments). v_init -70 mV. The Pospischil channels have no
    temperature factor (celsius 36 is recorded for completeness). Reference behaviour
    (shared/reference/reduction_feasibility.md): Rin 73 MOhm, Vrest -70.4 mV, rheobase about
    0.24 nA for 500 ms steps.
    """
    from ..registry import merge_params

    p = merge_params(CA1_DEFAULTS, overrides, "ca1_pospischil")
    require_mechanisms(MECHANISMS, "ca1_pospischil")
    cell = load_morphology(morphology_path(CA1_MORPHOLOGY), name="ca1_pospischil")
    cell.params = p
    for sec in cell.all:
        sec.cm = p["cm_uF_cm2"]
        sec.Ra = p["Ra_ohm_cm"]
    set_nseg_d_lambda(cell, p["d_lambda"], p["d_lambda_freq_hz"])
    for sec in cell.all:
        insert_pospischil(sec, gna=p["gna_S_cm2"], gkdr=p["gkdr_S_cm2"], gm=p["gm_S_cm2"],
                          vt=p["vt_mV"], tau_max=p["km_tau_max_ms"], g_leak=p["g_leak_S_cm2"],
                          e_leak=p["e_leak_mV"], ena=p["ena_mV"], ek=p["ek_mV"])
    cell.apply_globals()
    return cell


# ----------------------------------------------------------------------------------------------
# Allen cells with a generic recipe

REGIONS = ("somatic", "axonal", "basal", "apical")


def _regional_defaults(dens: Dict[str, Dict[str, float]], common: Dict[str, float]) -> Dict[str, float]:
    out = {}
    for region, d in dens.items():
        for k, v in d.items():
            out[f"{region}_{k}"] = v
    out.update(common)
    return out


SCNN1A_DEFAULTS = _regional_defaults(
    {
        "somatic": {"gna_S_cm2": 0.05, "gkdr_S_cm2": 0.005, "gm_S_cm2": 7e-5, "cm_uF_cm2": 1.0},
        "axonal": {"gna_S_cm2": 0.05, "gkdr_S_cm2": 0.005, "gm_S_cm2": 7e-5, "cm_uF_cm2": 1.0},
        "basal": {"gna_S_cm2": 0.05, "gkdr_S_cm2": 0.005, "gm_S_cm2": 7e-5, "cm_uF_cm2": 2.0},
        "apical": {"gna_S_cm2": 0.05, "gkdr_S_cm2": 0.005, "gm_S_cm2": 7e-5, "cm_uF_cm2": 2.0},
    },
    {"g_leak_S_cm2": 1e-4, "e_leak_mV": -70.0, "ena_mV": 50.0, "ek_mV": -90.0, "vt_mV": -58.0,
     "km_tau_max_ms": 1000.0, "Ra_ohm_cm": 100.0, "d_lambda": 0.1, "d_lambda_freq_hz": 100.0,
     "v_init_mV": -70.0, "celsius_degC": 36.0},
)

PVALB_DEFAULTS = _regional_defaults(
    {
        "somatic": {"gna_S_cm2": 0.05, "gkdr_S_cm2": 0.01, "gm_S_cm2": 0.0, "cm_uF_cm2": 1.0},
        "axonal": {"gna_S_cm2": 0.05, "gkdr_S_cm2": 0.01, "gm_S_cm2": 0.0, "cm_uF_cm2": 1.0},
        "basal": {"gna_S_cm2": 0.05, "gkdr_S_cm2": 0.01, "gm_S_cm2": 0.0, "cm_uF_cm2": 1.0},
        "apical": {"gna_S_cm2": 0.05, "gkdr_S_cm2": 0.01, "gm_S_cm2": 0.0, "cm_uF_cm2": 1.0},
    },
    {"g_leak_S_cm2": 1.5e-4, "e_leak_mV": -70.0, "ena_mV": 50.0, "ek_mV": -90.0, "vt_mV": -58.0,
     "km_tau_max_ms": 1000.0, "Ra_ohm_cm": 100.0, "d_lambda": 0.1, "d_lambda_freq_hz": 100.0,
     "v_init_mV": -70.0, "celsius_degC": 36.0},
)


def _build_regional(name: str, morphology: str, defaults: Dict[str, float], overrides) -> Cell:
    from ..registry import merge_params

    p = merge_params(defaults, overrides, name)
    needs_km = any(p[f"{r}_gm_S_cm2"] > 0 for r in REGIONS)
    require_mechanisms([m for m in MECHANISMS if needs_km or m != "km_pos"], name)
    cell = load_morphology(morphology_path(morphology), name=name)
    cell.params = p
    region_of = {}
    for r in REGIONS:
        for sec in getattr(cell, r):
            region_of[sec] = r
    for sec in cell.all:
        r = region_of.get(sec, "basal")  # unusual SWC types: treated as dendrite
        sec.cm = p[f"{r}_cm_uF_cm2"]
        sec.Ra = p["Ra_ohm_cm"]
    set_nseg_d_lambda(cell, p["d_lambda"], p["d_lambda_freq_hz"])
    for sec in cell.all:
        r = region_of.get(sec, "basal")
        insert_pospischil(sec, gna=p[f"{r}_gna_S_cm2"], gkdr=p[f"{r}_gkdr_S_cm2"],
                          gm=p[f"{r}_gm_S_cm2"], vt=p["vt_mV"], tau_max=p["km_tau_max_ms"],
                          g_leak=p["g_leak_S_cm2"], e_leak=p["e_leak_mV"], ena=p["ena_mV"],
                          ek=p["ek_mV"])
    cell.apply_globals()
    return cell


def build_allen_scnn1a(**overrides) -> Cell:
    """Allen mouse V1 L4 Scnn1a excitatory cell, generic Pospischil RS recipe (not the Allen fit).

    Morphology ``Scnn1a_473845048_m.swc`` (Allen Cell Types via BMTK; axon stub). This is a
    *generic* regular-spiking recipe made for this project, not the Allen Institute's fitted
    perisomatic model (472363762_fit.json). Densities (S/cm2), parameter names
    ``<region>_<name>``:

    ========  =====  =====  ======  ==========
    region    gNa    gKdr   gM      cm (uF/cm2)
    ========  =====  =====  ======  ==========
    somatic   0.05   0.005  7e-5    1
    axonal    0.05   0.005  7e-5    1
    basal     0.05   0.005  7e-5    2 (spines)
    apical    0.05   0.005  7e-5    2 (spines)
    ========  =====  =====  ======  ==========

    Everywhere: leak 1e-4 S/cm2 at -70 mV, VT -58 mV, Km tau_max 1000 ms, ENa 50, EK -90 mV,
    Ra 100 Ohm cm, nseg by d_lambda 0.1 at 100 Hz, v_init -70 mV. That is the
    ``ca1_pospischil`` densities plus spine-corrected dendritic cm. Dendritic Na/K densities
    of 10 % of the soma's were tried and put the cell into depolarisation block after one
    spike (its input resistance is about 170 MOhm), so the densities are uniform. Measured
    here (CVode, 500 ms steps): 0.10 nA no spike, 0.15 nA 12 spikes, 0.20 nA 27 spikes.
    """
    return _build_regional("allen_scnn1a", "Scnn1a_473845048_m.swc", SCNN1A_DEFAULTS, overrides)


def build_allen_pvalb(**overrides) -> Cell:
    """Allen mouse V1 L4 Pvalb fast-spiking interneuron, generic Pospischil FS recipe (not the Allen fit).

    Morphology ``Pvalb_470522102_m.swc`` (Allen Cell Types via BMTK; aspiny, axon stub). This is
    a *generic* fast-spiking recipe made for this project, not the Allen Institute's fitted
    perisomatic model (472912177_fit.json): no M-current (no adaptation), Kdr twice the
    pyramidal density. Densities (S/cm2), parameter names ``<region>_<name>``:

    ========  =====  =====  ===  ==========
    region    gNa    gKdr   gM   cm (uF/cm2)
    ========  =====  =====  ===  ==========
    somatic   0.05   0.01   0    1
    axonal    0.05   0.01   0    1
    basal     0.05   0.01   0    1
    ========  =====  =====  ===  ==========

    Everywhere: leak 1.5e-4 S/cm2 at -70 mV, VT -58 mV, ENa 50, EK -90 mV, Ra 100 Ohm cm, nseg
    by d_lambda 0.1 at 100 Hz, v_init -70 mV. (``apical_*`` parameters exist but this cell has
    no apical sections.) Measured here (CVode, 500 ms steps): Rin about 240 MOhm; 0.05 nA no
    spike, 0.10 nA 34 spikes, 0.20 nA 80 spikes, no adaptation.
    """
    return _build_regional("allen_pvalb", "Pvalb_470522102_m.swc", PVALB_DEFAULTS, overrides)

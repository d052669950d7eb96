"""Hay et al. (2011) layer 5b pyramidal cell, model "biophys3" (ModelDB 139653).

Everything follows ``L5PCtemplate.hoc`` + ``L5PCbiophys3.hoc`` as summarised in
``shared/reference/hay2011_l5pc.md``: morphology ``cell1.asc``; axon replaced by two 30 um x 1 um
sections (``axon[0](0)`` at ``soma(0.5)``, ``axon[1](0)`` at ``axon[0](1)``);
``nseg = 1 + 2*int(L/40)``; per-section-list densities; apical Ih exponential in the path
distance from ``apic[0](0)`` normalised by the longest apical path; Ca_LVAst / Ca_HVA "hot zone"
685-885 um; celsius 34, v_init -80 mV.
"""
from __future__ import annotations

import math
from typing import Dict

from ..cell import Cell
from ..mechanisms import require_mechanisms, set_mech_param
from ..morphology import load_morphology
from ..nseg import set_nseg_fixed_length
from ..paths import morphology_path

MORPHOLOGY = "Hay2011_cell1.asc"

MECHANISMS = ("pas", "NaTa_t", "Nap_Et2", "K_Pst", "K_Tst", "SKv3_1", "SK_E2", "Ca_HVA",
              "Ca_LVAst", "Ih", "Im", "CaDynamics_E2")

#: mechanisms inserted per section list (biophys3)
INSERTED = {
    "somatic": ("Ca_LVAst", "Ca_HVA", "SKv3_1", "SK_E2", "K_Tst", "K_Pst", "Nap_Et2", "NaTa_t",
                "CaDynamics_E2", "Ih"),
    "apical": ("Ih", "SK_E2", "Ca_LVAst", "Ca_HVA", "SKv3_1", "NaTa_t", "Im", "CaDynamics_E2"),
    "basal": ("Ih",),
    "axonal": (),
}

#: uniform values per section list: NEURON range names (``<param>_<mechanism>``), cm, g_pas
UNIFORM: Dict[str, Dict[str, float]] = {
    "somatic": {
        "cm": 1.0, "g_pas": 3.38e-5, "gIhbar_Ih": 2e-4,
        "decay_CaDynamics_E2": 460.0, "gamma_CaDynamics_E2": 5.01e-4,
        "gCa_LVAstbar_Ca_LVAst": 3.43e-3, "gCa_HVAbar_Ca_HVA": 9.92e-4,
        "gSKv3_1bar_SKv3_1": 0.693, "gSK_E2bar_SK_E2": 0.0441, "gK_Tstbar_K_Tst": 0.0812,
        "gK_Pstbar_K_Pst": 0.00223, "gNap_Et2bar_Nap_Et2": 0.00172, "gNaTa_tbar_NaTa_t": 2.04,
    },
    "apical": {
        "cm": 2.0, "g_pas": 5.89e-5,
        "decay_CaDynamics_E2": 122.0, "gamma_CaDynamics_E2": 5.09e-4,
        "gSK_E2bar_SK_E2": 0.0012, "gSKv3_1bar_SKv3_1": 2.61e-4, "gNaTa_tbar_NaTa_t": 0.0213,
        "gImbar_Im": 6.75e-5,
    },
    "basal": {"cm": 2.0, "g_pas": 4.67e-5, "gIhbar_Ih": 2e-4},
    "axonal": {"cm": 1.0, "g_pas": 3.25e-5},
}

DEFAULTS: Dict[str, float] = {f"{lst}_{k}": v for lst, d in UNIFORM.items() for k, v in d.items()}
DEFAULTS.update({
    "Ra_ohm_cm": 100.0,
    "e_pas_mV": -90.0,
    "ena_mV": 50.0,       # soma and apical (the sections with Na/K channels)
    "ek_mV": -85.0,
    "ehcn_mV": -45.0,     # Ih reversal (Ih.mod PARAMETER)
    # apical Ih: gIh = base * (a + e * exp(b * (d/maxLength - c)))  (Hay distribution type 2)
    "apical_Ih_base_S_cm2": 2e-4,
    "apical_Ih_a": -0.8696,
    "apical_Ih_b": 3.6161,
    "apical_Ih_c": 0.0,
    "apical_Ih_e": 2.0870,
    # apical Ca "hot zone" (type 3): gbar inside (start, end) um, gbar*outside_factor elsewhere
    "apical_Ca_LVAst_hot_S_cm2": 0.0187,
    "apical_Ca_LVAst_outside_factor": 0.01,
    "apical_Ca_HVA_hot_S_cm2": 5.55e-4,
    "apical_Ca_HVA_outside_factor": 0.1,
    "hot_zone_start_um": 685.0,
    "hot_zone_end_um": 885.0,
    "replace_axon": True,
    "axon_L_um": 30.0,
    "axon_diam_um": 1.0,
    "nseg_length_um": 40.0,
    "v_init_mV": -80.0,
    "celsius_degC": 34.0,
})


def _replace_axon(cell: Cell, L: float, diam: float, nseg_length: float) -> None:
    """Hay's ``delete_axon()``: two L x diam stubs, ``axon[0](0)`` -> ``soma(0.5)``."""
    cell.delete_sections(list(cell.axonal))
    a0 = cell.new_section("axon[0]")
    a1 = cell.new_section("axon[1]")
    for s in (a0, a1):
        s.L = L
        s.diam = diam
        s.nseg = 1 + 2 * int(L / nseg_length)
    a0.connect(cell.soma(0.5), 0)
    a1.connect(a0(1), 0)
    cell.axonal[:] = [a0, a1]
    cell.keep(a0, a1)
    cell.rebuild_all()


def apical_origin(cell: Cell):
    """Hay's distance origin for apical distributions: ``apic[0](0)``."""
    return cell.apical[0](0)


def longest_apical_path_um(cell: Cell) -> float:
    """``getLongestBranch("apic")``: the largest distance from ``apic[0](0)`` to the 1-end of an
    apical section without children (1300.53 um for cell1)."""
    from neuron import h

    origin = apical_origin(cell)
    best = 0.0
    for sec in cell.apical:
        if len(sec.children()) == 0:
            best = max(best, h.distance(origin, sec(1)))
    return best


def _hay_eval_points(sec):
    """(segment, x used for the value) as hoc's ``for(x)`` assignment leaves it: the loop
    visits 0, the centres, then 1, and ``rangevar(1)`` writes into the last segment, so the last
    segment of every section holds the value at the section's 1-end."""
    segs = list(sec)
    out = [(seg, seg.x) for seg in segs]
    out[-1] = (segs[-1], 1.0)
    return out


def build_l5pc_hay2011(**overrides) -> Cell:
    """Hay et al. 2011 L5b pyramidal cell (cell1, biophys3 of ModelDB 139653), celsius 34.

    Needs the 11 Hay mechanisms (NaTa_t, Nap_Et2, K_Pst, K_Tst, SKv3_1, SK_E2, Ca_HVA, Ca_LVAst,
    Ih, Im, CaDynamics_E2) loaded by ``neuron_hybrid.load_mechanisms()``. 196 sections, 642
    segments. Parameters: ``<list>_<NEURON range name>`` for uniform values (e.g.
    ``somatic_gNaTa_tbar_NaTa_t``, ``apical_g_pas``, ``basal_cm``) plus the distribution
    parameters in ``DEFAULTS``. Reference (ModelDB files, NEURON 9.0.2): resting soma V
    -77.2 mV, Rin 40.8 MOhm; 2 s steps of 0.619/0.793/1.507 nA give 20/25/36 spikes at 34 C.
    The published scripts use CVode and v_init -80 mV.
    """
    from neuron import h

    from ..registry import merge_params

    p = merge_params(DEFAULTS, overrides, "l5pc_hay2011")
    require_mechanisms(MECHANISMS, "l5pc_hay2011")
    cell = load_morphology(morphology_path(MORPHOLOGY), name="l5pc_hay2011")
    cell.params = p
    if p["replace_axon"]:
        _replace_axon(cell, p["axon_L_um"], p["axon_diam_um"], p["nseg_length_um"])
    set_nseg_fixed_length(cell, p["nseg_length_um"])

    lists = ("somatic", "apical", "basal", "axonal")
    for sec in cell.all:
        sec.insert("pas")
        sec.Ra = p["Ra_ohm_cm"]
        sec.cm = 1.0
        for seg in sec:
            seg.pas.e = p["e_pas_mV"]
    for lst in lists:
        uniform = {k[len(lst) + 1:]: v for k, v in p.items() if k.startswith(lst + "_")
                   and k[len(lst) + 1:] in UNIFORM[lst]}
        for sec in getattr(cell, lst):
            for mech in INSERTED[lst]:
                sec.insert(mech)
            if lst in ("somatic", "apical"):
                for seg in sec:
                    seg.ena = p["ena_mV"]
                    seg.ek = p["ek_mV"]
            for name, val in uniform.items():
                if name == "cm":
                    sec.cm = val
                    continue
                for seg in sec:
                    setattr(seg, name, val)
    # Ih reversal (a GLOBAL in Hay's Ih.mod; set per segment if it is a RANGE variable here)
    ih_secs = [s for s in cell.all if h.ismembrane("Ih", sec=s)]
    if ih_secs:
        set_mech_param(ih_secs[0], "Ih", "ehcn", p["ehcn_mV"])
        for s in ih_secs[1:]:
            try:
                for seg in s:
                    seg.ehcn_Ih = p["ehcn_mV"]
            except (AttributeError, NameError):
                break  # GLOBAL: already set

    # apical distributions (distances from apic[0](0), as in Hay's template)
    if cell.apical:
        origin = apical_origin(cell)
        max_len = longest_apical_path_um(cell)
        cell.params["apical_max_length_um"] = max_len
        z0, z1 = p["hot_zone_start_um"], p["hot_zone_end_um"]
        for sec in cell.apical:
            for seg, x in _hay_eval_points(sec):
                d = h.distance(origin, sec(x))
                seg.gIhbar_Ih = p["apical_Ih_base_S_cm2"] * (
                    p["apical_Ih_a"] + p["apical_Ih_e"] * math.exp(
                        p["apical_Ih_b"] * (d / max_len - p["apical_Ih_c"])))
                inside = z0 < d < z1
                seg.gCa_LVAstbar_Ca_LVAst = p["apical_Ca_LVAst_hot_S_cm2"] * (
                    1.0 if inside else p["apical_Ca_LVAst_outside_factor"])
                seg.gCa_HVAbar_Ca_HVA = p["apical_Ca_HVA_hot_S_cm2"] * (
                    1.0 if inside else p["apical_Ca_HVA_outside_factor"])
    cell.apply_globals()
    return cell

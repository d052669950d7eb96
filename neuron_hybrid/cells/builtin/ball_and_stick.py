"""Ball-and-stick toy cell (``ball_and_stick.swc``)."""
from __future__ import annotations

from ..cell import Cell
from ..mechanisms import require_mechanisms
from ..morphology import load_morphology
from ..nseg import set_nseg_d_lambda
from ..paths import morphology_path

MORPHOLOGY = "ball_and_stick.swc"

DEFAULTS = {
    "passive": False,          # True: pas in soma too (no spikes)
    "cm_uF_cm2": 1.0,
    "Ra_ohm_cm": 100.0,
    # soma hh (NEURON's built-in hh defaults)
    "gnabar_hh_S_cm2": 0.12,
    "gkbar_hh_S_cm2": 0.036,
    "gl_hh_S_cm2": 0.0003,
    "el_hh_mV": -54.3,
    # pas: dendrite (and soma when passive)
    "g_pas_S_cm2": 0.001,
    "e_pas_mV": -65.0,
    "d_lambda": 0.1,
    "d_lambda_freq_hz": 100.0,
    "v_init_mV": -65.0,
    "celsius_degC": 6.3,
}


def build_ball_and_stick(**overrides) -> Cell:
    """Ball and stick: 20x20 um soma (hh, or pas if passive=True) + 200x2 um pas dendrite.

    Uses NEURON's built-in ``hh`` and ``pas`` only (no compiled mechanisms needed). Geometry from
    ``morphologies/ball_and_stick.swc``; nseg by d_lambda (0.1 at 100 Hz); cm 1, Ra 100,
    celsius 6.3 (hh's native temperature), v_init -65 mV.
    """
    from ..registry import merge_params

    p = merge_params(DEFAULTS, overrides, "ball_and_stick")
    require_mechanisms(["pas"] + ([] if p["passive"] else ["hh"]), "ball_and_stick")
    cell = load_morphology(morphology_path(MORPHOLOGY), name="ball_and_stick")
    cell.params = p
    for sec in cell.all:
        sec.cm = p["cm_uF_cm2"]
        sec.Ra = p["Ra_ohm_cm"]
    set_nseg_d_lambda(cell, p["d_lambda"], p["d_lambda_freq_hz"])
    pas_secs = cell.all if p["passive"] else [s for s in cell.all if s not in cell.somatic]
    for sec in pas_secs:
        sec.insert("pas")
        for seg in sec:
            seg.pas.g = p["g_pas_S_cm2"]
            seg.pas.e = p["e_pas_mV"]
    if not p["passive"]:
        for sec in cell.somatic:
            sec.insert("hh")
            for seg in sec:
                seg.hh.gnabar = p["gnabar_hh_S_cm2"]
                seg.hh.gkbar = p["gkbar_hh_S_cm2"]
                seg.hh.gl = p["gl_hh_S_cm2"]
                seg.hh.el = p["el_hh_mV"]
    cell.apply_globals()
    return cell

"""Spatial discretisation rules."""
from __future__ import annotations

import math



def lambda_f(sec, freq_hz: float = 100.0) -> float:
    """AC length constant (um) of ``sec`` at ``freq_hz``, as NEURON's ``stdlib.hoc`` ``lambda_f``:
    the 3-D points (if any) are used so tapering sections are handled; ``cm`` and ``Ra`` are the
    section's (cm of its first segment)."""
    cm = sec(0.5).cm
    n3d = int(sec.n3d())
    if n3d < 2:
        return 1e5 * math.sqrt(sec.diam / (4 * math.pi * freq_hz * sec.Ra * cm))
    x1, d1 = sec.arc3d(0), sec.diam3d(0)
    lam = 0.0
    for i in range(1, n3d):
        x2, d2 = sec.arc3d(i), sec.diam3d(i)
        lam += (x2 - x1) / math.sqrt(d1 + d2)
        x1, d1 = x2, d2
    lam *= math.sqrt(2) * 1e-5 * math.sqrt(4 * math.pi * freq_hz * sec.Ra * cm)
    return sec.L / lam


def nseg_d_lambda(sec, d_lambda: float = 0.1, freq_hz: float = 100.0) -> int:
    """Odd nseg so that no segment is longer than ``d_lambda`` times ``lambda_f(freq_hz)``
    (NEURON's ``fixnseg.hoc`` formula ``int((L/(d_lambda*lambda_f)+0.9)/2)*2 + 1``)."""
    return int((sec.L / (d_lambda * lambda_f(sec, freq_hz)) + 0.9) / 2) * 2 + 1


def set_nseg_d_lambda(cell_or_sections, d_lambda: float = 0.1, freq_hz: float = 100.0) -> int:
    """Set nseg of every section (of ``cell.all`` or of an iterable of sections) by the d_lambda
    rule. Set ``cm`` and ``Ra`` first. Returns the total number of segments."""
    secs = _sections(cell_or_sections)
    total = 0
    for sec in secs:
        sec.nseg = nseg_d_lambda(sec, d_lambda, freq_hz)
        total += sec.nseg
    return total


def set_nseg_fixed_length(cell_or_sections, length_um: float = 40.0) -> int:
    """Hay et al. 2011 rule ``nseg = 1 + 2*int(L/length_um)``. Returns the total number of
    segments."""
    total = 0
    for sec in _sections(cell_or_sections):
        sec.nseg = 1 + 2 * int(sec.L / length_um)
        total += sec.nseg
    return total


def _sections(cell_or_sections) -> list:
    if hasattr(cell_or_sections, "all"):
        return list(cell_or_sections.all)
    return list(cell_or_sections)

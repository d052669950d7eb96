"""Dendritic recording (or stimulation) sites, named independently of the cell instance.

A :class:`DendSite` is either a section of the cell by its name without the cell label
(``DendSite("tuft", section="apic[36]", x=0.5)``) or a path distance from ``soma(0.5)`` in one of
the cell's section lists (``DendSite("d620", distance_um=620, section_list="apical")``); for a
distance, the section crossing it with the largest diameter there is taken (as Hay et al. 2011
place the BAC-firing EPSP). Strings: ``"tuft=apic[36](0.5)"``, ``"tuft=apic[36]"`` (x = 0.5) or
``"d620=apical@620"``.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Tuple

_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


def relative_section_name(cell, sec) -> str:
    """``"apic[36]"`` for ``"l5pc_hay2011[0].apic[36]"`` (the name without the cell's label)."""
    name = sec.name()
    prefix = f"{cell.label}."
    return name[len(prefix):] if name.startswith(prefix) else name


def find_site(cell, distance_um: float, section_list: str = "apical") -> Tuple[Any, float]:
    """(section, x) at path distance ``distance_um`` from ``soma(0.5)`` in ``section_list``; among
    the sections crossing that distance, the one with the largest diameter there."""
    from neuron import h

    origin = cell.soma(0.5)
    best = None
    for sec in cell.section_list(section_list):
        d0, d1 = h.distance(origin, sec(0)), h.distance(origin, sec(1))
        lo, hi = min(d0, d1), max(d0, d1)
        if lo <= distance_um <= hi and hi > lo:
            x = (distance_um - d0) / (d1 - d0)
            x = min(max(x, 0.0), 1.0)
            diam = sec(x).diam
            if best is None or diam > best[2]:
                best = (sec, x, diam)
    if best is None:
        raise ValueError(f"no section of list {section_list!r} of {cell.label} reaches {distance_um} um "
                         f"from soma(0.5)")
    return best[0], best[1]


@dataclass(frozen=True)
class DendSite:
    """A named site: ``section`` (+ ``x``) or ``distance_um`` (+ ``section_list``)."""

    name: str
    section: Optional[str] = None
    x: float = 0.5
    distance_um: Optional[float] = None
    section_list: str = "apical"

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ValueError(f"site name {self.name!r}: use letters, digits, '_', '.', '-'")
        if (self.section is None) == (self.distance_um is None):
            raise ValueError(f"site {self.name!r}: give exactly one of section= or distance_um=")
        if not 0.0 <= float(self.x) <= 1.0:
            raise ValueError(f"site {self.name!r}: x must be in [0, 1], got {self.x}")

    @classmethod
    def parse(cls, text: str) -> "DendSite":
        """``NAME=SECTION(X)``, ``NAME=SECTION`` or ``NAME=LIST@DISTANCE_UM``."""
        if "=" not in text:
            raise ValueError(f"dendritic site {text!r}: expected NAME=SECTION(X) or NAME=LIST@DISTANCE_UM")
        name, spec = (s.strip() for s in text.split("=", 1))
        if "@" in spec:
            lst, dist = spec.split("@", 1)
            try:
                return cls(name, distance_um=float(dist.strip().removesuffix("um")), section_list=lst.strip())
            except ValueError as e:
                raise ValueError(f"dendritic site {text!r}: {e}") from None
        m = re.match(r"^(.+?)\(([^()]*)\)$", spec)
        if m:
            return cls(name, section=m.group(1).strip(), x=float(m.group(2)))
        return cls(name, section=spec)

    @classmethod
    def coerce(cls, obj) -> "DendSite":
        """From a DendSite, a string (:meth:`parse`), a dict, or a tuple ``(name, section, x)``."""
        if isinstance(obj, DendSite):
            return obj
        if isinstance(obj, str):
            return cls.parse(obj)
        if isinstance(obj, dict):
            return cls(**obj)
        if isinstance(obj, (tuple, list)):
            return cls(*obj)
        raise TypeError(f"cannot make a dendritic site from {obj!r}")

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def resolve(self, cell):
        """(segment, description dict) on ``cell``; the description (name, section, x, and
        distance_um: path distance from soma(0.5) to the centre of the segment containing x,
        whose voltage is what gets recorded) is what trace files store."""
        from neuron import h

        if self.section is not None:
            sec = next((s for s in cell.all if relative_section_name(cell, s) == self.section), None)
            if sec is None:
                raise ValueError(f"site {self.name!r}: cell {cell.label} has no section {self.section!r}")
            x = float(self.x)
        else:
            sec, x = find_site(cell, float(self.distance_um), self.section_list)
        seg = sec(x)
        info = {"name": self.name, "section": relative_section_name(cell, sec), "x": x,
                "distance_um": float(h.distance(cell.soma(0.5), seg))}
        return seg, info

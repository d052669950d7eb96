"""The :class:`Cell` object shared by every cell builder."""
from __future__ import annotations

import hashlib
import itertools
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

LIST_NAMES = ("somatic", "basal", "apical", "axonal")

_counter = itertools.count()


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class SectionOwner:
    """Object the Python sections of a cell belong to (``sec.cell()``): its ``str`` gives the
    section name prefix (``"ball_and_stick[0].soma[0]"``) and ``.cell`` the :class:`Cell`."""

    def __init__(self, label: str):
        self._label = label
        self._cell_ref = None

    def __str__(self) -> str:
        return self._label

    __repr__ = __str__

    @property
    def cell(self) -> Optional["Cell"]:
        return self._cell_ref() if self._cell_ref is not None else None


@dataclass(frozen=True)
class SomaChild:
    """A section attached to the soma.

    ``parent_x``: where on the soma it attaches; ``child_x``: which of its ends attaches (0 or 1).
    ``first_segment`` is its segment adjacent to the soma and ``ri_MOhm`` the axial resistance
    between that segment's centre and the soma node (``first_segment.ri()``), so the axial
    current from the soma into the child is ``(v_soma - v_first_segment) / ri_MOhm`` in nA
    (mV / MOhm), positive leaving the soma. This is exact when ``parent_x`` is 0.5 with
    ``soma.nseg == 1`` (all children of the built-in cells); otherwise use the soma segment
    ``soma(parent_x)``.
    """

    section: Any
    parent_x: float
    child_x: float

    @property
    def first_segment(self):
        n = self.section.nseg
        x = 0.5 / n if self.child_x == 0 else 1 - 0.5 / n
        return self.section(x)

    @property
    def ri_MOhm(self) -> float:
        return float(self.first_segment.ri())


class Cell:
    """A detailed NEURON cell.

    Attributes:
        name: the builder's name (``"ball_and_stick"``) or a user label.
        label: unique label used as the section name prefix (``"ball_and_stick[0]"``).
        soma: the (first) somatic Section.
        somatic, basal, apical, axonal, all: Python lists of ``h.Section``; ``all`` is
            somatic + basal + apical + axonal + any other sections, in that order.
        params: every parameter used to build the cell (defaults merged with overrides).
        morphology_path: str path of the morphology file (None if built otherwise).
        morphology_sha256: hex sha256 of that file (None if no file).
        extra_lists: other named section lists (e.g. unusual SWC types).
        hoc_object: the hoc template instance for cells made by ``from_hoc_template``.

    The global settings a cell expects (``celsius``, ``v_init``) are in ``params`` as
    ``celsius_degC`` / ``v_init_mV`` when the builder defines them; :meth:`apply_globals` sets
    ``h.celsius`` (builders call it; call it again if something else changed it).
    """

    def __init__(self, name: str, *, somatic=(), basal=(), apical=(), axonal=(), other=(),
                 params: Optional[Dict[str, Any]] = None, morphology_path=None,
                 morphology_sha256: Optional[str] = None, owner: Optional[SectionOwner] = None,
                 hoc_object=None, label: Optional[str] = None):
        self.name = name
        self.label = label or (str(owner) if owner is not None else f"{name}[{next(_counter)}]")
        self._owner = owner
        if owner is not None:
            owner._cell_ref = weakref.ref(self)
        self.hoc_object = hoc_object
        self.somatic: List[Any] = list(somatic)
        self.basal: List[Any] = list(basal)
        self.apical: List[Any] = list(apical)
        self.axonal: List[Any] = list(axonal)
        self.extra_lists: Dict[str, List[Any]] = {}
        self._other: List[Any] = list(other)
        self.params: Dict[str, Any] = dict(params or {})
        self.morphology_path = str(morphology_path) if morphology_path is not None else None
        if morphology_sha256 is None and morphology_path is not None and Path(morphology_path).is_file():
            morphology_sha256 = file_sha256(morphology_path)
        self.morphology_sha256 = morphology_sha256
        self._keep: List[Any] = []  # other NEURON objects to keep alive
        self.rebuild_all()

    # -- section lists ---------------------------------------------------------------------
    def rebuild_all(self) -> None:
        """Recompute ``all`` after sections were added to / removed from the lists."""
        seen, out = set(), []
        for lst in (self.somatic, self.basal, self.apical, self.axonal, self._other,
                    *self.extra_lists.values()):
            for s in lst:
                if s not in seen:
                    seen.add(s)
                    out.append(s)
        self.all: List[Any] = out

    @property
    def soma(self):
        if not self.somatic:
            raise AttributeError(f"cell {self.label} has no somatic section")
        return self.somatic[0]

    @property
    def other(self) -> List[Any]:
        """Sections in no standard list (e.g. SWC types > 4)."""
        return list(self._other)

    def section_list(self, name: str) -> List[Any]:
        """A list by name: somatic/basal/apical/axonal/all/other or an extra list."""
        if name in LIST_NAMES or name == "all":
            return list(getattr(self, name))
        if name == "other":
            return self.other
        if name in self.extra_lists:
            return list(self.extra_lists[name])
        raise KeyError(f"cell {self.label} has no section list {name!r}; available: "
                       f"{', '.join(list(LIST_NAMES) + ['all', 'other'] + list(self.extra_lists))}")

    def section_counts(self) -> Dict[str, int]:
        """``{"somatic": 1, "basal": 58, "apical": 134, "axonal": 1, "all": 194}``."""
        d = {n: len(getattr(self, n)) for n in LIST_NAMES}
        d["all"] = len(self.all)
        return d

    # -- geometry ----------------------------------------------------------------------------
    @property
    def n_segments(self) -> int:
        return int(sum(s.nseg for s in self.all))

    @property
    def n_sections(self) -> int:
        return len(self.all)

    def segments(self) -> Iterator[Any]:
        for s in self.all:
            yield from s

    def total_area_um2(self) -> float:
        return float(sum(seg.area() for seg in self.segments()))

    def total_length_um(self, list_name: str = "all") -> float:
        return float(sum(s.L for s in self.section_list(list_name)))

    def soma_children(self) -> List[SomaChild]:
        """Every section whose parent is a somatic section other than another somatic section,
        with where it attaches; see :class:`SomaChild` for the axial current formula."""
        from neuron import h

        somatic = set(self.somatic)
        out = []
        for sec in self.all:
            if sec in somatic:
                continue
            sref = h.SectionRef(sec=sec)
            if not sref.has_parent():
                continue
            parent = sref.parent
            if parent in somatic:
                out.append(SomaChild(section=sec, parent_x=float(sec.parentseg().x),
                                     child_x=float(sec.orientation())))
        return out

    # -- globals -------------------------------------------------------------------------
    @property
    def v_init_mV(self) -> Optional[float]:
        return self.params.get("v_init_mV")

    @property
    def celsius_degC(self) -> Optional[float]:
        return self.params.get("celsius_degC")

    def apply_globals(self) -> None:
        """Set ``h.celsius`` from ``params["celsius_degC"]`` if the cell defines it."""
        from neuron import h

        if self.params.get("celsius_degC") is not None:
            h.celsius = float(self.params["celsius_degC"])

    def delete_sections(self, sections) -> None:
        """Delete sections from NEURON and from every list of the cell."""
        from neuron import h

        dead = list(sections)
        dead_set = set(dead)

        def purge(lst):
            lst[:] = [s for s in lst if s not in dead_set]

        for lst in (self.somatic, self.basal, self.apical, self.axonal, self._other,
                    *self.extra_lists.values()):
            purge(lst)
        for obj in self._keep:
            if isinstance(obj, list):
                purge(obj)
        if self._owner is not None:
            for val in vars(self._owner).values():
                if isinstance(val, list):
                    purge(val)
        for s in dead:
            h.delete_section(sec=s)
        self.rebuild_all()

    def new_section(self, name: str):
        """Create a Section named ``<label>.<name>`` that belongs to this cell (not yet in any
        list: append it to one and call :meth:`rebuild_all`)."""
        from neuron import h

        if self._owner is None:
            self._owner = SectionOwner(self.label)
            self._owner._cell_ref = weakref.ref(self)
        sec = h.Section(name=name, cell=self._owner)
        return sec

    def keep(self, *objs) -> None:
        """Keep NEURON objects alive as long as the cell."""
        self._keep.extend(objs)

    def info(self) -> Dict[str, Any]:
        """JSON-ready summary (name, morphology, counts, params)."""
        return {"name": self.name, "label": self.label, "morphology_path": self.morphology_path,
                "morphology_sha256": self.morphology_sha256, "n_sections": self.n_sections,
                "n_segments": self.n_segments, "section_counts": self.section_counts(),
                "params": dict(self.params)}

    def __repr__(self) -> str:
        c = self.section_counts()
        return (f"<Cell {self.label}: {c['all']} sections ({c['somatic']} soma, {c['basal']} basal, "
                f"{c['apical']} apical, {c['axonal']} axonal), {self.n_segments} segments>")

    __str__ = __repr__

"""Checks that NEURON mechanisms are loaded, and helpers to set their parameters."""
from __future__ import annotations

from typing import Iterable, Set


class MechanismError(RuntimeError):
    """A mechanism needed to build a cell is not loaded into NEURON."""


def _mechanism_names(mechanism_type: int) -> Set[str]:
    """Names NEURON's MechanismType(0: density, 1: point process) knows about now."""
    from neuron import h

    mt = h.MechanismType(mechanism_type)
    names = set()
    sref = h.ref("")
    for i in range(int(mt.count())):
        mt.select(i)
        mt.selected(sref)
        names.add(sref[0])
    return names


def loaded_density_mechanisms() -> Set[str]:
    """Names of the density mechanisms (``SUFFIX``) NEURON knows about now."""
    return _mechanism_names(0)


def loaded_point_processes() -> Set[str]:
    """Names of the point processes NEURON knows about now."""
    return _mechanism_names(1)


def require_mechanisms(names: Iterable[str], what: str = "this cell") -> None:
    """Raise :class:`MechanismError` listing every mechanism of ``names`` that is not loaded."""
    have = loaded_density_mechanisms() | loaded_point_processes()
    missing = [n for n in names if n not in have]
    if missing:
        raise MechanismError(
            f"{what} needs NEURON mechanism(s) {', '.join(missing)}, which are not loaded. "
            f"Call neuron_hybrid.load_mechanisms() (it compiles every .mod under mod/) before "
            f"building, or pass extra_mod_dirs=[...] for your own .mod files.")


def set_mech_param(sec, mech: str, param: str, value: float) -> None:
    """Set ``param`` of density mechanism ``mech`` in every segment of ``sec``; falls back to the
    GLOBAL ``h.<param>_<mech>`` if ``param`` is not a RANGE variable."""
    from neuron import h

    rng = f"{param}_{mech}"
    try:
        for seg in sec:
            setattr(seg, rng, value)
        return
    except (AttributeError, NameError, ValueError, LookupError):
        pass
    if hasattr(h, rng):
        setattr(h, rng, value)
        return
    raise MechanismError(f"mechanism {mech!r} has no parameter {param!r} (neither RANGE "
                         f"{rng} in section {sec.name()} nor GLOBAL {rng})")

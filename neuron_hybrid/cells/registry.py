"""Registry of cell builders, and ways to make user cells."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .cell import Cell
from .morphology import load_morphology

Builder = Callable[..., Cell]


class CellError(ValueError):
    """Unknown cell name or parameter."""


@dataclass(frozen=True)
class _Entry:
    name: str
    builder: Builder
    description: str


_REGISTRY: Dict[str, _Entry] = {}


def register_cell(name: str, builder: Builder, description: Optional[str] = None, *,
                  replace: bool = False) -> None:
    """Register ``builder(**overrides) -> Cell`` under ``name`` so that ``build(name, ...)``
    finds it. ``description`` defaults to the first line of the builder's docstring."""
    if not isinstance(name, str) or not name:
        raise CellError("cell name must be a non-empty string")
    if not callable(builder):
        raise CellError(f"builder for {name!r} is not callable")
    if name in _REGISTRY and not replace:
        raise CellError(f"a cell named {name!r} is already registered (pass replace=True)")
    if description is None:
        doc = inspect.getdoc(builder) or ""
        description = doc.strip().splitlines()[0] if doc.strip() else name
    _REGISTRY[name] = _Entry(name, builder, description)


def unregister_cell(name: str) -> None:
    _REGISTRY.pop(name, None)


def available_cells() -> List[Tuple[str, str]]:
    """``[(name, one-line description), ...]`` of every registered cell, sorted by name."""
    _ensure_builtins()
    return sorted((e.name, e.description) for e in _REGISTRY.values())


def build(name: str, **overrides) -> Cell:
    """Build the registered cell ``name`` with parameter overrides (see the builder's
    ``DEFAULTS``; unknown parameter names are an error that lists the allowed ones)."""
    _ensure_builtins()
    if name not in _REGISTRY:
        raise CellError(f"unknown cell {name!r}; available: "
                        f"{', '.join(n for n, _ in available_cells())}")
    cell = _REGISTRY[name].builder(**overrides)
    if not isinstance(cell, Cell):
        raise CellError(f"builder of {name!r} returned {type(cell).__name__}, not a Cell")
    return cell


def merge_params(defaults: Mapping[str, Any], overrides: Mapping[str, Any], what: str) -> Dict[str, Any]:
    """``defaults`` updated with ``overrides``; an unknown key raises :class:`CellError`."""
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise CellError(f"{what}: unknown parameter(s) {', '.join(unknown)}; allowed: "
                        f"{', '.join(sorted(defaults))}")
    p = dict(defaults)
    p.update(overrides)
    return p


def from_morphology(path: Union[str, Path], biophysics: Optional[Callable[[Cell], None]] = None,
                    params: Optional[Mapping[str, Any]] = None, name: Optional[str] = None,
                    d_lambda: Optional[float] = None, freq_hz: float = 100.0) -> Cell:
    """A user cell: load ``path`` (SWC/ASC) with Import3d, store ``params`` in ``cell.params``,
    then call ``biophysics(cell)`` (which inserts mechanisms and may read ``cell.params``).

    If ``d_lambda`` is given, nseg is set by the d_lambda rule *after* ``biophysics`` (so the
    cm and Ra it set are used; uniform parameters survive the nseg change, but set distance-
    dependent ones in ``biophysics`` only if you leave ``d_lambda=None`` and set nseg
    yourself).
    """
    from .nseg import set_nseg_d_lambda

    cell = load_morphology(path, name=name)
    cell.params = dict(params or {})
    if biophysics is not None:
        biophysics(cell)
    if d_lambda is not None:
        set_nseg_d_lambda(cell, d_lambda=d_lambda, freq_hz=freq_hz)
        cell.params.setdefault("d_lambda", d_lambda)
        cell.params.setdefault("d_lambda_freq_hz", freq_hz)
    cell.apply_globals()
    return cell


_LIST_ALIASES = {"somatic": ("soma",), "basal": ("dend",), "apical": ("apic",), "axonal": ("axon",)}


def from_hoc_template(hoc_file: Union[str, Path], template_name: str, mod_dir=None,
                      args: Sequence[Any] = (), name: Optional[str] = None,
                      params: Optional[Mapping[str, Any]] = None,
                      morphology_path: Optional[Union[str, Path]] = None) -> Cell:
    """Wrap a cell defined by a hoc template (e.g. a ModelDB model) as a :class:`Cell`.

    ``mod_dir``: a folder (or list) of the model's .mod files; they are compiled and loaded with
    ``neuron_hybrid.load_mechanisms(extra_mod_dirs=...)`` (NEURON loads mechanisms once per
    process, so do this before anything else is loaded). The template is loaded with
    ``h.load_file`` and instantiated as ``h.<template_name>(*args)``. Section lists are taken
    from the template's ``somatic/basal/apical/axonal/all`` SectionLists when it has them,
    otherwise from its ``soma/dend/apic/axon`` section arrays.
    """
    from neuron import h

    hoc_file = Path(hoc_file)
    if not hoc_file.is_file():
        raise FileNotFoundError(f"hoc file {hoc_file} does not exist")
    if mod_dir is not None:
        import neuron_hybrid

        dirs = [mod_dir] if isinstance(mod_dir, (str, Path)) else list(mod_dir)
        neuron_hybrid.load_mechanisms(extra_mod_dirs=[str(d) for d in dirs])
    h.load_file("stdrun.hoc")
    h.load_file("import3d.hoc")
    if not h.name_declared(template_name):
        ok = h.load_file(str(hoc_file))
        if not ok:
            raise RuntimeError(f"NEURON could not load hoc file {hoc_file}")
    if not h.name_declared(template_name):
        raise CellError(f"hoc file {hoc_file} does not define a template named {template_name!r}")
    try:
        obj = getattr(h, template_name)(*args)
    except Exception as e:
        raise RuntimeError(f"instantiating hoc template {template_name} from {hoc_file} failed: {e}"
                           ) from None
    lists: Dict[str, List[Any]] = {}
    for lname, aliases in _LIST_ALIASES.items():
        secs: List[Any] = []
        sl = getattr(obj, lname, None)
        if sl is not None and hasattr(sl, "__iter__") and not isinstance(sl, str):
            try:
                secs = list(sl)
            except Exception:
                secs = []
        if not secs:
            for alias in aliases:
                arr = getattr(obj, alias, None)
                if arr is None:
                    continue
                try:
                    secs = list(arr)
                except TypeError:
                    secs = [arr]
                break
        lists[lname] = secs
    known = {s for v in lists.values() for s in v}
    other = []
    all_sl = getattr(obj, "all", None)
    if all_sl is not None:
        try:
            other = [s for s in all_sl if s not in known]
        except Exception:
            other = []
    cell = Cell(name or template_name, **lists, other=other, params=params,
                morphology_path=morphology_path, hoc_object=obj,
                label=str(obj))
    cell.params.setdefault("hoc_file", str(hoc_file.resolve()))
    cell.params.setdefault("template_name", template_name)
    cell.apply_globals()
    return cell


_builtins_loaded = False


def _ensure_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        from . import builtin  # noqa: F401  (registers the built-in cells)

"""Picklable builders for users' own cells, and the JSON *source* that rebuilds any cell later.

A reduction records where its full cell came from (``metadata.json`` -> ``cell_source``) so that
``neuron-hybrid benchmark`` can rebuild it in another process or session:

- ``{"kind": "builtin", "name": "ca1_pospischil"}``: a registered cell;
- ``{"kind": "morphology", "path": ..., "biophysics": "module:function", "d_lambda": ...}``:
  :class:`MorphologyBuilder` (a morphology file + a Python function inserting the channels);
- ``{"kind": "hoc", "path": ..., "template": ..., "args": [...], "mod_dirs": [...]}``:
  :class:`HocTemplateBuilder` (a hoc template, e.g. from ModelDB, + its MOD files);
- ``{"kind": "function", "function": "module:qualname"}``: any importable builder function.

Builders defined in a script (``__main__``) or as lambdas cannot be found again; their source is
``None`` and the benchmark asks for the builder explicitly (``run_benchmark(..., cell=builder)``).
"""
import importlib
import os
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from .registry import CellError


def import_function(spec: str, what: str = "function") -> Callable:
    """``"module:function"`` (dotted names allowed on both sides) -> the callable, or a CellError naming the fix."""
    module, _, name = str(spec).partition(":")
    if not module or not name:
        raise CellError(f"{what} {spec!r}: expected module:function, e.g. mycells:insert_channels")
    try:
        obj = importlib.import_module(module)
    except ImportError as exc:
        cwd, top = os.getcwd(), module.split(".")[0]
        in_cwd = Path(cwd, top + ".py").is_file() or Path(cwd, top).is_dir()
        if cwd in sys.path or not in_cwd:
            raise CellError(f"{what} {spec!r}: cannot import {module!r} ({exc}); put it in the current folder or "
                            "add its folder to PYTHONPATH") from None
        sys.path.insert(0, cwd)  # the console script does not search the current folder; worker processes inherit this
        return import_function(spec, what)
    for part in name.split("."):
        obj = getattr(obj, part, None)
    if not callable(obj):
        raise CellError(f"{what} {spec!r}: module {module!r} has no function {name!r}")
    return obj


def function_spec(fn) -> Optional[str]:
    """``"module:qualname"`` of an importable function, or None (defined in ``__main__``, a lambda, a closure)."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    try:
        found = import_function(f"{module}:{qualname}")
    except CellError:
        return None
    return f"{module}:{qualname}" if found is fn else None


class MorphologyBuilder:
    """A user cell from a morphology file (SWC/ASC, um) and a biophysics function ``f(cell)`` or its
    ``"module:function"`` spec; picklable for worker processes. Calls ``cells.from_morphology``."""

    def __init__(self, path: Union[str, Path], biophysics: Union[str, Callable], d_lambda: Optional[float] = None):
        self.path = str(Path(path).resolve())
        if not Path(self.path).is_file():
            raise FileNotFoundError(f"morphology file {path} does not exist")
        self.biophysics = import_function(biophysics, "biophysics") if isinstance(biophysics, str) else biophysics
        self.d_lambda = d_lambda
        self.__name__ = Path(self.path).stem

    def __call__(self, **params):
        from .registry import from_morphology

        return from_morphology(self.path, biophysics=self.biophysics, params=params or None, d_lambda=self.d_lambda)

    def __repr__(self):
        return f"MorphologyBuilder({self.path!r}, {function_spec(self.biophysics) or self.biophysics!r})"

    def source(self) -> Optional[dict]:
        spec = function_spec(self.biophysics)
        if spec is None:
            return None
        return {"kind": "morphology", "path": self.path, "biophysics": spec, "d_lambda": self.d_lambda}


class HocTemplateBuilder:
    """A user cell from a hoc template (``h.<template>(*args)``) and the folders of its MOD files;
    picklable for worker processes. Calls ``cells.from_hoc_template``."""

    def __init__(self, path: Union[str, Path], template: str, mod_dirs: Sequence = (), args: Sequence = ()):
        self.path = str(Path(path).resolve())
        if not Path(self.path).is_file():
            raise FileNotFoundError(f"hoc file {path} does not exist")
        self.template = template
        self.mod_dirs = [str(Path(d).resolve()) for d in mod_dirs]
        self.args = list(args)
        self.__name__ = template

    def __call__(self, **params):
        from .registry import from_hoc_template

        return from_hoc_template(self.path, self.template, mod_dir=self.mod_dirs or None, args=self.args,
                                 params=params or None)

    def __repr__(self):
        return f"HocTemplateBuilder({self.path!r}, {self.template!r}, mod_dirs={self.mod_dirs}, args={self.args})"

    def source(self) -> dict:
        return {"kind": "hoc", "path": self.path, "template": self.template, "args": self.args,
                "mod_dirs": self.mod_dirs}


def builder_source(cell) -> Optional[dict]:
    """The JSON source that rebuilds `cell` (a registered name or a builder), or None if it cannot be found again."""
    if isinstance(cell, str):
        return {"kind": "builtin", "name": cell}
    if hasattr(cell, "source"):
        return cell.source()
    spec = function_spec(cell)
    return None if spec is None else {"kind": "function", "function": spec}


def builder_from_source(source: Optional[dict], label: str = "the model's full cell"):
    """Inverse of :func:`builder_source`: a registered name (str) or a builder callable."""
    if not source:
        raise CellError(f"{label} was built by a function that cannot be imported again (defined in a script or a "
                        "lambda); pass it explicitly, e.g. run_benchmark(model_dir, cell=my_builder)")
    kind = source.get("kind")
    if kind == "builtin":
        return source["name"]
    if kind == "morphology":
        return MorphologyBuilder(source["path"], source["biophysics"], source.get("d_lambda"))
    if kind == "hoc":
        return HocTemplateBuilder(source["path"], source["template"], source.get("mod_dirs", ()), source.get("args", ()))
    if kind == "function":
        return import_function(source["function"], "cell builder")
    raise CellError(f"{label}: unknown cell source kind {kind!r} in {source}")

"""Morphology import with NEURON's own ``Import3d`` (SWC and Neurolucida ASC)."""
from __future__ import annotations

import os
import re
import sys
import tempfile
import io
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Optional, Union

from .cell import Cell, SectionOwner, file_sha256

_READERS = {".swc": "Import3d_SWC_read", ".asc": "Import3d_Neurolucida3"}


class MorphologyError(RuntimeError):
    """A morphology file is missing, of an unknown format, or does not load."""


def _c_fflush() -> None:
    """Flush C stdio buffers (NEURON prints with printf; when stdout is a file it is fully
    buffered and would otherwise be written after the fds are restored)."""
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except Exception:  # pragma: no cover
        pass


@contextmanager
def _capture_fds():
    """Capture what NEURON's C code prints to fd 1 and 2 (hoc errors go there)."""
    out = {"text": ""}
    sys.stdout.flush()
    sys.stderr.flush()
    _c_fflush()
    saved = [os.dup(1), os.dup(2)]
    # NEURON started from Python prints through Python's sys.stdout/stderr; its C code may
    # also write to the file descriptors directly: capture both.
    py_out = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            try:
                with redirect_stdout(py_out), redirect_stderr(py_out):
                    yield out
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                _c_fflush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                tmp.seek(0)
                out["text"] = py_out.getvalue() + tmp.read().decode("utf-8", "replace")
        finally:
            for fd in saved:
                os.close(fd)


def _h():
    from neuron import h

    h.load_file("stdlib.hoc")
    h.load_file("import3d.hoc")
    return h


def _unique_label(name: str) -> str:
    from .cell import _counter

    return f"{name}[{next(_counter)}]"


def load_morphology(path: Union[str, Path], name: Optional[str] = None, *, fmt: Optional[str] = None,
                    strict: bool = True) -> Cell:
    """Load an SWC (``.swc``) or Neurolucida ASCII (``.asc``) file with NEURON's ``Import3d``.

    Returns a :class:`~neuron_hybrid.cells.Cell` with geometry only (no mechanisms; NEURON's
    defaults cm = 1 uF/cm2, Ra = 35.4 Ohm cm, nseg = 1). Import3d's section names map to
    the lists: ``soma`` -> somatic, ``dend`` -> basal, ``apic`` -> apical, ``axon`` -> axonal,
    anything else (e.g. SWC types > 4) -> ``cell.other`` / ``cell.extra_lists``.

    ``fmt`` ("swc" or "asc") overrides the file suffix. With ``strict`` (default) a reader
    message such as "could not parse" is an error. Raises :class:`MorphologyError` naming the
    file and the reason (the hoc error text included) when the file is missing, empty, of an
    unknown format, does not parse, or gives no soma.
    """
    path = Path(path)
    name = name or path.stem
    if not path.exists():
        raise MorphologyError(f"morphology file {path} does not exist")
    if not path.is_file():
        raise MorphologyError(f"morphology file {path} is not a regular file")
    suffix = "." + fmt.lower().lstrip(".") if fmt else path.suffix.lower()
    if suffix not in _READERS:
        raise MorphologyError(
            f"morphology file {path}: unknown format {suffix!r}; supported: .swc, .asc "
            f"(or pass fmt='swc'/'asc')")
    if path.stat().st_size == 0:
        raise MorphologyError(f"morphology file {path} is empty")
    if suffix == ".swc":
        _check_swc(path)  # NEURON 9's SWC reader can crash the process on some bad files
    h = _h()
    owner = SectionOwner(_unique_label(name))
    reason = None
    with _capture_fds() as cap:
        try:
            reader = getattr(h, _READERS[suffix])()
            reader.quiet = 1
            reader.input(str(path))
            gui = h.Import3d_GUI(reader, False)
            gui.instantiate(owner)
        except Exception as e:  # hoc errors arrive as RuntimeError
            reason = str(e)
    messages = _clean_messages(cap["text"])
    if reason is None and strict and re.search(r"could not parse|parse error|error", messages, re.I):
        reason = "the reader reported errors"
    if reason is None and not getattr(owner, "soma", None):
        reason = ("no soma section was created (no soma points/contour, or the tree could not be "
                  "built)")
    if reason is not None:
        _delete_owner_sections(owner)
        detail = f"\nNEURON/Import3d said:\n{messages}" if messages else ""
        raise MorphologyError(f"morphology file {path} did not load: {reason}{detail}")
    return _cell_from_owner(owner, name, path)


def _check_swc(path: Path) -> None:
    """Validate an SWC file the way Import3d_SWC_read does, in Python, so that bad files give a
    clear error instead of a hoc error (or a segmentation fault: NEURON 9.0.2 crashes on a
    parent id that does not exist). Rules: data lines have 7 numbers (id type x y z r parent);
    '#' lines and blank lines are ignored; ids are unique and, sorted, consecutive; every parent
    id is -1 (root) or smaller than the sample's id."""
    rows = []
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise MorphologyError(f"morphology file {path} cannot be read: {e}") from None
    bad = []
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts = stripped.split()
        try:
            vals = [float(v) for v in parts[:7]]
            if len(vals) < 7:
                raise ValueError
        except ValueError:
            bad.append(f"line {lineno}: could not parse {stripped[:60]!r} (expected 7 numbers: "
                       f"id type x y z radius parent)")
            continue
        rows.append((lineno, vals))
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise MorphologyError(f"morphology file {path} is not a valid SWC file:\n  "
                              + "\n  ".join(bad[:5]) + more)
    if not rows:
        raise MorphologyError(f"morphology file {path} has no SWC data lines")
    ids = [int(v[0]) for _, v in rows]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise MorphologyError(f"morphology file {path}: duplicate sample id(s) {dup}")
    sids = sorted(ids)
    if sids != list(range(sids[0], sids[0] + len(sids))):
        raise MorphologyError(f"morphology file {path}: sample ids are not consecutive")
    for lineno, v in rows:
        pid, i = int(v[6]), int(v[0])
        if pid >= 0 and pid >= i:
            raise MorphologyError(
                f"morphology file {path} line {lineno}: parent id {pid} is not smaller than "
                f"sample id {i} (NEURON's Import3d needs parents listed first)")
        if 0 <= pid < sids[0]:
            raise MorphologyError(
                f"morphology file {path} line {lineno}: parent id {pid} does not exist")
    if not any(int(v[1]) == 1 for _, v in rows):
        raise MorphologyError(f"morphology file {path}: no soma sample (SWC type 1)")


def _clean_messages(text: str, max_lines: int = 15) -> str:
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if "DISPLAY" not in ln and "No graphics" not in ln]
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"... ({len(lines) - max_lines} more lines)"]
    return "\n".join("  " + ln for ln in lines)


def _delete_owner_sections(owner) -> None:
    """Drop the sections a failed import created (they are deleted with their last reference)."""
    for attr, val in list(vars(owner).items()):
        if isinstance(val, list):
            setattr(owner, attr, [])


_STANDARD = {"soma": "somatic", "dend": "basal", "apic": "apical", "axon": "axonal"}


def _cell_from_owner(owner: SectionOwner, name: str, path: Path) -> Cell:
    from neuron import nrn

    lists = {"somatic": [], "basal": [], "apical": [], "axonal": []}
    extra = {}
    for attr, val in vars(owner).items():
        if attr.startswith("_") or attr == "all" or not isinstance(val, list):
            continue
        if not all(isinstance(s, nrn.Section) for s in val):
            continue
        if attr in _STANDARD:
            lists[_STANDARD[attr]].extend(val)
        else:
            extra[attr] = list(val)
    cell = Cell(name, **lists, owner=owner, morphology_path=path.resolve(),
                morphology_sha256=file_sha256(path))
    cell.extra_lists.update(extra)
    cell.rebuild_all()
    # drop Import3d's own attributes (the Cell's lists are the reference); keep sections alive
    cell.keep(*[v for v in vars(owner).values() if isinstance(v, list)])
    return cell

"""The files that MOD files include, so that they compile in a build folder as they do beside their source.

A MOD file may pull in other files: NMODL's ``INCLUDE "aux_fun.inc"`` (nocmodl looks next to the MOD
file, then in the folders of ``$MODL_INCLUDE``) and, in VERBATIM blocks, C's ``#include "x.h"``. neuron-hybrid
compiles MOD files in its own cached folder, so these files are found here, copied beside the MOD files
and hashed into the cache key (an edited ``.inc`` rebuilds the library).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["included_files", "included_by", "copy_included_files", "without_comment_blocks"]

_COMMENT_BLOCK = re.compile(r"(?ms)^\s*COMMENT\b.*?^\s*ENDCOMMENT\b")
_NMODL_INCLUDE = re.compile(r'(?m)^\s*INCLUDE\s+"([^"]+)"')
_C_INCLUDE = re.compile(r'(?m)^\s*#\s*include\s+"([^"]+)"')


def without_comment_blocks(text: str) -> str:
    """MOD text without its COMMENT ... ENDCOMMENT blocks."""
    return _COMMENT_BLOCK.sub("", text)


def _search_dirs(own_dir: Path | None, search_dirs) -> list[Path]:
    env = [Path(p) for p in os.environ.get("MODL_INCLUDE", "").split(":") if p]
    out = []
    for d in [*([own_dir] if own_dir is not None else []), *map(Path, search_dirs), *env]:
        if d not in out:
            out.append(d)
    return out


def included_files(text: str, own_dir=None, search_dirs=(), *, name: str = "the MOD file") -> dict[str, Path]:
    """``{name as written: file}`` for everything ``text`` includes, recursively.

    text: MOD source. own_dir: the folder of the MOD file (looked in first, as nocmodl does); search_dirs:
    further folders (``--mod-dir``). An NMODL ``INCLUDE`` that is found nowhere raises ``BuildError`` naming the
    file and the fix; a C ``#include "x.h"`` that is not found is left to the C++ compiler (NEURON's own headers,
    e.g. ``nrnran123.h``, are included that way).
    """
    from .build import BuildError

    found: dict[str, Path] = {}
    todo = [(text, Path(own_dir) if own_dir is not None else None, name)]
    while todo:
        src, here, who = todo.pop()
        src = without_comment_blocks(src)
        dirs = _search_dirs(here, search_dirs)
        for pattern, required in ((_NMODL_INCLUDE, True), (_C_INCLUDE, False)):
            for inc in pattern.findall(src):
                if inc in found:
                    continue
                cands = [Path(inc)] if Path(inc).is_absolute() else [d / inc for d in dirs]
                path = next((p for p in cands if p.is_file()), None)
                if path is None:
                    if required:
                        where = ", ".join(str(d) for d in dirs) or "no folder (the MOD text has no file location)"
                        raise BuildError(
                            f'{who} has INCLUDE "{inc}", which was not found (looked in: {where}); put {inc} beside '
                            "the .mod file, or pass the folder that holds it with --mod-dir (or $MODL_INCLUDE)")
                    continue
                found[inc] = path
                todo.append((path.read_text(errors="replace"), path.parent, str(path)))
    return found


def included_by(sources, search_dirs=()) -> dict[str, Path]:
    """:func:`included_files` of several MOD files compiled together, merged. sources: ``(text, own_dir, name)``
    per MOD file. Two different files included under one name raise ``BuildError`` (they would share a folder)."""
    from .build import BuildError

    out: dict[str, Path] = {}
    for text, own_dir, name in sources:
        for inc, path in included_files(text, own_dir, search_dirs, name=name).items():
            if inc in out and out[inc].read_bytes() != path.read_bytes():
                raise BuildError(f'two different files are included as "{inc}": {out[inc]} and {path}; MOD files '
                                 "compiled together share one folder, so rename one of them")
            out[inc] = path
    return out


def copy_included_files(includes: dict[str, Path], mod_dir: Path) -> None:
    """Copy ``includes`` (from :func:`included_files`) into ``mod_dir`` under the names they are included by
    (``"../common/x.inc"`` lands beside ``mod_dir``, in the build folder, which is as far up as a copy may go)."""
    from .build import BuildError

    root = mod_dir.resolve().parent
    for inc, src in includes.items():
        if Path(inc).is_absolute():
            continue  # found by its absolute path wherever the MOD file is compiled
        dst = (mod_dir / inc).resolve()
        if root not in dst.parents:
            raise BuildError(f'INCLUDE "{inc}" climbs more than one folder above the MOD file; copy {src} beside '
                             f'the .mod file and include it as "{Path(inc).name}"')
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())

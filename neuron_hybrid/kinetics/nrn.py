"""Making a channel mechanism available in this NEURON process.

NEURON registers a mechanism name once per process and cannot unload it. A channel given by its
MOD file is therefore used as follows:

* its SUFFIX is already registered (NEURON built-in, or loaded earlier) and the loaded source is
  this very text: use it;
* not registered: if it is one of neuron-hybrid's own MOD files and the neuron-hybrid library is not
  loaded yet, load that library (cached); otherwise compile the file (with the other MOD files of
  ``mod_dirs``) on its own into a cached library (``$NEURON_HYBRID_CACHE/kinetics-<hash>``) and load it;
* registered with a *different* text (an edited copy of NEURON's ``hh.mod``, a published file whose
  SUFFIX is also one of neuron-hybrid's, such as ``Ih``): return ``False``; the caller compiles the text
  under a unique name (:func:`renamed_mod_text`).
"""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

from ..runtime.build import BuildError, _file_lock, _nrnivmodl, _run, cache_root, loaded_library, package_mod_dir

__all__ = ["mechanism_registered", "ensure_mechanism", "compile_mod_files", "renamed_mod_text", "BuildError"]

_loaded_texts: dict[str, str] = {}  # suffix -> source text we loaded ourselves


def mechanism_registered(h, suffix: str) -> bool:
    """True if a density mechanism or point process named ``suffix`` exists in this process."""
    mt = h.MechanismType(0)
    name = h.ref("")
    for i in range(int(mt.count())):
        mt.select(i)
        mt.selected(name)
        if name[0] == suffix:
            return True
    mt = h.MechanismType(1)
    for i in range(int(mt.count())):
        mt.select(i)
        mt.selected(name)
        if name[0] == suffix:
            return True
    return False


def _norm(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def _loaded_source(suffix: str) -> str | None:
    if suffix in _loaded_texts:
        return _loaded_texts[suffix]
    lib = loaded_library()
    if lib is not None:
        for p in (lib.directory / "mod").glob("*.mod") if (lib.directory / "mod").is_dir() else ():
            if p.stem == suffix:
                return p.read_text()
        for p in package_mod_dir().rglob(f"{suffix}.mod"):
            return p.read_text()
    return None


def compile_mod_files(files: dict[str, str], *, include_dirs=(), verbose: bool = False) -> Path:
    """Compile ``{file name: MOD text}`` alone with nrnivmodl into a cached folder; returns the folder.

    include_dirs: folders where the files that the texts INCLUDE are found (the MOD files' own folders).
    The folder (``$NEURON_HYBRID_CACHE/kinetics-<hash>``) holds ``<arch>/libnrnmech.so``; load it with
    ``neuron.load_mechanisms(folder)``.
    """
    import neuron

    from ..runtime.includes import copy_included_files, included_by

    includes = included_by(((text, None, name) for name, text in files.items()), include_dirs)
    hsh = hashlib.sha256()
    for name in sorted(files):
        hsh.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    for inc in sorted(includes):
        hsh.update(inc.encode() + b"\0" + includes[inc].read_bytes() + b"\0")
    hsh.update(f"{neuron.__version__}|{sys.version}|{platform.machine()}".encode())
    key = hsh.hexdigest()[:16]
    target = cache_root() / f"kinetics-{key}"
    lib = target / platform.machine() / "libnrnmech.so"
    if lib.is_file():
        return target
    with _file_lock(cache_root() / f"kinetics-{key}.lock"):
        if lib.is_file():
            return target
        work = Path(tempfile.mkdtemp(prefix=f"kinetics-{key}-", dir=cache_root()))
        (work / "mod").mkdir()
        for name, text in files.items():
            (work / "mod" / name).write_text(text)
        copy_included_files(includes, work / "mod")
        if verbose:
            print(f"neuron-hybrid: compiling {', '.join(sorted(files))} in {work}", file=sys.stderr)
        _run([_nrnivmodl(), "-incflags", f"-I{work / 'mod'}", "mod"], work, work / "build.log",
             f"compiling {', '.join(sorted(files))} with nrnivmodl")
        if not (work / platform.machine() / "libnrnmech.so").is_file():
            raise BuildError(f"nrnivmodl produced no library; see {work / 'build.log'}")
        if target.exists():
            shutil.rmtree(target)
        os.replace(work, target)
    return target


def _declared_name(path=None, text: str | None = None) -> str | None:
    """The SUFFIX / POINT_PROCESS name declared in a MOD file or text (comments ignored), or None."""
    import re

    from ..runtime.includes import without_comment_blocks

    if text is None:
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            return None
    text = without_comment_blocks(text)
    text = "\n".join(line.split(":", 1)[0] for line in text.splitlines())
    m = re.search(r"\b(?:SUFFIX|POINT_PROCESS|ARTIFICIAL_CELL)\s+(\w+)", text)
    return m.group(1) if m else None


def ensure_mechanism(h, suffix: str, text: str | None, mod_dirs=(), *, verbose: bool = False,
                     skip_name: str | None = None, source_dir=None) -> bool:
    """Make ``suffix`` usable in this process (see the module docstring).

    ``text`` is the MOD source (None for a mechanism given by name). Returns False when a different
    mechanism of that name is already loaded (the caller compiles it under another name, see
    :func:`renamed_mod_text`). ``skip_name``: a mechanism name not to compile from ``mod_dirs`` (the
    original name of a renamed channel). ``source_dir``: the folder of the channel's MOD file (where the files
    it INCLUDEs are looked for first).
    """
    import neuron

    if mechanism_registered(h, suffix):
        if text is None:
            return True
        src = _loaded_source(suffix)
        return src is not None and _norm(src) == _norm(text)
    if text is None:
        for d in mod_dirs:
            p = Path(d) / f"{suffix}.mod"
            if p.is_file():
                text = p.read_text()
                break
        else:
            raise ValueError(
                f"no mechanism named {suffix!r} is loaded and no {suffix}.mod was found in --mod-dir {list(map(str, mod_dirs))}; "
                "pass the path of the channel's .mod file")
    ours = list(package_mod_dir().rglob(f"{suffix}.mod"))
    if ours and _norm(ours[0].read_text()) == _norm(text) and loaded_library() is None:
        from ..runtime.build import load_mechanisms

        load_mechanisms(verbose=verbose)
        return mechanism_registered(h, suffix)
    files = {f"{suffix}.mod": text}
    for d in mod_dirs:
        for p in sorted(Path(d).glob("*.mod")):
            other = _declared_name(p) or p.stem  # the file name need not match its SUFFIX (kdrca1.mod: SUFFIX kdr)
            if other in (suffix, skip_name) or _norm(p.read_text()) == _norm(text) or mechanism_registered(h, other):
                continue
            files.setdefault(p.name if p.stem != suffix else f"{other}_.mod", p.read_text())
    folder = compile_mod_files(files, include_dirs=[*([source_dir] if source_dir else []), *mod_dirs], verbose=verbose)
    if not neuron.load_mechanisms(str(folder), warn_if_already_loaded=False):
        raise BuildError(f"NEURON could not load {folder}")
    for name, t in files.items():
        _loaded_texts[_declared_name(text=t) or Path(name).stem] = t
    if not mechanism_registered(h, suffix):
        raise BuildError(f"{suffix} was compiled but is not registered; does the file's SUFFIX match its name?")
    return True


def renamed_mod_text(text: str, suffix: str, new: str) -> str:
    """``text`` with its ``SUFFIX``/``POINT_PROCESS`` name ``suffix`` replaced by ``new`` (comments untouched
    elsewhere do not matter: only the declaration names the mechanism)."""
    import re

    out, n = re.subn(r"(\b(?:SUFFIX|POINT_PROCESS)\s+)" + re.escape(suffix) + r"\b", lambda m: m.group(1) + new, text)
    if n == 0:
        raise ValueError(f"could not find 'SUFFIX {suffix}' in the MOD text to rename it")
    return out

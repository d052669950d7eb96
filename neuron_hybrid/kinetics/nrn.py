"""Making a channel mechanism available in this NEURON process.

NEURON registers a mechanism name once per process and cannot unload it. A channel given by its
MOD file is therefore used as follows:

* its SUFFIX is already registered (NEURON built-in, or loaded earlier) and the loaded source is
  this very text: use it;
* not registered: if it is one of neuron-hybrid's own MOD files and the neuron-hybrid library is not
  loaded yet, load that library (cached); otherwise compile the file (with the other MOD files of
  ``mod_dirs``) on its own into a cached library (``$NEURON_HYBRID_CACHE/kinetics-<hash>``) and load it;
* registered with a *different* text (e.g. an edited copy of ``hh_nh.mod``): return ``None``; the
  caller runs the measurement in a fresh Python process (:func:`run_isolated`).
"""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..runtime.build import BuildError, _file_lock, _nrnivmodl, _run, cache_root, loaded_library, package_mod_dir

__all__ = ["mechanism_registered", "ensure_mechanism", "compile_mod_files", "BuildError"]

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


def compile_mod_files(files: dict[str, str], *, verbose: bool = False) -> Path:
    """Compile ``{file name: MOD text}`` alone with nrnivmodl into a cached folder; returns the folder.

    The folder (``$NEURON_HYBRID_CACHE/kinetics-<hash>``) holds ``<arch>/libnrnmech.so``; load it with
    ``neuron.load_mechanisms(folder)``.
    """
    import neuron

    hsh = hashlib.sha256()
    for name in sorted(files):
        hsh.update(name.encode() + b"\0" + files[name].encode() + b"\0")
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
        if verbose:
            print(f"neuron-hybrid: compiling {', '.join(sorted(files))} in {work}", file=sys.stderr)
        _run([_nrnivmodl(), "mod"], work, work / "build.log", f"compiling {', '.join(sorted(files))} with nrnivmodl")
        if not (work / platform.machine() / "libnrnmech.so").is_file():
            raise BuildError(f"nrnivmodl produced no library; see {work / 'build.log'}")
        if target.exists():
            shutil.rmtree(target)
        os.replace(work, target)
    return target


def ensure_mechanism(h, suffix: str, text: str | None, mod_dirs=(), *, verbose: bool = False) -> bool:
    """Make ``suffix`` usable in this process (see the module docstring).

    ``text`` is the MOD source (None for a mechanism given by name). Returns False when a different
    mechanism of that name is already loaded (the caller should use a fresh process).
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
            if p.stem != suffix and not mechanism_registered(h, p.stem):
                files.setdefault(p.name, p.read_text())
    folder = compile_mod_files(files, verbose=verbose)
    if not neuron.load_mechanisms(str(folder), warn_if_already_loaded=False):
        raise BuildError(f"NEURON could not load {folder}")
    for name, t in files.items():
        _loaded_texts[Path(name).stem] = t
    if not mechanism_registered(h, suffix):
        raise BuildError(f"{suffix} was compiled but is not registered; does the file's SUFFIX match its name?")
    return True


def run_isolated(args: list[str]) -> None:
    """Run ``python -m neuron_hybrid.kinetics <args>`` in a fresh process (raises on failure)."""
    proc = subprocess.run([sys.executable, "-m", "neuron_hybrid.kinetics", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"channel measurement in a fresh process failed:\n{proc.stderr[-3000:]}")

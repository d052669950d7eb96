"""Compile the C++ bridge and every NMODL mechanism into one cached, loadable NEURON library.

NEURON loads one mechanism library per name and registers each mechanism name once per process, so
neuron-hybrid compiles its own MOD files (``mod/`` recursively, plus the learned-current mechanisms
rendered from ``mod/learned/learned_current.mod.in``) and any user MOD directories together. Builds
are cached under ``$NEURON_HYBRID_CACHE`` (default ``~/.cache/neuron_hybrid``), keyed by a hash of
every source, the compiler flags and the torch/NEURON/Python versions, so they are rebuilt only when
one of these changes. A file lock makes concurrent first uses (pytest workers, MPI ranks) safe.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

KMAX = 8  # latents per learned-current mechanism; must equal NH_KMAX in nh_bridge.h
N_DENSITY_SLOTS = 6  # at most this many different learned density currents per section
#: mechanism families by the number of latents they hold: (max latents, density suffix pattern, point process).
#: NEURON 9's per-step cost of a mechanism grows with its number of variables, so models with few
#: latents run in a compact family. Names stay short ("state-" + name <= 15 characters): NEURON 9 builds
#: the std::string "cur-<name>" and "state-<name>" for every mechanism at every time step, and a longer
#: name leaves the small-string buffer for a heap allocation per step (valgrind: ~600 of the ~3200
#: extra instructions per step of hh + a learned K channel were those strings with "nh_learned0_k2").
#: A one-latent model in the two-latent family paid for integrating an inert latent (valgrind: hh + the
#: learned hh K channel 8877 instructions per step against 6618 for hh alone, in nhlc0_k2).
#: Likewise a 4-latent model (the MLP currents of benchmarks/mechanism_cost.py, the reductions' axial
#: current) paid for 4 inert latents in the 8-latent family.
FAMILIES = ((1, "nhlc{slot}_k1", "NhPointK1"), (2, "nhlc{slot}_k2", "NhPointK2"), (4, "nhlc{slot}_k4", "NhPointK4"),
            (KMAX, "nhlc{slot}", "NhPoint"))
DENSITY_SUFFIXES = tuple(pat.format(slot=k) for _, pat, _ in FAMILIES for k in range(N_DENSITY_SLOTS))
POINT_PROCESS = "NhPoint"  # the general point process (up to KMAX latents)


def density_suffixes_for(n_latent: int) -> tuple:
    """Density slots able to hold `n_latent` latents, compact families first."""
    return tuple(pat.format(slot=k) for kmax, pat, _ in FAMILIES if n_latent <= kmax for k in range(N_DENSITY_SLOTS))


def point_process_for(n_latent: int) -> str:
    """The most compact point process able to hold `n_latent` latents."""
    return next(pp for kmax, _, pp in FAMILIES if n_latent <= kmax)

_BRIDGE_DIR = Path(__file__).resolve().parent / "bridge"
_loaded: "MechanismLibrary | None" = None


class BuildError(RuntimeError):
    """Compiling the bridge or the MOD files failed; the message names the log file."""


@dataclass(frozen=True)
class MechanismLibrary:
    """A compiled mechanism library: ``directory/x86_64/libnrnmech.so`` and the bridge beside it."""

    directory: Path
    bridge: Path
    mechanisms: tuple[str, ...]

    @property
    def library(self) -> Path:
        return self.directory / platform.machine() / "libnrnmech.so"


def package_mod_dir() -> Path:
    """The package's ``mod/`` folder (the repository's for source/editable installs)."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "mod", here.parents[1] / "_data" / "mod"):
        if (candidate / "learned" / "learned_current.mod.in").is_file():
            return candidate
    raise BuildError(f"neuron-hybrid's mod/ folder was not found next to {here.parents[1]}; reinstall the package")


def cache_root() -> Path:
    return Path(os.environ.get("NEURON_HYBRID_CACHE", Path.home() / ".cache" / "neuron_hybrid"))


def render_learned_mechanisms() -> dict[str, str]:
    """Render the learned-current template into {file name: MOD text} for every slot."""
    template = (package_mod_dir() / "learned" / "learned_current.mod.in").read_text()
    out = {}
    for kmax, pattern, point in FAMILIES:
        specs = [(pattern.format(slot=k), "mA/cm2", "S/cm2") for k in range(N_DENSITY_SLOTS)] + [(point, "nA", "uS")]
        for name, iunit, gunit in specs:
            kind_line = f"POINT_PROCESS {name}" if name == point else f"SUFFIX {name}"
            lines = []
            for line in template.splitlines():
                if line.startswith(":"):
                    continue  # template comments
                if "@k" in line:
                    lines.extend(line.replace("@k0", str(k - 1)).replace("@k", str(k)) for k in range(1, kmax + 1))
                else:
                    lines.append(line)
            text = "\n".join(lines) + "\n"
            zlist = [f"z{k}" for k in range(1, kmax + 1)]
            text = (
                text.replace("@NAME@", name)
                .replace("@KIND_LINE@", kind_line)
                .replace("@IUNIT@", iunit)
                .replace("@GUNIT@", gunit)
                .replace("@KMAX@", str(kmax))
                .replace("@ZLIST@", ", ".join(zlist))
            )
            out[f"{name}.mod"] = text
    return out


def _collect_mod_files(extra_mod_dirs) -> dict[str, Path | str]:
    """{file name: path or rendered text}; errors on duplicate mechanism file names."""
    files: dict[str, Path | str] = {}
    origin: dict[str, str] = {}
    sources = [("neuron-hybrid", p) for p in sorted(package_mod_dir().rglob("*.mod"))]
    for d in extra_mod_dirs:
        d = Path(d)
        if not d.is_dir():
            raise BuildError(f"MOD directory {d} does not exist; pass a folder containing .mod files")
        mods = sorted(d.glob("*.mod"))
        if not mods:
            raise BuildError(f"MOD directory {d} contains no .mod files")
        sources += [(str(d), p) for p in mods]
    for who, p in sources:
        if p.name in files:
            raise BuildError(
                f"two MOD files named {p.name}: {origin[p.name]} and {who}; NEURON needs unique mechanism names, "
                "rename one of them"
            )
        files[p.name] = p
        origin[p.name] = who
    for name, text in render_learned_mechanisms().items():
        if name in files:
            raise BuildError(f"{origin[name]} has {name}, which clashes with a neuron-hybrid mechanism; rename it")
        files[name] = text
    return files


def _collect_includes(files: dict[str, Path | str], extra_mod_dirs) -> dict[str, Path]:
    """{name as included: file} for the files that ``files`` INCLUDE (see :mod:`.includes`)."""
    from .includes import included_by

    return included_by(((src.read_text(errors="replace"), src.parent, str(src)) for src in files.values()
                        if isinstance(src, Path)), extra_mod_dirs)


def _torch_flags():
    import torch
    from torch.utils import cpp_extension

    inc = [f"-I{p}" for p in cpp_extension.include_paths()]
    libdirs = cpp_extension.library_paths()
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    cflags = ["-O3", "-std=c++17", "-fPIC", "-shared", f"-D_GLIBCXX_USE_CXX11_ABI={abi}", *_cpu_flags(), *inc]
    ldflags = [f"-L{d}" for d in libdirs] + [f"-Wl,-rpath,{d}" for d in libdirs] + ["-ltorch", "-ltorch_cpu", "-lc10", "-ldl"]
    if "-DNH_USE_LIBMVEC" in cflags:
        ldflags.append("-lmvec")
    return cflags, ldflags, torch.__version__


def _cpu_flags() -> list[str]:
    """Tune for this CPU (the cache key includes its feature flags) and use glibc's vector maths if present.

    Set NEURON_HYBRID_PORTABLE=1 to build for a generic x86-64 instead (e.g. a cache shared by machines).
    """
    if os.environ.get("NEURON_HYBRID_PORTABLE") or platform.machine() not in ("x86_64", "AMD64"):
        return []
    flags = ["-march=native", "-mprefer-vector-width=256"]
    cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    has_mvec = any(Path(d, "libmvec.so.1").exists() for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64"))
    if " avx2" in cpu and has_mvec and _glibc_at_least(2, 35):
        flags.append("-DNH_USE_LIBMVEC")
    return flags


def _glibc_at_least(major: int, minor: int) -> bool:
    name, version = platform.libc_ver()
    if name != "glibc" or not version:
        return False
    parts = tuple(int(x) for x in version.split(".")[:2])
    return parts >= (major, minor)


def _cpu_signature() -> str:
    cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = next((line for line in cpu.splitlines() if line.startswith("flags")), "")
    return hashlib.sha256(flags.encode()).hexdigest()[:12]


def _build_key(files: dict, cflags) -> str:
    import neuron

    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode())
        src = files[name]
        h.update(src.read_bytes() if isinstance(src, Path) else src.encode())
    for p in sorted(_BRIDGE_DIR.glob("nh_*.*")):  # nh_bridge.cpp/.h and nh_table.h
        h.update(p.read_bytes())
    import torch

    h.update(" ".join(cflags).encode())
    h.update(f"{torch.__version__}|{neuron.__version__}|{sys.version}|{platform.machine()}|{_cpu_signature()}".encode())
    return h.hexdigest()[:16]


@contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(cmd, cwd: Path, log: Path, what: str):
    with open(log, "a") as fh:
        fh.write("$ " + " ".join(map(str, cmd)) + "\n")
        fh.flush()
        proc = subprocess.run(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise BuildError(f"{what} failed (exit {proc.returncode}); full log: {log}\n{tail}")


def _nrnivmodl() -> str:
    exe = shutil.which("nrnivmodl")
    if exe is None:
        cand = Path(sys.executable).parent / "nrnivmodl"
        if cand.exists():
            return str(cand)
        raise BuildError("nrnivmodl was not found on PATH; install NEURON with `pip install neuron`")
    return exe


def build(extra_mod_dirs=(), verbose: bool = False) -> MechanismLibrary:
    """Compile (or reuse from the cache) the bridge plus all MOD files; returns the library.

    extra_mod_dirs: folders of the user's own .mod files, compiled into the same library.
    """
    from .includes import copy_included_files

    files = _collect_mod_files(extra_mod_dirs)
    includes = _collect_includes(files, extra_mod_dirs)
    cflags, ldflags, _ = _torch_flags()
    key = _build_key({**files, **{f"include:{k}": v for k, v in includes.items()}}, cflags)
    target = cache_root() / f"mech-{key}"
    mechanisms = tuple(sorted(Path(n).stem for n in files))
    lib = MechanismLibrary(target, target / "libnh_bridge.so", mechanisms)
    if lib.library.is_file() and lib.bridge.is_file():
        return lib
    with _file_lock(cache_root() / f"mech-{key}.lock"):
        if lib.library.is_file() and lib.bridge.is_file():
            return lib
        work = Path(tempfile.mkdtemp(prefix=f"mech-{key}-", dir=cache_root()))
        log = work / "build.log"
        if verbose:
            print(f"neuron-hybrid: compiling {len(files)} mechanisms and the bridge in {work} ...", file=sys.stderr)
        bridge = work / "libnh_bridge.so"
        _run(["g++", *cflags, str(_BRIDGE_DIR / "nh_bridge.cpp"), "-o", str(bridge), *ldflags], work, log,
             "compiling the C++ bridge (neuron_hybrid/runtime/bridge/nh_bridge.cpp)")
        moddir = work / "mod"
        moddir.mkdir()
        for name, src in files.items():
            dst = moddir / name
            if isinstance(src, Path):
                shutil.copyfile(src, dst)
            else:
                dst.write_text(src)
        copy_included_files(includes, moddir)
        # nrnivmodl writes ./x86_64 in its working directory; the final location is fixed by rpath
        loadflags = f"-L{work} -lnh_bridge -Wl,-rpath,{target}"
        _run([_nrnivmodl(), "-incflags", f"-I{_BRIDGE_DIR} -I{moddir}", "-loadflags", loadflags, "mod"], work, log,
             "compiling the MOD files with nrnivmodl")
        if not (work / platform.machine() / "libnrnmech.so").is_file():
            raise BuildError(f"nrnivmodl produced no libnrnmech.so; see {log}")
        if target.exists():
            shutil.rmtree(target)
        os.replace(work, target)  # atomic: a half-built library is never visible under the final name
    return lib


def load_mechanisms(extra_mod_dirs=(), verbose: bool = True) -> MechanismLibrary:
    """Build (once, cached) and load neuron-hybrid's mechanisms, plus the user's MOD directories.

    Safe to call repeatedly. Raises if a different set of mechanisms was already loaded into this
    process, since NEURON cannot unload mechanisms (restart Python, or pass every MOD directory in one call).
    """
    global _loaded
    lib = build(extra_mod_dirs, verbose=verbose)
    if _loaded is not None:
        if _loaded.directory == lib.directory:
            return _loaded
        raise RuntimeError(
            f"neuron-hybrid mechanisms from {_loaded.directory} are already loaded in this process; NEURON cannot "
            f"load a second library with the same mechanism names ({lib.directory}). Restart Python and call "
            "load_mechanisms(extra_mod_dirs=[...]) once with every MOD directory you need."
        )
    import neuron
    from neuron import h

    if hasattr(h, "nh_load"):
        raise RuntimeError(
            "neuron-hybrid mechanisms are already loaded in this process from another library (for example "
            "nrn_load_dll or an x86_64/ folder in the working directory); restart Python without it"
        )
    if not neuron.load_mechanisms(str(lib.directory), warn_if_already_loaded=False):
        raise BuildError(f"NEURON could not load {lib.library}")
    _loaded = lib
    return lib


def loaded_library() -> MechanismLibrary | None:
    """The library loaded by :func:`load_mechanisms` in this process, if any."""
    return _loaded

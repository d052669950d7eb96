"""Training data for the spike-times -> (g_s, g_u) network: simulated degenerate models.

For each sample a target (g_s, g_u) is drawn (Latin hypercube over the configured box), one model
with those DICs at V_th is generated (:func:`~neuron_hybrid.dic.population.generate_population`),
simulated (vectorised, :meth:`~neuron_hybrid.dic.model.CompartmentModel.simulate`) and its spike
times after the transient are stored.

HDF5 schema (``format = "neuron_hybrid.dic.dataset"``, ``version = 1``; root attributes: the
:class:`DatasetConfig` as JSON in ``config``): one group ``chunk_<k>`` per finished chunk with

* ``target`` (n, 2) float64: requested (g_s, g_u) at V_th (leak-normalised);
* ``achieved`` (n, 3) float64: (g_f, g_s, g_u) of the generated model at V_th;
* ``gbar`` (n, n_g) float64 mS/cm2 (column names in the attribute ``columns``);
* ``spike_times`` (total,) float64 ms, concatenated; ``offsets`` (n + 1,) int64;
* attribute ``complete = 1`` written last.

Resumable: every chunk is a pure function of (seed, chunk index); finished chunks are skipped,
an unfinished chunk (interrupted run) is deleted and redone, so finished work is never corrupted.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np

from .dics import get_model
from .population import generate_population

__all__ = ["DatasetConfig", "generate_dataset", "load_dataset", "FORMAT", "VERSION"]

FORMAT = "neuron_hybrid.dic.dataset"
VERSION = 1


@dataclass(frozen=True)
class DatasetConfig:
    """Everything needed to regenerate a dataset.

    ``model`` ("stg"/"da"); ``n_samples``; ``chunk_size`` (models simulated together);
    ``g_s_range``/``g_u_range`` (leak-normalised DIC box); ``tstop``/``transient``/``dt`` ms;
    ``method`` the integrator (see ``CompartmentModel.simulate``); ``seed``.
    """

    model: str = "stg"
    n_samples: int = 4000
    chunk_size: int = 1000
    g_s_range: tuple[float, float] = (-20.0, 20.0)
    g_u_range: tuple[float, float] = (0.0, 20.0)
    tstop: float = 5000.0
    transient: float = 2000.0
    dt: float = 0.05
    method: str = "neuron"
    seed: int = 0

    @classmethod
    def for_model(cls, model: str, **kw) -> "DatasetConfig":
        if model == "da":
            base = dict(model="da", g_s_range=(-10.0, 15.0), g_u_range=(0.0, 20.0), tstop=10000.0,
                        transient=3000.0, dt=0.05, method="rl2")
        else:
            base = dict(model="stg")
        base.update(kw)
        return cls(**base)


def _lhs(rng, n, box):
    out = np.empty((n, len(box)))
    for j, (lo, hi) in enumerate(box):
        u = (rng.permutation(n) + rng.uniform(size=n)) / n
        out[:, j] = lo + (hi - lo) * u
    return out


def _chunk(cfg: DatasetConfig, k: int, progress: bool):
    model = get_model(cfg.model)
    rng = np.random.default_rng([cfg.seed, k])
    n = min(cfg.chunk_size, cfg.n_samples - k * cfg.chunk_size)
    targets, gbars, achieved = [], [], []
    pool = _lhs(rng, 4 * n, [cfg.g_s_range, cfg.g_u_range])  # spare targets for unreachable ones
    j = 0
    while len(targets) < n:
        if j >= len(pool):
            pool = _lhs(rng, 4 * n, [cfg.g_s_range, cfg.g_u_range])
            j = 0
        gs, gu = pool[j]
        r = generate_population(model, gs, gu, 8, seed=int(rng.integers(2**31)))
        j += 1
        if len(r.gbar):
            targets.append((gs, gu))
            gbars.append(r.gbar[0])
            achieved.append(r.achieved[0])
    gb = np.array(gbars)
    sim = model.simulate(gb, tstop=cfg.tstop, transient=cfg.transient, dt=cfg.dt, method=cfg.method,
                         progress=progress)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sim.spikes])]).astype(np.int64)
    spikes = np.concatenate(sim.spikes) if offsets[-1] else np.zeros(0)
    return dict(target=np.array(targets), achieved=np.array(achieved), gbar=gb, spike_times=spikes,
                offsets=offsets), model


def generate_dataset(config: DatasetConfig, path: str | Path, *, progress: bool = True) -> Path:
    """Generate (or resume) the dataset described by ``config`` into the HDF5 file ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_chunks = -(-config.n_samples // config.chunk_size)
    with h5py.File(path, "a") as f:
        if "config" in f.attrs:
            old = json.loads(f.attrs["config"])
            if old != json.loads(json.dumps(asdict(config))):
                raise ValueError(f"{path} was generated with a different configuration ({old}); use another "
                                 "file name or delete it")
        else:
            f.attrs["format"] = FORMAT
            f.attrs["version"] = VERSION
            f.attrs["config"] = json.dumps(asdict(config))
        for name in list(f.keys()):
            if name.startswith("chunk_") and not f[name].attrs.get("complete", 0):
                del f[name]  # interrupted chunk: redo
    from tqdm.auto import tqdm
    for k in tqdm(range(n_chunks), desc=f"dataset {config.model}", disable=not progress):
        with h5py.File(path, "r") as f:
            if f"chunk_{k}" in f:
                continue
        data, model = _chunk(config, k, progress)
        with h5py.File(path, "a") as f:
            g = f.create_group(f"chunk_{k}")
            for key, val in data.items():
                g.create_dataset(key, data=val)
            g["gbar"].attrs["columns"] = list(model.columns)
            g.attrs["complete"] = 1
            f.flush()
    return path


def load_dataset(path: str | Path) -> dict:
    """All finished chunks: ``{"target", "achieved", "gbar", "spikes" (list of arrays), "config"}``."""
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT} file")
        if int(f.attrs.get("version", 0)) != VERSION:
            raise ValueError(f"{path}: unsupported version {f.attrs.get('version')} (expected {VERSION})")
        cfg = json.loads(f.attrs["config"])
        names = sorted((n for n in f if n.startswith("chunk_") and f[n].attrs.get("complete", 0)),
                       key=lambda s: int(s.split("_")[1]))
        out = {k: [] for k in ("target", "achieved", "gbar", "spikes")}
        for n in names:
            g = f[n]
            out["target"].append(g["target"][()])
            out["achieved"].append(g["achieved"][()])
            out["gbar"].append(g["gbar"][()])
            st, off = g["spike_times"][()], g["offsets"][()]
            out["spikes"] += [st[off[i]:off[i + 1]] for i in range(len(off) - 1)]
    for k in ("target", "achieved", "gbar"):
        out[k] = np.concatenate(out[k]) if out[k] else np.zeros((0, 2))
    out["config"] = cfg
    return out

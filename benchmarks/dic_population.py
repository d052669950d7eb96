"""Benchmark: DIC-based degenerate populations (accuracy, speed, simulated behaviour).

    python benchmarks/dic_population.py [--targets 500] [--models 250] [--verify 100]

1. iterative compensation (thesis setup): random targets g_s in [-15, 15], g_u in [0.5, 15],
   ``--models`` models each, (CaS, A) compensated; mean L2 distance of the achieved (g_s, g_u)
   at V_th to the target (physical models only) and wall time per population, for 1/2/3/5/10
   iterations (prior art: 0.407/0.243/0.154/0.067/0.0106; ~2 ms per 250 models at 5 iterations);
2. verification by simulation: STG populations for a bursting and a spiking target (and DA),
   simulated 6 s (3 s transient), fraction that bursts / spikes (Spike2Pop's CV rule);
3. the published firing of the example sets (channel_kinetics.md 7.3) with the NumPy model.
Writes reports/dic_population.json.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from neuron_hybrid.dic import DA, STG, STG_EXAMPLES, classify, generate_population  # noqa: E402


def compensation(n_targets, n_models, seed=0):
    rng = np.random.default_rng(seed)
    targets = np.c_[rng.uniform(-15, 15, n_targets), rng.uniform(0.5, 15, n_targets)]
    out = {}
    generate_population("stg", 0.0, 5.0, n_models, seed=0, compensated=("CaS", "A"))  # warm caches
    for it in (1, 2, 3, 5, 10):
        errs, secs, kept = [], [], []
        for k, (gs, gu) in enumerate(targets):
            r = generate_population("stg", gs, gu, n_models, seed=k, compensated=("CaS", "A"), iterations=it)
            secs.append(r.seconds)
            kept.append(len(r.gbar) / n_models)
            if len(r.gbar):
                errs.append(r.error.mean())
        out[it] = {"mean_l2_error": float(np.mean(errs)), "median_l2_error": float(np.median(errs)),
                   "ms_per_population_median": float(np.median(secs) * 1e3),
                   "ms_per_population_mean": float(np.mean(secs) * 1e3), "kept_fraction": float(np.mean(kept))}
        print(f"iterations {it:2d}: mean L2 error {out[it]['mean_l2_error']:.4f}, "
              f"{out[it]['ms_per_population_median']:.2f} ms per {n_models}-model population (median), "
              f"kept {out[it]['kept_fraction']:.0%}")
    # default rule (best compensated pair) at 5 iterations
    errs, secs = [], []
    for k, (gs, gu) in enumerate(targets):
        r = generate_population("stg", gs, gu, n_models, seed=k)
        secs.append(r.seconds)
        if len(r.gbar):
            errs.append(r.error.mean())
    out["default_rule"] = {"mean_l2_error": float(np.mean(errs)), "ms_per_population_median": float(np.median(secs) * 1e3)}
    print(f"default compensated pair: mean L2 error {np.mean(errs):.4f}, {np.median(secs) * 1e3:.2f} ms")
    return out


def verify(n, seed=0):
    res = {}
    cases = [("stg", STG, -8.0, 6.0, "bursting"), ("stg", STG, 4.0, 5.0, "spiking"),
             ("stg", STG, -4.0, 8.0, "bursting"), ("stg", STG, 8.0, 3.0, "spiking")]
    gbs, meta = [], []
    for name, model, gs, gu, want in cases:
        r = generate_population(name, gs, gu, n, seed=seed)
        gbs.append(r.gbar)
        meta.append((name, gs, gu, want, len(r.gbar)))
    t0 = time.time()
    sim = STG.simulate(np.concatenate(gbs), tstop=6000.0, transient=3000.0, dt=0.05, progress=True)
    k = 0
    for (name, gs, gu, want, m) in meta:
        cls = [classify(s) for s in sim.spikes[k:k + m]]
        k += m
        frac = float(np.mean([c == want for c in cls]))
        res[f"{name} g_s={gs} g_u={gu}"] = {"target_class": want, "n": m, "fraction": frac,
                                           "classes": {c: cls.count(c) for c in set(cls)}}
        print(f"{name} target (g_s {gs}, g_u {gu}): {frac:.1%} of {m} models are {want} {res[f'{name} g_s={gs} g_u={gu}']['classes']}")
    res["simulation_seconds"] = time.time() - t0
    # DA
    gbs, meta = [], []
    for gs, gu, want in ((-3.0, 4.0, "bursting"), (3.0, 6.0, "spiking")):
        r = generate_population("da", gs, gu, n // 2, seed=seed)
        gbs.append(r.gbar)
        meta.append(("da", gs, gu, want, len(r.gbar)))
    sim = DA.simulate(np.concatenate(gbs), tstop=10000.0, transient=3000.0, dt=0.05, method="rl2", progress=True)
    k = 0
    for (name, gs, gu, want, m) in meta:
        cls = [classify(s) for s in sim.spikes[k:k + m]]
        k += m
        frac = float(np.mean([c == want for c in cls]))
        res[f"{name} g_s={gs} g_u={gu}"] = {"target_class": want, "n": m, "fraction": frac,
                                           "classes": {c: cls.count(c) for c in set(cls)}}
        print(f"{name} target (g_s {gs}, g_u {gu}): {frac:.1%} of {m} models are {want} {res[f'{name} g_s={gs} g_u={gu}']['classes']}")
    return res


def published():
    sim = STG.simulate(list(STG_EXAMPLES.values()), tstop=6000.0, transient=3000.0, dt=0.025)
    out = {}
    for name, s in zip(STG_EXAMPLES, sim.spikes):
        isi = np.diff(s)
        out[name] = {"spikes_in_3s": int(len(s)), "isi_min_ms": float(isi.min()), "isi_max_ms": float(isi.max())}
        print(f"STG {name}: {len(s)} spikes in 3 s, ISI {isi.min():.2f}-{isi.max():.2f} ms")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", type=int, default=500)
    p.add_argument("--models", type=int, default=250)
    p.add_argument("--verify", type=int, default=100, help="models per verification target (0: skip)")
    p.add_argument("--published", action="store_true", help="also simulate the published example sets")
    p.add_argument("--out", default=str(REPO / "reports" / "dic_population.json"))
    a = p.parse_args(argv)
    res = {"compensation": compensation(a.targets, a.models)}
    if a.verify:
        res["verification"] = verify(a.verify)
    if a.published:
        res["published_sets"] = published()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

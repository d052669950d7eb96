"""Tutorial 4: from spike times to a degenerate population of conductance-based models.

    python tutorials/04_spikes_to_population.py [--out tutorial_04]

Steps (about a minute on a laptop CPU):
1. dynamic input conductances (DICs) of the STG model at its threshold voltage;
2. a degenerate population for a bursting target (g_s < 0) and its simulated behaviour;
3. the shipped network: spike times -> (g_s, g_u, class);
4. the whole pipeline on a CSV, as ``neuron-hybrid spikes2pop spikes.csv --out pop.csv``.
Units: mV, ms, mS/cm2 (C_m = 1 uF/cm2); DICs are divided by g_leak (dimensionless).
"""
import argparse
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import neuron_hybrid.dic as dic  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="tutorial_04")
    out = Path(p.parse_args(argv).out)
    out.mkdir(parents=True, exist_ok=True)

    # 1. DICs: g_f < 0 lets the cell spike; g_s > 0 gives tonic spiking, g_s < 0 bursting
    v = np.linspace(-70, -30, 81)
    for name in ("spiking", "bursting"):
        gbar = dic.STG_EXAMPLES[name]            # {"g_Na": ..., ..., "g_leak": ...} in mS/cm2
        g_f, g_s, g_u = dic.dics("stg", gbar, v)   # arrays over v
        v_th = dic.threshold_voltage("stg", gbar)
        at = dic.dics("stg", gbar, -51.0)
        print(f"STG {name}: V_th = {v_th:.2f} mV; at -51 mV (g_f, g_s, g_u) = ({at[0]:.3f}, {at[1]:.3f}, {at[2]:.3f})")

    # 2. a degenerate population: many conductance sets, one DIC target
    pop = dic.generate_population("stg", g_s=-8.0, g_u=6.0, n=40, seed=0)
    print(f"population: {len(pop.gbar)} of 40 models kept, compensated {pop.compensated}, "
          f"mean |(g_s, g_u) - target| = {pop.error.mean():.2e}")
    kd = pop.gbar[:, dic.STG.index("Kd")]
    print(f"  g_Kd varies from {kd.min():.0f} to {kd.max():.0f} mS/cm2 across the population")
    sim = dic.STG.simulate(pop.gbar[:10], tstop=3000.0, transient=1500.0, dt=0.05)
    classes = [dic.classify(s) for s in sim.spikes]
    print(f"  simulated 10 members: {classes.count('bursting')} burst, {classes.count('spiking')} spike")

    # 3. the network: spike times (ms) -> DICs and class
    net = dic.load_pretrained("stg")
    trains = [s for s in sim.spikes[:3] if len(s) >= 3]
    g_s, g_u, cls = net.predict(trains)
    for k, (a, b, c) in enumerate(zip(g_s, g_u, cls)):
        print(f"  member {k}: predicted g_s {a:.2f}, g_u {b:.2f} ({c}); true (-8, 6)")

    # 4. the pipeline on a CSV (the command `neuron-hybrid spikes2pop` does exactly this)
    src = out / "spikes.csv"
    with open(src, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ID", "spike_times_ms"])
        for k, s in enumerate(trains):
            w.writerow([f"cell{k}", str([round(float(x), 2) for x in s])])
        w.writerow(["too_short", "[10.0, 20.0]"])  # reported and skipped
    cfg = dic.Spikes2PopConfig(model="stg", n=50, seed=0, report_ids=2, report_members=2,
                               sim_tstop_ms=2000.0, sim_transient_ms=1000.0)
    res = dic.spikes_to_population(src, out / "pop.csv", cfg, report_dir=out / "report")
    print(f"wrote {sum(res.sizes.values())} models to {res.out}; report {res.report}; skipped {res.skipped}")


if __name__ == "__main__":
    main()

"""Per-time-step cost of learned currents inside NEURON (issue: mechanism runtime, point 4).

One 20x20 um compartment, fixed step dt = 0.025 ms, one thread, timed with ParallelContext.psolve
(median over --rounds interleaved rounds of the median of --repeats runs of --tstop ms), driven by a constant 0.1 nA current so that it spikes:
  (a) hh
  (b) hh + a learned current with 4 latents whose rates and current are 2x32 tanh MLPs, fast engine
  (c) the same on the libtorch (torchscript) engine
  (d) hh + the exact learned hh K channel (gkbar_hh = 0), fast engine
Goals: (b) <= 2x (a), (d) <= 1.3x (a). Writes JSON (default benchmarks/results/mechanism_cost.json).

    python benchmarks/mechanism_cost.py [--tstop 2000] [--repeats 7] [--out FILE]
"""
import argparse
import json
import platform
import statistics
import tempfile
from pathlib import Path

import neuron_hybrid as nh
from neuron_hybrid.bench.timing import time_psolve, us_per_step
from neuron_hybrid.models import HHPotassium, MLPCurrent


def measure(h, learned=None, zero_gk=False, tstop=2000.0, repeats=7):
    soma = h.Section(name="soma")
    soma.L = soma.diam = 20.0
    soma.insert("hh")
    h.usetable_hh = 0
    if zero_gk:
        soma.gkbar_hh = 0.0
    if learned is not None:
        learned.insert(soma)
    stim = h.IClamp(soma(0.5))
    stim.delay, stim.dur, stim.amp = 0.0, 1e9, 0.1
    timing = time_psolve(tstop, repeats)
    del stim, soma
    return us_per_step(timing), timing


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tstop", type=float, default=2000.0, help="simulated ms per timing run")
    ap.add_argument("--repeats", type=int, default=5, help="psolve runs per measurement (median)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds over the cases (median)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "mechanism_cost.json"))
    args = ap.parse_args(argv)
    from neuron import h

    nh.load_mechanisms()
    tmp = Path(tempfile.mkdtemp(prefix="nh_bench_"))
    mlp_file = nh.export(MLPCurrent(n_latent=4, width=32, depth=2, seed=0), tmp / "mlp4.pt")
    k_file = nh.export(HHPotassium(), tmp / "hh_k.pt")
    cases = {
        "a_hh": dict(),
        "b_hh_plus_mlp4_fast": dict(learned=nh.LearnedCurrent.load(mlp_file)),
        "c_hh_plus_mlp4_torchscript": dict(learned=nh.LearnedCurrent.load(mlp_file, engine="torchscript")),
        "d_hh_learned_k_fast": dict(learned=nh.LearnedCurrent.load(k_file), zero_gk=True),
        "d2_hh_learned_k_compiled": dict(learned=nh.LearnedCurrent.load(k_file, engine="compiled"), zero_gk=True),
    }
    results = {name: {"rounds_us_per_step": []} for name in cases}
    for _ in range(args.rounds):  # interleaved rounds: slow drifts of the machine hit every case alike
        for name, kw in cases.items():
            reps = 1 if "torchscript" in name else args.repeats
            tstop = min(args.tstop, 200.0) if "torchscript" in name else args.tstop
            cost, timing = measure(h, tstop=tstop, repeats=reps, **kw)
            results[name]["rounds_us_per_step"].append(cost)
    for name, kw in cases.items():
        lc = kw.get("learned")
        r = results[name]
        r["us_per_step"] = statistics.median(r["rounds_us_per_step"])
        r["engine"] = lc.engine if lc else "builtin hh"
        r["engine_errors"] = lc.engine_errors if lc else None
    base = results["a_hh"]["us_per_step"]
    for r in results.values():
        r["ratio_to_hh"] = r["us_per_step"] / base
    summary = {
        "goal_b_le_2x": results["b_hh_plus_mlp4_fast"]["ratio_to_hh"] <= 2.0,
        "goal_d_le_1.3x": results["d_hh_learned_k_fast"]["ratio_to_hh"] <= 1.3,
    }
    print(f"{'case':<30} {'us/step':>9} {'x hh':>7}  engine")
    for name, r in results.items():
        print(f"{name:<30} {r['us_per_step']:>9.3f} {r['ratio_to_hh']:>7.2f}  {r['engine']}")
    print("goals:", summary)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"results": results, "summary": summary, "tstop_ms": args.tstop, "dt_ms": 0.025,
                               "rounds": args.rounds, "repeats": args.repeats,
                               "machine": platform.processor() or platform.machine(), "neuron_hybrid": nh.__version__},
                              indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

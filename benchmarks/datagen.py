"""Data-generation throughput: simulated seconds per wall-clock second for every built-in cell
at dt 0.025 ms (fixed step, one thread, :func:`neuron_hybrid.datagen.run.simulate_trace`), and the
speed-up of ``generate`` with 2 worker processes over 1.

Per cell: a suprathreshold step of --tstop ms, simulated once with no settling (integration +
recording alone) and once with the default 1000 ms steady-state settle (dt 1 ms) that every
generated trace pays. Speed-up: --n-traces OU-noise protocols of --tstop ms on --parallel-cell,
generate(workers=1) vs generate(workers=2); reported both for the whole call and for the
simulation phase alone (after worker start-up and cell building, ``GenerateResult.setup_s``).
Per-trace wall and CPU seconds are reported too: when other jobs share the cores (see the load
average), wall time per trace rises above CPU time and the speed-up is a lower bound.

    python benchmarks/datagen.py [--tstop 200] [--n-traces 4] [--parallel-cell l5pc_hay2011] [--out FILE]
"""
import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

STEP_NA = {"ball_and_stick": 0.3, "ca1_pospischil": 0.3, "l5pc_hay2011": 0.8, "allen_scnn1a": 0.3,
           "allen_pvalb": 0.5}


def per_cell(tstop):
    from neuron import h

    from neuron_hybrid.cells import available_cells, build
    from neuron_hybrid.datagen.run import simulate_trace
    from neuron_hybrid.stimuli import Step

    out = {}
    for name, _ in available_cells():
        cell = build(name)
        p = Step(amp_nA=STEP_NA.get(name, 0.3), delay_ms=10.0, dur_ms=tstop - 20.0, tstop_ms=tstop)
        h.CVode().active(0)
        row = {"n_segments": cell.n_segments}
        for settle in (0.0, 1000.0):
            w = time.perf_counter()
            tr = simulate_trace(cell, p, dt_ms=0.025, settle_ms=settle)
            wall = time.perf_counter() - w
            key = "no_settle" if settle == 0 else "with_1s_settle"
            row[f"wall_s_{key}"] = wall
            row[f"sim_s_per_wall_s_{key}"] = (tstop / 1000.0) / wall
        row["spikes"] = int(((tr.v_soma[1:] > 0) & (tr.v_soma[:-1] <= 0)).sum())
        out[name] = row
        print(f"{name:16s} {cell.n_segments:5d} segments: {row['sim_s_per_wall_s_no_settle']:8.3f} sim-s/wall-s "
              f"(with 1 s settle: {row['sim_s_per_wall_s_with_1s_settle']:.3f}), {row['spikes']} spikes")
        del cell, tr
    return out


def speedup(cell, n, tstop):
    from neuron_hybrid.datagen import generate
    from neuron_hybrid.stimuli import OU

    protos = [OU(mean_nA=0.5, sd_nA=0.3, tau_ms=5.0, seed=s, delay_ms=0.0, dur_ms=tstop, tstop_ms=tstop)
              for s in range(n)]
    res = {}
    with tempfile.TemporaryDirectory() as d:
        for w in (1, 2):
            r = generate(cell, protos, Path(d) / f"w{w}.h5", workers=w, progress=False)
            tw = [a for a, _ in r.trace_times.values()]
            tc = [b for _, b in r.trace_times.values()]
            res[w] = {"wall_s": r.wall_s, "setup_s": r.setup_s, "simulate_s": r.wall_s - r.setup_s,
                      "per_worker": r.per_worker, "trace_wall_s_mean": sum(tw) / len(tw),
                      "trace_cpu_s_mean": sum(tc) / len(tc), "loadavg_1min_after": os.getloadavg()[0]}
            print(f"{cell}, {n} x {tstop:g} ms, workers={w}: {r.wall_s:.2f} s "
                  f"(setup {r.setup_s:.2f} s, simulation {r.wall_s - r.setup_s:.2f} s; per trace "
                  f"{res[w]['trace_wall_s_mean']:.2f} s wall, {res[w]['trace_cpu_s_mean']:.2f} s CPU; "
                  f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    s_total = res[1]["wall_s"] / res[2]["wall_s"]
    s_sim = res[1]["simulate_s"] / res[2]["simulate_s"]
    print(f"speed-up with 2 workers: {s_total:.2f}x overall, {s_sim:.2f}x for the simulation phase")
    return {"cell": cell, "n_traces": n, "tstop_ms": tstop, "runs": res, "speedup_total": s_total,
            "speedup_simulation": s_sim}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tstop", type=float, default=200.0, help="simulated ms per trace")
    ap.add_argument("--n-traces", type=int, default=4)
    ap.add_argument("--parallel-cell", default="l5pc_hay2011")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "datagen.json"))
    args = ap.parse_args(argv)

    import neuron_hybrid as nh

    nh.load_mechanisms(verbose=False)
    cells = per_cell(args.tstop)
    par = speedup(args.parallel_cell, args.n_traces, args.tstop)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"dt_ms": 0.025, "tstop_ms": args.tstop, "cells": cells, "parallel": par,
                               "cpu_count": os.cpu_count(), "python": platform.python_version()}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

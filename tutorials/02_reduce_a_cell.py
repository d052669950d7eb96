"""Reduce a detailed cell to one compartment with a learned axial current, then compare it with the full cell.

    python tutorials/02_reduce_a_cell.py [--cell ca1_pospischil] [--out tutorial_out/ca1] [--quick]

--quick uses the passive ball-and-stick cell and small protocol sets (about a minute); the default
reduces the 1108-segment CA1 cell (about 10 minutes on 2 cores). Writes the model directory, the
benchmark report (report.md, traces.png, latents.png) and a plot of one held-out protocol.
"""
import argparse
from pathlib import Path

import numpy as np


def main(cell="ca1_pospischil", out="tutorial_out/reduce", quick=False):
    import neuron_hybrid as nh
    from neuron_hybrid import cells
    from neuron_hybrid.bench.reduction import run_benchmark
    from neuron_hybrid.datagen import simulate_voltage
    from neuron_hybrid.reduce import ReduceConfig, ReducedCell, reduce
    from neuron_hybrid.reduce.protocols import ProtocolScale, held_out_protocols
    from neuron_hybrid.train.teacher import TeacherConfig

    out = Path(out)
    params = None
    config = ReduceConfig()
    if quick:
        cell, params = "ball_and_stick", {"passive": True}
        config = ReduceConfig(n_latent=2, tau_max_init_ms=20.0, width=8, protocol_size="small", workers=1,
                              teacher=TeacherConfig(epochs=40, lr=1e-2), closed_loop=False)
    model_dir = reduce(cell, out / "model", config, cell_params=params)       # 1. data, training, export
    report = run_benchmark(model_dir, out / "report", repeats=3, workers=config.workers)  # 2. held-out comparison

    # 3. use the reduced cell like any NEURON cell
    nh.load_mechanisms()
    red = ReducedCell.load(model_dir)
    print(red, "soma:", red.soma.name(), "latents:", red.learned.n_latent)
    protocol = held_out_protocols(ProtocolScale(red.metadata["rheobase_nA"]), config.protocol_size)[0]
    t, v_red, _, _ = simulate_voltage(red, protocol)
    del red
    full = cells.build(cell, **(params or {}))
    _, v_full, _, _ = simulate_voltage(full, protocol)
    del full

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3))
    ax.plot(t, v_full, "k", lw=1.2, label=f"full {cell}")
    ax.plot(t, v_red, "C3", lw=0.8, label="reduced (1 compartment + learned axial current)")
    ax.set_xlabel("t (ms)")
    ax.set_ylabel("V soma (mV)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "held_out.png", dpi=110)
    print(f"max |V_full - V_reduced| on {protocol.to_dict()['type']}: {np.abs(v_full - v_red).max():.2f} mV; "
          f"wrote {out / 'held_out.png'} and {out / 'report' / 'report.md'}")
    return report


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--cell", default="ca1_pospischil")
    ap.add_argument("--out", default="tutorial_out/reduce")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    main(a.cell, a.out, a.quick)

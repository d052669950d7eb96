"""Detailed cells and training data: the Hay et al. (2011) L5 pyramidal cell, a current step and a
noisy (Ornstein-Uhlenbeck) current, recorded into an HDF5 trace file and plotted.

Run:  python tutorials/01_cells_and_data.py [--out DIR] [--tstop MS] [--workers N]

The same from the command line (protocols in a JSON file, see neuron_hybrid.stimuli.io):

    neuron-hybrid cells
    neuron-hybrid generate --cell l5pc_hay2011 --protocols protocols.json --out data.h5 --workers 2
    mpiexec -n 4 neuron-hybrid generate --mpi --cell l5pc_hay2011 --protocols protocols.json --out data.h5

What is recorded at the soma (schema: neuron_hybrid.datagen.schema): v_soma (mV), i_stim (nA,
injected), i_axial (nA, leaving the soma into the dendrites and axon), i_membrane_soma (nA,
capacitive + ionic) and i_ion_soma (nA, ionic); they satisfy i_membrane_soma + i_axial = i_stim.
"""
import argparse
from pathlib import Path

import numpy as np

import neuron_hybrid as nh
from neuron_hybrid.cells import build
from neuron_hybrid.datagen import generate, read_traces
from neuron_hybrid.stimuli import OU, Step, save_protocols


def main(out_dir="tutorial_out", tstop_ms=400.0, workers=1, settle_ms=1000.0):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    nh.load_mechanisms()  # the Hay channels are compiled (once, cached) with the package

    # 1. the cell: 196 sections, 642 segments, celsius 34 C, v_init -80 mV
    cell = build("l5pc_hay2011")
    print(cell)
    print("attached to the soma:", [c.section.name() for c in cell.soma_children()])
    del cell  # generate() builds its own (in each worker process)

    # 2. protocols: a step and a noisy current (the seed makes the noise reproducible)
    protocols = [
        Step(amp_nA=0.8, delay_ms=50.0, dur_ms=tstop_ms - 100.0, tstop_ms=tstop_ms),
        OU(mean_nA=0.6, sd_nA=0.4, tau_ms=5.0, seed=1, delay_ms=50.0, dur_ms=tstop_ms - 100.0, tstop_ms=tstop_ms),
    ]
    save_protocols(protocols, out / "protocols.json")  # what `neuron-hybrid generate --protocols` reads

    # 3. simulate (fixed step 0.025 ms) and store; rerunning resumes, finished traces are kept
    data = out / "l5pc_data.h5"
    res = generate("l5pc_hay2011", protocols, data, workers=workers, dt_ms=0.025,
                   dend_sites=["apic620=apical@620"], settle_ms=settle_ms)
    print(f"{data}: {res.n_simulated} simulated, {res.n_existing} already there, {res.wall_s:.1f} s")

    # 4. read back and check the soma's current balance
    traces, meta = read_traces(data)
    print(f"cell {meta['cell_name']}, soma area {meta['soma_area_um2']:.0f} um2, dt {meta['dt_ms']} ms, "
          f"{meta['celsius_degC']} C, NEURON {meta['neuron_version']}")
    worst = 0.0
    for tr in traces:
        res_nA = tr.i_membrane_soma + tr.i_axial - tr.i_stim
        worst = max(worst, float(np.abs(res_nA[1:]).max() / np.abs(tr.i_axial).max()))
    print(f"current balance: max |i_membrane + i_axial - i_stim| = {worst:.1e} of max |i_axial|")

    # 5. plot soma voltage and axial current
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, len(traces), figsize=(6 * len(traces), 7), sharex=True, squeeze=False)
    for j, tr in enumerate(traces):
        name = tr.protocol["type"]
        axes[0, j].plot(tr.t, tr.v_soma, lw=0.8, label="soma")
        axes[0, j].plot(tr.t, tr.v_dend["apic620"], lw=0.8, label="apical 620 um")
        axes[0, j].set_title(f"{name} (seed {tr.seed})" if tr.seed >= 0 else name)
        axes[0, j].set_ylabel("V (mV)")
        axes[0, j].legend(loc="upper right", fontsize=8)
        axes[1, j].plot(tr.t, tr.i_axial, lw=0.8, color="C3")
        axes[1, j].set_ylabel("axial current out of soma (nA)")
        axes[2, j].plot(tr.t, tr.i_stim, lw=0.8, color="k")
        axes[2, j].set_ylabel("injected (nA)")
        axes[2, j].set_xlabel("t (ms)")
    fig.tight_layout()
    png = out / "01_cells_and_data.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    print("wrote", png)
    return worst


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tutorial_out")
    ap.add_argument("--tstop", type=float, default=400.0, help="ms per protocol")
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    main(a.out, a.tstop, a.workers)

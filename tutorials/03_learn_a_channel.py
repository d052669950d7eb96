"""Tutorial 03: learn a channel's kinetics, from a MOD file and from current-clamp recordings.

    python tutorials/03_learn_a_channel.py [--out DIR] [--full]

1. Gating curves of a NEURON channel by voltage clamp (same as
   `neuron-hybrid channel-curves mod/channels/kdr_pos.mod --out DIR/kdr.h5`).
2. Gate networks + learned current + distilled NMODL (same as `neuron-hybrid fit-channel DIR/kdr.h5 --out DIR/kdr`).
3. A "lab recording": HH current-clamp sweeps saved as NWB (pynwb) and CSV, then the K gate n is learned
   from voltage alone (same as `neuron-hybrid fit-channel DIR/sweeps.nwb --area 1256.6 --learn k --out DIR/rec`).
Without --full the training is shortened so that the tutorial runs in a few minutes on a laptop core.
"""
import argparse
from pathlib import Path

import numpy as np
import torch

import neuron_hybrid as nh
from neuron_hybrid.kinetics import CurveConfig, FitChannelConfig, GateFitConfig, fit_channel, measure_channel_curves, save_curves
from neuron_hybrid.kinetics.recordings import Sweep, fit_recording, write_csv
from neuron_hybrid.kinetics.trace import HH, TraceFitConfig, simulate, step_stimulus
from neuron_hybrid.runtime.build import package_mod_dir


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="reports/tutorial03")
    ap.add_argument("--full", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    nh.load_mechanisms(verbose=False)

    # 1. curves of the Pospischil delayed rectifier, measured in NEURON
    curves = measure_channel_curves(package_mod_dir() / "channels" / "kdr_pos.mod", config=CurveConfig(celsius_degC=36))
    save_curves(curves, out / "kdr.h5")
    n = curves["n"]
    print(f"kdr_pos.n: power {n.power}, ion {n.ion}, x_inf({n.v[100]:.0f} mV) = {n.x_inf[100]:.3f}, tau = {n.tau[100]:.3f} ms")

    # 2. gate network -> learned current (.pt) and distilled NMODL (.mod), checked in NEURON
    steps = (3000, 300) if args.full else (800, 100)
    rep = fit_channel(out / "kdr.h5", out / "kdr", FitChannelConfig(gate=GateFitConfig(steps=steps[0], lbfgs_steps=steps[1]),
                                                                     suffix="kdr_tutorial_fit"))
    print("distilled:", rep["currents"]["ik"]["distilled_mod"])

    # 3. sweeps from a "lab" (here: NEURON's hh twin), saved as NWB (or CSV), then fitted from voltage alone
    area = 1256.6  # um2, a 20 x 20 um compartment
    dt = 0.025
    t = np.arange(0, 50, dt)
    sweeps = []
    for amp_nA in (0.08, 0.12, 0.1):  # the last sweep is held out
        stim = step_stimulus(torch.as_tensor(t + dt / 2), 5, 40, amp_nA * 100 / area)
        p = {k: torch.tensor([v], dtype=torch.float64) for k, v in HH.default_params().items()}
        with torch.no_grad():
            v = simulate(HH, stim, dt, p)[0].numpy()
        i = np.append(stim[0].numpy() * area / 100, 0.0)
        sweeps.append(Sweep(np.arange(len(v)) * dt, v + np.random.default_rng(0).normal(0, 0.5, len(v)), i))
    try:
        from neuron_hybrid.kinetics.recordings import write_nwb

        rec_file = write_nwb(out / "sweeps.nwb", sweeps)
    except ImportError:
        rec_file = write_csv(out / "sweeps.csv", sweeps)
    # quick: one way of treating the known parameters (the default, "both", trains twice: the quick run took 10 min 50 s
    # with it, the second core busy)
    # quick: also without the trajectory stage (TraceFitConfig.trajectory_levels; measured to pay off at 1-10 % noise,
    # at 2-3x the training time); these sweeps carry 0.5 mV of noise
    tcfg = TraceFitConfig() if args.full else TraceFitConfig(restarts=1, restart_rounds=0, prior_steps=150, cm_steps=150, cm_lbfgs_steps=200,
                                                             window_ms=(3.0,), tf_steps=8, cm_refine_known=False,
                                                             trajectory_levels=())
    rep = fit_recording(rec_file, out / "rec", FitChannelConfig(gate=GateFitConfig(steps=steps[0], lbfgs_steps=steps[1]),
                                                                 suffix="k_from_recording"),
                        model="hh", learn="k", seeds=2 if not args.full else 6, area_um2=area, trace_config=tcfg)
    print(f"held-out sweep RMSE of the best member: {rep['recording']['heldout_rmse_mV_best']:.2f} mV")
    print("compartment parameters refined with the channel:",
          {k: f"{d['assumed']:.4g} -> {d['refined']:.4g}" for k, d in rep["recording"].get("refined_parameters", {}).items()})
    print("\n".join(rep["currents"]["ik"]["formulas"]))


if __name__ == "__main__":
    main()

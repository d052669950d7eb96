"""neuron-hybrid from Python: NEURON's hh potassium current replaced by a learned current.

The Python twin of tutorials/00_learned_current.hoc. Run:  python tutorials/00_learned_current.py [--out DIR]
It exports hh's K channel as a learned current (any nn.Module following the contract works the same
way), inserts it into a compartment whose hh has gkbar_hh = 0, compares with plain hh, records the
latent, and saves a plot.
"""
import argparse
from pathlib import Path

import numpy as np
from neuron import h

import neuron_hybrid as nh
from neuron_hybrid.models import HHPotassium


def main(out_dir="tutorial_out"):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    nh.load_mechanisms()  # builds once (cached), then loads
    h.load_file("stdrun.hoc")

    # 1. a torch module following the contract -> validated TorchScript file
    nh.export(HHPotassium(), out / "hh_k.pt")
    kdr = nh.LearnedCurrent.load(out / "hh_k.pt")  # engine="auto": fastest engine verified against TorchScript
    print(kdr, "max engine error:", kdr.engine_errors)

    # 2. two compartments: plain hh, and hh with its K current replaced
    plain, hybrid = h.Section(name="plain"), h.Section(name="hybrid")
    for sec in (plain, hybrid):
        sec.L = sec.diam = 20
        sec.insert("hh")
    h.usetable_hh = 0
    hybrid.gkbar_hh = 0
    kdr.insert(hybrid)

    stims = []
    for sec in (plain, hybrid):
        s = h.IClamp(sec(0.5))
        s.delay, s.dur, s.amp = 5, 40, 0.12
        stims.append(s)
    t = h.Vector().record(h._ref_t)
    v_plain = h.Vector().record(plain(0.5)._ref_v)
    v_hybrid = h.Vector().record(hybrid(0.5)._ref_v)
    (z_ref,) = kdr.latent_refs(hybrid(0.5))
    z = h.Vector().record(z_ref)

    h.finitialize(-65)
    h.continuerun(60)
    dv = np.abs(np.array(v_hybrid) - np.array(v_plain)).max()
    print(f"learned K ({kdr.n_latent} latent) vs plain hh: max |dv| = {dv:.3g} mV over 60 ms")
    print(f"latent z1 range: {min(z):.6g} .. {max(z):.6g}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(2, 1, figsize=(7, 4.5), sharex=True)
    a.plot(t, v_plain, "k", lw=2.5, label="NEURON hh")
    a.plot(t, v_hybrid, "C1", lw=1, label="hh with learned K")
    a.set_ylabel("V (mV)")
    a.legend()
    b.plot(t, z, "C1")
    b.set_ylabel("latent z1 (= n)")
    b.set_xlabel("t (ms)")
    fig.tight_layout()
    fig.savefig(out / "00_learned_current.png", dpi=110)
    print(f"wrote {out / '00_learned_current.png'}")
    return dv


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tutorial_out")
    main(ap.parse_args().out)

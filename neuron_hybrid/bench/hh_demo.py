"""The learned-hh demo: hh's Na and K channels re-expressed as learned currents, run in NEURON on
every engine and compared with NEURON's built-in hh (accuracy and cost per time step)."""
import json
from pathlib import Path

import numpy as np

from ..models import HHPotassium, HHSodium
from ..runtime import LearnedCurrent, export, load_mechanisms
from .timing import time_psolve, us_per_step

ENGINES = ("torchscript", "compiled", "table", "auto")


def _soma(h, learned=()):
    soma = h.Section(name="soma")
    soma.L = soma.diam = 20.0
    soma.insert("hh")
    h.usetable_hh = 0
    for lc, gname in learned:
        setattr(soma, gname, 0.0)
        lc.insert(soma)
    return soma


def _trace(h, soma, amp_nA: float, tstop_ms: float):
    stim = h.IClamp(soma(0.5))
    stim.delay, stim.dur, stim.amp = 10.0, tstop_ms - 20.0, amp_nA
    v = h.Vector().record(soma(0.5)._ref_v)
    h.CVode().active(0)
    h.dt = 0.025
    h.finitialize(-65.0)
    h.continuerun(tstop_ms)
    return np.array(v)


def n_spikes(v) -> int:
    return int(np.sum(np.diff((np.asarray(v) > 0).astype(int)) == 1))


def run_hh_demo(out_dir, amp_nA: float = 0.12, tstop_ms: float = 200.0, timing_ms: float = 1000.0, repeats: int = 5,
                plot: bool = True, log=print) -> dict:
    """Export learned hh K and Na into `out_dir`, compare with plain hh per engine; write metrics.json (+ PNG)."""
    from neuron import h

    load_mechanisms()
    h.load_file("stdrun.hoc")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    k_file = export(HHPotassium(), out / "hh_k.pt", metadata={"what": "NEURON hh potassium, exact"})
    na_file = export(HHSodium(), out / "hh_na.pt", metadata={"what": "NEURON hh sodium, exact"})
    soma = _soma(h)
    v_ref = _trace(h, soma, amp_nA, tstop_ms)
    ref_cost = us_per_step(time_psolve(timing_ms, repeats))
    del soma
    metrics = {"protocol": {"amp_nA": amp_nA, "tstop_ms": tstop_ms, "dt_ms": 0.025},
               "hh": {"spikes": n_spikes(v_ref), "us_per_step": ref_cost}, "engines": {}}
    log(f"plain hh: {n_spikes(v_ref)} spikes, {ref_cost:.2f} us/step (psolve, 1 thread)")
    log(f"{'engine':<12} {'max|dV| K (mV)':>15} {'max|dV| Na+K':>13} {'spikes':>7} {'us/step K':>10} {'us/step Na+K':>13}  engines")
    traces = {"hh": v_ref}
    for eng in ENGINES:
        k = LearnedCurrent.load(k_file, engine=eng)
        na = LearnedCurrent.load(na_file, engine=eng)
        # the libtorch engine is ~100x slower: time it on a shorter run
        t_ms, reps = (min(timing_ms, 100.0), 1) if eng == "torchscript" else (timing_ms, repeats)
        soma = _soma(h, [(k, "gkbar_hh")])
        v_k = _trace(h, soma, amp_nA, tstop_ms)
        cost_k = us_per_step(time_psolve(t_ms, reps))
        del soma
        soma = _soma(h, [(k, "gkbar_hh"), (na, "gnabar_hh")])
        v_kna = _trace(h, soma, amp_nA, tstop_ms)
        cost_kna = us_per_step(time_psolve(t_ms, reps))
        del soma
        traces[eng] = v_kna
        row = {"max_abs_dv_k_mV": float(np.abs(v_k - v_ref).max()), "max_abs_dv_na_k_mV": float(np.abs(v_kna - v_ref).max()),
               "spikes": n_spikes(v_kna), "us_per_step_k": cost_k, "us_per_step_na_k": cost_kna, "engine": k.engine,
               "engine_errors": k.engine_errors}
        metrics["engines"][eng] = row
        log(f"{eng:<12} {row['max_abs_dv_k_mV']:>15.2e} {row['max_abs_dv_na_k_mV']:>13.2e} {row['spikes']:>7d} "
            f"{cost_k:>10.2f} {cost_kna:>13.2f}  {k.engine}")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    if plot:
        _plot(out / "hh_demo.png", traces, tstop_ms)
        log(f"wrote {out / 'metrics.json'} and {out / 'hh_demo.png'}")
    return metrics


def _plot(path, traces, tstop_ms):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.arange(len(traces["hh"])) * 0.025
    fig, (a, b) = plt.subplots(2, 1, figsize=(8, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    a.plot(t, traces["hh"], "k", lw=2.5, label="NEURON hh")
    for eng in ENGINES:
        a.plot(t, traces[eng], lw=1, label=f"learned Na+K ({eng})")
        b.plot(t, traces[eng] - traces["hh"], lw=1, label=eng)
    a.set_ylabel("V soma (mV)")
    a.legend(fontsize=8, loc="upper right")
    b.set_ylabel("dV (mV)")
    b.set_xlabel("t (ms)")
    a.set_title("hh channels as learned currents inside NEURON")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

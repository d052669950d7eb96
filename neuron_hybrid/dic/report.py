"""The ``spikes2pop --report DIR`` report: Markdown + PNG figures (matplotlib, Agg backend)."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

__all__ = ["write_report"]


def write_report(report_dir, model, rows, pops, predictions, skipped, config) -> Path:
    """Write ``report.md``, ``dics.png``, ``conductances_<ID>.png``, ``traces_<ID>.png`` and
    ``summary.json`` into ``report_dir``; returns the path of ``report.md``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    spikes = dict(rows)
    lines = [f"# spikes2pop report ({model.name})", "",
             f"Model `{model.name}`, population size requested {config.n} per ID, seed {config.seed}, "
             f"V_th = {model.dic.v_th} mV. DICs are leak-normalised (dimensionless); conductances in mS/cm2.", ""]
    # predicted DICs --------------------------------------------------------------------------
    fig, ax = plt.subplots(figsize=(5, 4))
    for cls, col in (("spiking", "tab:blue"), ("bursting", "tab:red")):
        pts = [(a, b) for a, b, c in predictions.values() if c == cls]
        if pts:
            ax.scatter(*np.array(pts).T, c=col, label=cls, s=25)
    for rid, (a, b, _) in predictions.items():
        ax.annotate(rid, (a, b), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("predicted g_s (V_th)")
    ax.set_ylabel("predicted g_u (V_th)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "dics.png", dpi=110)
    plt.close(fig)
    lines += ["## Predicted DICs", "", "![predicted DICs](dics.png)", "",
              "| ID | spikes | g_s | g_u | class | models written |", "|---|---|---|---|---|---|"]
    for rid, (a, b, c) in predictions.items():
        lines.append(f"| {rid} | {len(spikes[rid])} | {a:.2f} | {b:.2f} | {c} | {len(pops[rid].gbar)} |")
    lines.append("")
    if skipped:
        lines += ["## Skipped rows", "", "| row | ID | reason |", "|---|---|---|"]
        lines += [f"| {k} | {rid} | {why} |" for k, rid, why in skipped]
        lines.append("")
    # per-ID conductances and traces ----------------------------------------------------------
    shown = [rid for rid in predictions if len(pops[rid].gbar)][: config.report_ids]
    members, owners = [], []
    for rid in shown:
        g = pops[rid].gbar[: config.report_members]
        members.append(g)
        owners += [rid] * len(g)
    sim = None
    if members:
        gb = np.concatenate(members)
        sim = model.simulate(gb, tstop=config.sim_tstop_ms, transient=config.sim_transient_ms, dt=config.sim_dt_ms,
                             record=list(range(len(gb))), record_dt=0.2)
    lines += ["## Populations", ""]
    for rid in shown:
        pop = pops[rid]
        fig, ax = plt.subplots(figsize=(7, 3))
        ax.boxplot([pop.gbar[:, k] / np.median(pop.gbar[:, k]) if np.median(pop.gbar[:, k]) > 0 else pop.gbar[:, k]
                    for k in range(pop.gbar.shape[1])], tick_labels=list(model.columns))
        ax.set_ylabel("g / median(g)")
        ax.set_title(f"ID {rid}: {len(pop.gbar)} models, compensated {pop.compensated}")
        fig.tight_layout()
        fig.savefig(out / f"conductances_{rid}.png", dpi=110)
        plt.close(fig)
        idx = [k for k, o in enumerate(owners) if o == rid]
        fig, axes = plt.subplots(len(idx) + 1, 1, figsize=(8, 1.3 * (len(idx) + 1) + 0.5), sharex=True)
        s = spikes[rid] - spikes[rid][0]
        axes[0].eventplot([s], colors="k", lineoffsets=0.5, linelengths=0.8)
        axes[0].set_yticks([])
        axes[0].set_title(f"ID {rid}: input spike raster (from first spike) and simulated members")
        for ax, k in zip(axes[1:], idx):
            ax.plot(sim.t, sim.v[k], lw=0.5)
            ax.set_ylabel("V (mV)", fontsize=7)
        axes[-1].set_xlabel("t (ms)")
        axes[-1].set_xlim(0, max(float(s[-1]) if s.size else 0.0, config.sim_tstop_ms - config.sim_transient_ms))
        fig.tight_layout()
        fig.savefig(out / f"traces_{rid}.png", dpi=110)
        plt.close(fig)
        med = np.median(pop.gbar, axis=0)
        lines += [f"### ID {rid}", "", f"![conductances](conductances_{rid}.png)", "",
                  f"![traces](traces_{rid}.png)", "",
                  "median conductances (mS/cm2): " + ", ".join(f"{c} {m:.4g}" for c, m in zip(model.columns, med)),
                  ""]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    summary = {"model": model.name, "config": asdict(config),
               "predictions": {k: list(v) for k, v in predictions.items()},
               "sizes": {k: len(p.gbar) for k, p in pops.items()},
               "skipped": [list(x) for x in skipped]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return out / "report.md"

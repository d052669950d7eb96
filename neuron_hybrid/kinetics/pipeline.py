"""``neuron-hybrid fit-channel``: curves (or recordings) -> learned current (.pt) + distilled NMODL (.mod).

:func:`fit_channel` takes a channel-curves HDF5 file (or a recording, see :mod:`.recordings`) and writes
into the output folder, for every current of the channel that has gates:

* ``<mechanism>_<current>.pt``: the learned current (gate networks, TorchScript via ``nh.export``);
* ``<suffix>.mod``: the distilled standalone NMODL mechanism (closed forms, no torch);
* ``<mechanism>_<current>.png``: curves, network fits and the chosen closed forms, with the formulas;
* ``fit_report.json``: errors, formulas, parameters, and (unless ``check=False``) the max |dV| between
  the hybrid and the distilled mechanism in a NEURON compartment.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .curves_io import ChannelCurves, load_curves
from .gatenet import GateFitConfig, gated_channel_from_curves

__all__ = ["FitChannelConfig", "fit_channel", "fit_channel_from_curves"]


@dataclass
class FitChannelConfig:
    """Settings of :func:`fit_channel` (units in the names)."""

    gate: GateFitConfig = field(default_factory=GateFitConfig)
    criterion: str = "bic"  # "aic" or "bic"
    cai_mM: float | None = None  # for calcium-dependent gates
    currents: tuple[str, ...] | None = None  # default: every current with gates
    suffix: str | None = None  # distilled mechanism SUFFIX (default <mechanism>_<current>_fit)
    powers: dict = field(default_factory=dict)  # override/declare gate exponents
    e_rev_mV: float | None = None  # override the reversal potential
    gbar_S_cm2: float | None = None  # override gbar
    check: bool = True  # run hybrid vs distilled in NEURON
    progress: bool = True


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", s)


def fit_channel(input_path, out_dir, config: FitChannelConfig | None = None, **recording_kw) -> dict:
    """Dispatch on the input: ``.h5``/``.hdf5`` channel-curves file, or a recording (``.nwb``, ``.csv``,
    ``.npz``/``.npy``) fitted with :func:`neuron_hybrid.kinetics.recordings.fit_recording`."""
    p = Path(input_path)
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist; give a curves file from `neuron-hybrid channel-curves` or a "
                                "recording (.nwb, .csv, .npz)")
    if p.suffix.lower() in (".h5", ".hdf5"):
        return fit_channel_from_curves(load_curves(p), out_dir, config)
    from .recordings import fit_recording

    return fit_recording(p, out_dir, config, **recording_kw)


def fit_channel_from_curves(curves: ChannelCurves, out_dir, config: FitChannelConfig | None = None) -> dict:
    """Gate networks + export + distillation for every gated current of ``curves`` (see module doc)."""
    from ..runtime.export import export
    from .curves import plot_curves
    from .distill import compare_in_neuron, distill_model

    cfg = config or FitChannelConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for g in curves.gates.values():
        if g.name in cfg.powers:
            g.power = int(cfg.powers[g.name])
        if cfg.e_rev_mV is not None:
            g.e_rev = cfg.e_rev_mV
        if cfg.gbar_S_cm2 is not None:
            g.gbar = cfg.gbar_S_cm2
    groups = curves.currents()
    names = list(cfg.currents) if cfg.currents else list(groups)
    report = {"mechanism": curves.mechanism, "source": curves.source, "currents": {}}
    for cur in names:
        model, info = gated_channel_from_curves(curves, cfg.gate, current=cur, cai_mM=cfg.cai_mM, progress=cfg.progress,
                                                gbar_S_cm2=cfg.gbar_S_cm2, e_rev_mV=cfg.e_rev_mV)
        stem = f"{_safe(curves.mechanism)}_{_safe(cur)}"
        suffix = cfg.suffix if (cfg.suffix and len(names) == 1) else (
            f"{cfg.suffix}_{_safe(cur)}" if cfg.suffix else f"{stem}_fit")
        pt = export(model, out / f"{stem}.pt", metadata={
            "mechanism": curves.mechanism, "current": cur, "gates": info["gate_names"], "powers": info["powers"],
            "gbar_S_cm2": info["gbar"], "e_rev_mV": info["e_rev"], "source": curves.source})
        ion = groups[cur][0].ion or None
        distilled = distill_model(model, suffix, ion, np.asarray(groups[cur][0].v), criterion=cfg.criterion)
        mod = distilled.write(out)
        fits = {}
        for k, g in enumerate(distilled.gates):
            gc = curves.gates[g.name].at_cai(cfg.cai_mM) if curves.gates[g.name].depends_on_cai else curves.gates[g.name]
            import torch

            with torch.no_grad():
                zi, ta = model.rates(torch.as_tensor(gc.v, dtype=torch.float64))
            fits[g.name] = {"network": (gc.v, zi[:, k].numpy(), ta[:, k].numpy()),
                            f"{g.x_inf.family.name} / {g.tau.family.name}": (gc.v, g.x_inf(gc.v), g.tau(gc.v))}
        sub = ChannelCurves(curves.mechanism, {g: curves.gates[g].at_cai(cfg.cai_mM) if curves.gates[g].depends_on_cai
                                               else curves.gates[g] for g in info["gate_names"]}, curves.source)
        png = plot_curves(sub, out / f"{stem}.png", fits, title="\n".join(distilled.formulas()))
        entry = {"learned_current": str(pt), "distilled_mod": str(mod), "plot": str(png),
                 "network_x_inf_rmse": dict(zip(info["gate_names"], map(float, info["x_rmse"]))),
                 "network_ln_tau_rmse": dict(zip(info["gate_names"], map(float, info["tau_rel_rmse"]))),
                 "fit_seconds": info["seconds"], "formulas": distilled.formulas(), "distilled": distilled.as_dict()}
        if cfg.check:
            cmp = compare_in_neuron(pt, distilled)
            entry["hybrid_vs_distilled_max_abs_dv_mV"] = cmp["max_abs_dv_mV"]
            entry["check_spikes"] = cmp["spikes"]
            entry["check_spikes_distilled"] = len(cmp["spike_times_distilled_ms"])
            entry["check_max_spike_shift_ms"] = cmp["max_spike_shift_ms"]
        report["currents"][cur] = entry
        if cfg.progress:
            print(f"{curves.mechanism} {cur}: {pt.name}, {mod.name}, {png.name}")
            for line in distilled.formulas():
                print("   " + line)
            if cfg.check:
                print(f"   hybrid vs distilled in NEURON: max |dV| = {entry['hybrid_vs_distilled_max_abs_dv_mV']:.3g} mV; "
                      f"spikes {entry['check_spikes']} vs {entry['check_spikes_distilled']}, max spike-time shift "
                      f"{entry['check_max_spike_shift_ms']:.3g} ms")
    report["config"] = json.loads(json.dumps(asdict(cfg), default=str))
    (out / "fit_report.json").write_text(json.dumps(report, indent=1, default=float))
    return report

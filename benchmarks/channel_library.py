"""Channel-library benchmark (issue 5, part 2): gate networks vs the best closed-form fit, per gate.

Channels: this repository's MOD files measured in NEURON by voltage clamp (channel-curves; Ca-dependent
gates at cai = 5e-4 mM) plus a generated library (neuron_hybrid.kinetics.library: exponential, sigmoid
and linoid alpha/beta rates, Boltzmann and saturating steady states, bell/Gaussian/sigmoid/constant/
two-bump time constants; Na, K, Ca, Ih ranges). Every gate is fitted by
  * the gate networks (one MLP per gate, all gates in one batched ensemble; GateFitConfig), and
  * the closed-form baseline: generalised sigmoid x_inf and the flexible thermodynamic tau (omnimodel form),
on the same 81 voltages (-100..60 mV). Reported per gate: MSE of x_inf, MSE of tau (ms^2, as the prior art),
RMSE of ln tau (relative error); their distributions for both methods, the per-gate ratio network / closed
form, breakdowns by channel class and generating family, and time per channel. Results are checkpointed per
chunk (resume by re-running the same command; --summary-only summarises the chunks done so far).

Full run:    python benchmarks/channel_library.py --n-generated 2400 --out reports/channel_library
Reduced run: python benchmarks/channel_library.py --n-generated 200 --steps 1500 --out /tmp/lib
Partial:     python benchmarks/channel_library.py --out reports/channel_library --summary-only
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from neuron_hybrid.kinetics.closedform import GSIGMOID, THERMO, fit_family
from neuron_hybrid.kinetics.gatenet import GateFitConfig, fit_gate_networks
from neuron_hybrid.kinetics.library import V_GRID, generate_library


def repo_channels(v):
    """This repository's channels measured in NEURON (voltage clamp)."""
    import neuron_hybrid as nh
    from neuron_hybrid.kinetics import CurveConfig, measure_channel_curves
    from neuron_hybrid.runtime.build import package_mod_dir

    nh.load_mechanisms(verbose=False)
    out = []
    mods = sorted(package_mod_dir().joinpath("channels").glob("*.mod"))
    for p in mods:
        try:
            c = measure_channel_curves(p, config=CurveConfig(v_min_mV=float(v[0]), v_max_mV=float(v[-1]),
                                                             v_step_mV=float(v[1] - v[0]), cai_mM=(5e-4,)))
        except ValueError:
            continue  # pools (no gates)
        gates = {}
        for g in c.gates.values():
            g = g.at_cai(5e-4)
            if np.all(np.isfinite(g.tau)) and np.nanmax(g.tau) / max(np.nanmin(g.tau), 1e-12) >= 1.0:
                gates[g.name] = {"x_inf": g.x_inf, "tau": g.tau, "family": "neuron"}
        if gates:
            out.append({"name": c.mechanism, "class": "repo", "gates": gates})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-generated", type=int, default=2400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=3000, help="Adam steps of the gate networks")
    ap.add_argument("--lbfgs-steps", type=int, default=300)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--chunk", type=int, default=400, help="gates per batched network fit (checkpoint unit)")
    ap.add_argument("--no-repo", action="store_true", help="skip this repository's MOD channels")
    ap.add_argument("--out", default="reports/channel_library")
    ap.add_argument("--summary-only", action="store_true",
                    help="summarise the chunks checkpointed so far in --out (no fitting; partial runs allowed)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.summary_only:
        ck = out / "checkpoint.json"
        if not ck.exists():
            raise SystemExit(f"{ck} does not exist: run the benchmark first")
        summary = summarize(json.loads(ck.read_text()), vars(args), None)
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        print(json.dumps({k: summary[k] for k in summary if k != "config"}, indent=1))
        return
    v = V_GRID
    chans = ([] if args.no_repo else repo_channels(v)) + generate_library(args.n_generated, args.seed, v)
    gates = [(c["name"], c["class"], g, d) for c in chans for g, d in c["gates"].items()]
    print(f"{len(chans)} channels, {len(gates)} gates")
    ck = out / "checkpoint.json"
    done = json.loads(ck.read_text()) if ck.exists() else {}
    cfg = GateFitConfig(width=args.width, steps=args.steps, lbfgs_steps=args.lbfgs_steps, seed=args.seed,
                        v_min_mV=float(v[0]), v_max_mV=float(v[-1]))
    from tqdm import tqdm

    for start in tqdm(range(0, len(gates), args.chunk), desc="chunks"):
        key = str(start)
        if key in done:
            continue
        part = gates[start:start + args.chunk]
        t0 = time.perf_counter()
        _, info = fit_gate_networks(v, np.stack([d["x_inf"] for *_, d in part]), np.stack([d["tau"] for *_, d in part]), cfg)
        t_nn = time.perf_counter() - t0
        t0 = time.perf_counter()
        base = []
        for *_, d in part:
            fx = fit_family(GSIGMOID, v, d["x_inf"], max_nfev=200)
            ft = fit_family(THERMO, v, d["tau"], max_nfev=300)
            px, pt = fx(v), ft(v)
            base.append((float(np.mean((px - d["x_inf"]) ** 2)), float(np.mean((pt - d["tau"]) ** 2)),
                         float(np.sqrt(np.mean((np.log(np.maximum(pt, 1e-30)) - np.log(d["tau"])) ** 2)))))
        t_cf = time.perf_counter() - t0
        done[key] = {"names": [f"{n}.{g}" for n, _, g, _ in part], "class": [c for _, c, _, _ in part],
                     "family": [d["family"] for *_, d in part],
                     "nn_x_mse": info["x_mse"].tolist(), "nn_tau_mse": info["tau_mse"].tolist(),
                     "nn_ln_tau_rmse": info["tau_rel_rmse"].tolist(),
                     "cf_x_mse": [b[0] for b in base], "cf_tau_mse": [b[1] for b in base],
                     "cf_ln_tau_rmse": [b[2] for b in base], "seconds_nn": t_nn, "seconds_cf": t_cf}
        ck.write_text(json.dumps(done))
    summary = summarize(done, vars(args), len(gates))
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: summary[k] for k in summary if k != "config"}, indent=1))


def summarize(done: dict, config: dict, n_gates_total: int | None) -> dict:
    """Per-gate error distributions of the gate networks and of the closed-form baseline (same gates, same
    81 voltages), their per-gate ratio, breakdowns by channel class and generating family, and time per channel,
    over the checkpointed chunks ``done``."""
    chunks = [done[k] for k in sorted(done, key=int)]
    keys = ("nn_x_mse", "nn_tau_mse", "nn_ln_tau_rmse", "cf_x_mse", "cf_tau_mse", "cf_ln_tau_rmse")
    cat = {k: np.concatenate([np.asarray(d[k], dtype=float) for d in chunks]) for k in keys}
    names = [n for d in chunks for n in d["names"]]
    cls = np.array([c for d in chunks for c in d["class"]])
    fam = np.array([f for d in chunks for f in d["family"]])
    n_ch = len({n.rsplit(".", 1)[0] for n in names})  # channels whose gates were all fitted in these chunks
    t_nn = sum(d["seconds_nn"] for d in chunks)
    t_cf = sum(d["seconds_cf"] for d in chunks)

    def q(x):
        x = np.asarray(x, dtype=float)
        x = x[np.isfinite(x)]
        return {"median": float(np.median(x)), "p90": float(np.percentile(x, 90)), "p99": float(np.percentile(x, 99)),
                "max": float(np.max(x))} if x.size else {}

    # log10(network / closed form) per gate; errors below the floor (x_inf RMSE 1e-6, ln tau RMSE 1e-6) count
    # as the floor, so an exact closed-form fit (a generated gate of that very family) does not dominate
    floors = {"x_inf_mse": 1e-12, "ln_tau_rmse": 1e-6}

    def ratio(a, b, floor):
        return np.log10(np.maximum(a, floor) / np.maximum(b, floor))

    good = lambda xm, lt: (xm < 1e-4) & (lt < 0.05)  # noqa: E731  x_inf RMSE < 0.01 and tau within ~5 %
    nn_ok, cf_ok = good(cat["nn_x_mse"], cat["nn_ln_tau_rmse"]), good(cat["cf_x_mse"], cat["cf_ln_tau_rmse"])

    def group(mask):
        return {"gates": int(mask.sum()),
                "network": {"x_inf_mse_median": float(np.median(cat["nn_x_mse"][mask])),
                            "ln_tau_rmse_median": float(np.median(cat["nn_ln_tau_rmse"][mask])),
                            "gates_fit_ok": int(nn_ok[mask].sum())},
                "closed_form": {"x_inf_mse_median": float(np.median(cat["cf_x_mse"][mask])),
                                "ln_tau_rmse_median": float(np.median(cat["cf_ln_tau_rmse"][mask])),
                                "gates_fit_ok": int(cf_ok[mask].sum())}}

    return {
        # unknown (None) for --summary-only: the library is not regenerated there; rerun the full command to check
        "complete": None if n_gates_total is None else len(names) == n_gates_total,
        "chunks_done": len(chunks), "channels": n_ch, "gates": int(len(names)),
        "network": {"x_inf_mse": q(cat["nn_x_mse"]), "tau_mse_ms2": q(cat["nn_tau_mse"]),
                    "ln_tau_rmse": q(cat["nn_ln_tau_rmse"]), "seconds_per_channel": t_nn / n_ch,
                    "gates_fit_ok": int(nn_ok.sum())},
        "closed_form": {"x_inf_mse": q(cat["cf_x_mse"]), "tau_mse_ms2": q(cat["cf_tau_mse"]),
                        "ln_tau_rmse": q(cat["cf_ln_tau_rmse"]), "seconds_per_channel": t_cf / n_ch,
                        "gates_fit_ok": int(cf_ok.sum())},
        "network_better_x_inf": float(np.mean(cat["nn_x_mse"] < cat["cf_x_mse"])),
        "network_better_tau": float(np.mean(cat["nn_ln_tau_rmse"] < cat["cf_ln_tau_rmse"])),
        "per_gate_log10_ratio_network_over_closed_form": {
            "floors": floors,
            "x_inf_mse": q(ratio(cat["nn_x_mse"], cat["cf_x_mse"], floors["x_inf_mse"])),
            "ln_tau_rmse": q(ratio(cat["nn_ln_tau_rmse"], cat["cf_ln_tau_rmse"], floors["ln_tau_rmse"])),
            "closed_form_exact_x_inf": float(np.mean(cat["cf_x_mse"] < floors["x_inf_mse"])),
            "closed_form_exact_tau": float(np.mean(cat["cf_ln_tau_rmse"] < floors["ln_tau_rmse"]))},
        "by_class": {c: group(cls == c) for c in sorted(set(cls))},
        "by_family": {f: group(fam == f) for f in sorted(set(fam))},
        "config": config,
    }


if __name__ == "__main__":
    main()

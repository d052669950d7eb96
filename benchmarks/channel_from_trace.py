"""Seed table: unknown gating recovered from one current-clamp trace (issue 5, part 3).

For each condition (observation noise sd as a fraction of max|V|; parameter misspecification sd) and
seed, one clean training trace (the multi-step protocol of neuron_hybrid.kinetics.trace.training_protocol:
a hyperpolarising step, steps of 0.4, 1 and 2 x amp and an OU segment, 200 ms, dt 0.025 ms) is generated
with the true model, white noise is added, the assumed parameters are perturbed (cm, g_leak, e_leak, g/E of every channel, x(1 + s N(0,1))),
and the learned gates (K: n, or Na: m, h) are trained with neuron_hybrid.kinetics.trace.train_members
(all seeds x conditions in one batch). Evaluation: free-running hybrid (assumed parameters) vs the clean
truth on the training stimulus and on held-out stimuli (other amplitudes, a 100 ms step, an OU noisy
current). Converged: mean held-out RMSE < 2 mV (the issue's criterion); also reported: the mean held-out spike
coincidence factor Gamma (+-2 ms), the fraction of seeds with Gamma >= 0.9, and how many unconverged seeds fit their
noisy training trace worse than the true model does ("misses above truth": search failures; the other misses fit the
trace as well as the truth, so the trace does not determine their gates). Each seed also selects among
--restarts initialisations by its free-running error on the (noisy) training trace only.

It also prints how strict the criterion is: the held-out RMSE of the *true* model with the learned gates'
curves shifted by 0.1-0.5 mV or their tau scaled by 1.005-1.02 (HH K n: a 0.1 mV shift already gives 9 mV, tau
x1.01 gives 3.5 mV; the 100 ms step and the near-threshold 0.7x step are the most sensitive tests), and a noise
bound (noise_bound): the Cramer-Rao / Bayesian bound of the training trace for the learned gates, and the held-out
error of draws from it, i.e. what an efficient estimator would reach at each noise level. HH K n, flexible curves
(17 bumps per curve), held-out RMSE < 2 mV in 100/30/20 % of draws at 1/5/10 % noise with prior sd 1 per bump,
100/100/55 % with prior sd 0.3; Gamma >= 0.9 in 90-100 % either way.

Measured (HH K n, 10 seeds, --quick --restarts 2, closed-form stage with the known parameters refined and the 40-
iteration polish, 3603 s for 70 members on one thread while other jobs shared the 2 cores): converged 100/100/70/20 %
at noise 0/1/5/10 %, 100/50/40 % at misspecification 1/2/5 % (before the polish: 100/100/50/10 % and 100/40/20 %;
networks alone: 100/30/0/0 % and 30/0/0 %); Gamma >= 0.9 in 100 % up to 1 % noise and 2 % misspecification. With
--cm-refine-known on (known parameters estimated in current matching, held through the curricula, polished): 100/100/80/50 %
and 70/90/90 % (3553 s). With --cm-refine-known both (the default since s15: each seed trained both ways, the fit closer
to its training trace kept): 100/100/90/50 % and 100/80/90 % (3202 + 3106 s). Pospischil K n, 10 seeds,
both ways (--model pospischil): 100/100/50/50 % at noise 0/1/5/10 %, 100/100/100 % at misspecification 1/2/5 %, Gamma
>= 0.9 in 100 % but 90 % at 5 % noise (3377 s for 70 members, one thread shared with other jobs).
Pospischil Na m, h (--learn na, 3 closed-form starts): 90/0/0/0 % at noise 0/1/5/10 %, 70/50/30 % at misspecification
1/2/5 %, Gamma >= 0.9 in 90-100 % everywhere (6269 + 4227 s in two processes; the criterion is far stricter for Na: the
true model with tau x1.005 scores 2.8 mV held-out). Since current matching keeps time constants above dt
(TraceFitConfig.cm_tau_floor_dt) and members above the noise floor get restart rounds: Pospischil Na, 10 seeds, --quick
--restarts 2 --cm-refine-known off: 100 % clean, 80 % at 1 % noise (was 40 %).

Full run:    python benchmarks/channel_from_trace.py --seeds 10 --out reports/channel_from_trace
Reduced run: python benchmarks/channel_from_trace.py --seeds 2 --conditions 0:0 0.1:0 0:0.05 --quick
"""
import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from neuron_hybrid.kinetics.trace import (HH, LEARN, MODELS, TraceFitConfig, member_rmse, noisy_stimulus, simulate,
                                          step_stimulus, train_members, training_protocol, learned_curves)

DEFAULT_CONDITIONS = ["0:0", "0.01:0", "0.05:0", "0.1:0", "0:0.01", "0:0.02", "0:0.05"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="hh", choices=sorted(MODELS))
    ap.add_argument("--learn", default="k", choices=sorted(LEARN))
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--seed-list", type=int, nargs="+", default=None,
                    help="these seeds instead of 0 .. SEEDS-1 (each seed's noise and initialisations are its own)")
    ap.add_argument("--conditions", nargs="+", default=DEFAULT_CONDITIONS, help="noise:misspecification pairs")
    ap.add_argument("--amp", type=float, default=0.01, help="training step (mA/cm2)")
    ap.add_argument("--train-repeats", type=int, default=1,
                    help="training trace of N x 200 ms: the protocol repeated with new noise seeds (default 1)")
    ap.add_argument("--quick", action="store_true", help="reduced training steps (in-session smoke run)")
    ap.add_argument("--out", default="reports/channel_from_trace")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--restarts", type=int, default=4, help="initialisations per seed (best on the training trace)")
    ap.add_argument("--cl-steps", type=int, default=None,
                    help="closed-loop Adam steps over the whole training trace after multiple shooting (TraceFitConfig.cl_steps)")
    ap.add_argument("--windows", type=float, nargs="+", default=None,
                    help="multiple-shooting window lengths in ms (TraceFitConfig.window_ms)")
    ap.add_argument("--fixed-conductance", action="store_true",
                    help="do not learn a conductance scale / reversal shift of the learned channel")
    ap.add_argument("--no-bound", action="store_true", help="skip the noise bound (Cramer-Rao) computation")
    ap.add_argument("--parametric", default=None, choices=["select", "always", "off"],
                    help="closed-form stage of train_members (TraceFitConfig.parametric; default: select)")
    ap.add_argument("--refine-known", default=None, nargs="+",
                    help="known parameters refined with the closed forms (TraceFitConfig.refine_known): 'all' (default), "
                         "'none', or names such as e_leak g_na")
    ap.add_argument("--cm-refine-known", default=None, choices=["on", "off", "both"],
                    help="refine those known parameters already in current matching (TraceFitConfig.cm_refine_known; "
                         "both: train each seed both ways and keep the fit closer to its training trace)")
    ap.add_argument("--cm-known-fixed-until-polish", default=None, choices=["on", "off"],
                    help="with --cm-refine-known on: hold them through the closed-form curricula, refine in the polish "
                         "(TraceFitConfig.cm_known_fixed_until_polish, default on)")
    ap.add_argument("--lm-starts", type=int, default=None,
                    help="starting points per closed-form combination (TraceFitConfig.parametric_lm_starts)")
    ap.add_argument("--smooth-auto", type=float, nargs=2, default=None, metavar=("BASE", "PER_MV"),
                    help="automatic smoothing of noisy traces: Savitzky-Golay half-width BASE + PER_MV x noise sd "
                         "samples (TraceFitConfig.smooth_auto, default 3 1)")
    ap.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="FIELD=VALUE",
                    help="any TraceFitConfig field, e.g. --set cm_filter=1.0 restarts=4 (VALUE a Python literal); "
                         "applied after the other options")
    ap.add_argument("--bound-only", action="store_true", help="print the noise bounds only (no training)")
    ap.add_argument("--bound-families", nargs="+", default=["shift_tau", "flex", "closed", "closed_known"],
                    help="parameter families of the noise bound (see noise_bound)")
    ap.add_argument("--bound-prior-sd", type=float, default=1.0,
                    help="prior sd per bump coefficient of the flexible noise bound (logit x_inf and ln tau units)")
    args = ap.parse_args(argv)
    if args.train_repeats < 1:
        ap.error(f"--train-repeats must be >= 1, got {args.train_repeats}")
    torch.set_num_threads(args.threads)
    model = MODELS[args.model]
    dt = 0.025
    conds = [tuple(float(x) for x in c.split(":")) for c in args.conditions]
    seed_list = args.seed_list if args.seed_list else list(range(args.seeds))
    members = [(c, s) for c in conds for s in seed_list]
    M = len(members)
    t = torch.arange(0, 50, dt, dtype=torch.float64) + dt / 2
    stim = training_protocol(dt, args.amp, repeats=args.train_repeats)[1].repeat(M, 1)
    true_p = {k: torch.full((M,), v, dtype=torch.float64) for k, v in model.default_params().items()}
    with torch.no_grad():
        v_clean = simulate(model, stim, dt, true_p)
    v_obs = v_clean.clone()
    assumed = {k: v.clone() for k, v in true_p.items()}
    for i, ((noise, mis), seed) in enumerate(members):
        g = torch.Generator().manual_seed(1000 + seed)
        vmax = v_clean[i].abs().max()
        v_obs[i] += noise * vmax * torch.randn(v_obs.shape[1], generator=g, dtype=torch.float64)
        if mis > 0:
            for k in assumed:
                assumed[k][i] = assumed[k][i] * (1 + mis * torch.randn((), generator=g, dtype=torch.float64))
    learned = LEARN[args.learn]
    tests = {"train": (stim, 200.0 * args.train_repeats)}
    t100 = torch.arange(0, 100, dt, dtype=torch.float64) + dt / 2
    for a in (0.7, 1.3):
        tests[f"step_x{a}"] = (step_stimulus(t, 5, 40, args.amp * a).repeat(M, 1), 50.0)
    tests["long_100ms"] = (step_stimulus(t100, 5, 90, args.amp).repeat(M, 1), 100.0)
    tests["ou_noise"] = (noisy_stimulus(t100, 5, 90, args.amp, args.amp * 0.5, 2.0, 7).repeat(M, 1), 100.0)
    held_tests = {k: v for k, v in tests.items() if k != "train"}
    with torch.no_grad():  # the unperturbed truth on each held-out test, one member
        v_truth = {k: simulate(model, s[:1], dt, model.default_params()) for k, (s, _) in held_tests.items()}
    fracs = sorted({c[0] for c in conds if c[0] > 0} | {0.01, 0.05, 0.1})

    def bounds():
        return [row for fam in args.bound_families for row in
                noise_bound(model, learned, args.learn, stim[:1], dt, held_tests, v_truth, fracs, fam,
                            conductance=not args.fixed_conductance, prior_sd=args.bound_prior_sd)]

    if args.bound_only:
        bound = bounds()
        _print_bound(bound)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "noise_bound.json").write_text(json.dumps({"model": args.model, "learn": args.learn, "noise_bound": bound},
                                                         indent=1, default=str))
        print(f"wrote {out}/noise_bound.json")
        return
    cfg = TraceFitConfig(seed=0, restarts=args.restarts, learn_conductance=not args.fixed_conductance)
    if args.quick:
        cfg.prior_steps, cfg.cm_steps, cfg.cm_lbfgs_steps, cfg.tf_steps, cfg.window_ms = 150, 150, 200, 8, (3.0,)
    if args.cl_steps is not None:
        cfg.cl_steps = args.cl_steps
    if args.parametric is not None:
        cfg.parametric = args.parametric
    if args.windows:
        cfg.window_ms = tuple(args.windows)
    if args.smooth_auto is not None:
        cfg.smooth_auto = tuple(args.smooth_auto)
    if args.lm_starts is not None:
        cfg.parametric_lm_starts = args.lm_starts
    if args.refine_known is not None:
        rk = args.refine_known
        cfg.refine_known = () if rk == ["none"] else ("all" if rk == ["all"] else tuple(rk))
    for flag in ("cm_refine_known", "cm_known_fixed_until_polish"):  # on/off switches of TraceFitConfig
        if getattr(args, flag) is not None:
            setattr(cfg, flag, "both" if getattr(args, flag) == "both" else getattr(args, flag) == "on")
    _apply_overrides(cfg, args.overrides)
    t0 = time.perf_counter()
    # member (condition, seed) is initialised from seed alone: the same networks in every condition, and the same
    # fit whatever other seeds or conditions share the batch
    nets = train_members(model, args.learn, stim, v_obs, dt, assumed, cfg, progress=True,
                         member_seeds=[s for _, s in members])
    train_s = time.perf_counter() - t0
    rm, gam = {}, {}
    with torch.no_grad():
        for name, (s, dur) in tests.items():
            vt = simulate(model, s, dt, true_p)
            vh = simulate(model, s, dt, assumed, nets, learned)
            rm[name] = member_rmse(vh, vt).numpy()
            gam[name] = member_gamma(vt.numpy(), vh.numpy(), dt, dur)
    # the true model (true parameters) on the noisy training trace: the noise realisation's RMS. A fit that runs
    # further from the trace than this is a search miss (its model class holds a better fit: the truth)
    truth_fit = member_rmse(v_clean, v_obs).numpy()
    held = np.mean([rm[k] for k in held_tests], axis=0)
    held_gamma = np.nanmean([gam[k] for k in held_tests], axis=0)
    sens = criterion_sensitivity(model, learned, held_tests, v_truth, dt)
    bound = bounds() if not args.no_bound else []
    rows = []
    print(f"\n{args.model}, learned {args.learn} gates {learned}; {M} members trained together in {train_s:.0f} s")
    print(f"{'noise':>6} {'misspec':>8} {'seeds':>5} {'converged':>9} {'median held-out RMSE':>21} {'median train RMSE':>18}"
          f" {'Gamma>=0.9':>10} {'median Gamma':>12} {'misses above truth':>18}"
          + (f" {'closed form':>11}" if hasattr(nets, "use_parametric") else ""))
    for c in conds:
        idx = [i for i, (cc, _) in enumerate(members) if cc == c]
        h, fit = held[idx], nets.train_rmse.numpy()[idx]
        missed = h >= 2.0
        row = {"noise_sd_frac": c[0], "misspec_sd": c[1], "seeds": len(idx), "converged": float(np.mean(~missed)),
               "median_heldout_rmse_mV": float(np.median(h)), "median_train_rmse_mV": float(np.median(rm["train"][idx])),
               "median_fit_rmse_vs_noisy_mV": float(np.median(fit)),
               "per_seed_fit_rmse_vs_noisy_mV": fit.tolist(),
               "per_seed_truth_rmse_vs_noisy_mV": truth_fit[idx].tolist(),
               # unconverged seeds whose fit is further from the noisy trace than the truth (search misses); the
               # other misses fit the trace as well as the truth does (the trace does not pin their gates down)
               "misses_above_truth": int(np.sum(missed & (fit > truth_fit[idx]))),
               "per_seed_heldout_rmse_mV": h.tolist(),
               "converged_gamma_0.9": float(np.mean(held_gamma[idx] >= 0.9)),
               "median_heldout_gamma": float(np.median(held_gamma[idx])),
               "per_seed_heldout_gamma": held_gamma[idx].tolist()}
        if hasattr(nets, "use_parametric"):  # the closed-form stage ran: how often it was kept, and its fits
            row["closed_form_kept"] = float(nets.use_parametric[idx].double().mean())
            row["per_seed_fit_rmse_networks_mV"] = nets.network_train_rmse[idx].tolist()
            row["per_seed_fit_rmse_closed_form_mV"] = nets.parametric_train_rmse[idx].tolist()
            row["per_seed_model"] = [nets.describe(i) for i in idx]
        if hasattr(nets, "pick"):  # cm_refine_known="both": which fit each seed kept
            row["per_seed_fit_kept"] = [nets.candidate_names[int(i)] for i in nets.pick[idx]]
        rows.append(row)
        print(f"{c[0]:6.2f} {c[1]:8.2f} {len(idx):5d} {row['converged']:9.0%} {row['median_heldout_rmse_mV']:21.2f} "
              f"{row['median_train_rmse_mV']:18.2f} {row['converged_gamma_0.9']:10.0%} {row['median_heldout_gamma']:12.2f}"
              f" {row['misses_above_truth']:9d} of {int(missed.sum()):<5d}"
              + (f" {row['closed_form_kept']:11.0%}" if "closed_form_kept" in row else ""))
    print("\ncriterion sensitivity: held-out RMSE (mV) of the TRUE model with its learned-gate curves perturbed")
    for row in sens:
        print(f"  shift {row['shift_mV']:5.2f} mV, tau x{row['tau_factor']:.3f}: {row['heldout_rmse_mV']:6.2f} mV, "
              f"Gamma {row['heldout_gamma']:.2f}  "
              f"(per test {row['per_test_rmse_mV']})")
    _print_bound(bound)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    vgrid = np.linspace(-100, 60, 161)
    curves = learned_curves(nets, vgrid)
    np.savez(out / "learned_curves.npz", v=vgrid, visited=v_clean.numpy(),
             **{f"{g}_x_inf": a for g, (a, _) in curves.items()}, **{f"{g}_tau": b for g, (_, b) in curves.items()})
    _plot(out, model, learned, vgrid, curves, v_clean.numpy(), members)
    (out / "seed_table.json").write_text(json.dumps({"model": args.model, "learn": args.learn, "quick": args.quick,
                                                     "train_seconds": train_s, "config": cfg.__dict__, "rows": rows,
                                                     "visited_mV": [float(v_clean.min()), float(v_clean.max())],
                                                     "criterion_sensitivity": sens, "noise_bound": bound,
                                                     "rmse_by_test": {k: v.tolist() for k, v in rm.items()},
                                                     "gamma_by_test": {k: v.tolist() for k, v in gam.items()}},
                                                    indent=1, default=str))
    print(f"wrote {out}/seed_table.json, learned_curves.npz, learned_vs_true.png")


def _apply_overrides(cfg: TraceFitConfig, overrides):
    """Set ``FIELD=VALUE`` pairs (VALUE a Python literal) on ``cfg``; unknown fields or bad values raise SystemExit."""
    import ast
    import dataclasses

    fields = {f.name for f in dataclasses.fields(cfg)}
    for item in overrides:
        name, sep, text = item.partition("=")
        if not sep or name not in fields:
            raise SystemExit(f"--set {item!r}: expected FIELD=VALUE with FIELD one of TraceFitConfig's fields: "
                             f"{', '.join(sorted(fields))}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise SystemExit(f"--set {item!r}: VALUE must be a Python literal (number, string in quotes, tuple)")
        setattr(cfg, name, value)


def _print_bound(bound):
    if not bound:
        return
    print("\nnoise bound (Cramer-Rao, training trace): sd of the learned gates' parameters that no unbiased estimator can "
          "beat, and the held-out error of the truth perturbed by draws from it")
    for row in bound:
        sds = ", ".join(f"{k} " + (f"{v:.3g}" if np.isscalar(v) else f"{v[0]:.3g}-{v[1]:.3g}") for k, v in row["bound_sd"].items())
        print(f"  {row['family']:12s} noise {row['noise_sd_frac']:.2f} (sigma {row['sigma_mV']:.2f} mV): held-out RMSE median "
              f"{row['median_heldout_rmse_mV']:.2f} mV, < 2 mV in {row['fraction_rmse_below_2mV']:.0%}, "
              f"Gamma >= 0.9 in {row['fraction_gamma_0.9']:.0%}; sd {sds}")


class _PerturbedTruth(torch.nn.Module):
    """The true curves of the learned gates, shifted by ``shift_mV`` along V and with tau scaled by ``tau_factor``:
    floats (every gate, every member) or {gate: tensor [M]} (per gate and member)."""

    def __init__(self, model, gates, shift_mV, tau_factor):
        super().__init__()
        self.model, self.gates, self.shift, self.factor = model, gates, shift_mV, tau_factor

    @staticmethod
    def _of(x, g):
        x = x[g] if isinstance(x, dict) else x
        return x.reshape(-1, 1) if torch.is_tensor(x) else x

    def forward(self, v):
        out = {}
        for g in self.gates:
            r = _true_rates(self.model, v - self._of(self.shift, g), (g,))[g]
            out[g] = (r[0], r[1] * self._of(self.factor, g))
        return out


def _true_rates(model, v, gates):
    """{gate: (x_inf, tau)} of the true model for ``gates`` only (the others are not computed)."""
    from neuron_hybrid.kinetics.trace.compartment import _known_rates

    return _known_rates(model, v, tuple(g for _, g, _ in model.gate_list() if g not in gates))


class _FlexTruth(torch.nn.Module):
    """The true curves of the learned gates bent by Gaussian bumps along V: logit x_inf + sum_k a_k phi_k(V),
    ln tau + sum_k b_k phi_k(V), phi_k = exp(-(V - c_k)^2 / (2 w^2)); a, b: {gate: tensor [M, K]}."""

    def __init__(self, model, gates, a, b, centers_mV, width_mV):
        super().__init__()
        self.model, self.gates, self.a, self.b = model, gates, a, b
        self.c, self.w = torch.as_tensor(centers_mV, dtype=torch.float64), float(width_mV)

    def forward(self, v):
        phi = torch.exp(-0.5 * ((v - self.c) / self.w) ** 2)  # [M, K] (v: [M, 1])
        r = _true_rates(self.model, v, self.gates)
        out = {}
        for g in self.gates:
            x = r[g][0].clamp(1e-12, 1 - 1e-12)
            da = (self.a[g] * phi).sum(1, keepdim=True)
            db = (self.b[g] * phi).sum(1, keepdim=True)
            out[g] = (torch.sigmoid(torch.logit(x) + da), r[g][1] * torch.exp(db))
        return out


#: Gaussian bumps of the flexible family: every 10 mV over -100..60 mV, sd 7 mV
FLEX_CENTERS_MV, FLEX_WIDTH_MV = tuple(float(c) for c in range(-100, 61, 10)), 7.0


def noise_bound(model, learned, learn, stim, dt, tests, v_truth, noise_fracs, family: str = "shift_tau",
                conductance: bool = True, prior_sd: float = 1.0, draws: int = 20, seed: int = 0, known_sd: float = 0.05):
    """Cramer-Rao bound of the training trace: how well an efficient estimator could pin the learned gates from
    one trace with white observation noise, and the held-out error that precision implies.

    family "shift_tau": per learned gate a shift of x_inf and tau along V (mV) and ln of a tau factor (2 per gate:
    the bound of a model that knows the curves' shape). "flex": per gate and curve 17 Gaussian bumps added to
    logit x_inf and ln tau (34 per gate; curves free in shape at 10 mV resolution), with a N(0, prior_sd^2) prior
    per coefficient so that directions the trace does not see (voltages it never visits) stay finite (the
    Bayesian bound). "closed": the free parameters of the closed form (:mod:`neuron_hybrid.kinetics.parametric`)
    that contains the true gate exactly, i.e. the bound of the trace fit's own closed-form stage; "closed_known":
    the same with the known compartment's parameters refined under their prior sd ``known_sd`` (relative; E:
    relative to |E|, at least 0.5 mV), as with ``TraceFitConfig.refine_known="all"``. With ``conductance`` also ln g and the reversal shift (mV) of the learned channel, as the
    trace fit learns them. Fisher information J^T J / sigma^2 from central differences of the simulated training
    trace (sigma = noise fraction x max|V|, mV). For each noise fraction: the bound's sd per parameter (the largest
    per group for "flex"), and ``draws`` parameter sets drawn from it run on the held-out tests: median held-out
    RMSE (mV), fraction < 2 mV, fraction with Gamma >= 0.9: what an efficient estimator would typically reach.
    v_truth: {test: V [1, T+1]} of the unperturbed truth on ``tests``."""
    p0 = model.default_params()
    K = len(FLEX_CENTERS_MV)
    if family == "shift_tau":
        names = [(g, "shift_mV") for g in learned] + [(g, "ln_tau") for g in learned]
    elif family == "flex":
        names = [(g, f"{c}{k}") for g in learned for c in ("logit_xinf_bump", "ln_tau_bump") for k in range(K)]
    elif family in ("closed", "closed_known"):
        fam0, th0, slots = _true_closed_forms(model, learned)
        names = [(learned[j], f"slot{k}") for j, k in slots]
    else:
        raise ValueError(f"family must be 'shift_tau', 'flex', 'closed' or 'closed_known', not {family!r}")
    n_gate = len(names)
    if conductance:
        names += [(learn, "ln_g"), (learn, "dE_mV")]
    known = [k for k in p0 if k not in (f"g_{learn}", f"e_{learn}")] if family == "closed_known" else []
    names += [(k, "dE_mV" if k.startswith("e_") else "ln") for k in known]
    P = len(names)

    def truth(theta):
        if family in ("closed", "closed_known"):
            from neuron_hybrid.kinetics.parametric import ParametricGates

            M = theta.shape[0]
            th = th0.unsqueeze(0).repeat(M, 1, 1)
            for i, (j, k) in enumerate(slots):
                th[:, j, k] = th[:, j, k] + theta[:, i]
            # the known parameters' perturbations as the trace fit's own corrections (ln factors; E in 10 mV units)
            ku = theta[:, P - len(known):] / torch.tensor([10.0 if k.startswith("e_") else 1.0 for k in known],
                                                          dtype=torch.float64)
            return ParametricGates(fam0.unsqueeze(0).repeat(M, 1), th, learned, learn, False, known=tuple(known),
                                   known_u=ku)
        if family == "shift_tau":
            shift = {g: theta[:, names.index((g, "shift_mV"))] for g in learned}
            fac = {g: torch.exp(theta[:, names.index((g, "ln_tau"))]) for g in learned}
            return _PerturbedTruth(model, learned, shift, fac)
        a = {g: theta[:, j * 2 * K: j * 2 * K + K] for j, g in enumerate(learned)}
        b = {g: theta[:, j * 2 * K + K: (j + 1) * 2 * K] for j, g in enumerate(learned)}
        return _FlexTruth(model, learned, a, b, FLEX_CENTERS_MV, FLEX_WIDTH_MV)

    def run(stim_1, theta):  # theta [M, P] -> V [M, T+1] of the truth perturbed along theta
        M = theta.shape[0]
        prm = {k: torch.full((M,), float(v), dtype=torch.float64) for k, v in p0.items()}
        if conductance:
            prm[f"g_{learn}"] = prm[f"g_{learn}"] * torch.exp(theta[:, names.index((learn, "ln_g"))])
            prm[f"e_{learn}"] = prm[f"e_{learn}"] + theta[:, names.index((learn, "dE_mV"))]
        return simulate(model, stim_1.repeat(M, 1), dt, prm, truth(theta), learned)

    h = torch.full((P,), 1e-4, dtype=torch.float64)
    theta = torch.cat([torch.diag(h), -torch.diag(h)])
    with torch.no_grad():
        v_true = simulate(model, stim[:1], dt, p0)
        vv = run(stim[:1], theta)
    J = ((vv[:P] - vv[P:]) / (2 * h.reshape(-1, 1))).T  # [T+1, P], mV per parameter unit
    fisher_unit = (J.T @ J).numpy()  # for sigma = 1 mV
    if family == "flex":
        prior = np.r_[np.full(n_gate, prior_sd ** -2.0), np.zeros(P - n_gate)]
    else:  # the refined known parameters have the trace fit's prior (TraceFitConfig.refine_known_sd)
        ksd = [max(known_sd * abs(p0[k]), 0.5) if k.startswith("e_") else known_sd for k in known]
        prior = np.r_[np.zeros(P - len(known)), np.asarray(ksd) ** -2.0] + 1e-9
    vmax = float(v_true.abs().max())
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for frac in noise_fracs:
        sigma = frac * vmax
        cov = np.linalg.inv(fisher_unit / sigma ** 2 + np.diag(prior))
        cov = 0.5 * (cov + cov.T)
        w, U = np.linalg.eigh(cov)
        L = torch.as_tensor(U * np.sqrt(np.clip(w, 0, None)), dtype=torch.float64)
        th = torch.randn(draws, P, generator=gen, dtype=torch.float64) @ L.T
        rm, gm = [], []
        with torch.no_grad():
            for k, (s_, dur) in tests.items():
                vt = v_truth[k].repeat(draws, 1)
                vp = run(s_[:1], th)
                rm.append(member_rmse(vp, vt).numpy())
                gm.append(member_gamma(vt.numpy(), vp.numpy(), dt, dur))
        held, gam = np.mean(rm, axis=0), np.nanmean(gm, axis=0)
        sd = np.sqrt(np.diag(cov))
        groups = {}  # the best- and worst-determined coefficient of each group (bumps at unvisited voltages: prior_sd)
        for (g, k), x in zip(names, sd):
            key = f"{g}:{k.rstrip('0123456789')}"
            lo, hi = groups.get(key, (math.inf, 0.0))
            groups[key] = (min(lo, float(x)), max(hi, float(x)))
        groups = {k: v[0] if v[0] == v[1] else list(v) for k, v in groups.items()}
        rows.append({"family": family, "noise_sd_frac": frac, "sigma_mV": sigma, "bound_sd": groups,
                     "median_heldout_rmse_mV": float(np.median(held)), "fraction_rmse_below_2mV": float(np.mean(held < 2.0)),
                     "fraction_gamma_0.9": float(np.mean(gam >= 0.9)), "median_heldout_gamma": float(np.median(gam))})
    return rows


def _true_closed_forms(model, learned):
    """(family [G], theta [G, 8], free slots [(gate index, slot)]) of the closed forms that reproduce the true
    learned gates (the best family of each; HH and Pospischil gates are members, fit loss ~1e-10)."""
    from neuron_hybrid.kinetics.parametric import ParametricGates, fit_to_curves

    v = torch.linspace(-100, 60, 161, dtype=torch.float64)
    r = _true_rates(model, v, learned)
    X = torch.stack([r[g][0] for g in learned])
    TAU = torch.stack([r[g][1] for g in learned])
    losses, theta, fams = fit_to_curves(v, X, TAU, iters=200)
    best = losses.argmin(1)
    fam0 = torch.tensor([fams[int(b)] for b in best])
    th0 = torch.stack([theta[j, int(b)] for j, b in enumerate(best)])
    free = ParametricGates(fam0.unsqueeze(0), th0.unsqueeze(0), learned).free_mask()[0]
    return fam0, th0, [(j, k) for j in range(len(learned)) for k in range(free.shape[1]) if bool(free[j, k])]


def member_gamma(v_true, v_model, dt, duration_ms, delta_ms=2.0):
    """Per member: Kistler coincidence factor (+-delta_ms) of the model's spikes against the truth's
    (0 mV upward crossings; 1.0 when neither fires). Voltages [M, T] in mV sampled every dt ms."""
    from neuron_hybrid.bench.metrics import coincidence_factor, spike_times

    t = (np.arange(v_true.shape[1]) + 0.5) * dt
    return np.array([coincidence_factor(spike_times(t, a), spike_times(t, b), duration_ms, delta_ms)
                     for a, b in zip(v_true, v_model)])


def criterion_sensitivity(model, learned, tests, v_truth, dt, perturbations=((0.0, 1.005), (0.0, 1.01), (0.0, 1.02),
                                                                    (0.1, 1.0), (0.25, 1.0), (0.5, 1.0))):
    """How strict "held-out RMSE < 2 mV" is: the held-out RMSE of the true model whose learned-gate curves are
    perturbed by a small voltage shift (mV) or tau factor, against the unperturbed truth (same tests)."""
    p = model.default_params()
    rows = []
    with torch.no_grad():
        for shift, factor in perturbations:
            fake = _PerturbedTruth(model, learned, shift, factor)
            per, gam = {}, {}
            for k, (s, dur) in tests.items():
                vp, vt = simulate(model, s[:1], dt, p, fake, learned), v_truth[k]
                per[k] = float(member_rmse(vp, vt)[0])
                gam[k] = float(member_gamma(vt.numpy(), vp.numpy(), dt, dur)[0])
            rows.append({"shift_mV": shift, "tau_factor": factor, "heldout_rmse_mV": float(np.mean(list(per.values()))),
                         "heldout_gamma": float(np.nanmean(list(gam.values()))),
                         "per_test_rmse_mV": {k: round(x, 2) for k, x in per.items()}})
    return rows


def _plot(out, model, learned, v, curves, v_obs, members):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from neuron_hybrid.kinetics.trace.compartment import _known_rates

    true = _known_rates(model, torch.as_tensor(v), ())
    fig, axes = plt.subplots(2, len(learned), figsize=(5 * len(learned), 7), squeeze=False)
    lo, hi = float(v_obs.min()), float(v_obs.max())  # range of the (clean) training trace
    for j, g in enumerate(learned):
        xi, ta = curves[g]
        for m in range(xi.shape[0]):
            axes[0, j].plot(v, xi[m], lw=0.6, alpha=0.6)
            axes[1, j].plot(v, ta[m], lw=0.6, alpha=0.6)
        axes[0, j].plot(v, true[g][0].numpy(), "k", lw=2, label="true")
        axes[1, j].plot(v, true[g][1].numpy(), "k", lw=2)
        for ax in axes[:, j]:
            ax.axvspan(lo, hi, color="0.9", zorder=0, label="visited by the data")
        axes[0, j].set_title(f"{g}_inf: learned (all members) vs true")
        axes[1, j].set_title(f"tau_{g} (ms)")
        axes[1, j].set_yscale("log")
        axes[1, j].set_xlabel("V (mV)")
        axes[0, j].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "learned_vs_true.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()

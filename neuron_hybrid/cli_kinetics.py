"""Subcommands ``channel-curves`` and ``fit-channel`` (argument parsing only; logic in neuron_hybrid.kinetics).

Wire into the main parser with ``add_subcommands(subparsers)``.
"""
import argparse
import json

from .cli_errors import assignments, reported


def _channel_errors():
    """Errors that mean "this input cannot be processed as asked" (printed without a traceback)."""
    from .kinetics.curves import ChannelCurveError
    from .kinetics.curves_io import CurvesFileError
    from .kinetics.gatenet import ChannelFitError
    from .kinetics.modfile import ModParseError
    from .runtime.build import BuildError

    return ChannelCurveError, CurvesFileError, ChannelFitError, ModParseError, BuildError


@reported(_channel_errors)
def _cmd_channel_curves(args):
    from .kinetics.curves import CurveConfig, channel_curves_command

    cfg = CurveConfig()
    if args.config_json:
        d = json.loads(args.config_json)
        d["cai_mM"] = tuple(d.get("cai_mM", cfg.cai_mM))
        d["probes"] = tuple(d.get("probes", cfg.probes))
        cfg = CurveConfig(**d)
    else:
        cfg.v_min_mV, cfg.v_max_mV, cfg.v_step_mV = args.v_min, args.v_max, args.v_step
        cfg.celsius_degC = 6.3 if args.celsius is None else args.celsius
        cfg.dt_ms, cfg.use_tables = args.dt, args.use_tables
        if args.cai:
            cfg.cai_mM = tuple(args.cai)
        cfg.parameters = assignments(args.param, "--param", float)
    channel_curves_command(args.channel, args.out, args.mod_dir, cfg, plot=not args.no_plot, verbose=not args.quiet)
    if args.celsius is None and not args.config_json:
        import re
        import sys

        from .kinetics.curves import resolve_channel

        info = resolve_channel(args.channel, args.mod_dir)
        text = getattr(info, "text", "") or ""
        if re.search(r"\bcelsius\b", re.sub(r"(?m):.*$", "", text)):
            print(f"note: the rates of {args.channel} depend on celsius; they were measured at NEURON's default 6.3 degC. "
                  "Pass --celsius (e.g. 34) for the temperature the model is meant to run at.", file=sys.stderr)
    return 0


@reported(_channel_errors)
def _cmd_fit_channel(args):
    from .kinetics.gatenet import GateFitConfig
    from .kinetics.pipeline import FitChannelConfig, fit_channel

    gate = GateFitConfig(width=args.width, depth=args.depth, steps=args.steps, lbfgs_steps=args.lbfgs_steps, seed=args.seed)
    cfg = FitChannelConfig(gate=gate, criterion=args.criterion, cai_mM=args.cai,
                           currents=tuple(args.current) if args.current else None, suffix=args.suffix,
                           powers=assignments(args.power, "--power", int), e_rev_mV=args.e_rev,
                           gbar_S_cm2=args.gbar, check=not args.no_check, progress=not args.quiet)
    rec = dict(model=args.model, learn=args.learn, seeds=args.seeds, seed=args.seed, sweeps=args.sweep,
               dt_ms=args.dt, stimulus_column=args.stimulus_column, voltage_column=args.voltage_column,
               time_column=args.time_column, area_um2=args.area, train_seconds=args.train_seconds,
               known_parameters=args.known_parameters, trajectory=not args.no_trajectory)
    fit_channel(args.input, args.out, cfg, **rec)
    return 0


def add_subcommands(subparsers) -> None:
    """Register ``channel-curves`` and ``fit-channel`` on an argparse subparsers object."""
    c = subparsers.add_parser(
        "channel-curves", help="measure x_inf(V) and tau(V) of every gate of a NEURON channel by voltage clamp",
        description="Compile CHANNEL (a .mod file, or the SUFFIX of a built-in / neuron-hybrid / --mod-dir "
                    "mechanism such as hh), find its gate STATE variables and measure each gate's steady state "
                    "x_inf(V) and time constant tau(V) (ms) in NEURON under voltage clamp (ion concentrations "
                    "fixed; calcium-dependent gates on a cai grid). Writes HDF5 (/gates/<STATE>/{v, x_inf, tau"
                    "[, cai]} with the exponent, ion and current as attributes when found) and a PNG plot.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("channel", metavar="CHANNEL", help="CHANNEL.mod file or mechanism name (e.g. hh)")
    c.add_argument("--mod-dir", action="append", default=[], metavar="DIR",
                   help="folder of other .mod files compiled with the channel, or of files it INCLUDEs (repeatable)")
    c.add_argument("--out", required=True, metavar="CURVES.h5", help="output HDF5 file (the plot goes next to it, .png)")
    c.add_argument("--v-min", type=float, default=-100.0, help="lowest clamp voltage (mV)")
    c.add_argument("--v-max", type=float, default=60.0, help="highest clamp voltage (mV)")
    c.add_argument("--v-step", type=float, default=1.0, help="voltage spacing (mV)")
    c.add_argument("--cai", type=float, nargs="+", metavar="MM",
                   help="cai grid (mM) for calcium-dependent channels (default 17 values, 1e-5..1e-1 mM)")
    c.add_argument("--celsius", type=float, default=None,
                   help="temperature (degC); default NEURON's 6.3 (a note is printed if the rates depend on it)")
    c.add_argument("--dt", type=float, default=1e-3, help="probe time step (ms)")
    c.add_argument("--use-tables", action="store_true", help="keep the mechanism's rate TABLEs (default: exact rates)")
    c.add_argument("--param", action="append", metavar="NAME=VALUE", help="set a mechanism parameter (repeatable)")
    c.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    c.add_argument("--quiet", action="store_true", help="no progress output")
    c.add_argument("--config-json", help=argparse.SUPPRESS)
    c.set_defaults(func=_cmd_channel_curves)

    f = subparsers.add_parser(
        "fit-channel", help="learn gate networks from curves or recordings; write the learned current and a distilled .mod",
        description="INPUT is a channel-curves HDF5 file, or current-clamp recordings (.nwb via pynwb, .csv, "
                    ".npz/.npy; see neuron_hybrid/kinetics/recordings.py). Fits one MLP per gate (x_inf sigmoid, "
                    "tau positive), exports the learned current gbar*prod(x^p)*(V-E) as TorchScript, distils "
                    "closed forms (Boltzmann / generalised sigmoid / alpha-beta for x_inf; constant, exponential, "
                    "sigmoid, bell, Gaussian, alpha-beta for tau) chosen by AIC/BIC into a standalone NMODL file, "
                    "checks hybrid vs distilled in NEURON, and writes a plot with the formulas and fit_report.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    f.add_argument("input", metavar="INPUT", help="curves.h5 from channel-curves, or a recording (.nwb, .csv, .npz)")
    f.add_argument("--out", required=True, metavar="DIR", help="output folder")
    f.add_argument("--current", action="append", help="fit only this current (e.g. ik; repeatable)")
    f.add_argument("--suffix", help="SUFFIX of the distilled mechanism (default <mechanism>_<current>_fit)")
    f.add_argument("--criterion", choices=("aic", "bic"), default="bic", help="information criterion")
    f.add_argument("--cai", type=float, help="cai (mM) at which calcium-dependent gates are fitted")
    f.add_argument("--power", action="append", metavar="GATE=P", help="gate exponent when not found in the file")
    f.add_argument("--e-rev", type=float, help="reversal potential (mV) override")
    f.add_argument("--gbar", type=float, help="maximal conductance (S/cm2) override")
    f.add_argument("--width", type=int, default=32, help="hidden units per layer of each gate network")
    f.add_argument("--depth", type=int, default=2, help="hidden layers of each gate network")
    f.add_argument("--steps", type=int, default=3000, help="Adam steps (curves)")
    f.add_argument("--lbfgs-steps", type=int, default=300, help="L-BFGS iterations after Adam (curves)")
    f.add_argument("--seed", type=int, default=0, help="random seed")
    f.add_argument("--no-check", action="store_true", help="skip the NEURON hybrid-vs-distilled check")
    f.add_argument("--quiet", action="store_true", help="no progress output")
    r = f.add_argument_group("recordings (INPUT .nwb/.csv/.npz)")
    r.add_argument("--model", choices=("hh", "pospischil"), default="hh",
                   help="the known single-compartment model the recording is fitted with")
    r.add_argument("--learn", choices=("k", "na"), default="k", help="which channel's gates are learned (K: n; Na: m, h)")
    r.add_argument("--seeds", type=int, default=4, help="independent training runs; the best on held-out sweeps is kept")
    r.add_argument("--sweep", type=int, action="append", help="use only these sweep indices (repeatable)")
    r.add_argument("--dt", type=float, help="resample to this step (ms); default the recording's")
    r.add_argument("--area", type=float, help="membrane area (um2) to convert the stimulus (nA) to mA/cm2")
    r.add_argument("--stimulus-column", default="i_nA", help="CSV column of the injected current (nA)")
    r.add_argument("--voltage-column", default="v_mV", help="CSV column of the membrane potential (mV)")
    r.add_argument("--time-column", default="t_ms", help="CSV column of time (ms)")
    r.add_argument("--train-seconds", type=float, default=600.0, help="training time budget (s)")
    r.add_argument("--known-parameters", choices=("both", "held", "refined"), default="both",
                   help="the compartment's assumed parameters in current matching: held, refined, or both (each seed "
                        "trained both ways, the fit closer to its sweep kept; twice the training time)")
    r.add_argument("--no-trajectory", action="store_true",
                   help="on noisy sweeps, use the linear smoother's trace only instead of estimating the denoised "
                        "voltage with the gates (TraceFitConfig.trajectory_levels; 2-3x faster, less accurate at "
                        ">= 1 %% noise)")
    f.set_defaults(func=_cmd_fit_channel)

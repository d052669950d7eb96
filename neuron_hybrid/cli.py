"""``neuron-hybrid`` command line: argument parsing only; the work is done by the package."""
import argparse
import sys
from pathlib import Path

from .cli_errors import UsageError, assignments, parse_value, reported

#: ``--calibrate`` choices: reduce.calibrate.PARAMETER_SETS, or off (literal here: the parser does not import torch code)
CALIBRATE_CHOICES = ("spike_drive", "conductances", "both", "spike_drive_tau", "off")


def _cell_errors():
    from .cells import CellError
    from .reduce import ModelDirError
    from .runtime.build import BuildError

    return CellError, ModelDirError, BuildError


def _cmd_build(args):
    from .runtime.build import build

    lib = build(args.mod_dir, verbose=not args.print_library)
    if args.print_library:
        print(lib.library)
        return 0
    print(f"mechanism library: {lib.library}")
    print(f"bridge library:    {lib.bridge}")
    print(f"mechanisms ({len(lib.mechanisms)}): {' '.join(lib.mechanisms)}")
    print(f"hoc:    nrniv -dll {lib.library} your_model.hoc")
    print(f"Python: neuron_hybrid.load_mechanisms(extra_mod_dirs={[str(d) for d in args.mod_dir]!r})")
    return 0


def _cmd_demo(args):
    from .bench.hh_demo import run_hh_demo
    from .bench.reduction import run_benchmark
    from .reduce import ReduceConfig, reduce

    out = Path(args.out)
    print("neuron-hybrid demo, part 1: NEURON's hh Na and K channels as learned TorchScript currents, inside NEURON")
    run_hh_demo(out / "learned_hh", repeats=args.repeats)
    if args.skip_reduction:
        return 0
    print(f"\nneuron-hybrid demo, part 2: reduce {args.cell} to one compartment with a learned axial current")
    model = reduce(args.cell, out / "model", ReduceConfig(workers=args.workers))
    print(f"\nneuron-hybrid demo, part 3: benchmark on held-out protocols (report in {out / 'report'})")
    run_benchmark(model, out / "report", repeats=args.repeats, workers=args.workers)
    return 0


def _reduce_config(args):
    from dataclasses import replace

    from .reduce import ReduceConfig
    from .reduce.calibrate import calibration_for

    cfg = ReduceConfig(n_latent=args.latents, workers=args.workers, seed=args.seed, closed_loop=not args.no_closed_loop,
                       protocol_size=args.size, rheobase_nA=args.rheobase, recovery_protocols=args.recovery_protocols,
                       modulated=args.modulated)
    if args.calibrate is not None:
        cfg.calibration = calibration_for(args.calibrate, cfg.calibration)
    if args.epochs is not None:
        cfg.teacher = replace(cfg.teacher, epochs=args.epochs)
    if args.lbfgs_iters is not None:
        cfg.teacher = replace(cfg.teacher, lbfgs_iters=args.lbfgs_iters)
    return cfg


@reported(_cell_errors)
def _cmd_reduce(args):
    from .reduce import reduce

    cell, params = _user_cell(args)
    reduce(cell, args.out, _reduce_config(args), cell_params=params or None, mod_dirs=list(args.mod_dir))
    return 0


def _user_cell(args):
    """(cell, builder overrides) from --cell, --morphology/--biophysics or --hoc/--template."""
    from .cells.builders import HocTemplateBuilder, MorphologyBuilder

    params = assignments(args.param, "--param")
    if args.morphology and args.hoc:
        raise UsageError("give either --morphology (with --biophysics) or --hoc (with --template), not both")
    if args.morphology:
        if not args.biophysics:
            raise UsageError("--morphology needs --biophysics module:function, the function that inserts your channels "
                            "(e.g. --biophysics mycells:insert_channels, with mycells.py importable)")
        return MorphologyBuilder(args.morphology, args.biophysics), params
    if args.hoc:
        if not args.template:
            raise UsageError(f"--hoc {args.hoc} needs --template NAME, the name of the template it defines")
        if params:
            raise UsageError("--param overrides builder parameters of built-in cells and --biophysics functions; "
                            "pass a hoc template's arguments with --template-arg")
        return HocTemplateBuilder(args.hoc, args.template, args.mod_dir, [parse_value(a) for a in args.template_arg]), {}
    return args.cell, params


@reported(_cell_errors)
def _cmd_benchmark(args):
    from .bench.reduction import run_benchmark

    run_benchmark(args.model_dir, args.report, repeats=args.repeats, workers=args.workers,
                  reference_ceiling=args.reference_ceiling)
    return 0


def _cmd_export_hh(args):
    from .models import HHPotassium, HHSodium
    from .runtime.export import export

    out = Path(args.out)
    for name, module in (("hh_k.pt", HHPotassium(celsius=args.celsius)), ("hh_na.pt", HHSodium(celsius=args.celsius))):
        print(export(module, out / name))
    return 0


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="neuron-hybrid", description="Hybrid neuron models: learned currents inside NEURON.")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="compile (cached) neuron-hybrid's mechanisms, optionally with your MOD files",
                       description="Compile the C++ bridge and all MOD files (ours plus --mod-dir folders) into one "
                                   "NEURON mechanism library and print where it is (for nrniv -dll / nrn_load_dll).")
    b.add_argument("--mod-dir", action="append", default=[], metavar="DIR", help="folder of your .mod files (repeatable)")
    b.add_argument("--print-library", action="store_true", help="print only the path of libnrnmech.so")
    b.set_defaults(func=_cmd_build)

    d = sub.add_parser("demo", help="run the main demonstration and print its headline numbers",
                       description="Learned hh currents vs NEURON's hh on every engine: accuracy and cost per step.")
    d.add_argument("--out", default="reports/demo", help="output folder for models, metrics.json and plots")
    d.add_argument("--repeats", type=int, default=5, help="timing repeats (median is reported)")
    d.add_argument("--cell", default="ca1_pospischil", help="cell reduced in part 2")
    d.add_argument("--workers", type=int, default=2, help="processes for data generation")
    d.add_argument("--skip-reduction", action="store_true", help="run only part 1 (learned hh)")
    d.set_defaults(func=_cmd_demo)

    r = sub.add_parser("reduce", help="reduce a detailed cell to one compartment with a learned axial current",
                       description="Generate data with NEURON, train the learned axial current, export and validate a "
                                   "reduced model directory (resumable: rerun the same command after an interruption).")
    r.add_argument("--cell", default="ca1_pospischil", help="built-in cell name (neuron-hybrid cells lists them)")
    r.add_argument("--morphology", help="your own SWC/ASC file instead of --cell (with --biophysics)")
    r.add_argument("--biophysics", help="module:function inserting your channels, e.g. mycells:insert_channels")
    r.add_argument("--hoc", help="your own cell as a hoc template file instead of --cell (with --template)")
    r.add_argument("--template", help="name of the template defined in --hoc")
    r.add_argument("--template-arg", action="append", default=[], metavar="VALUE",
                   help="argument of the hoc template (repeatable, in order; numbers or strings)")
    r.add_argument("--mod-dir", action="append", default=[], metavar="DIR", help="your MOD files (repeatable)")
    r.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="cell builder override")
    r.add_argument("--out", required=True, help="model directory to write")
    r.add_argument("--latents", type=int, default=4, help="latents of the axial current (default 4)")
    r.add_argument("--epochs", type=int, default=None, help="teacher-forcing Adam epochs (default 400)")
    r.add_argument("--lbfgs-iters", type=int, default=None,
                   help="teacher-forcing L-BFGS iterations after Adam (default 400; fewer trade accuracy for time)")
    r.add_argument("--no-closed-loop", action="store_true", help="skip the closed-loop (BPTT) stage")
    r.add_argument("--calibrate", nargs="?", const="conductances", default=None,
                   choices=CALIBRATE_CHOICES,
                   help="last stage, in NEURON: fit the slow latents' spike drive (the default; leaves subthreshold "
                        "voltages as trained), the conductances (also what a bare --calibrate means), or both, to the "
                        "training steps' spike counts (and the voltage of their silent steps); spike_drive_tau: the "
                        "drive and the slow latents' time constant during spikes, also fitted to the spike times on "
                        "the training noisy currents; kept if Gamma on the noisy validation protocols holds; 'off' "
                        "skips it")
    r.add_argument("--modulated", action="store_true",
                   help="conductances of the axial current set by its latents (LatentAxialCurrent(modulated=True))")
    r.add_argument("--size", choices=["standard", "small"], default="standard", help="protocol set size")
    r.add_argument("--recovery-protocols", action="store_true",
                   help="add bursts followed by a long recorded recovery to the training set (cells whose "
                        "dendrites load the soma slowly after a burst, e.g. L5 pyramidal cells)")
    r.add_argument("--rheobase", type=float, default=None, help="stimulus scale in nA (default: measured)")
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--seed", type=int, default=0)
    r.set_defaults(func=_cmd_reduce)

    bm = sub.add_parser("benchmark", help="full vs reduced cell on held-out protocols (accuracy, speed, report)",
                        description="Run the full and the reduced cell in NEURON on protocols not used in training and "
                                    "write metrics.json, report.md and plots.")
    bm.add_argument("model_dir")
    bm.add_argument("--report", default=None, help="report folder (default MODEL_DIR/report)")
    bm.add_argument("--repeats", type=int, default=5, help="timing repeats (median)")
    bm.add_argument("--workers", type=int, default=2)
    bm.add_argument("--reference-ceiling", action="store_true",
                    help="also run the full cell at dt/2 and score it against itself at dt: the best any reduced "
                         "model can reach at this dt (doubles the full cell's simulation time)")
    bm.set_defaults(func=_cmd_benchmark)

    e = sub.add_parser("export-hh", help="write hh's K and Na channels as learned-current files (hh_k.pt, hh_na.pt)",
                       description="Export exact re-expressions of NEURON's hh K (1 latent) and Na (2 latents) channels.")
    e.add_argument("--out", default=".", help="output folder")
    e.add_argument("--celsius", type=float, default=6.3, help="temperature (degC) the rates are computed for")
    e.set_defaults(func=_cmd_export_hh)

    from .cli_data import add_subcommands as add_data_commands

    add_data_commands(sub)
    from .cli_kinetics import add_subcommands as add_kinetics_commands

    add_kinetics_commands(sub)
    from .cli_dic import add_subcommands as add_dic_commands

    add_dic_commands(sub)
    return p


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

"""``neuron-hybrid`` command line: argument parsing only; the work is done by the package."""
import argparse
import sys
from pathlib import Path


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

    print("neuron-hybrid demo: NEURON's hh Na and K channels as learned TorchScript currents, inside NEURON")
    run_hh_demo(args.out, repeats=args.repeats)
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
    d.set_defaults(func=_cmd_demo)

    e = sub.add_parser("export-hh", help="write hh's K and Na channels as learned-current files (hh_k.pt, hh_na.pt)",
                       description="Export exact re-expressions of NEURON's hh K (1 latent) and Na (2 latents) channels.")
    e.add_argument("--out", default=".", help="output folder")
    e.add_argument("--celsius", type=float, default=6.3, help="temperature (degC) the rates are computed for")
    e.set_defaults(func=_cmd_export_hh)

    from .cli_data import add_subcommands as add_data_commands

    add_data_commands(sub)
    return p


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

"""``python -m neuron_hybrid.kinetics channel-curves|fit-channel ...`` (same as the neuron-hybrid subcommands)."""
import argparse
import sys

from ..cli_kinetics import add_subcommands


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m neuron_hybrid.kinetics")
    add_subcommands(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

"""``neuron-hybrid cells`` and ``neuron-hybrid generate``: argument parsing only.

Wire into ``neuron_hybrid/cli.py`` with ``add_subcommands(sub)`` (``sub`` from
``add_subparsers``); each subcommand sets ``func`` to a handler taking the parsed args.
"""
from __future__ import annotations

import argparse

from .cli_errors import assignments, reported


def _cmd_cells(args) -> int:
    from .cells import available_cells

    rows = available_cells()
    width = max(len(n) for n, _ in rows)
    for name, desc in rows:
        print(f"{name:<{width}}  {desc}")
    return 0


def _generate_errors():
    from .cells import CellError
    from .datagen.schema import DatasetError
    from .runtime.build import BuildError
    from .stimuli import ProtocolError

    return DatasetError, ProtocolError, CellError, BuildError, ValueError


@reported(_generate_errors)
def run_generate(args) -> int:
    """Handler of ``generate`` (also used by ``python -m neuron_hybrid.datagen.mpi``)."""
    if getattr(args, "mpi", False):
        from .datagen.mpi import init_mpi

        pc = init_mpi()  # before anything else touches NEURON
        rank = int(pc.id())
    else:
        rank = 0
    from .datagen import generate

    res = generate(args.cell, args.protocols, args.out, workers=args.workers, dt_ms=args.dt,
                   dend_sites=args.dend_site, progress=not args.no_progress,
                   cell_params=assignments(args.param, "--param"), settle_ms=args.settle,
                   overwrite=args.overwrite, mod_dirs=args.mod_dir, mpi=getattr(args, "mpi", False))
    if rank == 0:
        ranks = f" on {res.workers} MPI ranks" if res.mode == "mpi" else (
            f" with {res.workers} workers" if res.workers > 1 else "")
        print(f"{res.out}: {res.n_simulated} traces simulated{ranks}, {res.n_existing} already there"
              + (f", {len(res.removed_incomplete)} partial traces redone" if res.removed_incomplete else "")
              + f" ({res.n_protocols} protocols, {res.simulated_ms / 1000:.3g} s simulated in "
              f"{res.wall_s:.1f} s)"
              + (f" [{', '.join(f'{k}: {v}' for k, v in sorted(res.per_worker.items()))}]"
                 if res.mode != "serial" else ""))
    return 0


def add_generate_arguments(p: argparse.ArgumentParser, mpi_flag: bool = True) -> None:
    p.add_argument("--cell", required=True, help="built-in or registered cell name (see `neuron-hybrid cells`)")
    p.add_argument("--protocols", required=True, metavar="FILE.json", help="JSON file of stimulus protocols")
    p.add_argument("--out", required=True, metavar="DATA.h5", help="HDF5 output; resumed if it exists")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes (default 1: in process)")
    p.add_argument("--dt", type=float, default=0.025, metavar="MS", help="fixed time step in ms (default 0.025)")
    p.add_argument("--settle", type=float, default=1000.0, metavar="MS",
                   help="steady-state initialisation before t=0, ms (default 1000)")
    p.add_argument("--dend-site", action="append", default=[], metavar="SITE",
                   help="record a dendritic voltage: NAME=SECTION(X) (e.g. tuft=apic[36](0.5)) or "
                        "NAME=LIST@DISTANCE_UM (e.g. d620=apical@620); repeatable")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="cell parameter override (JSON value), e.g. celsius_degC=6.3; repeatable")
    p.add_argument("--mod-dir", action="append", default=[], metavar="DIR",
                   help="extra MOD folder the cell needs (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="start the output file again instead of resuming it")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    if mpi_flag:
        p.add_argument("--mpi", action="store_true",
                       help="distribute over MPI ranks (run as: mpiexec -n 4 neuron-hybrid generate --mpi ...)")
    p.set_defaults(func=run_generate)


def add_subcommands(subparsers) -> None:
    """Register ``cells`` and ``generate`` on an ``argparse`` subparsers object."""
    c = subparsers.add_parser("cells", help="list the built-in (and registered) cells",
                              description="List the cells `generate --cell` accepts.")
    c.set_defaults(func=_cmd_cells)

    g = subparsers.add_parser(
        "generate", help="simulate protocols on a cell and write the traces to HDF5",
        description="Simulate every protocol of FILE.json on a detailed cell (fixed step) and write soma "
                    "voltage, injected, axial, membrane and ionic currents to an HDF5 file (schema: "
                    "neuron_hybrid.datagen.schema). Resumable: rerun to finish an interrupted file. "
                    "MPI: mpiexec -n 4 neuron-hybrid generate --mpi ...")
    add_generate_arguments(g)

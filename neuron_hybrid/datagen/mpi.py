"""Trace generation over MPI with NEURON's ParallelContext bulletin board.

Every rank runs the same command; rank 0 checks/creates the output file, submits the missing
protocols (``pc.submit``) and writes the results as they come (``pc.working`` / ``pc.pyret``);
the other ranks (and rank 0 while it waits) build the cell once and simulate what they are given
(``pc.runworker``). Only rank 0 touches the HDF5 file. Launch with either of::

    mpiexec -n 4 python -m neuron_hybrid.datagen.mpi --cell l5pc_hay2011 --protocols p.json --out data.h5
    mpiexec -n 4 neuron-hybrid generate --mpi --cell l5pc_hay2011 --protocols p.json --out data.h5

(the options are those of ``neuron-hybrid generate``). MPI is initialised with
``h.nrnmpi_init()`` before anything else touches NEURON; NEURON's PyPI wheels load the MPI
library at run time (MPICH or Open MPI; ``mpi4py`` is not needed). Without ``mpiexec`` the same
command runs on one rank. Traces are bit-identical to serial and multi-process runs.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from . import generator as _g


def init_mpi():
    """``h.nrnmpi_init()`` (a no-op when MPI is already initialised) and the ParallelContext.

    The ranks never call a collective operation while simulating: their fixed-step runs use
    ``fadvance`` instead of ``psolve`` (see :func:`neuron_hybrid.datagen.run.advance_to`).
    (``pc.subworlds(1)`` would be the textbook way, but NEURON 9.0.2 aborts in an
    ``MPI_Allgather`` at ``finitialize`` with it.)"""
    from neuron import h

    from . import run

    h.nrnmpi_init()
    run.MPI_INITIALISED = True
    return h.ParallelContext()


def _mpi_task(job_text, index, pjson):
    from neuron import h

    res = _g._safe(_g.simulate_protocol, _g.Job.decode(job_text), int(index), pjson)
    res["rank"] = int(h.ParallelContext().id())
    return res


def generate_mpi(cell, protocols, out, dt_ms: float = 0.025, dend_sites=(), progress: bool = True, *,
                 cell_params=None, settle_ms: float = 1000.0, overwrite: bool = False, mod_dirs=(),
                 load_mechanisms: bool = True, on_trace=None):
    """:func:`neuron_hybrid.datagen.generate` over MPI ranks; call it on every rank. Returns the
    :class:`~neuron_hybrid.datagen.generate.GenerateResult` on rank 0; the other ranks exit when
    the work is done (``pc.done()`` ends their ``pc.runworker()``)."""
    pc = init_mpi()
    t_start = time.perf_counter()
    job, items = _g.prepare_job(cell, protocols, dt_ms, dend_sites, cell_params, settle_ms, mod_dirs,
                                load_mechanisms)
    text = job.encode()
    nhost = int(pc.nhost())
    st = _g.worker_state(job)  # every rank builds its cell once, before taking work
    pc.runworker()  # ranks > 0 stay in here until rank 0 calls pc.done(), then exit
    try:
        expected = {name: (i, pj) for i, name, pj in items}
        writer = _g.TraceFileWriter(out, expected, overwrite=overwrite)
        result = _g.GenerateResult(out=Path(out), n_protocols=len(items), n_existing=0, n_simulated=0,
                                   workers=nhost, mode="mpi")
        meta, digest = st["meta"], st["digest"]
        done = writer.prepare(meta)
        todo = [(i, pj) for i, name, pj in items if name not in done]
        result.n_existing = len(items) - len(todo)
        result.removed_incomplete = list(writer.removed_incomplete)
        result.setup_s = time.perf_counter() - t_start
        for i, pj in todo:
            pc.submit(_mpi_task, text, i, pj)
        with _g._progress(len(todo), f"generate {meta['cell_name']} ({nhost} MPI ranks)", progress) as bar:
            while pc.working():
                res = pc.pyret()
                _g._check(res, digest, "a simulation")
                _g._record(writer, res, result, bar, on_trace)
        result.wall_s = time.perf_counter() - t_start
        return result
    finally:
        pc.done()


def main(argv=None) -> int:
    init_mpi()  # before anything else touches NEURON
    import argparse

    from ..cli_data import add_generate_arguments, run_generate

    ap = argparse.ArgumentParser(prog="python -m neuron_hybrid.datagen.mpi",
                                 description="Generate traces over MPI ranks (run under mpiexec).")
    add_generate_arguments(ap, mpi_flag=False)
    args = ap.parse_args(argv)
    args.mpi, args.command = True, "generate"
    return run_generate(args)


if __name__ == "__main__":
    sys.exit(main())

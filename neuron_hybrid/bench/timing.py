"""Wall-clock timing of NEURON simulations with ParallelContext.psolve (no hoc stepping loop)."""
import statistics
import time


def time_psolve(tstop_ms: float, repeats: int = 5, dt_ms: float = 0.025, v_init_mV: float = -65.0) -> dict:
    """Run every section currently instantiated for `tstop_ms`, `repeats` times, fixed step, one thread.

    Returns {"median_s", "min_s", "all_s", "n_steps"}; time only the model of interest, i.e. make
    sure no other sections exist in the process.
    """
    from neuron import h

    pc = h.ParallelContext()
    h.CVode().active(0)
    h.dt = dt_ms
    pc.set_maxstep(10)
    times = []
    for _ in range(repeats):
        h.finitialize(v_init_mV)
        t0 = time.perf_counter()
        pc.psolve(tstop_ms)
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "all_s": times,
            "n_steps": int(round(tstop_ms / dt_ms))}


def us_per_step(timing: dict) -> float:
    """Median microseconds per fixed time step of a :func:`time_psolve` result."""
    return 1e6 * timing["median_s"] / timing["n_steps"]

"""Run one protocol on a cell in NEURON and record what the reduction needs.

Recorded every fixed step dt (ms), from t = 0 after a steady-state initialisation:

* ``v_soma`` (mV): soma(0.5) potential;
* ``i_stim`` (nA): current injected at the soma (IClamp ``i``, positive depolarising; 0 for purely
  synaptic protocols);
* ``i_axial`` (nA): total axial current leaving the soma section into every attached section,
  sum over children c of (v(parent node of c) - v(first segment of c)) / ri(c) with ``ri`` in MOhm;
* ``i_membrane_soma`` (nA): the soma's total membrane current (capacitive + ionic), NEURON's
  ``i_membrane_`` with ``cvode.use_fast_imem(1)``, summed over the soma's segments;
* ``i_ion_soma`` (nA): the soma's ionic current in NEURON's implicit form, i.e.
  ``i_membrane_soma`` minus the capacitive current cm * area * (v[n] - v[n-1]) / dt. It equals
  the sum of the channel currents with conductances at the start of the step and the driving
  force at its end (the form that closes the current balance exactly); NEURON's own ``ina``,
  ``ik`` ... are evaluated at the start voltage and differ from it during spikes.

Current balance: i_membrane_soma + i_axial = i_stim (exactly, up to round-off).
"""
from dataclasses import dataclass, field

import numpy as np


def steady_state_initialize(v_init_mV: float, settle_ms: float = 1000.0, settle_dt_ms: float = 1.0,
                            dt_ms: float = 0.025, coarse_steps: int = 40, coarse_dt_ms: float = 250.0) -> None:
    """finitialize at v_init, then relax every state to rest with large implicit steps (first
    `coarse_steps` of `coarse_dt_ms`, which settles slow gates such as an M current with a 1 s time
    constant, then `settle_ms` at `settle_dt_ms`), reset t to 0 and restart the recordings
    (NEURON's classic custom-init recipe).

    A cell that fires spontaneously is left at whatever state it reaches after ``settle_ms``.
    Stimuli must not act before t = 0 (protocols start at t >= 0).
    """
    from neuron import h

    cvode = h.CVode()
    active = cvode.active()
    cvode.active(0)
    h.finitialize(v_init_mV)
    h.t = -settle_ms - coarse_steps * coarse_dt_ms
    h.dt = coarse_dt_ms
    for _ in range(coarse_steps):
        h.fadvance()
    h.t = -settle_ms
    h.dt = settle_dt_ms
    while h.t < -0.5 * settle_dt_ms:
        h.fadvance()
    h.dt = dt_ms
    h.t = 0.0
    if active:
        cvode.active(1)
        cvode.re_init()
    else:
        h.fcurrent()
    h.frecord_init()


def resting_potential_mV(cell, dt_ms: float = 0.025, window_ms: float = 200.0) -> float:
    """The soma's resting potential (mV): the median over `window_ms` after
    :func:`steady_state_initialize`, without stimulus (a spontaneously firing cell gives its median)."""
    from neuron import h

    h.load_file("stdrun.hoc")
    cell.apply_globals()
    v = h.Vector().record(cell.soma(0.5)._ref_v)
    v_init = cell.v_init_mV if cell.v_init_mV is not None else -65.0
    steady_state_initialize(v_init, dt_ms=dt_ms)
    advance_to(window_ms, dt_ms)
    return float(np.median(np.array(v)))


@dataclass
class Trace:
    """One recorded trace; arrays share the time base ``t_ms``."""

    t_ms: np.ndarray
    v_soma: np.ndarray
    i_stim: np.ndarray
    i_axial: np.ndarray
    i_membrane_soma: np.ndarray
    i_ion_soma: np.ndarray
    v_dend: dict = field(default_factory=dict)

    def arrays(self) -> dict:
        d = {k: getattr(self, k) for k in ("v_soma", "i_stim", "i_axial", "i_membrane_soma", "i_ion_soma")}
        d["t"] = self.t_ms
        return d


class SomaProbe:
    """Records the soma of a cell: voltage, membrane current and the axial current to its children."""

    def __init__(self, cell, dend_sites=()):
        from neuron import h

        h.CVode().use_fast_imem(1)
        self.cell = cell
        self.soma = cell.soma
        children = cell.soma_children()
        if not children:
            raise ValueError(f"cell {cell.label} has nothing attached to its soma: no axial current to learn")
        self.ri = np.array([c.ri_MOhm for c in children])
        self.v_soma = h.Vector().record(self.soma(0.5)._ref_v)
        self.t = h.Vector().record(h._ref_t)
        self.v_parent = [h.Vector().record(c.section.parentseg()._ref_v) for c in children]
        self.v_child = [h.Vector().record(c.first_segment._ref_v) for c in children]
        self.imem = [h.Vector().record(seg._ref_i_membrane_) for seg in self.soma]
        self.cm_area = [seg.cm * seg.area() * 1e-5 for seg in self.soma]  # uF/cm2 * um2 -> nF
        self.v_seg = [h.Vector().record(seg._ref_v) for seg in self.soma]
        self.dend = {name: h.Vector().record(seg._ref_v) for name, seg in dend_sites}

    def trace(self, i_stim: np.ndarray, dt_ms: float) -> Trace:
        v_parent = np.array([np.array(x) for x in self.v_parent])
        v_child = np.array([np.array(x) for x in self.v_child])
        i_axial = ((v_parent - v_child) / self.ri[:, None]).sum(axis=0)
        i_mem = np.sum([np.array(x) for x in self.imem], axis=0)
        i_cap = np.zeros_like(i_mem)
        for c, vs in zip(self.cm_area, self.v_seg):
            vs = np.array(vs)
            i_cap[1:] += c * np.diff(vs) / dt_ms  # nF * mV/ms = nA
        return Trace(t_ms=np.array(self.t), v_soma=np.array(self.v_soma), i_stim=i_stim, i_axial=i_axial,
                     i_membrane_soma=i_mem, i_ion_soma=i_mem - i_cap,
                     v_dend={k: np.array(v) for k, v in self.dend.items()})


#: set by :func:`neuron_hybrid.datagen.mpi.init_mpi` once ``h.nrnmpi_init()`` has run
MPI_INITIALISED = False


def advance_to(tstop_ms: float, dt_ms: float) -> None:
    """Integrate to ``tstop_ms``: ``pc.set_maxstep(10); pc.psolve(tstop_ms)``.

    Once MPI is initialised (bulletin-board workers, each simulating its own cell:
    :mod:`neuron_hybrid.datagen.mpi`; flag :data:`MPI_INITIALISED`, or more than one rank),
    ``set_maxstep`` and ``psolve`` are collective operations (and NEURON 9.0.2 aborts in an
    ``MPI_Allgather`` at ``finitialize`` after them even on one rank), so there the fixed step is
    advanced with ``fadvance`` while ``t < tstop - dt/2``, which takes the same steps and is
    bit-identical to ``psolve`` (fixed step, one thread; tested).
    """
    from neuron import h

    pc = h.ParallelContext()
    if (MPI_INITIALISED or int(pc.nhost()) > 1) and not h.CVode().active():
        while h.t < tstop_ms - 0.5 * dt_ms:
            h.fadvance()
        return
    pc.set_maxstep(10)
    pc.psolve(tstop_ms)


def simulate_trace(cell, protocol, dt_ms: float = 0.025, dend_sites=(), settle_ms: float = 1000.0) -> Trace:
    """Simulate `protocol` (a neuron_hybrid.stimuli protocol) on `cell` with fixed step dt_ms.

    dend_sites: optional (name, segment) pairs whose voltage is recorded as ``v_dend/<name>``.
    """
    from neuron import h

    h.load_file("stdrun.hoc")
    cell.apply_globals()
    probe = SomaProbe(cell, dend_sites)
    handle = protocol.attach(cell, dt_ms=dt_ms)
    i_vec = None
    electrode = getattr(handle, "electrode", None)  # IClamp or SEClamp (None: synaptic); nA into the cell
    if electrode is not None:
        i_vec = h.Vector().record(electrode._ref_i)
    v_init = cell.v_init_mV if cell.v_init_mV is not None else -65.0
    steady_state_initialize(v_init, settle_ms=settle_ms, dt_ms=dt_ms)
    advance_to(protocol.tstop_ms, dt_ms)
    n = len(probe.t)
    i_stim = np.array(i_vec) if i_vec is not None else np.zeros(n)
    tr = probe.trace(i_stim, dt_ms)
    del handle
    return tr


def simulate_voltage(cell, protocol, dt_ms: float = 0.025, settle_ms: float = 1000.0, extra_refs=()):
    """Soma voltage (mV) of any cell-like object (a Cell or a ReducedCell) under `protocol`.

    Returns (t_ms, v_mV, wall_s, [extra recordings]); wall_s times the run alone (psolve, one thread).
    """
    import time

    from neuron import h

    h.load_file("stdrun.hoc")
    cell.apply_globals()
    handle = protocol.attach(cell, dt_ms=dt_ms)
    t = h.Vector().record(h._ref_t)
    v = h.Vector().record(cell.soma(0.5)._ref_v)
    extras = [h.Vector().record(r) for r in extra_refs]
    v_init = cell.v_init_mV if cell.v_init_mV is not None else -65.0
    steady_state_initialize(v_init, settle_ms=settle_ms, dt_ms=dt_ms)
    pc = h.ParallelContext()
    pc.set_maxstep(10)
    t0 = time.perf_counter()
    pc.psolve(protocol.tstop_ms)
    wall = time.perf_counter() - t0
    out = (np.array(t), np.array(v), wall, [np.array(e) for e in extras])
    del handle
    return out

"""NEURON side of the protocols: IClamp playback, handles that keep NEURON objects alive and
record the injected current.

Sign convention of every recorded current here: nA, positive = current *into* the cell
(depolarising), i.e. the IClamp convention. Synaptic currents (``Exp2Syn.i`` is positive
outward) are therefore recorded with their sign flipped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List

import numpy as np


def _h():
    from neuron import h

    h.load_file("stdrun.hoc")
    return h


def resolve_segment(cell_or_section, x: float = 0.5):
    """The segment where a current protocol is injected.

    Accepts a NEURON Segment (used as is), a Section (``sec(x)``), or any object with a ``soma``
    attribute that is a Section or a non-empty list of Sections (``soma(x)``, or ``soma[0](x)``).
    """
    from neuron import nrn

    obj = cell_or_section
    if isinstance(obj, nrn.Segment):
        return obj
    if isinstance(obj, nrn.Section):
        return obj(x)
    soma = getattr(obj, "soma", None)
    if isinstance(soma, (list, tuple)) and soma:
        soma = soma[0]
    if soma is not None and not isinstance(soma, nrn.Section):
        try:  # hoc section arrays (template cells)
            soma = soma[0]
        except Exception:  # pragma: no cover
            pass
    if isinstance(soma, nrn.Section):
        return soma(x)
    raise TypeError(
        f"cannot find where to inject: expected a NEURON Section/Segment or an object with a "
        f"'soma' Section, got {type(obj).__name__}")


def record_grid(dt_ms: float, tstop_ms: float) -> np.ndarray:
    """The times at which ``Vector.record(ref, dt_ms)`` records: NEURON accumulates them
    (``t_next = t + Dt``), so they are the running sums 0, dt, dt+dt, ... (computed here in the
    same order, so they are bit-identical), up to ``tstop_ms``."""
    n = int(np.floor(tstop_ms / dt_ms + 1e-9))
    return np.cumsum(np.concatenate([[0.0], np.full(n, float(dt_ms))]))


def _snap(times: np.ndarray, grid: np.ndarray, tol: float) -> np.ndarray:
    """Move times that lie within ``tol`` of a grid time exactly onto it."""
    if len(times) == 0 or len(grid) == 0:
        return times
    idx = np.clip(np.searchsorted(grid, times), 1, len(grid) - 1)
    left, right = grid[idx - 1], grid[idx]
    nearest = np.where(np.abs(times - left) <= np.abs(times - right), left, right)
    return np.where(np.abs(times - nearest) <= tol, nearest, times)


def playback_vectors(protocol, dt_ms: float):
    """(t_ms, i_nA) arrays for ``Vector.play(..., continuous=True)`` (linear interpolation).

    Piecewise-linear protocols (step, ramp, OU, sums of them: ``knot_times_ms()`` is not None)
    are played from their knots only, which is exact at any time. Others (chirp) are sampled
    at the step ends and the step midpoints of the ``dt_ms`` grid (NEURON's fixed step
    evaluates played values at midpoints, so those are exact samples). At each
    discontinuity in (0, tstop] a repeated time holds the left and the right limit (NEURON
    treats a repeated time as a jump).

    Under CVode every played time point is an event, and NEURON 9.0.2 aborts ("Cvode::interpolate
    assert error") when such an event lies within rounding error of a ``Vector.record(ref, Dt)``
    time. So play times that are (nearly) on the ``dt_ms`` grid are put exactly on the times
    NEURON records at (see :func:`record_grid`); jumps are placed so that the recorded
    value is the waveform at the recorded time.
    """
    tstop = float(protocol.tstop_ms)
    grid = record_grid(dt_ms, tstop)
    tol = 1e-9 * max(1.0, tstop)
    knots = protocol.knot_times_ms()
    if knots is None:
        mids = grid[:-1] + dt_ms / 2.0
        t = np.sort(np.concatenate([grid, mids]))
        if t[-1] < tstop - tol:
            t = np.append(t, tstop)
    else:
        k = np.asarray(knots, dtype=float)
        t = np.unique(np.concatenate([[0.0, tstop], k[(k >= 0) & (k <= tstop)]]))
    bps = np.asarray(sorted({float(b) for b in protocol.breakpoints_ms() if 0.0 < b <= tstop}))
    if len(bps):
        keep = np.ones(len(t), bool)
        for b in bps:
            keep &= ~(np.abs(t - b) <= tol)
        t = t[keep]
    i = protocol.waveform(t)
    t = _snap(t, grid, tol)
    if not len(bps):
        return t, i
    # A jump near a record time r: if r < b the jump is put exactly at r (NEURON then records
    # the left limit there, the right value since r < b); if r >= b it stays at b, or one ulp
    # before r when b == r (the record then sees the right limit). A played time just after
    # a record time is what makes NEURON abort, so it is never produced.
    r = _snap(bps, grid, tol)
    near = (r != bps) | np.isin(bps, grid)
    bt_single = np.where(near & (r < bps), r,
                         np.where(near & (r == bps), np.nextafter(r, -np.inf), bps))
    bt = np.repeat(bt_single, 2)
    left = protocol.waveform(np.nextafter(bps, -np.inf))
    right = protocol.waveform(bps)
    bi = np.empty(len(bt))
    bi[0::2] = left
    bi[1::2] = right
    tt = np.concatenate([t, bt])
    ii = np.concatenate([i, bi])
    order = np.argsort(tt, kind="stable")  # keeps (left, right) order at each jump
    return tt[order], ii[order]


def fixed_step_current_nA(protocol, t_ms, dt_ms: float) -> np.ndarray:
    """What NEURON's fixed-step method injects and records at the recorded times ``t_ms``.

    NEURON evaluates played values (and IClamp's own ``at_time`` logic) at the midpoint of each
    step and records them at its end, so the current recorded at ``t_n`` is
    ``waveform(t_n - dt/2)``; at ``t = 0`` (``finitialize``) it is ``waveform(0)``. With CVode
    the recorded current is ``waveform(t)`` itself.
    """
    t = np.asarray(t_ms, dtype=float)
    return protocol.waveform(np.where(t > 0, t - dt_ms / 2.0, 0.0))


@dataclass
class StimulusHandle:
    """Keeps the NEURON objects of an attached protocol alive.

    ``objects`` holds every NEURON object created; drop the handle to remove the stimulus.
    """

    protocol: Any
    objects: List[Any] = field(default_factory=list)
    t_vec: Any = None
    i_vec: Any = None

    @property
    def recording(self) -> bool:
        return self.i_vec is not None

    def times_ms(self) -> np.ndarray:
        """Recorded times (ms) of :meth:`current_nA`."""
        if self.t_vec is None:
            raise RuntimeError("attach(..., record=True) to record the injected current")
        return np.array(self.t_vec)

    @property
    def electrode(self):
        """The point process whose ``i`` is the current injected into the cell (nA, positive
        depolarising), or None (synaptic stimuli)."""
        return None

    def current_nA(self) -> np.ndarray:
        """Injected current (nA, positive depolarising) recorded every ``dt_ms`` from the electrode.
        For an IClamp with the fixed step it equals ``waveform(t - dt/2)`` (see
        :func:`fixed_step_current_nA`)."""
        if self.i_vec is None:
            raise RuntimeError("attach(..., record=True) to record the injected current")
        return np.array(self.i_vec)


def record_electrode(hd: StimulusHandle, dt_ms: float) -> None:
    """Record ``t`` and the electrode current of ``hd`` every ``dt_ms`` (see :meth:`StimulusHandle.current_nA`)."""
    h = _h()
    rt, ri = h.Vector(), h.Vector()
    rt.record(h._ref_t, dt_ms)
    ri.record(hd.electrode._ref_i, dt_ms)
    hd.t_vec, hd.i_vec = rt, ri
    hd.objects += [rt, ri]


@dataclass
class IClampHandle(StimulusHandle):
    """An IClamp whose ``amp`` plays the protocol waveform."""

    iclamp: Any = None
    segment: Any = None
    play_t: Any = None
    play_i: Any = None

    @property
    def electrode(self):
        return self.iclamp


def attach_iclamp(protocol, cell_or_section, dt_ms: float = 0.025, record: bool = False,
                  x: float = 0.5) -> IClampHandle:
    """IClamp at ``soma(x)`` (see :func:`resolve_segment`) playing ``protocol.waveform``."""
    h = _h()
    seg = resolve_segment(cell_or_section, x)
    ic = h.IClamp(seg)
    ic.delay = 0.0
    ic.dur = 1e9
    ic.amp = 0.0
    t, i = playback_vectors(protocol, dt_ms)
    tv = h.Vector(t)
    iv = h.Vector(i)
    # Under CVode every point of tv is an event (one re-initialisation each): piecewise-linear
    # protocols therefore play their knots only; dense ones (chirp) make CVode slow.
    iv.play(ic._ref_amp, tv, True)
    hd = IClampHandle(protocol=protocol, objects=[ic, tv, iv], iclamp=ic, segment=seg,
                      play_t=tv, play_i=iv)
    if record:
        record_electrode(hd, dt_ms)
    return hd


@dataclass
class SynapticHandle(StimulusHandle):
    """Exp2Syn synapses driven by pre-computed Poisson spike times (``NetCon.event`` queued at
    every ``finitialize`` by an ``FInitializeHandler``)."""

    synapses: List[Any] = field(default_factory=list)
    netcons: List[Any] = field(default_factory=list)
    kinds: List[str] = field(default_factory=list)
    placements: List[Any] = field(default_factory=list)
    spike_times_ms: List[np.ndarray] = field(default_factory=list)
    syn_i_vecs: List[Any] = field(default_factory=list)
    _fih: Any = None

    def _queue_events(self) -> None:
        for nc, times in zip(self.netcons, self.spike_times_ms):
            for ts in times:
                nc.event(float(ts))

    def current_nA(self) -> np.ndarray:
        """Total synaptic current (nA, positive = into the cell, i.e. ``-sum(Exp2Syn.i)``),
        recorded every ``dt_ms``."""
        if not self.syn_i_vecs and self.t_vec is None:
            raise RuntimeError("attach(..., record=True) to record the synaptic current")
        n = len(self.t_vec)
        total = np.zeros(n)
        for v in self.syn_i_vecs:
            total -= np.array(v)[:n]
        return total

    def synapse_currents_nA(self) -> np.ndarray:
        """Per-synapse current, shape (n_synapses, n_times), positive into the cell."""
        return -np.array([np.array(v) for v in self.syn_i_vecs])


@dataclass
class CompositeHandle(StimulusHandle):
    """Handles of the parts of a :class:`~neuron_hybrid.stimuli.Composite`."""

    children: List[StimulusHandle] = field(default_factory=list)

    @property
    def handles(self) -> List[StimulusHandle]:
        """Alias of ``children``."""
        return self.children

    @property
    def iclamp(self):
        """The IClamp of the current parts (None if the composite has only synaptic parts)."""
        return next((c.iclamp for c in self.children if isinstance(c, IClampHandle)), None)

    @property
    def electrode(self):
        return self.iclamp

    @property
    def recording(self) -> bool:
        return all(c.recording for c in self.children)

    def times_ms(self) -> np.ndarray:
        return self.children[0].times_ms()

    def current_nA(self) -> np.ndarray:
        """Sum of the parts' recorded currents (nA, positive into the cell)."""
        parts = [c.current_nA() for c in self.children]
        n = min(len(p) for p in parts)
        return np.sum([p[:n] for p in parts], axis=0)

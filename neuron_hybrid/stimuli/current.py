"""Current-clamp protocols: step, ramp, Ornstein-Uhlenbeck noise, chirp, and their sum.

All waveforms are in nA, positive = depolarising (IClamp convention), and are zero outside the
window ``[delay_ms, delay_ms + dur_ms)``. They are pure functions of ``t_ms`` (and of ``seed`` for
``OU``), so the same protocol gives the same current at any simulation time step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from scipy.signal import lfilter

from .base import (Protocol, ProtocolError, _check_choice, _check_int, _check_number,
                   _check_window, as_float_array, register_protocol)


def _window_mask(t: np.ndarray, delay: float, dur: float) -> np.ndarray:
    return (t >= delay) & (t < delay + dur)


class CurrentProtocol(Protocol):
    """A protocol delivered by an IClamp at ``soma(0.5)`` playing ``waveform``."""

    is_current = True

    def breakpoints_ms(self) -> list:
        return [self.delay_ms, self.delay_ms + self.dur_ms]

    def knot_times_ms(self):
        return np.array([self.delay_ms, self.delay_ms + self.dur_ms], dtype=float)

    def attach(self, cell_or_section, dt_ms: float = 0.025, record: bool = False, **kwargs):
        """Insert an IClamp at ``soma(0.5)`` (or at the given Section's 0.5 / the given Segment)
        whose ``amp`` plays this waveform (``Vector.play(..., continuous=True)``), sampled on the
        grid ``k*dt_ms`` plus both one-sided limits at each discontinuity.

        Returns an :class:`~neuron_hybrid.stimuli.handles.IClampHandle`; keep it alive for as
        long as the stimulus is needed. With ``record=True`` it records the injected current
        (nA) and ``t`` every ``dt_ms``.
        """
        from .handles import attach_iclamp

        return attach_iclamp(self, cell_or_section, dt_ms=dt_ms, record=record, **kwargs)


@register_protocol
@dataclass
class Step(CurrentProtocol):
    """Square pulse of ``amp_nA`` from ``delay_ms`` for ``dur_ms``."""

    amp_nA: float
    delay_ms: float
    dur_ms: float
    tstop_ms: float

    type_name = "step"

    def validate(self) -> None:
        _check_number("amp_nA", self.amp_nA)
        _check_window(self)

    def waveform(self, t_ms) -> np.ndarray:
        t = as_float_array(t_ms)
        return np.where(_window_mask(t, self.delay_ms, self.dur_ms), float(self.amp_nA), 0.0)


@register_protocol
@dataclass
class Ramp(CurrentProtocol):
    """Linear ramp from ``amp_start_nA`` at ``delay_ms`` to ``amp_end_nA`` at
    ``delay_ms + dur_ms``; zero outside."""

    amp_start_nA: float
    amp_end_nA: float
    delay_ms: float
    dur_ms: float
    tstop_ms: float

    type_name = "ramp"

    def validate(self) -> None:
        _check_number("amp_start_nA", self.amp_start_nA)
        _check_number("amp_end_nA", self.amp_end_nA)
        _check_window(self)
        _check_number("dur_ms", self.dur_ms, positive=True)

    def waveform(self, t_ms) -> np.ndarray:
        t = as_float_array(t_ms)
        frac = (t - self.delay_ms) / self.dur_ms
        val = self.amp_start_nA + (self.amp_end_nA - self.amp_start_nA) * frac
        return np.where(_window_mask(t, self.delay_ms, self.dur_ms), val, 0.0)


@register_protocol
@dataclass
class OU(CurrentProtocol):
    """Ornstein-Uhlenbeck noisy current with mean ``mean_nA``, stationary standard deviation
    ``sd_nA`` and correlation time ``tau_ms``, on in ``[delay_ms, delay_ms + dur_ms)``.

    The process is generated exactly (x[k+1] = mu + a (x[k]-mu) + sd sqrt(1-a^2) xi,
    a = exp(-grid_dt/tau), x[0] drawn from the stationary law) on its own grid
    ``delay_ms + k*grid_dt_ms`` from ``numpy.random.default_rng(seed)``, and linearly
    interpolated at the requested times. So the waveform depends on the seed and the grid, not
    on the simulation dt or on ``tstop_ms``.
    """

    mean_nA: float
    sd_nA: float
    tau_ms: float
    seed: int
    delay_ms: float
    dur_ms: float
    tstop_ms: float
    grid_dt_ms: float = 0.025

    type_name = "ou"

    def validate(self) -> None:
        _check_number("mean_nA", self.mean_nA)
        _check_number("sd_nA", self.sd_nA, nonneg=True)
        _check_number("tau_ms", self.tau_ms, positive=True)
        _check_int("seed", self.seed)
        _check_window(self)
        _check_number("grid_dt_ms", self.grid_dt_ms, positive=True)

    def grid(self) -> Tuple[np.ndarray, np.ndarray]:
        """(t_ms, current_nA) on the internal grid covering the whole window."""
        n = int(math.ceil(self.dur_ms / self.grid_dt_ms - 1e-9)) + 1
        t = self.delay_ms + np.arange(n) * self.grid_dt_ms
        rng = np.random.default_rng(self.seed)
        xi = rng.standard_normal(n)
        a = math.exp(-self.grid_dt_ms / self.tau_ms)
        e = self.sd_nA * math.sqrt(1.0 - a * a) * xi
        e[0] = self.sd_nA * xi[0]
        y = lfilter([1.0], [1.0, -a], e)
        return t, self.mean_nA + y

    def knot_times_ms(self):
        tg, _ = self.grid()
        return np.concatenate([tg, [self.delay_ms + self.dur_ms]])

    def waveform(self, t_ms) -> np.ndarray:
        t = as_float_array(t_ms)
        tg, xg = self.grid()
        val = np.interp(t, tg, xg)
        return np.where(_window_mask(t, self.delay_ms, self.dur_ms), val, 0.0)


@register_protocol
@dataclass
class Chirp(CurrentProtocol):
    """Sine sweep ``offset_nA + amp_nA * sin(phase(t - delay))`` from ``f0_hz`` to ``f1_hz``
    over ``dur_ms``; ``sweep`` is ``"linear"`` (frequency linear in time) or ``"exponential"``
    (frequency geometric in time, needs f0, f1 > 0). The phase starts at 0."""

    amp_nA: float
    f0_hz: float
    f1_hz: float
    delay_ms: float
    dur_ms: float
    tstop_ms: float
    offset_nA: float = 0.0
    sweep: str = "linear"

    type_name = "chirp"
    SWEEPS = ("linear", "exponential")

    def knot_times_ms(self):
        return None

    def validate(self) -> None:
        _check_number("amp_nA", self.amp_nA)
        _check_number("f0_hz", self.f0_hz, nonneg=True)
        _check_number("f1_hz", self.f1_hz, nonneg=True)
        _check_number("offset_nA", self.offset_nA)
        _check_choice("sweep", self.sweep, self.SWEEPS)
        _check_window(self)
        _check_number("dur_ms", self.dur_ms, positive=True)
        if self.sweep == "exponential" and not (self.f0_hz > 0 and self.f1_hz > 0):
            raise ProtocolError("field 'f0_hz' and 'f1_hz' must be > 0 for sweep 'exponential'")

    def phase(self, t_ms) -> np.ndarray:
        """Phase (rad) at ``t_ms`` (time from the window start is ``t_ms - delay_ms``)."""
        s = (as_float_array(t_ms) - self.delay_ms) / 1000.0
        T = self.dur_ms / 1000.0
        f0, f1 = float(self.f0_hz), float(self.f1_hz)
        if self.sweep == "linear" or f0 == f1:
            return 2 * np.pi * (f0 * s + 0.5 * (f1 - f0) / T * s * s)
        k = f1 / f0
        return 2 * np.pi * f0 * T / math.log(k) * (np.power(k, s / T) - 1.0)

    def frequency_hz(self, t_ms) -> np.ndarray:
        """Instantaneous frequency (Hz) at ``t_ms`` inside the window."""
        s = (as_float_array(t_ms) - self.delay_ms) / 1000.0
        T = self.dur_ms / 1000.0
        if self.sweep == "linear" or self.f0_hz == self.f1_hz:
            return self.f0_hz + (self.f1_hz - self.f0_hz) * s / T
        return self.f0_hz * np.power(self.f1_hz / self.f0_hz, s / T)

    def waveform(self, t_ms) -> np.ndarray:
        t = as_float_array(t_ms)
        val = self.offset_nA + self.amp_nA * np.sin(self.phase(t))
        return np.where(_window_mask(t, self.delay_ms, self.dur_ms), val, 0.0)


@register_protocol
@dataclass
class Composite(Protocol):
    """Sum of protocols (``a + b`` builds one). Current parts are summed into one IClamp;
    synaptic parts are attached as they are. ``tstop_ms`` defaults to the largest part's."""

    protocols: Tuple[Protocol, ...] = ()
    tstop_ms: Optional[float] = None

    type_name = "composite"

    def __post_init__(self) -> None:
        parts = []
        for i, p in enumerate(self.protocols):
            if isinstance(p, dict):
                try:
                    p = Protocol.from_dict(p)
                except ProtocolError as e:
                    raise ProtocolError(f"field 'protocols' item {i}: {e}") from None
            if not isinstance(p, Protocol):
                raise ProtocolError(
                    f"field 'protocols' item {i} must be a protocol or a dict, got {type(p).__name__}")
            parts.append(p)
        self.protocols = tuple(parts)
        if not self.protocols:
            raise ProtocolError("field 'protocols' must hold at least one protocol")
        if self.tstop_ms is None:
            self.tstop_ms = max(p.tstop_ms for p in self.protocols)
        self.validate()

    def validate(self) -> None:
        _check_number("tstop_ms", self.tstop_ms, positive=True)

    @property
    def is_current(self) -> bool:  # type: ignore[override]
        return all(p.is_current for p in self.protocols)

    def current_parts(self) -> list:
        out = []
        for p in self.protocols:
            out.extend(p.current_parts() if isinstance(p, Composite) else ([p] if p.is_current else []))
        return out

    def other_parts(self) -> list:
        out = []
        for p in self.protocols:
            out.extend(p.other_parts() if isinstance(p, Composite) else ([] if p.is_current else [p]))
        return out

    def to_dict(self):
        return {"type": self.type_name, "protocols": [p.to_dict() for p in self.protocols],
                "tstop_ms": self.tstop_ms}

    def waveform(self, t_ms) -> np.ndarray:
        """Sum of the current parts' waveforms (nA). Synaptic parts have no waveform and are
        not included."""
        t = as_float_array(t_ms)
        out = np.zeros(t.shape)
        for p in self.current_parts():
            out = out + p.waveform(t)
        return out

    def breakpoints_ms(self) -> list:
        return sorted({b for p in self.current_parts() for b in p.breakpoints_ms()})

    def knot_times_ms(self):
        parts = [p.knot_times_ms() for p in self.current_parts()]
        if any(k is None for k in parts):
            return None
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0)

    def attach(self, cell_or_section, dt_ms: float = 0.025, record: bool = False, **kwargs):
        """One IClamp for the summed current parts plus each synaptic part's objects.

        Returns an :class:`~neuron_hybrid.stimuli.handles.IClampHandle` when every part is a
        current, else a :class:`~neuron_hybrid.stimuli.handles.CompositeHandle` (children: the
        IClamp handle first, if any, then one per synaptic part). ``kwargs`` (e.g.
        ``sections``) go to the synaptic parts."""
        from .handles import CompositeHandle, attach_iclamp

        if not self.other_parts():
            return attach_iclamp(self, cell_or_section, dt_ms=dt_ms, record=record)
        children = []
        if self.current_parts():
            children.append(attach_iclamp(self, cell_or_section, dt_ms=dt_ms, record=record))
        for p in self.other_parts():
            children.append(p.attach(cell_or_section, dt_ms=dt_ms, record=record, **kwargs))
        return CompositeHandle(protocol=self, children=children)

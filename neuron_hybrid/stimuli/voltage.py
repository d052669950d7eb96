"""Somatic voltage-clamp protocols (NEURON's SEClamp).

A :class:`VoltageStep` holds the soma at ``v_step_mV`` from ``delay_ms`` for ``dur_ms``; before and
after, the clamp is open (series resistance :data:`OPEN_RS_MOHM`), so the cell sits at its own rest
and then recovers freely. Clamping the soma at a few sub- and near-threshold levels measures the
steady state and the slow kinetics of what the dendrites draw from it directly, which transient
current-clamp data only sample in passing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import Protocol, ProtocolError, _check_number, _check_window, register_protocol
from .handles import StimulusHandle, _h, record_electrode, resolve_segment

#: series resistance (MOhm) of the open clamp: (v_step - v) / 1e9 MOhm is ~1e-7 nA
OPEN_RS_MOHM = 1e9


@register_protocol
@dataclass
class VoltageStep(Protocol):
    """Clamp ``soma(0.5)`` to ``v_step_mV`` (mV) from ``delay_ms`` for ``dur_ms`` through a series
    resistance ``rs_MOhm``; the cell is free before and after."""

    v_step_mV: float
    delay_ms: float
    dur_ms: float
    tstop_ms: float
    rs_MOhm: float = 1e-3

    type_name = "vstep"
    is_current = False

    def validate(self) -> None:
        _check_number("v_step_mV", self.v_step_mV)
        _check_number("rs_MOhm", self.rs_MOhm, positive=True)
        _check_window(self)
        if not -150.0 <= self.v_step_mV <= 100.0:
            raise ProtocolError(f"field 'v_step_mV' must be a membrane potential in [-150, 100] mV, got {self.v_step_mV}")

    def breakpoints_ms(self) -> list:
        return [self.delay_ms, self.delay_ms + self.dur_ms]

    def attach(self, cell_or_section, dt_ms: float = 0.025, record: bool = False, x: float = 0.5):
        """Insert an SEClamp at ``soma(x)`` whose series resistance plays open / ``rs_MOhm`` / open.

        Returns a :class:`VClampHandle`; with ``record=True`` it records the clamp current (nA,
        positive depolarising, as an IClamp) every ``dt_ms``.
        """
        h = _h()
        seg = resolve_segment(cell_or_section, x)
        clamp = h.SEClamp(seg)
        clamp.dur1, clamp.amp1 = 1e9, float(self.v_step_mV)
        clamp.dur2 = clamp.dur3 = 0.0
        tv = h.Vector([0.0, self.delay_ms, self.delay_ms + self.dur_ms])
        rv = h.Vector([OPEN_RS_MOHM, self.rs_MOhm, OPEN_RS_MOHM])
        rv.play(clamp._ref_rs, tv, False)  # piecewise constant: open until delay, clamped, open again
        hd = VClampHandle(protocol=self, objects=[clamp, tv, rv], seclamp=clamp, segment=seg)
        if record:
            record_electrode(hd, dt_ms)
        return hd


@dataclass
class VClampHandle(StimulusHandle):
    """An SEClamp delivering a :class:`VoltageStep`."""

    seclamp: Any = None
    segment: Any = None

    @property
    def electrode(self):
        return self.seclamp

"""Base class, registry and validation for stimulus protocols.

Every protocol is a :func:`dataclasses.dataclass` with a ``tstop_ms`` field. Its JSON form is the
dict of its fields plus a ``"type"`` key (see :data:`SCHEMA_VERSION` and
:mod:`neuron_hybrid.stimuli.io`). Units are in the field names: ``_nA``, ``_ms``, ``_hz``,
``_uS``, ``_mV``.

This module does not know about cells: ``attach`` accepts any object with a ``soma`` attribute
(a NEURON Section, or a list whose first element is one) or a NEURON Section itself.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from typing import Any, ClassVar, Dict, Type

import numpy as np

#: Version of the JSON schema written by :func:`protocol.to_dict` / ``save_protocols``.
SCHEMA_VERSION = 1

_REGISTRY: Dict[str, Type["Protocol"]] = {}


class ProtocolError(ValueError):
    """A protocol description is invalid (unknown type, missing or bad field)."""


def register_protocol(cls: Type["Protocol"]) -> Type["Protocol"]:
    """Class decorator: register a protocol class under its ``type_name``."""
    name = cls.type_name
    if not name:
        raise TypeError(f"{cls.__name__} has no type_name")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"protocol type {name!r} is already registered to {_REGISTRY[name].__name__}")
    _REGISTRY[name] = cls
    return cls


def protocol_types() -> Dict[str, Type["Protocol"]]:
    """Registered protocol types, ``{"step": Step, ...}``."""
    return dict(_REGISTRY)


# ----------------------------------------------------------------------------------------------
# field validation helpers


def _check_number(name: str, value: Any, *, positive=False, nonneg=False, allow_none=False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ProtocolError(f"field {name!r} must be a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ProtocolError(f"field {name!r} must be finite, got {value!r}")
    if positive and not value > 0:
        raise ProtocolError(f"field {name!r} must be > 0, got {value!r}")
    if nonneg and not value >= 0:
        raise ProtocolError(f"field {name!r} must be >= 0, got {value!r}")


def _check_int(name: str, value: Any, *, nonneg=True) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ProtocolError(f"field {name!r} must be an integer, got {value!r}")
    if nonneg and value < 0:
        raise ProtocolError(f"field {name!r} must be >= 0, got {value!r}")


def _check_choice(name: str, value: Any, allowed) -> None:
    if value not in allowed:
        raise ProtocolError(
            f"field {name!r} must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}")


def _check_window(p: "Protocol") -> None:
    """Common checks for protocols with delay_ms/dur_ms/tstop_ms."""
    _check_number("tstop_ms", p.tstop_ms, positive=True)
    if hasattr(p, "delay_ms"):
        _check_number("delay_ms", p.delay_ms, nonneg=True)
    if hasattr(p, "dur_ms"):
        _check_number("dur_ms", p.dur_ms, nonneg=True, allow_none=True)


# ----------------------------------------------------------------------------------------------


class Protocol:
    """Base class of all protocols (subclasses are dataclasses).

    Subclasses set ``type_name`` and implement ``validate()``; current protocols also implement
    ``waveform(t_ms)``. ``a + b`` gives a :class:`~neuron_hybrid.stimuli.Composite`.
    """

    type_name: ClassVar[str] = ""
    #: True for protocols that inject a current through an IClamp (have ``waveform``).
    is_current: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self.validate()

    # -- validation / JSON -------------------------------------------------------------------
    def validate(self) -> None:  # pragma: no cover - overridden
        _check_window(self)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dict: ``{"type": ..., field: value, ...}``."""
        d: Dict[str, Any] = {"type": self.type_name}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, tuple):
                v = list(v)
            if isinstance(v, np.generic):
                v = v.item()
            d[f.name] = v
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Protocol":
        """Build a protocol from its JSON dict.

        Called on :class:`Protocol` itself, dispatches on ``d["type"]``; called on a subclass,
        the ``type`` key is optional but must match if present. Raises :class:`ProtocolError`
        naming the offending field and the allowed values.
        """
        if not isinstance(d, dict):
            raise ProtocolError(f"a protocol must be a JSON object (dict), got {type(d).__name__}")
        d = dict(d)
        typ = d.pop("type", None)
        if cls is Protocol or not cls.type_name:
            if typ is None:
                raise ProtocolError(
                    f"missing field 'type'; allowed types: {', '.join(sorted(_REGISTRY))}")
            if typ not in _REGISTRY:
                raise ProtocolError(
                    f"unknown protocol type {typ!r}; allowed types: {', '.join(sorted(_REGISTRY))}")
            target = _REGISTRY[typ]
        else:
            if typ is not None and typ != cls.type_name:
                raise ProtocolError(f"'type' is {typ!r} but {cls.__name__} expects {cls.type_name!r}")
            target = cls
        return target._from_fields(d)

    @classmethod
    def _from_fields(cls, d: Dict[str, Any]) -> "Protocol":
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ProtocolError(
                f"{cls.type_name!r}: unknown field(s) {', '.join(repr(u) for u in unknown)}; "
                f"allowed fields: {', '.join(['type'] + list(fields))}")
        missing = [n for n, f in fields.items()
                   if n not in d and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]  # type: ignore[misc]
        if missing:
            raise ProtocolError(
                f"{cls.type_name!r}: missing required field(s) {', '.join(repr(m) for m in missing)}")
        kwargs = dict(d)
        # JSON lists -> tuples for tuple-typed fields
        hints = typing.get_type_hints(cls)
        for k, v in list(kwargs.items()):
            if isinstance(v, list) and "tuple" in str(hints.get(k, "")).lower():
                kwargs[k] = tuple(v)
        try:
            return cls(**kwargs)
        except ProtocolError as e:
            raise ProtocolError(f"{cls.type_name!r}: {e}") from None

    def copy(self, **changes) -> "Protocol":
        """A copy with some fields changed (e.g. ``p.copy(seed=2)``), validated."""
        return dataclasses.replace(self, **changes)

    # -- composition -------------------------------------------------------------------------
    def __add__(self, other: "Protocol") -> "Protocol":
        from .current import Composite

        if not isinstance(other, Protocol):
            return NotImplemented
        parts = []
        for p in (self, other):
            parts.extend(p.protocols if isinstance(p, Composite) else [p])
        return Composite(protocols=tuple(parts))

    # -- waveforms -----------------------------------------------------------------------------
    def waveform(self, t_ms) -> np.ndarray:
        """Injected current (nA) at times ``t_ms`` (array-like), as a float64 array."""
        raise NotImplementedError(f"{type(self).__name__} has no current waveform")

    def time_grid(self, dt_ms: float) -> np.ndarray:
        """Times 0, dt, 2 dt, ... up to and including ``tstop_ms`` (computed as k*dt)."""
        _check_number("dt_ms", dt_ms, positive=True)
        n = int(math.floor(self.tstop_ms / dt_ms + 1e-9))
        return np.arange(n + 1, dtype=float) * dt_ms

    def breakpoints_ms(self) -> list:
        """Times where the waveform is discontinuous (used to make Vector.play exact)."""
        return []

    def knot_times_ms(self):
        """If the waveform is piecewise linear: the times of all its kinks and jumps (array);
        ``None`` otherwise. Playback then uses only these points, which is exact at any dt and
        keeps CVode fast (it must stop at every played time point)."""
        return None

    def attach(self, cell_or_section, dt_ms: float = 0.025, record: bool = False, **kwargs):
        """Create the NEURON objects that deliver this protocol; see subclasses."""
        raise NotImplementedError


def as_float_array(t_ms) -> np.ndarray:
    return np.asarray(t_ms, dtype=float)

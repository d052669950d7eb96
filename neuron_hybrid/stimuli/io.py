"""JSON files of protocols.

Schema (version 1). A file is either a JSON list of protocol objects, or an object
``{"format": "neuron_hybrid.protocols", "version": 1, "protocols": [...]}`` (what
:func:`save_protocols` writes). Each protocol object has a ``"type"`` key (``step``, ``ramp``,
``ou``, ``chirp``, ``synaptic``, ``composite``) and the fields of that dataclass, e.g.::

    [{"type": "step", "amp_nA": 0.5, "delay_ms": 10, "dur_ms": 300, "tstop_ms": 350}]

A ``composite`` holds ``"protocols": [...]`` of such objects (and an optional ``tstop_ms``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, List, Union

from .base import SCHEMA_VERSION, Protocol, ProtocolError

FORMAT_NAME = "neuron_hybrid.protocols"


def protocol_from_dict(d) -> Protocol:
    """Protocol from its JSON dict (dispatch on ``"type"``)."""
    return Protocol.from_dict(d)


def protocols_from_json_obj(obj, source: str = "<json>") -> List[Protocol]:
    """Parse an already-decoded JSON value (list, or versioned object) into protocols."""
    if isinstance(obj, dict):
        if "protocols" not in obj:
            if "type" in obj:
                obj = [obj]
            else:
                raise ProtocolError(f"{source}: expected a JSON list of protocols or an object "
                                    f"with a 'protocols' list")
        else:
            version = obj.get("version", SCHEMA_VERSION)
            if version != SCHEMA_VERSION:
                raise ProtocolError(f"{source}: unsupported protocols file version {version!r} "
                                    f"(this code reads version {SCHEMA_VERSION})")
            obj = obj["protocols"]
    if not isinstance(obj, list):
        raise ProtocolError(f"{source}: expected a JSON list of protocols, got {type(obj).__name__}")
    out = []
    for i, d in enumerate(obj):
        try:
            out.append(Protocol.from_dict(d))
        except ProtocolError as e:
            typ = d.get("type") if isinstance(d, dict) else None
            what = f"protocol #{i}" + (f" (type {typ!r})" if typ else "")
            raise ProtocolError(f"{source}: {what}: {e}") from None
    return out


def load_protocols(path: Union[str, Path]) -> List[Protocol]:
    """Read a JSON file of protocols. Errors (:class:`ProtocolError`) name the file, the
    protocol's index, the field and the allowed values."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"protocols file not found: {path}")
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ProtocolError(f"{path}: not valid JSON: {e}") from None
    return protocols_from_json_obj(obj, source=str(path))


def save_protocols(protocols: Iterable[Protocol], path: Union[str, Path]) -> Path:
    """Write protocols as a versioned JSON object (readable by :func:`load_protocols`)."""
    path = Path(path)
    data = {"format": FORMAT_NAME, "version": SCHEMA_VERSION,
            "protocols": [p.to_dict() for p in protocols]}
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path

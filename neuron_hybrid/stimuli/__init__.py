"""Stimulus protocols: dataclasses with a JSON form, waveforms and NEURON attachment.

>>> from neuron_hybrid.stimuli import Step, OU, load_protocols
>>> p = Step(amp_nA=0.5, delay_ms=10, dur_ms=300, tstop_ms=350) + OU(
...     mean_nA=0.0, sd_nA=0.05, tau_ms=5, seed=1, delay_ms=0, dur_ms=350, tstop_ms=350)
>>> handle = p.attach(cell, dt_ms=0.025, record=True)   # IClamp at soma(0.5)

This package does not know about cells: see :mod:`neuron_hybrid.stimuli.base`.
"""
from .base import SCHEMA_VERSION, Protocol, ProtocolError, protocol_types, register_protocol
from .current import OU, Chirp, Composite, CurrentProtocol, Ramp, Step
from .handles import (CompositeHandle, IClampHandle, StimulusHandle, SynapticHandle,
                      fixed_step_current_nA, playback_vectors, resolve_segment)
from .io import load_protocols, protocol_from_dict, protocols_from_json_obj, save_protocols
from .synaptic import Synaptic
from .voltage import VClampHandle, VoltageStep

__all__ = [
    "SCHEMA_VERSION", "Protocol", "ProtocolError", "protocol_types", "register_protocol",
    "CurrentProtocol", "Step", "Ramp", "OU", "Chirp", "Composite", "Synaptic", "VoltageStep",
    "StimulusHandle", "IClampHandle", "SynapticHandle", "CompositeHandle", "VClampHandle",
    "playback_vectors", "resolve_segment", "fixed_step_current_nA",
    "load_protocols", "save_protocols", "protocol_from_dict", "protocols_from_json_obj",
]

"""Differentiable single-compartment twin of NEURON's fixed-step integration (no NEURON at run time)."""
from .soma_twin import SomaTwin, TwinState

__all__ = ["SomaTwin", "TwinState"]

"""Learned currents and gates: ``nn.Module``s that follow the learned-current contract (README)."""
from .axial import LatentAxialCurrent
from .hh import HHPotassium, HHSodium
from .mlp import MLPCurrent

__all__ = ["HHPotassium", "HHSodium", "LatentAxialCurrent", "MLPCurrent"]

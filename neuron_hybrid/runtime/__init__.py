"""Mechanism runtime: building/loading the bridge and MOD library, the TorchScript contract, engines."""
from .build import DENSITY_SUFFIXES, KMAX, POINT_PROCESS, BuildError, build, load_mechanisms
from .contract import ContractError
from .export import export, read_metadata
from .learned_current import ENGINES, LearnedCurrent

__all__ = ["load_mechanisms", "build", "BuildError", "export", "read_metadata", "LearnedCurrent", "ContractError",
           "ENGINES", "DENSITY_SUFFIXES", "POINT_PROCESS", "KMAX"]

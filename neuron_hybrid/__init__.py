"""neuron-hybrid: learned (neural ODE) currents inside NEURON, and model reduction with them.

    import neuron_hybrid as nh
    nh.load_mechanisms()                       # build (once, cached) and load the mechanisms
    nh.export(module, "kdr.pt")                # validate against the contract, save TorchScript + metadata
    kdr = nh.LearnedCurrent.load("kdr.pt")
    kdr.insert(soma)
    red = nh.ReducedCell.load("models/ca1")    # a reduced cell written by `neuron-hybrid reduce`
    full = nh.cells.build("ca1_pospischil")
"""
import importlib

__version__ = "0.1.0"

from .runtime import ContractError, LearnedCurrent, export, load_mechanisms  # noqa: E402

_LAZY = {"ReducedCell": ("neuron_hybrid.reduce", "ReducedCell")}
_SUBPACKAGES = ("cells", "stimuli", "datagen", "reduce", "channels", "models", "train", "twin", "bench", "kinetics", "dic")

__all__ = ["load_mechanisms", "export", "LearnedCurrent", "ContractError", "ReducedCell", "__version__", *_SUBPACKAGES]


def __getattr__(name):  # lazy: importing the package does not import NEURON or every subpackage
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"neuron_hybrid.{name}")
    raise AttributeError(f"module 'neuron_hybrid' has no attribute {name!r}")

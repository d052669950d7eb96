"""neuron-hybrid: learned (neural ODE) currents inside NEURON.

    import neuron_hybrid as nh
    nh.load_mechanisms()                 # build (once, cached) and load the mechanisms
    nh.export(module, "kdr.pt")          # validate against the contract, save TorchScript + metadata
    kdr = nh.LearnedCurrent.load("kdr.pt")
    kdr.insert(soma)
"""
__version__ = "0.1.0"

from .runtime import ContractError, LearnedCurrent, export, load_mechanisms  # noqa: E402

__all__ = ["load_mechanisms", "export", "LearnedCurrent", "ContractError", "__version__"]

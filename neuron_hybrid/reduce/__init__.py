"""Model reduction: a detailed cell -> one compartment with a learned axial current (``ReducedCell``)."""
from .pipeline import NeuronValidator, ReduceConfig, find_rheobase, reduce, stimulus_scale
from .reduced_cell import ModelDirError, ReducedCell

__all__ = ["reduce", "ReduceConfig", "ReducedCell", "ModelDirError", "NeuronValidator", "find_rheobase", "stimulus_scale"]

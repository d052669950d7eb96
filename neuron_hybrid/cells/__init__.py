"""Detailed NEURON cells: morphology import (Import3d), biophysics recipes, built-in cells.

>>> from neuron_hybrid.cells import build, available_cells
>>> cell = build("ball_and_stick")            # built-in hh/pas: no compiled mechanisms needed
>>> cell = build("ca1_pospischil", gm_S_cm2=0)  # needs neuron_hybrid.load_mechanisms() first

User cells: :func:`register_cell`, :func:`from_morphology`, :func:`from_hoc_template`.
This package builds cells; it does not run protocols.
"""
from .cell import Cell, SectionOwner, SomaChild, file_sha256
from .mechanisms import (MechanismError, loaded_density_mechanisms, loaded_point_processes,
                         require_mechanisms, set_mech_param)
from .morphology import MorphologyError, load_morphology
from .nseg import lambda_f, nseg_d_lambda, set_nseg_d_lambda, set_nseg_fixed_length
from .paths import morphology_dir, morphology_path
from .registry import (CellError, available_cells, build, from_hoc_template, from_morphology,
                       merge_params, register_cell, unregister_cell)

__all__ = [
    "Cell", "SomaChild", "SectionOwner", "file_sha256",
    "MechanismError", "loaded_density_mechanisms", "loaded_point_processes",
    "require_mechanisms", "set_mech_param",
    "MorphologyError", "load_morphology",
    "lambda_f", "nseg_d_lambda", "set_nseg_d_lambda", "set_nseg_fixed_length",
    "morphology_dir", "morphology_path",
    "CellError", "available_cells", "build", "from_hoc_template", "from_morphology",
    "merge_params", "register_cell", "unregister_cell",
]

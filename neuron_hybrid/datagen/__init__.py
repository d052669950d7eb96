"""Data generation: run stimulus protocols on detailed cells, record the soma (voltage, injected,
axial, membrane and ionic currents) and store the traces in a documented HDF5 format.

>>> from neuron_hybrid.datagen import generate, open_dataset, read_traces
>>> generate("ball_and_stick", "protocols.json", "data.h5", workers=2)   # resumable
>>> traces, meta = read_traces("data.h5")

* :mod:`.run`: one protocol on one cell (:func:`simulate_trace`);
* :mod:`.schema`: the file format (names, units, attributes) and the reader;
* :mod:`.generator`: many protocols, serially or with worker processes, resumable;
* :mod:`.mpi`: the same over MPI ranks (``mpiexec -n 4 python -m neuron_hybrid.datagen.mpi ...``);
* :mod:`.sites`: named dendritic recording sites.

Importing this package does not import NEURON (so MPI can be initialised first).
"""
from .generator import GenerateError, GenerateResult, cell_metadata, generate
from .run import SomaProbe, Trace, simulate_trace, simulate_voltage, steady_state_initialize
from .schema import (DATASET_NAMES, DATASETS, FORMAT_NAME, FORMAT_VERSION, DatasetError,
                     DatasetMismatchError, StoredTrace, TraceDataset, open_dataset, read_traces,
                     trace_group_name)
from .sites import DendSite, find_site

__all__ = [
    "generate", "GenerateResult", "GenerateError", "cell_metadata",
    "simulate_trace", "simulate_voltage", "steady_state_initialize", "SomaProbe", "Trace",
    "open_dataset", "read_traces", "TraceDataset", "StoredTrace", "DatasetError", "DatasetMismatchError",
    "FORMAT_NAME", "FORMAT_VERSION", "DATASETS", "DATASET_NAMES", "trace_group_name",
    "DendSite", "find_site",
]

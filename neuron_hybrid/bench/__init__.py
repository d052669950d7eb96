"""Benchmarks, metrics and reports: timing NEURON runs, comparing traces, plots."""
from .timing import time_psolve, us_per_step

__all__ = ["time_psolve", "us_per_step"]

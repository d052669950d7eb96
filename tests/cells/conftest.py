"""Fixtures for the cell tests.

``mechanisms``: compiles (cached) and loads every mechanism under ``mod/`` with
``neuron_hybrid.load_mechanisms()``. Tests of cells with compiled channels use it.
"""
import os

import pytest


@pytest.fixture(scope="session")
def mechanisms():
    import neuron_hybrid

    if not hasattr(neuron_hybrid, "load_mechanisms"):  # TEMPORARY: remove once it exists
        pytest.skip("neuron_hybrid.load_mechanisms() does not exist yet")
    return neuron_hybrid.load_mechanisms(verbose=False)


def slow_enabled() -> bool:
    return os.environ.get("NEURON_HYBRID_SLOW_TESTS", "") not in ("", "0")


slow = pytest.mark.skipif(not slow_enabled(),
                          reason="slow (seconds of simulated time on a detailed cell); "
                                 "set NEURON_HYBRID_SLOW_TESTS=1 to run")

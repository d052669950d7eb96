"""Fixtures for the cell tests.

``mechanisms`` (from tests/conftest.py) compiles (cached) and loads every mechanism.
"""
import os

import pytest

def slow_enabled() -> bool:
    return os.environ.get("NEURON_HYBRID_SLOW_TESTS", "") not in ("", "0")


slow = pytest.mark.skipif(not slow_enabled(),
                          reason="slow (seconds of simulated time on a detailed cell); "
                                 "set NEURON_HYBRID_SLOW_TESTS=1 to run")

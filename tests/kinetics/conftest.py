"""Fixtures for the kinetics tests (NEURON's h with neuron-hybrid's mechanisms, torch on one thread)."""
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
torch.set_num_threads(1)

MOD = REPO / "mod" / "channels"


@pytest.fixture(scope="session")
def hh_curves(h):
    from neuron_hybrid.kinetics import measure_channel_curves

    return measure_channel_curves("hh")

"""Fixtures for the channel tests.

The mechanisms of ``mod/channels`` are compiled and loaded together with everything else under
``mod/`` by ``neuron_hybrid.load_mechanisms()`` (session fixture ``h`` of ``tests/conftest.py``;
NEURON can register a mechanism name only once per process, so there is one library per session).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the package need not be installed to run these tests
    sys.path.insert(0, str(REPO))


def _missing(h, suffixes):
    sec = h.Section(name="_mechanism_probe")
    missing = []
    for s in suffixes:
        try:
            sec.insert(s)
        except ValueError:
            missing.append(s)
    h.delete_section(sec=sec)
    return missing


@pytest.fixture(scope="session")
def nrn(h):
    """NEURON's ``h`` with every generated channel mechanism loaded (and stdrun.hoc)."""
    from neuron_hybrid.channels import CHANNELS

    missing = _missing(h, list(CHANNELS))
    assert not missing, f"mechanisms of mod/channels not in the loaded library: {missing}"
    return h


@pytest.fixture
def neuron_globals(nrn):
    """Restore the NEURON globals these tests change (celsius, dt, usetable_hh, cai0_ca_ion)."""
    saved = {k: getattr(nrn, k) for k in ("celsius", "dt", "usetable_hh", "cai0_ca_ion")}
    yield nrn
    for k, v in saved.items():
        setattr(nrn, k, v)

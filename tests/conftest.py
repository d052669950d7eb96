"""Shared fixtures: the compiled mechanism library (built once per machine, cached) and NEURON's h."""
import pytest


@pytest.fixture(scope="session")
def mechanisms():
    import neuron_hybrid as nh

    return nh.load_mechanisms(verbose=False)


@pytest.fixture(scope="session")
def h(mechanisms):
    from neuron import h as _h

    _h.load_file("stdrun.hoc")
    return _h


@pytest.fixture(autouse=True)
def _neuron_defaults():
    """Restore NEURON settings tests change (integrator, temperature, threads)."""
    yield
    try:
        from neuron import h as _h
    except ImportError:  # pragma: no cover
        return
    _h.CVode().active(0)
    _h.celsius = 6.3
    _h.dt = 0.025
    pc = _h.ParallelContext()
    if int(pc.nthread()) != 1:
        pc.nthread(1)

"""Small protocol lists for the data-generation tests (ball_and_stick, tens of ms)."""
import pytest

from neuron_hybrid.stimuli import OU, Step, Synaptic


def protocol_list():
    """Step, OU noise, a synaptic barrage and a step + barrage composite; 30 ms each."""
    syn = dict(tstop_ms=30, n_exc=20, n_inh=5, rate_exc_hz=200.0, section_lists=("basal",))
    return [
        Step(amp_nA=0.3, delay_ms=5, dur_ms=20, tstop_ms=30),
        OU(mean_nA=0.2, sd_nA=0.2, tau_ms=3, seed=7, delay_ms=0, dur_ms=30, tstop_ms=30),
        Synaptic(seed=3, **syn),
        Step(amp_nA=0.1, delay_ms=2, dur_ms=20, tstop_ms=30) + Synaptic(seed=4, **syn),
    ]


@pytest.fixture
def protocols():
    return protocol_list()

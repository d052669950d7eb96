"""The torch twin steps a soma exactly like NEURON (independent reference: NEURON itself)."""
import numpy as np
import pytest
import torch

import neuron_hybrid as nh
from neuron_hybrid import cells
from neuron_hybrid.datagen.run import steady_state_initialize
from neuron_hybrid.models.axial import LatentAxialCurrent
from neuron_hybrid.reduce.soma import build_soma, describe_soma
from neuron_hybrid.stimuli import Step
from neuron_hybrid.twin import SomaTwin


def _neuron_run(h, desc, protocol, learned_file=None):
    soma = build_soma(desc, name="twin_check_soma")
    objs = []
    if learned_file is not None:
        lc = nh.LearnedCurrent.load(learned_file)
        pp = lc.insert(soma(0.5))
        objs += [lc, pp]
        i_l = h.Vector().record(pp._ref_i)
    hd = protocol.attach(soma, dt_ms=0.025)
    v = h.Vector().record(soma(0.5)._ref_v)
    i_s = h.Vector().record(hd.iclamp._ref_i)
    steady_state_initialize(desc["v_init_mV"])
    pc = h.ParallelContext()
    pc.set_maxstep(10)
    pc.psolve(protocol.tstop_ms)
    out = (np.array(v), np.array(i_s), np.array(i_l) if learned_file is not None else None)
    del hd, soma
    return out


@pytest.fixture(scope="module", params=["ca1_pospischil", "l5pc_hay2011", "ball_and_stick"])
def soma_desc(request, mechanisms):
    cell = cells.build(request.param)
    desc = describe_soma(cell)
    del cell
    return desc


def test_soma_only_twin_matches_neuron(h, soma_desc):
    # ball_and_stick's soma has NEURON's built-in hh (with its rate tables); the twin uses the table-free hh_nh
    amp = {"ca1_pospischil": 0.05, "ball_and_stick": 0.1}.get(soma_desc["name"], 0.3)
    v, i_stim, _ = _neuron_run(h, soma_desc, Step(amp_nA=amp, delay_ms=5, dur_ms=60, tstop_ms=80))
    assert np.sum(np.diff((v > 0).astype(int)) == 1) >= 2, "the soma alone must spike"
    twin = SomaTwin(soma_desc)
    with torch.no_grad():
        vt = twin.run(twin.rest_state(torch.tensor([v[0]])), torch.tensor(i_stim[1:]).unsqueeze(0), 0.025)[0].numpy()
    assert np.abs(vt - v).max() < 0.5


@pytest.mark.parametrize("usetable", [1.0, 0.0])
def test_builtin_hh_twin_steps_with_neurons_rate_table(h, mechanisms, usetable):
    """NEURON's built-in hh reads its rates from a 1 mV TABLE unless usetable_hh = 0; the twin follows either way,
    to rounding (the exact rates alone put spikes ms apart within 60 ms of firing)."""
    old = h.usetable_hh
    try:
        h.usetable_hh = usetable
        cell = cells.build("ball_and_stick")
        desc = describe_soma(cell)
        del cell
        assert desc["mechanisms"].keys() == {"hh"} and desc["usetable"] == {"hh": usetable}
        v, i_stim, _ = _neuron_run(h, desc, Step(amp_nA=0.1, delay_ms=5, dur_ms=60, tstop_ms=80))
        assert np.sum(np.diff((v > 0).astype(int)) == 1) >= 3
        twin = SomaTwin(desc)
        with torch.no_grad():
            vt = twin.run(twin.rest_state(torch.tensor([v[0]])), torch.tensor(i_stim[1:]).unsqueeze(0), 0.025)[0]
        assert np.abs(vt.numpy() - v).max() < 1e-6
    finally:
        h.usetable_hh = old


@pytest.mark.parametrize("modulated", [False, True])
def test_learned_current_same_in_neuron_and_torch(h, tmp_path, mechanisms, modulated):
    cell = cells.build("ca1_pospischil")
    desc = describe_soma(cell)
    del cell
    model = LatentAxialCurrent(n_latent=3, seed=3, v_rest_mV=-70.0, modulated=modulated)  # anchored: 0 nA at rest
    model.set_linear([0.004, 0.003, 0.002], [0.8, 0.5, 0.2], [1.0, -2.0, 0.5], [0.5, 5.0, 80.0])
    with torch.no_grad():  # a non-trivial nonlinearity
        model.net[-1].weight.normal_(0, 0.05)
        model.mod_b.copy_(torch.tensor([-1.0, 0.5, -0.8]))  # (no effect unless modulated)
        model.mod_m.mul_(5.0)
    path = nh.export(model, tmp_path / "ax.pt")
    with torch.no_grad():
        v_rest = torch.tensor([-70.0], dtype=torch.float64)
        assert abs(float(model.current(v_rest, model.rates(v_rest)[0]))) < 1e-12
    assert nh.LearnedCurrent.load(path).engine == "rates=table,current=compiled"  # the anchor compiles too
    v, i_stim, i_learned = _neuron_run(h, desc, Step(amp_nA=0.1, delay_ms=5, dur_ms=60, tstop_ms=80), path)
    twin = SomaTwin(desc, learned=model)
    with torch.no_grad():
        v_t, states = twin.run(twin.rest_state(torch.tensor([v[0]])), torch.tensor(i_stim[1:]).unsqueeze(0), 0.025,
                               keep_states=True)
        # the learned current NEURON reports at step n is evaluated at (v[n-1], z[n-1]) (BREAKPOINT before the step)
        i_t = torch.stack([model.current(s.v, s.z) for s in states[:-1]]).squeeze(-1).numpy()
    assert np.sum(np.diff((v > 0).astype(int)) == 1) >= 1
    assert np.abs(v_t[0].numpy() - v).max() < 0.5
    scale = np.abs(i_learned[1:]).max()
    assert scale > 1e-3
    np.testing.assert_allclose(i_learned[1:], i_t, rtol=0, atol=1e-6 * scale)

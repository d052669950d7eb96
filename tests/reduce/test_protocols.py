"""Reduction protocol sets: the recovery protocols' pulse trains and their JSON round trip."""
import numpy as np
import pytest

from neuron_hybrid.reduce.protocols import ProtocolScale, held_out_protocols, recovery_protocols, training_protocols
from neuron_hybrid.stimuli import load_protocols, save_protocols


def test_pulse_train_waveform_and_recorded_recovery():
    scale = ProtocolScale(0.25, delay_ms=100.0)
    p = scale.pulse_train(8.0, 3, 100.0, width_ms=3.0, tail_ms=400.0)
    t = np.arange(0.0, p.tstop_ms, 0.025)
    w = p.waveform(t)
    on = w > 0
    starts = t[1:][on[1:] & ~on[:-1]]
    np.testing.assert_allclose(starts, [100.0, 110.0, 120.0], atol=1e-9)
    assert np.isclose(on.sum() * 0.025, 9.0)            # three 3 ms pulses
    assert np.allclose(w[on], 2.0)                      # 8 x 0.25 nA
    assert np.isclose(p.tstop_ms, 123.0 + 400.0)        # recovery recorded after the last pulse


def test_recovery_protocols_join_the_training_set_only(tmp_path):
    scale = ProtocolScale(0.3, v_rest_mV=-70.0)
    base = training_protocols(scale, "standard", (-10.0,))
    with_rec = training_protocols(scale, "standard", (-10.0,), recovery=True)
    rec = recovery_protocols(scale)
    # appended at the end: an existing training file is extended, not regenerated
    assert [p.to_dict() for p in with_rec] == [p.to_dict() for p in base + rec]
    held = [p.to_dict() for p in held_out_protocols(scale)]
    assert not any(p.to_dict() in held for p in rec)
    save_protocols(rec, tmp_path / "rec.json")
    back = load_protocols(tmp_path / "rec.json")
    assert [p.to_dict() for p in back] == [p.to_dict() for p in rec]
    t = np.arange(0.0, 700.0, 0.025)
    for a, b in zip(back, rec):
        np.testing.assert_array_equal(a.waveform(t), b.waveform(t))


def test_scale_amplitudes_scales_every_current_waveform_exactly():
    """The benchmark's input-perturbation reference: steps, ramps, OU noise (same realisation) and composites."""
    from neuron_hybrid.bench.reduction import scale_amplitudes

    scale = ProtocolScale(0.25, v_rest_mV=-70.0)
    for p in held_out_protocols(scale) + recovery_protocols(scale):
        q = scale_amplitudes(p, 1.002)
        if not p.is_current:  # somatic synapses: the weights scale, the events stay
            assert q.weight_exc_uS == pytest.approx(1.002 * p.weight_exc_uS, rel=1e-12)
            assert q.weight_inh_uS == pytest.approx(1.002 * p.weight_inh_uS, rel=1e-12)
            assert all(np.array_equal(a, b) for k in ("exc", "inh")
                       for a, b in zip(q.spike_times()[k], p.spike_times()[k]))
            continue
        t = np.arange(0.0, p.tstop_ms, 0.025)
        w = p.waveform(t)
        assert np.abs(w).max() > 0
        np.testing.assert_allclose(q.waveform(t), 1.002 * w, rtol=1e-12, atol=1e-15)
        assert q.tstop_ms == p.tstop_ms


def test_synaptic_protocol_delivers_the_mean_excitatory_current_it_was_scaled_to(h):
    """ProtocolScale.synaptic sets the weights from the Exp2Syn event integral: clamp a soma at rest and the
    recorded mean excitatory synaptic current over the window is exc_k x rheobase (an independent check of
    the normalisation against NEURON's own Exp2Syn)."""
    from neuron_hybrid.stimuli.synaptic import exp2syn_charge_per_event

    # one event of unit weight: integral of NEURON's Exp2Syn conductance
    soma = h.Section(name="syn_check_soma")
    syn = h.Exp2Syn(soma(0.5))
    syn.tau1, syn.tau2 = 0.2, 2.0
    nc = h.NetCon(None, syn)
    nc.weight[0] = 1.0
    g = h.Vector().record(syn._ref_g)
    h.dt = 0.005
    h.finitialize(-65.0)
    nc.event(1.0)
    h.continuerun(60.0)
    assert np.sum(np.array(g)) * h.dt == pytest.approx(exp2syn_charge_per_event(0.2, 2.0), rel=2e-3)
    assert np.array(g).max() == pytest.approx(1.0, rel=1e-3)      # NEURON normalises the peak to the weight

    # the protocol on a soma voltage-clamped at rest: NEURON's mean excitatory current is exc_k x rheobase
    scale = ProtocolScale(0.3, v_rest_mV=-70.0)
    p = scale.synaptic(1.5, seed=3, dur_ms=1000.0)
    assert p.section_lists == ("somatic",)
    clamp = h.SEClamp(soma(0.5))
    clamp.dur1, clamp.amp1, clamp.rs = 1e9, scale.v_rest_mV, 1e-4
    handle = p.attach(soma, dt_ms=0.025, record=True)
    h.dt = 0.025
    h.finitialize(scale.v_rest_mV)
    h.continuerun(p.tstop_ms)
    t = np.arange(len(handle.syn_i_vecs[0])) * 0.025
    window = (t >= p.delay_ms) & (t < p.delay_ms + p.dur_ms)
    currents = handle.synapse_currents_nA()  # positive into the cell
    exc = np.array([k == "exc" for k in handle.kinds])
    # the Poisson realisation holds n events where the rate expects n_expected; per event the charge is right
    n_events = sum(len(x) for x in p.spike_times()["exc"])
    n_expected = p.n_exc * p.rate_exc_hz * p.dur_ms / 1000.0
    measured_nA = currents[exc][:, window].sum(axis=0).mean()
    assert measured_nA * n_expected / n_events == pytest.approx(1.5 * 0.3, rel=0.01)
    assert measured_nA == pytest.approx(1.5 * 0.3, rel=0.15)
    inh_g = -currents[~exc][:, window].sum(axis=0).mean() / (scale.v_rest_mV - p.e_inh_mV)
    exc_g = currents[exc][:, window].sum(axis=0).mean() / (p.e_exc_mV - scale.v_rest_mV)
    n_inh = sum(len(x) for x in p.spike_times()["inh"])
    n_inh_expected = p.n_inh * p.rate_inh_hz * p.dur_ms / 1000.0
    assert (inh_g * n_inh_expected / n_inh) / (exc_g * n_expected / n_events) == pytest.approx(0.5, rel=0.02)
    assert [q.type_name for q in held_out_protocols(scale)].count("synaptic") == 2
    with pytest.raises(ValueError, match="resting potential"):
        ProtocolScale(0.3).synaptic(1.5, seed=3)
    assert not any(q.type_name == "synaptic" for q in held_out_protocols(ProtocolScale(0.3)))

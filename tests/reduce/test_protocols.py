"""Reduction protocol sets: the recovery protocols' pulse trains and their JSON round trip."""
import numpy as np

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
        t = np.arange(0.0, p.tstop_ms, 0.025)
        w = p.waveform(t)
        assert np.abs(w).max() > 0
        np.testing.assert_allclose(q.waveform(t), 1.002 * w, rtol=1e-12, atol=1e-15)
        assert q.tstop_ms == p.tstop_ms

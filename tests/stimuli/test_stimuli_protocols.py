"""Protocol dataclasses: JSON form, validation errors, waveform values (no NEURON run)."""
import json

import numpy as np
import pytest

from neuron_hybrid.stimuli import (OU, Chirp, Composite, Protocol, ProtocolError, Ramp, Step,
                                   Synaptic, load_protocols, protocol_types, save_protocols)


def all_examples():
    return [
        Step(amp_nA=0.5, delay_ms=10, dur_ms=300, tstop_ms=350),
        Ramp(amp_start_nA=-0.1, amp_end_nA=0.4, delay_ms=5, dur_ms=100, tstop_ms=120),
        OU(mean_nA=0.2, sd_nA=0.12, tau_ms=5, seed=3, delay_ms=0, dur_ms=200, tstop_ms=200),
        Chirp(amp_nA=0.1, f0_hz=1, f1_hz=50, delay_ms=10, dur_ms=100, tstop_ms=120,
              offset_nA=0.05, sweep="exponential"),
        Synaptic(tstop_ms=100, seed=7, n_exc=10, n_inh=3, section_lists=("basal",)),
        Step(0.1, 0, 10, 50) + OU(0.0, 0.05, 2.0, 1, 0, 50, 50) + Synaptic(tstop_ms=50, seed=1),
    ]


def test_types_registered():
    assert set(protocol_types()) >= {"step", "ramp", "ou", "chirp", "synaptic", "composite"}


@pytest.mark.parametrize("proto", all_examples(), ids=lambda p: p.type_name)
def test_json_round_trip(proto, tmp_path):
    d = proto.to_dict()
    assert d["type"] == proto.type_name
    json.dumps(d)  # JSON-serialisable
    assert Protocol.from_dict(json.loads(json.dumps(d))) == proto
    path = save_protocols([proto], tmp_path / "p.json")
    (back,) = load_protocols(path)
    assert back == proto
    assert back.tstop_ms == proto.tstop_ms


def test_load_plain_list(tmp_path):
    path = tmp_path / "protocols.json"
    path.write_text('[{"type": "step", "amp_nA": 0.5, "delay_ms": 10, "dur_ms": 300, '
                    '"tstop_ms": 350}, {"type": "composite", "protocols": ['
                    '{"type": "step", "amp_nA": 0.1, "delay_ms": 0, "dur_ms": 5, "tstop_ms": 5},'
                    '{"type": "ramp", "amp_start_nA": 0, "amp_end_nA": 1, "delay_ms": 0, '
                    '"dur_ms": 5, "tstop_ms": 8}]}]')
    step, comp = load_protocols(path)
    assert step == Step(amp_nA=0.5, delay_ms=10, dur_ms=300, tstop_ms=350)
    assert isinstance(comp, Composite) and comp.tstop_ms == 8
    assert np.allclose(comp.waveform([1.0, 6.0]), [0.1 + 0.2, 0.0])


@pytest.mark.parametrize("bad, words", [
    ({"type": "stp"}, ["unknown protocol type 'stp'", "step", "ramp", "ou", "chirp", "synaptic"]),
    ({"amp_nA": 1}, ["missing field 'type'"]),
    ({"type": "step", "amp_nA": 1}, ["missing", "delay_ms", "dur_ms", "tstop_ms"]),
    ({"type": "step", "amp_nA": 1, "delay_ms": 0, "dur_ms": 1, "tstop_ms": 1, "amp": 2},
     ["unknown field", "'amp'", "allowed fields", "amp_nA"]),
    ({"type": "step", "amp_nA": "big", "delay_ms": 0, "dur_ms": 1, "tstop_ms": 1},
     ["'amp_nA'", "number"]),
    ({"type": "step", "amp_nA": 1, "delay_ms": -1, "dur_ms": 1, "tstop_ms": 1}, ["'delay_ms'", ">= 0"]),
    ({"type": "ou", "mean_nA": 0, "sd_nA": 0.1, "tau_ms": 0, "seed": 1, "delay_ms": 0,
      "dur_ms": 1, "tstop_ms": 1}, ["'tau_ms'", "> 0"]),
    ({"type": "ou", "mean_nA": 0, "sd_nA": 0.1, "tau_ms": 1, "seed": 1.5, "delay_ms": 0,
      "dur_ms": 1, "tstop_ms": 1}, ["'seed'", "integer"]),
    ({"type": "chirp", "amp_nA": 1, "f0_hz": 1, "f1_hz": 2, "delay_ms": 0, "dur_ms": 1,
      "tstop_ms": 1, "sweep": "log"}, ["'sweep'", "'linear'", "'exponential'"]),
    ({"type": "synaptic", "tstop_ms": 10, "seed": 1, "tau1_exc_ms": 5, "tau2_exc_ms": 1},
     ["tau1_exc_ms", "tau2_exc_ms"]),
    ({"type": "composite", "protocols": [{"type": "nope"}]}, ["protocols", "item 0", "'nope'"]),
])
def test_bad_dicts_name_the_problem(bad, words):
    with pytest.raises(ProtocolError) as e:
        Protocol.from_dict(bad)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_load_errors_name_file_and_index(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([
        {"type": "step", "amp_nA": 1, "delay_ms": 0, "dur_ms": 1, "tstop_ms": 1},
        {"type": "ou", "mean_nA": 0, "sd_nA": -1, "tau_ms": 1, "seed": 1, "delay_ms": 0,
         "dur_ms": 1, "tstop_ms": 1}]))
    with pytest.raises(ProtocolError) as e:
        load_protocols(path)
    msg = str(e.value)
    assert str(path) in msg and "protocol #1" in msg and "'sd_nA'" in msg
    (tmp_path / "nojson.json").write_text("[{")
    with pytest.raises(ProtocolError, match="not valid JSON"):
        load_protocols(tmp_path / "nojson.json")
    (tmp_path / "num.json").write_text("3")
    with pytest.raises(ProtocolError, match="expected a JSON list"):
        load_protocols(tmp_path / "num.json")
    with pytest.raises(FileNotFoundError):
        load_protocols(tmp_path / "missing.json")
    (tmp_path / "v9.json").write_text('{"version": 9, "protocols": []}')
    with pytest.raises(ProtocolError, match="version"):
        load_protocols(tmp_path / "v9.json")


def test_step_and_ramp_exact():
    s = Step(amp_nA=0.5, delay_ms=10, dur_ms=300, tstop_ms=350)
    t = np.array([0, 9.999, 10, 150, 309.999, 310, 349])
    assert np.array_equal(s.waveform(t), [0, 0, 0.5, 0.5, 0.5, 0, 0])
    r = Ramp(amp_start_nA=-0.1, amp_end_nA=0.3, delay_ms=5, dur_ms=100, tstop_ms=120)
    t = np.array([0, 5, 30, 55, 104.5, 105, 110])
    assert np.allclose(r.waveform(t), [0, -0.1, 0.0, 0.1, 0.298, 0, 0], atol=1e-15)
    assert s.breakpoints_ms() == [10, 310]
    assert np.array_equal(s.time_grid(0.5)[[0, 1, -1]], [0, 0.5, 350])


def test_ou_statistics_and_seed():
    p = OU(mean_nA=0.2, sd_nA=0.1, tau_ms=5.0, seed=11, delay_ms=0, dur_ms=20000,
           tstop_ms=20000)
    t = np.arange(0, 20000, 0.1)
    x = p.waveform(t)
    assert abs(x.mean() - 0.2) < 0.01          # sd of the mean ~ sd*sqrt(2 tau/T) = 0.0022
    assert abs(x.std() - 0.1) < 0.01
    y = x - x.mean()
    for lag_ms in (1.0, 5.0, 10.0):
        k = int(round(lag_ms / 0.1))
        rho = np.dot(y[:-k], y[k:]) / np.dot(y, y)
        assert abs(rho - np.exp(-lag_ms / 5.0)) < 0.05, (lag_ms, rho)
    # reproducible; another seed differs
    assert np.array_equal(x, p.waveform(t))
    other = p.copy(seed=12).waveform(t)
    assert not np.allclose(x, other)
    # independent of the sampling grid and of tstop: a coarse grid samples the same function
    tc = np.arange(0, 20000, 0.5)
    assert np.array_equal(p.waveform(tc), x[::5])
    assert np.array_equal(p.copy(tstop_ms=30000).waveform(t), x)
    # zero outside the window
    q = p.copy(delay_ms=100, dur_ms=50)
    assert np.all(q.waveform([0, 99.99, 150, 200]) == 0)
    assert q.waveform([100.0])[0] != 0


def test_chirp_values():
    c = Chirp(amp_nA=0.2, f0_hz=10, f1_hz=30, delay_ms=100, dur_ms=1000, tstop_ms=1200)
    # linear sweep: phase = 2 pi (f0 s + (f1-f0) s^2 / 2T)
    for s in (0.0, 0.0125, 0.5, 0.9):
        ph = 2 * np.pi * (10 * s + 0.5 * 20 * s * s / 1.0)
        assert np.isclose(c.waveform(100 + 1000 * s), 0.2 * np.sin(ph), atol=1e-12)
    assert np.isclose(c.frequency_hz(600), 20.0)
    e = c.copy(sweep="exponential")
    assert np.isclose(e.frequency_hz(600), np.sqrt(10 * 30))
    # numerical derivative of the phase is the instantaneous frequency
    tt = np.array([300.0, 300.001])
    f = np.diff(e.phase(tt))[0] / (2 * np.pi) / 1e-6
    assert np.isclose(f, e.frequency_hz(300.0005), rtol=1e-4)
    assert c.waveform([50, 1100]).tolist() == [0, 0]
    with pytest.raises(ProtocolError, match="f0_hz"):
        Chirp(amp_nA=1, f0_hz=0, f1_hz=5, delay_ms=0, dur_ms=1, tstop_ms=1, sweep="exponential")


def test_composite_sum_and_flattening():
    a = Step(0.1, 0, 10, 20)
    b = Ramp(0.0, 1.0, 0, 10, 30)
    c = OU(0.0, 0.1, 1.0, 5, 0, 20, 20)
    comp = a + b + c
    assert isinstance(comp, Composite) and len(comp.protocols) == 3  # flattened
    assert comp.tstop_ms == 30
    t = np.linspace(0, 30, 301)
    assert np.allclose(comp.waveform(t), a.waveform(t) + b.waveform(t) + c.waveform(t))
    with_syn = comp + Synaptic(tstop_ms=40, seed=1)
    assert with_syn.tstop_ms == 40 and not with_syn.is_current
    assert np.allclose(with_syn.waveform(t), comp.waveform(t))  # synaptic has no waveform
    assert Composite(protocols=(a,), tstop_ms=99).tstop_ms == 99
    with pytest.raises(ProtocolError):
        Composite(protocols=())


def test_synaptic_placement_and_spikes_reproducible():
    s = Synaptic(tstop_ms=1000, seed=5, n_exc=200, n_inh=50, rate_exc_hz=20, rate_inh_hz=5)
    lengths = [10.0, 90.0, 0.0]
    pl = s.placement_indices(lengths)
    assert pl == s.placement_indices(lengths)
    assert pl != s.copy(seed=6).placement_indices(lengths)
    assert len(pl) == 250 and [k for k, _, _ in pl].count("exc") == 200
    idx = np.array([i for _, i, _ in pl])
    assert not np.any(idx == 2)                      # zero length: never chosen
    assert 0.82 < np.mean(idx == 1) < 0.97           # weighted by length (expected 0.9)
    assert all(0 <= x <= 1 for _, _, x in pl)
    # changing the number of inhibitory synapses does not move the excitatory ones
    pl2 = s.copy(n_inh=10).placement_indices(lengths)
    assert pl2[:200] == pl[:200]
    sp = s.spike_times()
    sp2 = s.spike_times()
    assert all(np.array_equal(a, b) for a, b in zip(sp["exc"], sp2["exc"]))
    rate = np.mean([len(x) for x in sp["exc"]]) / 1.0
    assert 18 < rate < 22
    assert all(np.all(np.diff(x) >= 0) and (len(x) == 0 or (x[0] >= 0 and x[-1] < 1000))
               for x in sp["exc"] + sp["inh"])
    w = s.copy(delay_ms=200, dur_ms=100).spike_times()
    assert all(np.all((x >= 200) & (x < 300)) for x in w["exc"])

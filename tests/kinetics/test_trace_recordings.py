"""Part 3 (torch twin, batched training) and part 5 (recordings) at small sizes."""
import numpy as np
import pytest
import torch

from neuron_hybrid.kinetics.recordings import RecordingError, Sweep, read_sweeps, write_csv, write_nwb
from neuron_hybrid.kinetics.trace import HH, TraceFitConfig, member_rmse, simulate, step_stimulus, train_members
from neuron_hybrid.kinetics.trace.tables import _tf_integrate


def test_parallel_scan_equals_sequential_cnexp():
    g = torch.Generator().manual_seed(0)
    xi = torch.rand(3, 300, generator=g, dtype=torch.float64)
    ta = torch.rand(3, 300, generator=g, dtype=torch.float64) + 0.05
    a = torch.exp(-0.025 / ta)
    x, xs = xi[:, 0], [xi[:, 0]]
    for k in range(1, 300):
        x = a[:, k] * x + (1 - a[:, k]) * xi[:, k]
        xs.append(x)
    assert torch.allclose(torch.stack(xs, 1), _tf_integrate(xi, ta, 0.025), atol=1e-14)


def test_twin_matches_neuron_hh(h):
    """The batched twin (true gates) vs NEURON's hh (no tables), IClamp converted to mA/cm2."""
    sec = h.Section(name="twin_hh")
    sec.L = sec.diam = 20
    sec.insert("hh")
    st = h.IClamp(sec(0.5))
    st.delay, st.dur, st.amp = 5, 40, 0.1
    rec = h.Vector().record(sec(0.5)._ref_v)
    h.usetable_hh = 0
    h.dt = 0.025
    h.finitialize(-65)
    h.continuerun(30)
    h.usetable_hh = 1
    dens = 0.1 * 100 / sec(0.5).area()
    t = torch.arange(0, 30, 0.025, dtype=torch.float64)[: len(rec) - 1] + 0.0125
    p = {k: torch.tensor([v], dtype=torch.float64) for k, v in HH.default_params().items()}
    v = simulate(HH, step_stimulus(t, 5, 40, dens), 0.025, p)[0].numpy()
    ref = rec.as_numpy()
    assert ref.max() > 20
    assert np.abs(v - ref).max() < 1e-6


def test_training_reduces_error_and_is_deterministic():
    dt, M = 0.025, 2
    t = torch.arange(0, 12, dt, dtype=torch.float64) + dt / 2
    stim = step_stimulus(t, 2, 8, 0.01).repeat(M, 1)
    p = {k: torch.full((M,), v, dtype=torch.float64) for k, v in HH.default_params().items()}
    with torch.no_grad():
        v = simulate(HH, stim, dt, p)
    cfg = TraceFitConfig(restarts=1, restart_rounds=0, width=8, prior_steps=30, tf_steps=25, window_ms=(1.0,), cl_steps=0, cl_fractions=(), seed=5,
                         parametric_fit_iters=30, parametric_steps=2, parametric_lm_iters=2,
                         parametric_polish_iters=2)
    log = []
    nets = train_members(HH, "k", stim, v, dt, p, cfg, log=log)
    first = log[0][-1]
    with torch.no_grad():
        r0 = member_rmse(simulate(HH, stim, dt, p, nets, ("n",)), v)
    nets2 = train_members(HH, "k", stim, v, dt, p, cfg)
    for a, b in zip(nets.parameters(), nets2.parameters()):
        assert torch.equal(a, b)
    assert np.all(np.isfinite(r0.numpy()))
    assert torch.all(r0 < 15.0), r0  # from a generic prior (tens of mV off) towards the trace


def _sweeps():
    t = np.arange(0, 5, 0.025)
    return [Sweep(t, -65 + np.sin(t + k), np.where((t > 1) & (t < 3), 0.1 * (k + 1), 0.0), name=str(k)) for k in range(2)]


def test_recordings_roundtrip(tmp_path):
    sw = _sweeps()
    back = read_sweeps(write_csv(tmp_path / "r.csv", sw))
    assert len(back) == 2 and np.allclose(back[1].i, sw[1].i) and np.allclose(back[0].v_mV, sw[0].v_mV)
    np.savez(tmp_path / "r.npz", t_ms=sw[0].t_ms, v_mV=np.stack([s.v_mV for s in sw]), i_nA=np.stack([s.i for s in sw]))
    assert np.allclose(read_sweeps(tmp_path / "r.npz")[1].v_mV, sw[1].v_mV)
    pytest.importorskip("pynwb")
    back = read_sweeps(write_nwb(tmp_path / "r.nwb", sw))
    assert len(back) == 2 and np.allclose(back[1].v_mV, sw[1].v_mV) and np.allclose(back[1].i, sw[1].i)
    assert np.allclose(back[0].t_ms, sw[0].t_ms)


def test_bad_recordings(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_sweeps(tmp_path / "none.csv")
    (tmp_path / "x.csv").write_text("time,volt\n0,1\n")
    with pytest.raises(RecordingError, match="missing column"):
        read_sweeps(tmp_path / "x.csv")
    (tmp_path / "x.txt").write_text("1")
    with pytest.raises(RecordingError, match="unknown recording format"):
        read_sweeps(tmp_path / "x.txt")
    from neuron_hybrid.kinetics.recordings import fit_recording
    with pytest.raises(RecordingError, match="known_parameters must be one of"):
        fit_recording(write_csv(tmp_path / "r.csv", _sweeps()), tmp_path / "fit", area_um2=1000.0,
                      known_parameters="fixed")
    from neuron_hybrid.cli import main
    with pytest.raises(SystemExit):  # argparse names the valid choices
        main(["fit-channel", str(tmp_path / "r.csv"), "--out", str(tmp_path / "fit"), "--known-parameters", "fixed"])

"""End to end: reduce the passive ball-and-stick cell and check the reduced soma on a held-out protocol."""
import json
import shutil

import numpy as np
import pytest

from neuron_hybrid.datagen.run import simulate_voltage
from neuron_hybrid.reduce import ReduceConfig, ReducedCell, reduce
from neuron_hybrid.reduce.protocols import ProtocolScale, held_out_protocols
from neuron_hybrid.reduce.reduced_cell import ModelDirError
from neuron_hybrid.train.closed_loop import ClosedLoopConfig
from neuron_hybrid.train.teacher import TeacherConfig


@pytest.fixture(scope="module")
def reduced_dir(tmp_path_factory, mechanisms):
    out = tmp_path_factory.mktemp("bs") / "model"
    cfg = ReduceConfig(n_latent=2, tau_min_init_ms=0.5, tau_max_init_ms=20.0, width=8, protocol_size="small",
                       workers=1, eval_every=20, teacher=TeacherConfig(epochs=40, lr=1e-2),
                       closed_loop=True, closed_loop_config=ClosedLoopConfig(window_ms=(5.0,), iters_per_window=4,
                                                                            batch=4, eval_every=2, patience=2))
    reduce("ball_and_stick", out, cfg, cell_params={"passive": True}, progress=False, log=lambda m: None)
    return out


def test_reduced_passive_cell_matches_full_on_held_out_protocol(h, reduced_dir):
    from neuron_hybrid import cells

    meta = json.loads((reduced_dir / "metadata.json").read_text())
    scale = ProtocolScale(meta["rheobase_nA"])
    protocol = held_out_protocols(scale, "small")[0]
    assert protocol.to_dict() not in meta["data"]["train"]["protocols"]
    assert meta["training"]["calibration"] is None  # a passive cell has no spike counts to calibrate on
    full = cells.build("ball_and_stick", passive=True)
    t, v_full, _, _ = simulate_voltage(full, protocol)
    del full
    red = ReducedCell.load(reduced_dir)
    assert red.soma.nseg == 1 and red.n_segments == 1
    _, v_red, _, _ = simulate_voltage(red, protocol)
    assert np.ptp(v_full) > 5.0, "the held-out step must move the voltage"
    assert np.abs(v_red - v_full).max() < 1.0
    soma_only = _soma_only(red)
    del red
    # the learned axial current matters: without it the soma alone is far off
    _, v_soma, _, _ = simulate_voltage(soma_only, protocol)
    assert np.abs(v_soma - v_full).max() > 3.0


def _soma_only(red):
    from neuron_hybrid.reduce.soma import build_soma

    class SomaOnly:
        def __init__(self, desc):
            self.soma = build_soma(desc, "soma_only")
            self.v_init_mV = desc["v_init_mV"]
            self.desc = desc

        def apply_globals(self):
            pass

    return SomaOnly(red.soma_description)


def test_model_dir_contents(reduced_dir):
    meta = json.loads((reduced_dir / "metadata.json").read_text())
    for key in ("cell", "rheobase_nA", "v_range_mV", "data", "training", "config", "validation_metrics"):
        assert key in meta
    assert len(meta["data"]["train"]["sha256"]) == 64
    assert meta["training"]["teacher_forced_rmse_nA"] < 0.05  # nA; the passive dendrite's current is ~0.1 nA
    assert not any(m["runaway"] for m in meta["validation_metrics"])
    assert meta["cell_source"] == {"kind": "builtin", "name": "ball_and_stick"}  # what the benchmark rebuilds


def test_incomplete_or_corrupt_model_dir(tmp_path, reduced_dir, mechanisms):
    with pytest.raises(ModelDirError, match="does not exist"):
        ReducedCell.load(tmp_path / "nothing")
    broken = tmp_path / "broken"
    shutil.copytree(reduced_dir, broken, ignore=shutil.ignore_patterns("work"))
    (broken / "soma.json").unlink()
    with pytest.raises(ModelDirError, match="soma.json"):
        ReducedCell.load(broken)
    shutil.copy(reduced_dir / "soma.json", broken / "soma.json")
    (broken / "metadata.json").write_text("{not json")
    with pytest.raises(ModelDirError, match="corrupt"):
        ReducedCell.load(broken)
    shutil.copy(reduced_dir / "metadata.json", broken / "metadata.json")
    (broken / "axial_current.pt").write_bytes(b"garbage")
    with pytest.raises(ModelDirError, match="not a valid learned current"):
        ReducedCell.load(broken)


def test_benchmark_names_what_it_cannot_rebuild(tmp_path, reduced_dir, capsys):
    """A model directory whose full cell came from a script's function, or whose metadata is corrupt: a clear error."""
    from neuron_hybrid.cli import main

    d = tmp_path / "model"
    shutil.copytree(reduced_dir, d, ignore=shutil.ignore_patterns("work"))
    meta = json.loads((d / "metadata.json").read_text())
    (d / "metadata.json").write_text(json.dumps(dict(meta, cell_source=None)))
    assert main(["benchmark", str(d), "--report", str(tmp_path / "r")]) == 2
    assert "pass it explicitly" in capsys.readouterr().err
    (d / "metadata.json").write_text("{not json")
    assert main(["benchmark", str(d), "--report", str(tmp_path / "r")]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_benchmark_report_with_reference_ceiling(reduced_dir, tmp_path):
    """``neuron-hybrid benchmark`` on the reduced passive cell: files, metrics and the dt/2 reference."""
    from neuron_hybrid.bench.reduction import run_benchmark

    report = tmp_path / "report"
    out = run_benchmark(reduced_dir, report, repeats=1, timing_ms=20.0, workers=1, log=lambda m: None,
                        reference_ceiling=True)
    for name in ("metrics.json", "report.md", "traces.png", "latents.png", "held_out.h5", "held_out_half_dt.h5",
                 "held_out_input_plus_0.2pct.h5"):
        assert (report / name).stat().st_size > 0, name
    assert json.loads((report / "metrics.json").read_text())["summary"]["speedup"] == pytest.approx(out["summary"]["speedup"])
    for r in out["protocols"]:
        # two valid solutions of the same passive cell (dt and dt/2) agree to a few hundredths of a mV ...
        assert r["reference"]["subthreshold_rmse_mV"] < 0.05
        assert r["reference"]["spike_count_error"] == 0 and r["n_spikes_ref"] == 0
        # a passive cell is linear: 0.2 % more input moves V by 0.2 % of its deflection from rest (< 0.1 mV here)
        assert 0.0 < r["reference_input_plus_0.2pct"]["subthreshold_rmse_mV"] < 0.1
        # ... and the reduced cell is within the 1 mV of the full one
        assert r["subthreshold_rmse_mV"] < 1.0
        assert not r["runaway"]
    # somatic synapses (conductance input, never trained on) are among the held-out protocols
    assert [r["kind"] for r in out["protocols"]].count("synaptic") == 1
    s = out["summary"]
    assert s["ceiling_gamma_noise"] == 1.0 and s["runaway_protocols"] == 0
    assert s["subthreshold_rmse_synaptic_mV"] < 1.0 and s["gamma_synaptic"] == 1.0  # passive: no spikes
    assert s["full_s_per_s"] > 0 and s["reduced_s_per_s"] > 0 and s["soma_s_per_s"] > 0
    assert "Reference ceiling" in (report / "report.md").read_text()

"""generate(): recorded currents, resume, refusal to mix files, determinism across workers and
MPI ranks, and the command line. Small cells, tens of ms per trace."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from neuron_hybrid.datagen import (DatasetError, DatasetMismatchError, generate, open_dataset,
                                   read_traces)
from neuron_hybrid.stimuli import Step, save_protocols

from .builders import small_ball_and_stick
from .conftest import protocol_list

ROOT = Path(__file__).resolve().parents[2]


def _balance(tr):
    """max |i_membrane + i_axial - i_stim| / largest term, from sample 1 on."""
    res = tr.i_membrane_soma + tr.i_axial - tr.i_stim
    scale = max(np.abs(tr.i_membrane_soma).max(), np.abs(tr.i_axial).max(), np.abs(tr.i_stim).max())
    return np.abs(res[1:]).max() / scale


def _by_protocol(path):
    traces, _ = read_traces(path)
    return {t.protocol_json: t for t in traces}


def _assert_identical(path_a, path_b):
    a, b = _by_protocol(path_a), _by_protocol(path_b)
    assert set(a) == set(b)
    for k, ta in a.items():
        tb = b[k]
        for name, arr in ta.arrays().items():
            np.testing.assert_array_equal(arr, tb.arrays()[name], err_msg=name)  # bit-identical
        assert set(ta.v_dend) == set(tb.v_dend)
        for name in ta.v_dend:
            np.testing.assert_array_equal(ta.v_dend[name], tb.v_dend[name])
        assert (ta.seed, ta.seeds) == (tb.seed, tb.seeds)


@pytest.fixture(scope="module")
def serial_file(tmp_path_factory, mechanisms):
    out = tmp_path_factory.mktemp("serial") / "serial.h5"
    res = generate("ball_and_stick", protocol_list(), out, dend_sites=["mid=dend[0](0.5)"], progress=False)
    assert res.n_simulated == 4 and res.complete
    return out


def test_traces_and_metadata(serial_file):
    traces, meta = read_traces(serial_file)
    assert [t.index for t in traces] == [0, 1, 2, 3]
    assert meta["cell_name"] == "ball_and_stick" and meta["cell_builder"] == "registry:ball_and_stick"
    assert meta["cell_params"]["gnabar_hh_S_cm2"] == 0.12 and meta["cell_params"]["celsius_degC"] == 6.3
    assert meta["soma_area_um2"] == pytest.approx(np.pi * 20 * 20)
    assert meta["cm_uF_per_cm2"] == 1.0 and meta["dt_ms"] == 0.025 and meta["celsius_degC"] == 6.3
    assert meta["integrator"] == "fixed_step_backward_euler" and meta["settle_ms"] == 1000.0
    assert "settle_dt_ms" in meta and "settle_coarse_steps" in meta
    assert len(meta["morphology_sha256"]) == 64 and meta["neuron_version"].startswith("9")
    assert meta["dend_sites"] == [{"name": "mid", "section": "dend[0]", "x": 0.5, "distance_um": 100.0}]
    assert [t.seed for t in traces] == [-1, 7, 3, 4]
    for tr in traces:
        assert len(tr.t) == 1201 and tr.t[-1] == pytest.approx(30.0)
        assert tr.v_soma.max() > 0  # every protocol makes it spike
        assert tr.v_dend["mid"].shape == tr.t.shape
    np.testing.assert_array_equal(traces[2].i_stim, 0.0)  # synaptic only
    step = traces[0]
    assert step.i_stim[step.t > 10].max() == pytest.approx(0.3)


def test_current_balance_spiking_ball_and_stick(serial_file):
    for tr in read_traces(serial_file)[0]:
        assert _balance(tr) < 1e-6


def test_ionic_current_implicit_form(serial_file):
    traces, meta = read_traces(serial_file)
    c = meta["cm_uF_per_cm2"] * meta["soma_area_um2"] * 1e-5  # nF
    for tr in traces:
        i_cap = c * np.diff(tr.v_soma) / meta["dt_ms"]
        np.testing.assert_allclose(i_cap + tr.i_ion_soma[1:], tr.i_membrane_soma[1:], rtol=0, atol=1e-9)
        # NEURON's ionic current in this form closes the balance with the backward difference
        bal = i_cap + tr.i_ion_soma[1:] + tr.i_axial[1:] - tr.i_stim[1:]
        assert np.abs(bal).max() < 1e-6 * np.abs(tr.i_axial).max()


def test_current_balance_hay_l5pc(tmp_path, mechanisms):
    """Detailed cell, 10 sections on the soma, a somatic spike: the axial current is complete."""
    out = tmp_path / "hay.h5"
    p = Step(amp_nA=1.9, delay_ms=2, dur_ms=5, tstop_ms=15)
    generate("l5pc_hay2011", [p], out, dend_sites=["d620=apical@620"], progress=False, settle_ms=200)
    (tr,), meta = read_traces(out)
    assert tr.v_soma.max() > 20
    assert _balance(tr) < 1e-6
    assert meta["celsius_degC"] == 34.0 and meta["cell_params"]["somatic_gNaTa_tbar_NaTa_t"] == 2.04
    from neuron_hybrid.cells import build

    cell = build("l5pc_hay2011")
    assert meta["soma_area_um2"] == sum(seg.area() for seg in cell.soma)
    assert meta["morphology_sha256"] == cell.morphology_sha256
    del cell
    assert meta["n_segments"] == 642
    assert abs(meta["dend_sites"][0]["distance_um"] - 620) < 20  # centre of the segment recorded


def test_resume_after_interrupt(tmp_path, serial_file):
    out = tmp_path / "r.h5"
    calls = []

    def stop_after_two(name, index):
        calls.append(name)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate("ball_and_stick", protocol_list(), out, dend_sites=["mid=dend[0](0.5)"], progress=False,
                 on_trace=stop_after_two)
    with open_dataset(out) as ds:
        assert len(ds) == 2
    res = generate("ball_and_stick", protocol_list(), out, dend_sites=["mid=dend[0](0.5)"], progress=False)
    assert (res.n_existing, res.n_simulated) == (2, 2)
    assert not set(res.simulated) & set(calls)
    _assert_identical(out, serial_file)
    res = generate("ball_and_stick", protocol_list(), out, dend_sites=["mid=dend[0](0.5)"], progress=False)
    assert (res.n_existing, res.n_simulated) == (4, 0)


def test_partial_trace_is_redone(tmp_path, serial_file):
    out = tmp_path / "partial.h5"
    shutil.copy(serial_file, out)
    with h5py.File(out, "a") as f:  # what a kill during a write leaves behind
        name = sorted(f["traces"])[1]
        g = f["traces"][name]
        g.attrs["complete"] = False
        del g["i_ion_soma"]
    with pytest.warns(UserWarning, match="partially written"):
        assert len(read_traces(out)[0]) == 3
    res = generate("ball_and_stick", protocol_list(), out, dend_sites=["mid=dend[0](0.5)"], progress=False)
    assert res.removed_incomplete == [name] and res.simulated == [name] and res.n_existing == 3
    _assert_identical(out, serial_file)


def test_refuses_other_settings(tmp_path, serial_file):
    out = tmp_path / "m.h5"
    shutil.copy(serial_file, out)
    kw = dict(dend_sites=["mid=dend[0](0.5)"], progress=False)
    with pytest.raises(DatasetMismatchError, match=r"dt_ms: file has 0.025, this run has 0.05"):
        generate("ball_and_stick", protocol_list(), out, dt_ms=0.05, **kw)
    with pytest.raises(DatasetMismatchError, match=r"gnabar_hh_S_cm2=0.12 in file vs 0.1 now"):
        generate("ball_and_stick", protocol_list(), out, cell_params={"gnabar_hh_S_cm2": 0.1}, **kw)
    with pytest.raises(DatasetMismatchError, match="dend_sites_json"):
        generate("ball_and_stick", protocol_list(), out, progress=False)
    edited = protocol_list()
    edited[1] = edited[1].copy(seed=8)
    with pytest.raises(DatasetMismatchError, match=r"protocol #1 differs"):
        generate("ball_and_stick", edited, out, **kw)
    with pytest.raises(DatasetMismatchError, match=r"protocol #0 differs.*reordered: it is now protocol #3"):
        generate("ball_and_stick", protocol_list()[::-1], out, **kw)
    with pytest.raises(DatasetMismatchError, match="has only 2 protocols"):
        generate("ball_and_stick", protocol_list()[:2], out, **kw)
    # appending protocols is fine: only the new one is simulated
    more = protocol_list() + [Step(amp_nA=0.2, delay_ms=1, dur_ms=5, tstop_ms=10)]
    res = generate("ball_and_stick", more, out, **kw)
    assert (res.n_existing, res.n_simulated) == (4, 1)
    res = generate("ball_and_stick", more[:2], out, overwrite=True, **kw)
    assert (res.n_existing, res.n_simulated) == (0, 2)


def test_refuses_foreign_or_corrupt_output(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x00garbage" * 64)
    with pytest.raises(DatasetError, match="not an HDF5 file"):
        generate("ball_and_stick", protocol_list()[:1], junk, progress=False)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["data"] = np.arange(4)
    with pytest.raises(DatasetError, match="refusing to write to .*not a neuron_hybrid trace file"):
        generate("ball_and_stick", protocol_list()[:1], foreign, progress=False)
    with h5py.File(foreign, "r") as f:
        assert list(f) == ["data"]  # untouched


def test_order_and_history_do_not_matter(tmp_path, serial_file):
    """Each protocol's trace is the same whatever ran before it in the process."""
    out = tmp_path / "rev.h5"
    generate("ball_and_stick", protocol_list()[::-1], out, dend_sites=["mid=dend[0](0.5)"], progress=False)
    _assert_identical(out, serial_file)


def test_two_worker_processes_bit_identical(tmp_path, serial_file):
    """Spawned workers with a user builder (module-level function) give the same bits."""
    out = tmp_path / "w2.h5"
    res = generate(small_ball_and_stick, protocol_list(), out, workers=2, dend_sites=["mid=dend[0](0.5)"],
                   progress=False)
    assert res.mode == "processes" and res.n_simulated == 4
    assert read_traces(out)[1]["cell_builder"] == "python:tests.datagen.builders:small_ball_and_stick"
    _assert_identical(out, serial_file)


def test_unpicklable_builder_is_a_clear_error(tmp_path, serial_file):
    with pytest.raises(TypeError, match="cannot be pickled.*module-level function"):
        generate(lambda: None, protocol_list()[:1], tmp_path / "x.h5", workers=2, progress=False)
    # in-process (workers=1) any callable works
    res = generate(lambda **kw: small_ball_and_stick(**kw), protocol_list()[:1], tmp_path / "y.h5",
                   dend_sites=["mid=dend[0](0.5)"], progress=False)
    assert res.n_simulated == 1
    ref = _by_protocol(serial_file)
    for pj, tr in _by_protocol(tmp_path / "y.h5").items():
        np.testing.assert_array_equal(tr.i_axial, ref[pj].i_axial)


def test_warns_about_other_sections(tmp_path, h):
    extra = h.Section(name="stray")
    with pytest.warns(UserWarning, match="1 sections besides the cell's"):
        generate("ball_and_stick", protocol_list()[:1], tmp_path / "s.h5", progress=False)
    del extra


def _mpi_ok():
    return shutil.which("mpiexec") is not None


@pytest.mark.skipif(not _mpi_ok(), reason="needs MPI (apt-get install -y mpich)")
def test_two_mpi_ranks_bit_identical(tmp_path, serial_file):
    protos = tmp_path / "p.json"
    save_protocols(protocol_list(), protos)
    out = tmp_path / "mpi.h5"
    cmd = ["mpiexec", "-n", "2", sys.executable, "-m", "neuron_hybrid.datagen.mpi", "--cell", "ball_and_stick",
           "--protocols", str(protos), "--out", str(out), "--dend-site", "mid=dend[0](0.5)", "--no-progress"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4 traces simulated on 2 MPI ranks" in r.stdout, r.stdout + r.stderr
    _assert_identical(out, serial_file)


def test_cli_cells_and_generate(tmp_path, capsys, serial_file):
    import argparse

    from neuron_hybrid.cli_data import add_subcommands

    ap = argparse.ArgumentParser(prog="neuron-hybrid")
    add_subcommands(ap.add_subparsers(dest="command", required=True))
    args = ap.parse_args(["cells"])
    assert args.func(args) == 0
    listed = capsys.readouterr().out
    assert "ball_and_stick" in listed and "l5pc_hay2011" in listed
    protos = tmp_path / "p.json"
    save_protocols(protocol_list()[:2], protos)
    out = tmp_path / "cli.h5"
    argv = ["generate", "--cell", "ball_and_stick", "--protocols", str(protos), "--out", str(out),
            "--dend-site", "mid=dend[0](0.5)"]
    args = ap.parse_args(argv)
    assert args.func(args) == 0
    cap = capsys.readouterr()
    assert "2 traces simulated" in cap.out and "generate ball_and_stick" in cap.err  # progress bar
    ref = _by_protocol(serial_file)
    for pj, tr in _by_protocol(out).items():
        np.testing.assert_array_equal(tr.v_soma, ref[pj].v_soma)
    args = ap.parse_args(argv + ["--dt", "0.05"])
    assert args.func(args) == 2
    assert "dt_ms: file has 0.025, this run has 0.05" in capsys.readouterr().err


def test_voltage_clamp_trace_closes_the_current_balance(tmp_path, mechanisms):
    """A somatic voltage step: the recorded clamp current is the stimulus of the balance, and the soma
    follows the command while clamped."""
    from neuron_hybrid.stimuli import VoltageStep

    out = tmp_path / "vc.h5"
    p = VoltageStep(v_step_mV=-55.0, delay_ms=10.0, dur_ms=30.0, tstop_ms=60.0)
    generate("ball_and_stick", [p], out, progress=False, settle_ms=200)
    (tr,), _ = read_traces(out)
    t = tr.t
    assert np.abs(tr.v_soma[(t > 12) & (t < 39.9)] + 55.0).max() < 0.05
    assert np.abs(tr.i_stim[t < 9.9]).max() < 1e-6 and np.abs(tr.i_stim[(t > 12) & (t < 39.9)]).max() > 0.01
    assert _balance(tr) < 1e-6

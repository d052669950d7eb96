"""The HDF5 trace schema: names, writer, and a reader that refuses missing, corrupt, foreign or
newer files and never returns partially written traces."""
import json

import h5py
import numpy as np
import pytest

from neuron_hybrid.datagen import schema
from neuron_hybrid.datagen.schema import (DatasetError, open_dataset, protocol_json, read_traces,
                                          trace_group_name)
from neuron_hybrid.stimuli import OU, Step

META = {"cell_name": "toy", "cell_builder": "registry:toy", "cell_params_json": "{}", "morphology_sha256": "",
        "n_sections": 2, "n_segments": 6, "soma_area_um2": 100.0, "cm_uF_per_cm2": 1.0, "dt_ms": 0.025,
        "integrator": schema.INTEGRATOR, "settle_ms": 10.0, "settle_dt_ms": 1.0,
        "settle_coarse_steps": 40, "settle_coarse_dt_ms": 250.0, "v_init_mV": -65.0, "celsius_degC": 6.3,
        "dend_sites_json": "[]", "neuron_version": "x", "neuron_hybrid_version": "y"}


def _arrays(n=50, seed=0):
    rng = np.random.default_rng(seed)
    d = {k: rng.standard_normal(n) for k in schema.DATASET_NAMES}
    d["t"] = np.arange(n) * 0.025
    return d


def _make(path, n_traces=2):
    with h5py.File(path, "w") as f:
        schema.write_file_attrs(f, META)
        for i in range(n_traces):
            pj = protocol_json(Step(amp_nA=0.1 * i, delay_ms=1, dur_ms=2, tstop_ms=3))
            schema.write_trace(f, trace_group_name(i, pj), i, pj, _arrays(seed=i), {"d1": np.zeros(50)})
    return path


def test_group_names_depend_on_index_and_content():
    a = OU(mean_nA=0, sd_nA=0.1, tau_ms=2, seed=1, delay_ms=0, dur_ms=10, tstop_ms=10)
    pj = protocol_json(a)
    assert pj == protocol_json(a.to_dict()) == protocol_json(json.loads(pj))
    assert trace_group_name(3, pj) == trace_group_name(3, pj)
    assert trace_group_name(3, pj).startswith("p000003_")
    assert trace_group_name(3, pj) != trace_group_name(4, pj)
    assert trace_group_name(3, pj) != trace_group_name(3, protocol_json(a.copy(seed=2)))
    assert schema.protocol_seeds((a + a.copy(seed=5)).to_dict()) == [1, 5]


def test_roundtrip_schema(tmp_path):
    path = _make(tmp_path / "a.h5")
    traces, meta = read_traces(path)
    assert [t.index for t in traces] == [0, 1]
    assert meta["format"] == "neuron_hybrid.traces" and meta["format_version"] == 1
    assert meta["cell_params"] == {} and meta["units"]["i_axial"] == "nA"
    np.testing.assert_array_equal(traces[1].v_soma, _arrays(seed=1)["v_soma"])
    assert traces[0].v_dend["d1"].shape == (50,)
    assert traces[0].protocol_object() == Step(amp_nA=0.0, delay_ms=1, dur_ms=2, tstop_ms=3)
    with h5py.File(path, "r") as f:
        d = f["traces"][traces[0].name]["v_soma"]
        assert d.compression == "gzip" and d.chunks is not None and d.fletcher32 and d.shuffle
        assert f["traces"][traces[0].name].attrs["complete"]


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="trace file not found"):
        open_dataset(tmp_path / "nope.h5")


def test_not_hdf5(tmp_path):
    p = tmp_path / "junk.h5"
    p.write_bytes(b"this is not HDF5" * 100)
    with pytest.raises(DatasetError, match="not an HDF5 file"):
        open_dataset(p)


def test_truncated_file(tmp_path):
    p = _make(tmp_path / "t.h5")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(DatasetError):
        read_traces(p)


def test_foreign_hdf5(tmp_path):
    p = tmp_path / "foreign.h5"
    with h5py.File(p, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(DatasetError, match="not a neuron_hybrid trace file"):
        open_dataset(p)
    with h5py.File(p, "a") as f:
        f.attrs["format"] = "someone.else"
    with pytest.raises(DatasetError, match="format 'someone.else'"):
        open_dataset(p)


def test_newer_version(tmp_path):
    p = _make(tmp_path / "v.h5")
    with h5py.File(p, "a") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(DatasetError, match="newer"):
        open_dataset(p)


def test_partial_trace_never_returned(tmp_path):
    p = _make(tmp_path / "p.h5")
    with h5py.File(p, "a") as f:  # what an interrupted write leaves: datasets, no complete flag
        g = f["traces"].create_group("p000002_0000000000000000")
        g["t"] = np.arange(10.0)
    with open_dataset(p) as ds:
        assert len(ds) == 2 and ds.incomplete == ["p000002_0000000000000000"]
        with pytest.raises(KeyError, match="incomplete"):
            ds["p000002_0000000000000000"]
    with pytest.warns(UserWarning, match="partially written"):
        traces, _ = read_traces(p)
    assert len(traces) == 2


def test_corrupt_complete_trace(tmp_path):
    p = _make(tmp_path / "c.h5")
    with h5py.File(p, "a") as f:
        name = sorted(f["traces"])[0]
        del f["traces"][name]["i_axial"]
    with pytest.raises(DatasetError, match="marked complete but cannot be read"):
        read_traces(p)

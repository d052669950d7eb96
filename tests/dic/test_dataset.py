"""The training-set generator is seeded and resumes after an interruption without corrupting work."""
import h5py
import numpy as np
import pytest

from neuron_hybrid.dic.dataset import DatasetConfig, generate_dataset, load_dataset


def test_dataset_seeded_and_resumable(tmp_path):
    cfg = DatasetConfig(model="stg", n_samples=6, chunk_size=3, tstop=400.0, transient=100.0, dt=0.1, seed=5)
    ref = load_dataset(generate_dataset(cfg, tmp_path / "ref.h5", progress=False))
    assert len(ref["spikes"]) == 6 and ref["gbar"].shape == (6, 8)
    np.testing.assert_allclose(ref["achieved"][:, 1:], ref["target"], atol=0.5)
    # interrupted run: chunk 0 finished, chunk 1 half-written (no `complete` flag)
    part = tmp_path / "part.h5"
    generate_dataset(DatasetConfig(**{**cfg.__dict__, "n_samples": 3}), tmp_path / "tmp.h5", progress=False)
    with h5py.File(tmp_path / "ref.h5", "r") as f:
        config_json = f.attrs["config"]
    with h5py.File(tmp_path / "tmp.h5", "r") as src, h5py.File(part, "w") as dst:
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        src.copy("chunk_0", dst)
        dst.attrs["config"] = config_json
        dst.create_group("chunk_1").create_dataset("target", data=np.zeros((1, 2)))
    got = load_dataset(generate_dataset(cfg, part, progress=False))
    for key in ("target", "achieved", "gbar"):
        np.testing.assert_array_equal(got[key], ref[key])
    for a, b in zip(got["spikes"], ref["spikes"]):
        np.testing.assert_array_equal(a, b)
    # a different configuration is refused instead of mixing data
    with pytest.raises(ValueError, match="different configuration"):
        generate_dataset(DatasetConfig(**{**cfg.__dict__, "seed": 6}), part, progress=False)

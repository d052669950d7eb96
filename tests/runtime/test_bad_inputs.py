"""Bad models and files give clear errors that name the problem."""
import numpy as np
import pytest
import torch

import neuron_hybrid as nh
from neuron_hybrid.models import HHPotassium
from neuron_hybrid.runtime import read_metadata

from .conftest import OneLatentDensity as Base
from .hh_cell import hh_soma


class WrongShape(Base):
    def rates(self, v: torch.Tensor):
        return torch.sigmoid(v), torch.ones_like(v)


class NegativeTau(Base):
    def rates(self, v: torch.Tensor):
        return torch.sigmoid(v / 10).unsqueeze(-1), (v / 50).unsqueeze(-1)


class NaNCurrent(Base):
    def current(self, v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(v + 50)  # NaN below -50 mV


class NaNWhenLatentLeavesRange(Base):
    def current(self, v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return 1e-3 * torch.sqrt(1.0 - z[:, 0]) * (v + 70)  # finite for z in [0, 1]


class NoCurrent(torch.nn.Module):
    n_latent: int
    v_min: float
    v_max: float
    kind: str

    def __init__(self):
        super().__init__()
        self.n_latent, self.v_min, self.v_max, self.kind = 1, -100.0, 60.0, "density"

    def rates(self, v: torch.Tensor):
        return v.unsqueeze(-1), v.unsqueeze(-1)


def test_missing_file(mechanisms, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        nh.LearnedCurrent.load(tmp_path / "nope.pt")


def test_not_torchscript(mechanisms, tmp_path):
    p = tmp_path / "junk.pt"
    p.write_bytes(b"this is not a zip archive")
    with pytest.raises(nh.ContractError, match="not a TorchScript file"):
        nh.LearnedCurrent.load(p)


class Exported(Base):
    @torch.jit.export
    def rates(self, v: torch.Tensor):
        return torch.sigmoid(v / 10).unsqueeze(-1), torch.ones_like(v).unsqueeze(-1)

    @torch.jit.export
    def current(self, v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return 1e-3 * z[:, 0] * (v + 70)


def test_torchscript_without_our_metadata(mechanisms, tmp_path):
    p = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(Exported()), str(p))
    with pytest.raises(nh.ContractError, match="not written by neuron_hybrid.export"):
        nh.LearnedCurrent.load(p)


def test_scripted_file_without_methods(mechanisms, tmp_path):
    p = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(Base()), str(p))
    with pytest.raises(nh.ContractError, match="no method rates.*torch.jit.export"):
        nh.LearnedCurrent.load(p)


def test_missing_method(tmp_path):
    with pytest.raises(nh.ContractError, match="no method current"):
        nh.export(NoCurrent(), tmp_path / "x.pt")


def test_missing_attribute(tmp_path):
    m = Base()
    del m.kind
    with pytest.raises(nh.ContractError, match="kind"):
        nh.export(m, tmp_path / "x.pt")


def test_wrong_shapes(tmp_path):
    with pytest.raises(nh.ContractError, match=r"shape .*expected \(1001, 1\)"):
        nh.export(WrongShape(), tmp_path / "x.pt")


def test_nonpositive_tau(tmp_path):
    with pytest.raises(nh.ContractError, match="tau.*<= 0"):
        nh.export(NegativeTau(), tmp_path / "x.pt")


def test_nan_output_at_export(tmp_path):
    with pytest.raises(nh.ContractError, match="non-finite"):
        nh.export(NaNCurrent(), tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("engine", ["torchscript", "compiled"])
def test_nan_during_simulation_names_mechanism_file_and_segment(h, tmp_path, engine):
    path = nh.export(NaNWhenLatentLeavesRange(), tmp_path / "fragile.pt")
    lc = nh.LearnedCurrent.load(path, engine=engine)
    soma = h.Section(name="fragile_soma")
    soma.insert("pas")
    suffix = lc.insert(soma)
    h.finitialize(-65.0)
    setattr(getattr(soma(0.5), suffix), "z1", 3.0)  # push the latent where the model is undefined
    with pytest.raises(RuntimeError) as err:
        h.fadvance()
    # the hoc error text reaches Python's exception
    msg = str(err.value)
    assert "fragile" in msg and "fragile_soma(0.5)" in msg and suffix in msg and "non-finite" in msg


def test_out_of_range_clamps_and_warns_once(h, tmp_path, capfd):
    m = HHPotassium(v_min=-80.0, v_max=40.0)
    lc = nh.LearnedCurrent.load(nh.export(m, tmp_path / "narrow.pt"))
    soma = hh_soma(h, "narrow")
    soma.gkbar_hh = 0.0
    lc.insert(soma)
    h.finitialize(-90.0)  # below v_min
    for _ in range(5):
        h.fadvance()
    err = capfd.readouterr().err
    assert err.count("outside the trained range") == 1
    assert lc.out_of_range_count > 1


def test_out_of_range_clamp_quiet_counts_without_warning(h, tmp_path, capfd):
    m = HHPotassium(v_min=-80.0, v_max=40.0)
    lc = nh.LearnedCurrent.load(nh.export(m, tmp_path / "quiet.pt"), on_out_of_range="clamp_quiet")
    soma = hh_soma(h, "quiet")
    soma.gkbar_hh = 0.0
    lc.insert(soma)
    h.finitialize(-90.0)
    for _ in range(5):
        h.fadvance()
    assert "outside the trained range" not in capfd.readouterr().err
    assert lc.out_of_range_count > 1
    lc.set_on_out_of_range("raise")
    with pytest.raises(RuntimeError, match="outside the trained range"):
        h.finitialize(-90.0)
    with pytest.raises(ValueError, match="clamp_quiet"):
        lc.set_on_out_of_range("ignore")


def test_out_of_range_raise(h, tmp_path):
    m = HHPotassium(v_min=-80.0, v_max=40.0)
    lc = nh.LearnedCurrent.load(nh.export(m, tmp_path / "narrow2.pt"), on_out_of_range="raise")
    soma = hh_soma(h, "narrow2")
    soma.gkbar_hh = 0.0
    lc.insert(soma)
    with pytest.raises(RuntimeError, match="outside the trained range"):
        h.finitialize(-90.0)


def test_bad_engine_name(hh_files):
    with pytest.raises(ValueError, match="engine"):
        nh.LearnedCurrent.load(hh_files["k"], engine="fastest")


def test_compiled_engine_unavailable_is_explained(mechanisms, tmp_path):
    class DataDependent(Base):
        def current(self, v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            if bool((v.abs() > 1e4).any()):  # never true in range, but depends on the data
                return 0.0 * v
            return 1e-3 * z[:, 0] * (v + 70)

    path = nh.export(DataDependent(), tmp_path / "dd.pt")
    meta, _ = read_metadata(path)
    assert meta["tapes"] == "none" and "aten::any" in meta["tape_note"]
    with pytest.raises(nh.ContractError, match="no compiled tape"):
        nh.LearnedCurrent.load(path, engine="compiled")
    lc = nh.LearnedCurrent.load(path)  # auto falls back to TorchScript
    assert lc.engine.endswith("current=torchscript")
    i, g = lc.current(np.array([-50.0]), np.array([[0.5]]))
    np.testing.assert_allclose(i, 1e-3 * 0.5 * 20.0)


def test_model_with_more_latents_than_the_mechanism_holds(h, hh_files):
    """hoc users choose the mechanism themselves: a 2-latent model in the 1-latent family is an error."""
    na = nh.LearnedCurrent.load(hh_files["na"])
    soma = hh_soma(h, "too_small")
    soma.insert("nhlc0_k1")
    soma(0.5).nhlc0_k1.model_id = na.handle
    with pytest.raises(RuntimeError):
        h.finitialize(-65.0)
    assert "has 2 latents but the mechanism holds 1" in nh.runtime.learned_current._last_error()

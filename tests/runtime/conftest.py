import pytest
import torch

import neuron_hybrid as nh
from neuron_hybrid.models import HHPotassium, HHSodium


@pytest.fixture(scope="session")
def hh_files(tmp_path_factory, mechanisms):
    """HH K and Na re-expressed as learned currents, exported once per session."""
    d = tmp_path_factory.mktemp("hh_models")
    return {"k": nh.export(HHPotassium(), d / "hh_k.pt"), "na": nh.export(HHSodium(), d / "hh_na.pt")}


class PointHHPotassium(torch.nn.Module):
    """hh's K channel of a whole compartment of `area_um2` as a point current in nA."""

    n_latent: int
    v_min: float
    v_max: float
    kind: str

    def __init__(self, area_um2: float):
        super().__init__()
        self.inner = HHPotassium()
        self.n_latent, self.v_min, self.v_max, self.kind = 1, -100.0, 60.0, "point"
        self.to_nA = area_um2 * 1e-2  # mA/cm2 * um2 -> nA

    def rates(self, v: torch.Tensor):
        return self.inner.rates(v)

    def current(self, v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.to_nA * self.inner.current(v, z)


class OneLatentDensity(torch.nn.Module):
    """A minimal conforming density current (mA/cm2) over -100..60 mV; tests override rates/current."""

    n_latent: int
    v_min: float
    v_max: float
    kind: str

    def __init__(self, n_latent=1):
        super().__init__()
        self.n_latent, self.v_min, self.v_max, self.kind = n_latent, -100.0, 60.0, "density"

    def rates(self, v: torch.Tensor):
        return torch.sigmoid(v / 10).unsqueeze(-1), torch.ones_like(v).unsqueeze(-1)

    def current(self, v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return 1e-3 * z[:, 0] * (v + 70)

"""NEURON's built-in ``hh`` channels re-expressed as learned currents (exact, no learning).

They reproduce ``hh`` with ``usetable_hh = 0`` and serve as references for the runtime (tests, demo,
benchmarks) and as templates for gate-structured learned currents. Rates follow hh.mod, including
its temperature factor 3^((celsius - 6.3)/10) and the efun singularity guard.
"""

import torch
from torch import nn


def efun(x: torch.Tensor, y: float) -> torch.Tensor:
    """x / (exp(x/y) - 1), with hh.mod's guard y*(1 - x/(2y)) for |x/y| < 1e-6."""
    r = x / y
    small = torch.abs(r) < 1e-6
    safe = torch.where(small, torch.ones_like(r), r)
    return torch.where(small, y * (1.0 - r / 2.0), x / torch.expm1(safe))


class _HHChannel(nn.Module):
    n_latent: int
    v_min: float
    v_max: float
    kind: str

    def __init__(self, n_latent: int, celsius: float, v_min: float, v_max: float):
        super().__init__()
        self.n_latent = n_latent
        self.v_min = v_min
        self.v_max = v_max
        self.kind = "density"
        self.q10 = 3.0 ** ((celsius - 6.3) / 10.0)


class HHPotassium(_HHChannel):
    """hh's K current 0.036 n^4 (v - ek) in mA/cm2 as a learned current with one latent (n).

    gbar in S/cm2, ek in mV, celsius in degC (must match ``h.celsius`` of the simulation).
    """

    def __init__(self, gbar: float = 0.036, ek: float = -77.0, celsius: float = 6.3, v_min: float = -100.0, v_max: float = 60.0):
        super().__init__(1, celsius, v_min, v_max)
        self.gbar = gbar
        self.ek = ek

    def rates(self, v: torch.Tensor):
        alpha = 0.01 * efun(-(v + 55.0), 10.0)
        beta = 0.125 * torch.exp(-(v + 65.0) / 80.0)
        s = alpha + beta
        return (alpha / s).unsqueeze(-1), (1.0 / (self.q10 * s)).unsqueeze(-1)

    def current(self, v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        n = z[:, 0]
        return self.gbar * n ** 4 * (v - self.ek)


class HHSodium(_HHChannel):
    """hh's Na current 0.12 m^3 h (v - ena) in mA/cm2 with two latents (m, h)."""

    def __init__(self, gbar: float = 0.12, ena: float = 50.0, celsius: float = 6.3, v_min: float = -100.0, v_max: float = 60.0):
        super().__init__(2, celsius, v_min, v_max)
        self.gbar = gbar
        self.ena = ena

    def rates(self, v: torch.Tensor):
        am = 0.1 * efun(-(v + 40.0), 10.0)
        bm = 4.0 * torch.exp(-(v + 65.0) / 18.0)
        ah = 0.07 * torch.exp(-(v + 65.0) / 20.0)
        bh = 1.0 / (torch.exp(-(v + 35.0) / 10.0) + 1.0)
        sm, sh = am + bm, ah + bh
        zinf = torch.stack([am / sm, ah / sh], dim=-1)
        tau = torch.stack([1.0 / (self.q10 * sm), 1.0 / (self.q10 * sh)], dim=-1)
        return zinf, tau

    def current(self, v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.gbar * z[:, 0] ** 3 * z[:, 1] * (v - self.ena)

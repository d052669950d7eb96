"""A generic latent learned current with MLP rates and readout (e.g. for benchmarks and fitting)."""

import torch
from torch import nn


def mlp(n_in: int, n_out: int, width: int, depth: int, activation=nn.Tanh) -> nn.Sequential:
    """depth hidden layers of `width` units with `activation`, then a linear output layer."""
    layers, n = [], n_in
    for _ in range(depth):
        layers += [nn.Linear(n, width), activation()]
        n = width
    layers.append(nn.Linear(n, n_out))
    return nn.Sequential(*layers)


class MLPCurrent(nn.Module):
    """Latent current: z_inf = sigmoid(MLP(v)), tau = tau_min + softplus(MLP(v)) ms, i = scale * MLP(v, z).

    Voltages enter the networks as (v - v_center) / v_scale with the centre and half-width of
    [v_min, v_max] (mV). The readout is in mA/cm2 (kind "density") or nA ("point"), times `i_scale`.
    """

    n_latent: int
    v_min: float
    v_max: float
    kind: str

    def __init__(self, n_latent: int = 4, width: int = 32, depth: int = 2, v_min: float = -100.0, v_max: float = 60.0,
                 kind: str = "density", i_scale: float = 1e-3, tau_min_ms: float = 0.1, seed: int = 0):
        super().__init__()
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.n_latent, self.v_min, self.v_max, self.kind = n_latent, v_min, v_max, kind
        self.v_center = 0.5 * (v_min + v_max)
        self.v_scale = 0.5 * (v_max - v_min)
        self.i_scale = i_scale
        self.tau_min_ms = tau_min_ms
        self.rates_net = mlp(1, 2 * n_latent, width, depth)
        self.current_net = mlp(1 + n_latent, 1, width, depth)
        torch.random.set_rng_state(gen_state)

    def rates(self, v: torch.Tensor):
        x = ((v - self.v_center) / self.v_scale).unsqueeze(-1)
        out = self.rates_net(x)
        zinf = torch.sigmoid(out[:, : self.n_latent])
        tau = self.tau_min_ms + torch.nn.functional.softplus(out[:, self.n_latent :]) * 10.0
        return zinf, tau

    def current(self, v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x = torch.cat([((v - self.v_center) / self.v_scale).unsqueeze(-1), z], dim=-1)
        return self.i_scale * self.current_net(x).squeeze(-1)

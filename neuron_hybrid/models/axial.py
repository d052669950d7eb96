"""The learned axial current of a reduced cell: conductance-form latents (a point current in nA).

    I_ax(V, z) = sum_k g_k (V - z_k),        g_k = w_k^2 >= 0 (uS)
    with modulation: g_k -> g_k (1 + tanh(b_k) tanh(sum_j M_jk z_j / s_mod)),  sum_j M_jk = 0
    dz_k/dt = (z_inf,k(V) - z_k) / tau_k(V)
    z_inf,k(V) = E0 + a_k (V - E0) + c_k + s_inf * MLP(V)_k + d_k sigma((V - V_s) / s)   (mV)
    tau_k(V) = tau_min + exp(log_tau0_k + r * tanh(MLP(V)_{K+k} / r) + q_k sigma((V - V_s) / s))   (ms)

Each latent is a voltage the soma sees through a positive conductance, like a dendritic
compartment behind an axial resistance; the linear parts (a_k, c_k, tau0_k) carry a closed-form
linear filter-bank fit, the MLP (1-W-...-W-2K, tanh, last layer zero at start) the nonlinearity of
the active dendrites. The current is linear in V, so NEURON's implicit step treats sum g_k exactly,
which keeps the closed loop stable. A new module has g = 0: the untrained hybrid equals the plain soma.

The spike drive d_k (mV; 0 unless calibrated, ``neuron_hybrid.reduce.calibrate``) moves z_inf only
above V_s = -25 mV (slope s = 2.5 mV; sigma = 4.5e-5 at -50 mV), i.e. during spikes: it sets how far
each spike pushes the latents (the charge the dendrites take up per spike, which sets the firing
rate on long steps) and leaves every subthreshold trajectory as trained. Its companion q_k (log units;
0 unless calibrated) scales tau_k during spikes only: how large a fraction of the way to its spike-time
z_inf each spike moves a latent, i.e. how the push per spike saturates as the rate rises.

Modulation (optional) lets the latents set the conductances: active dendrites draw a load whose
conductance depends on their state (after a train of spikes it differs from after one), which
constant g_k cannot express. It depends only on differences between latents (each column of M sums
to zero), so a common shift of all z (the anchoring at rest) leaves it unchanged; every g_k stays
in [0, 2 g_k], so di/dV > 0 as before. b = 0 at start: a new modulated module equals the plain one.
"""
import math

import torch
from torch import nn

from .mlp import mlp


class LatentAxialCurrent(nn.Module):
    """Axial current drawn by the dendrites from the soma, in nA (outward = leaving the soma).

    n_latent: K latents; v_min/v_max: trained range (mV); e0_mV: reference (rest) potential;
    tau_init_ms: initial time constants (K values, ms); width/depth: MLP size; log_tau_range: how far
    (in natural log units) the MLP may move each tau from its initial value. It must be wide: during a
    spike a slow latent (tau ~ 1 s) needs ~1 ms; with a range of 4 (x55) instead of 8 (x3000) the
    teacher-forced error of ca1_pospischil plateaued at 0.033 instead of 0.022 nA and Gamma on
    held-out noisy currents fell from 0.59 to 0.33.
    """

    n_latent: int
    v_min: float
    v_max: float
    kind: str
    anchored: bool
    v_rest_mV: float
    modulated: bool
    spike_gate_mV: float
    spike_gate_slope_mV: float

    def __init__(self, n_latent: int = 4, v_min: float = -110.0, v_max: float = 60.0, e0_mV: float = -70.0,
                 tau_init_ms=None, width: int = 32, depth: int = 2, tau_min_ms: float = 0.05,
                 log_tau_range: float = 8.0, zinf_scale_mV: float = 10.0, seed: int = 0, v_rest_mV=None,
                 modulated: bool = False, modulation_scale_mV: float = 10.0):
        super().__init__()
        K = n_latent
        self.n_latent, self.v_min, self.v_max, self.kind = K, float(v_min), float(v_max), "point"
        self.e0 = float(e0_mV)
        # with v_rest_mV, every z_inf is shifted by the same offset so that the steady-state current at
        # rest is exactly zero (as in the full cell, whose axial current vanishes at rest)
        self.anchored = v_rest_mV is not None
        self.v_rest_mV = float(v_rest_mV) if v_rest_mV is not None else 0.0
        self.v_center = 0.5 * (v_min + v_max)
        self.v_half = 0.5 * (v_max - v_min)
        self.tau_min = float(tau_min_ms)
        self.r = float(log_tau_range)
        self.s_inf = float(zinf_scale_mV)
        if tau_init_ms is None:
            tau_init_ms = torch.logspace(math.log10(0.2), math.log10(300.0), K).tolist() if K > 1 else [10.0]
        if len(tau_init_ms) != K:
            raise ValueError(f"tau_init_ms needs {K} values, got {len(tau_init_ms)}")
        self.w = nn.Parameter(torch.zeros(K, dtype=torch.float64))  # g = w^2 (uS)
        self.a = nn.Parameter(torch.ones(K, dtype=torch.float64))
        self.c = nn.Parameter(torch.zeros(K, dtype=torch.float64))
        self.log_tau0 = nn.Parameter(torch.log(torch.as_tensor(tau_init_ms, dtype=torch.float64) - tau_min_ms))
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.net = mlp(1, 2 * K, width, depth).double()
        torch.random.set_rng_state(state)
        with torch.no_grad():
            self.net[-1].weight.zero_()
            self.net[-1].bias.zero_()
        self.spike_gate_mV, self.spike_gate_slope_mV = -25.0, 2.5
        self.register_buffer("spike_dz", torch.zeros(K, dtype=torch.float64))  # spike drive d_k (mV)
        self.register_buffer("spike_dlogtau", torch.zeros(K, dtype=torch.float64))  # q_k: log tau_k during spikes
        self.modulated = bool(modulated)
        self.s_mod = float(modulation_scale_mV)
        gen = torch.Generator().manual_seed(seed + 1)
        mod_b, mod_m = torch.zeros(K, dtype=torch.float64), 0.1 * torch.randn(K, K, generator=gen, dtype=torch.float64)
        if self.modulated:
            self.mod_b, self.mod_m = nn.Parameter(mod_b), nn.Parameter(mod_m)
        else:  # buffers: a plain module's parameters (and optimiser states) are those it had before
            self.register_buffer("mod_b", mod_b)
            self.register_buffer("mod_m", mod_m)

    @torch.jit.ignore
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # states saved before the modulation (or the spike drive) existed (e.g. a teacher checkpoint being resumed)
        for name in ("mod_b", "mod_m"):
            if prefix + name not in state_dict and not self.modulated:
                state_dict[prefix + name] = getattr(self, name).detach().clone()
        for name in ("spike_dz", "spike_dlogtau"):  # saved before the spike drive existed: none
            if prefix + name not in state_dict:
                state_dict[prefix + name] = torch.zeros_like(getattr(self, name))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- contract --------------------------------------------------------------------------
    def _rates(self, v: torch.Tensor):
        out = self.net(((v - self.v_center) / self.v_half).unsqueeze(-1))
        K = self.n_latent
        dv = (v - self.e0).unsqueeze(-1)
        zinf = self.e0 + self.a * dv + self.c + self.s_inf * out[:, :K]
        spiking = torch.sigmoid((v.unsqueeze(-1) - self.spike_gate_mV) / self.spike_gate_slope_mV)
        zinf = zinf + self.spike_dz * spiking
        tau = self.tau_min + torch.exp(self.log_tau0 + self.r * torch.tanh(out[:, K:] / self.r)
                                       + self.spike_dlogtau * spiking)
        return zinf, tau

    def rates(self, v: torch.Tensor):
        zinf, tau = self._rates(v)
        if self.anchored:
            vr = torch.full([1], self.v_rest_mV, dtype=v.dtype)
            zr, _ = self._rates(vr)
            g = self.conductance_of(zr)
            i_rest = ((vr.unsqueeze(-1) - zr) * g).sum()
            zinf = zinf + i_rest / (g.sum() + 1e-12)
        return zinf, tau

    def conductance_of(self, z: torch.Tensor) -> torch.Tensor:
        """Conductances g_k (uS) at latents z [N, K]: [N, K] (modulated) or [K]."""
        g = self.w * self.w
        if self.modulated:
            m = self.mod_m - self.mod_m.mean(0, keepdim=True)  # each column sums to zero
            g = g * (1.0 + torch.tanh(self.mod_b) * torch.tanh(torch.matmul(z, m) / self.s_mod))
        return g

    def current(self, v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return ((v.unsqueeze(-1) - z) * self.conductance_of(z)).sum(-1)

    # -- helpers ---------------------------------------------------------------------------
    @torch.jit.ignore
    def conductances_uS(self) -> torch.Tensor:
        """The conductances g_k (uS) before modulation."""
        return (self.w * self.w).detach()

    @torch.jit.ignore
    def set_linear(self, g_uS, a, c_mV, tau_ms) -> None:
        """Set the linear part: conductances (uS), slopes, offsets (mV) and time constants (ms)."""
        with torch.no_grad():
            self.w.copy_(torch.sqrt(torch.as_tensor(g_uS, dtype=torch.float64).clamp_min(0)))
            self.a.copy_(torch.as_tensor(a, dtype=torch.float64))
            self.c.copy_(torch.as_tensor(c_mV, dtype=torch.float64))
            tau = torch.as_tensor(tau_ms, dtype=torch.float64)
            self.log_tau0.copy_(torch.log((tau - self.tau_min).clamp_min(1e-6)))

"""Unknown gating from current-clamp voltage alone: gate networks trained through the torch twin.

A single compartment (``hh`` or ``pospischil``) in which the gates of one channel (K: n; Na: m and h)
are replaced by networks, integrated with NEURON's fixed-step scheme (currents at the old V, backward
Euler for V linearised in V, then cnexp for every gate at the new V; the same scheme as
:mod:`neuron_hybrid.channels.simulate`), **batched over M independent members** (seeds x conditions),
each with its own networks (a :class:`~.gatenet.GateEnsemble`), parameters and data.

Training (:func:`train_members`), designed for robustness:

1. *prior*: every network starts as a generic gate (Boltzmann x_inf with the slope sign of the gate
   type, constant tau), fitted in a few hundred vectorised steps;
2. *teacher forcing / multiple shooting*: the observed trace is smoothed (Gaussian, ``smooth_ms``);
   the known gates and the learned gates are integrated along it (cnexp, exact for a given V), and
   from every window start (V, gates) the model runs free for ``window_ms``; loss = MSE to the observed
   V. Short windows keep the problem well conditioned (no depolarisation-block trap);
3. *closed loop*: backprop through the whole trace from rest, with a curriculum on the trace length.

Units: V mV, t ms, stimulus as a current density in mA/cm2 (depolarising positive; 0.01 mA/cm2 =
10 uA/cm2), conductances S/cm2, C uF/cm2.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .. import channels as nc
from .gatenet import GateEnsemble

__all__ = ["CompartmentModel", "HH", "POSPISCHIL", "TraceFitConfig", "simulate", "step_stimulus", "noisy_stimulus",
           "train_members", "member_rmse", "learned_curves"]

DT = torch.float64


@dataclass(frozen=True)
class CompartmentModel:
    """Known single compartment: channels as (name, Channel, {gate: power}, gbar S/cm2, E mV)."""

    name: str
    channels: tuple  # (current name, Channel, powers dict, gbar, e_rev, channel params dict)
    g_leak: float
    e_leak: float
    cm: float = 1.0
    v_init: float = -65.0
    celsius: float = 6.3

    def gate_list(self):
        """[(current, gate, power)] in a fixed order."""
        return [(c[0], g, p) for c in self.channels for g, p in c[2].items()]

    def default_params(self) -> dict:
        out = {"cm": self.cm, "g_leak": self.g_leak, "e_leak": self.e_leak}
        for cur, _, _, g, e, _ in self.channels:
            out[f"g_{cur}"], out[f"e_{cur}"] = g, e
        return out


HH = CompartmentModel("hh", (("na", nc.hh_nh, {"m": 3, "h": 1}, 0.12, 50.0, {}),
                             ("k", nc.hh_nh, {"n": 4}, 0.036, -77.0, {})), 3e-4, -54.3, 1.0, -65.0, 6.3)
POSPISCHIL = CompartmentModel("pospischil", (("na", nc.na_pos, {"m": 3, "h": 1}, 0.05, 50.0, {}),
                                             ("k", nc.kdr_pos, {"n": 4}, 0.005, -90.0, {}),
                                             ("m", nc.km_pos, {"p": 1}, 1e-4, -90.0, {})), 1e-4, -70.0, 1.0, -70.0, 36.0)
MODELS = {"hh": HH, "pospischil": POSPISCHIL}

#: learned channel -> its gates
LEARN = {"k": ("n",), "na": ("m", "h")}


def step_stimulus(t, delay, dur, amp):
    """amp (mA/cm2, tensor [M] or scalar) for delay <= t < delay + dur (t: [T] ms) -> [M, T]."""
    on = ((t >= delay) & (t < delay + dur)).to(DT)
    return torch.as_tensor(amp, dtype=DT).reshape(-1, 1) * on.reshape(1, -1)


def noisy_stimulus(t, delay, dur, mean, sd, tau_ms, seed):
    """Ornstein-Uhlenbeck current (mA/cm2) with mean/sd, correlation time tau_ms, between delay and delay+dur."""
    g = torch.Generator().manual_seed(seed)
    dt = float(t[1] - t[0])
    a = math.exp(-dt / tau_ms)
    x = torch.zeros(len(t), dtype=DT)
    noise = torch.randn(len(t), generator=g, dtype=DT) * sd * math.sqrt(1 - a * a)
    for k in range(1, len(t)):
        x[k] = a * x[k - 1] + noise[k]
    on = ((t >= delay) & (t < delay + dur)).to(DT)
    return ((mean + x) * on).reshape(1, -1)


class LearnedGates(torch.nn.Module):
    """Networks for the learned gates of M members: an ensemble of M * n_gates MLPs."""

    def __init__(self, n_members: int, gates: tuple, width: int, depth: int, seed: int, v_min=-100.0, v_max=60.0):
        super().__init__()
        self.gates, self.M = tuple(gates), n_members
        self.ens = GateEnsemble(n_members * len(gates), width, depth, seed)
        self.center, self.scale = 0.5 * (v_min + v_max), 0.5 * (v_max - v_min)

    def forward(self, v):
        """v [M, N] -> {gate: (x_inf [M, N], tau [M, N] ms)}."""
        G = len(self.gates)
        u = ((v - self.center) / self.scale).repeat_interleave(G, dim=0)  # [M*G, N]
        o = self.ens(u).reshape(self.M, G, v.shape[1], 2)
        out = {}
        for j, g in enumerate(self.gates):
            out[g] = (torch.sigmoid(o[:, j, :, 0]), 1e-3 + torch.exp(torch.clamp(o[:, j, :, 1], -12.0, 9.0)))
        return out


def _hh_rates(v, gates):
    """NEURON hh rates at 6.3 degC (few torch ops; the vtrap guard is not needed off the 0/0 points,
    which are shifted by 1e-9 mV)."""
    out = {}
    if "m" in gates:
        x = v + 40.0
        x = torch.where(x.abs() < 1e-9, torch.full_like(x, 1e-9), x)
        a = 0.1 * x / (1 - torch.exp(-x / 10))
        b = 4 * torch.exp(-(v + 65) / 18)
        out["m"] = (a / (a + b), 1 / (a + b))
    if "h" in gates:
        a = 0.07 * torch.exp(-(v + 65) / 20)
        b = 1 / (torch.exp(-(v + 35) / 10) + 1)
        out["h"] = (a / (a + b), 1 / (a + b))
    if "n" in gates:
        x = v + 55.0
        x = torch.where(x.abs() < 1e-9, torch.full_like(x, 1e-9), x)
        a = 0.01 * x / (1 - torch.exp(-x / 10))
        b = 0.125 * torch.exp(-(v + 65) / 80)
        out["n"] = (a / (a + b), 1 / (a + b))
    return out


def _known_rates(model: CompartmentModel, v, learned: tuple):
    """{gate: (x_inf, tau)} of the known gates at v (any shape)."""
    if model.name == "hh" and model.celsius == 6.3:
        return _hh_rates(v, [g for g in ("m", "h", "n") if g not in learned])
    out = {}
    for cur, ch, powers, _, _, params in model.channels:
        need = [g for g in powers if g not in learned]
        if not need:
            continue
        r = ch.rates(v, celsius=model.celsius, **params)
        for g in need:
            out[g] = r[g]
    return out


def _gate_key(cur, g):
    return f"{cur}.{g}"


def simulate(model: CompartmentModel, stim, dt: float, params: dict, nets: LearnedGates | None = None,
             learned: tuple = (), learned_current: str = "", state0: dict | None = None, record_gates: bool = False):
    """Run M members for stim.shape[1] steps; stim [M, T] mA/cm2 at mid-step times. Returns V [M, T+1] (and gates).

    params: {"cm", "g_leak", "e_leak", "g_<cur>", "e_<cur>"} tensors [M] or floats. state0: {"v": [M], gate: [M]}.
    """
    M, T = stim.shape
    p = {k: torch.as_tensor(v, dtype=DT) for k, v in params.items()}
    if state0 is None:
        v = torch.full((M,), model.v_init, dtype=DT)
        st = _steady(model, v, nets, learned)
    else:
        v = state0["v"]
        st = {k: x for k, x in state0.items() if k != "v"}
    cap = p["cm"] * 1e-3 / dt
    vs, recs = [v], {k: [x] for k, x in st.items()} if record_gates else None
    glist = model.gate_list()
    for k in range(T):
        i_tot = p["g_leak"] * (v - p["e_leak"])
        g_tot = p["g_leak"] + torch.zeros_like(v)
        for cur, _, powers, _, _, _ in model.channels:
            gk = p[f"g_{cur}"]
            for g, pw in powers.items():
                gk = gk * st[g] ** pw
            i_tot = i_tot + gk * (v - p[f"e_{cur}"])
            g_tot = g_tot + gk
        v = v + (stim[:, k] - i_tot) / (cap + g_tot)
        rates = _known_rates(model, v, learned)
        if learned:
            r = nets(v.unsqueeze(1))
            rates.update({g: (a[:, 0], b[:, 0]) for g, (a, b) in r.items()})
        for (_, g, _) in glist:
            xi, ta = rates[g]
            st[g] = st[g] + (1.0 - torch.exp(-dt / ta)) * (xi - st[g])
        vs.append(v)
        if record_gates:
            for g in st:
                recs[g].append(st[g])
    V = torch.stack(vs, 1)
    if record_gates:
        return V, {g: torch.stack(x, 1) for g, x in recs.items()}
    return V


def _steady(model, v, nets, learned):
    r = _known_rates(model, v, learned)
    if learned:
        rl = nets(v.unsqueeze(1))
        r.update({g: (a[:, 0], b[:, 0]) for g, (a, b) in rl.items()})
    return {g: r[g][0] for (_, g, _) in model.gate_list()}


def _gauss_smooth(v, sd_samples):
    if sd_samples <= 0:
        return v
    r = int(math.ceil(4 * sd_samples))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=DT) / sd_samples) ** 2)
    k = (k / k.sum()).reshape(1, 1, -1)
    x = torch.nn.functional.pad(v.unsqueeze(1), (r, r), mode="replicate")
    return torch.nn.functional.conv1d(x, k).squeeze(1)


@dataclass
class TraceFitConfig:
    """Settings of :func:`train_members` (times in ms)."""

    width: int = 32
    depth: int = 2
    seed: int = 0
    prior_steps: int = 300
    tf_steps: int = 400
    tf_lr: float = 1e-2
    window_ms: tuple = (1.0, 3.0, 8.0)
    window_stride_ms: float = 0.25
    smooth_ms: float = 0.05
    cl_steps: int = 60
    cl_lr: float = 5e-4
    cl_fractions: tuple = (0.5, 1.0)
    clip: float = 1.0
    time_budget_s: float = 1e9


def _prior_targets(gate: str, v):
    """Generic starting curves: activation (m, n, p) or inactivation (h) Boltzmann, tau constant."""
    if gate == "h":
        return torch.sigmoid(-(v + 60.0) / 7.0), torch.full_like(v, 3.0)
    if gate == "m":
        return torch.sigmoid((v + 40.0) / 8.0), torch.full_like(v, 0.3)
    return torch.sigmoid((v + 50.0) / 12.0), torch.full_like(v, 3.0)


def train_members(model: CompartmentModel, learn: str, stim, v_obs, dt: float, params: dict,
                  config: TraceFitConfig | None = None, progress: bool = False, log: list | None = None):
    """Train M members at once; stim/v_obs [M, T] / [M, T+1]; params tensors [M] (the *assumed* parameters).

    Returns the trained :class:`LearnedGates` (member m's networks are ensemble members m*G .. m*G+G-1).
    """
    from tqdm import tqdm

    cfg = config or TraceFitConfig()
    t0 = time.perf_counter()
    learned = LEARN[learn]
    M, T = stim.shape
    nets = LearnedGates(M, learned, cfg.width, cfg.depth, cfg.seed)
    cur_of = {g: c for (c, g, _) in model.gate_list()}
    # 1. prior
    vgrid = torch.linspace(-100, 60, 81, dtype=DT).repeat(M, 1)
    opt = torch.optim.Adam(nets.parameters(), lr=1e-2)
    for _ in range(cfg.prior_steps):
        opt.zero_grad()
        r = nets(vgrid)
        loss = 0
        for g, (xi, ta) in r.items():
            tx, tt = _prior_targets(g, vgrid)
            loss = loss + ((xi - tx) ** 2).mean() * 100 + ((torch.log(ta) - torch.log(tt)) ** 2).mean()
        loss.backward()
        opt.step()
    # 2. teacher forcing on the smoothed trace, free-running windows of growing length
    vs = _gauss_smooth(v_obs, cfg.smooth_ms / dt)
    known = _known_rates(model, vs, learned)
    with torch.no_grad():
        kn = {g: _tf_integrate(known[g][0], known[g][1], dt) for g in known}
    stride = max(1, int(round(cfg.window_stride_ms / dt)))
    for wi, wms in enumerate(cfg.window_ms):
        H = max(1, int(round(wms / dt)))
        starts = torch.arange(0, T - H, max(stride, H // 4))
        opt = torch.optim.Adam(nets.parameters(), lr=cfg.tf_lr / (1 + 2 * wi))
        n_steps = cfg.tf_steps if wi == 0 else max(1, cfg.tf_steps // 2)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, n_steps)
        W = len(starts)
        pW = {k: torch.as_tensor(v, dtype=DT).reshape(-1, 1).expand(M, W).reshape(-1) for k, v in params.items()}
        stimW = torch.stack([stim[:, s:s + H] for s in starts.tolist()], 1).reshape(M * W, H)
        targ = torch.stack([v_obs[:, s + 1:s + H + 1] for s in starts.tolist()], 1).reshape(M * W, H)
        it = tqdm(range(n_steps), desc=f"teacher-forced windows {wms:g} ms", disable=not progress, mininterval=2)
        for step in it:
            if time.perf_counter() - t0 > cfg.time_budget_s:
                break
            opt.zero_grad()
            rl = nets(vs)
            gl = {g: _tf_integrate(a, b, dt) for g, (a, b) in rl.items()}
            allg = {**kn, **gl}
            state0 = {"v": vs[:, starts].reshape(-1)}
            for g in allg:
                state0[g] = allg[g][:, starts].reshape(-1)
            V = _sim_windows(model, stimW, dt, pW, nets, learned, state0, M, W)
            per = ((V[:, 1:] - targ) ** 2).reshape(M, -1).mean(1)
            loss = torch.where(torch.isfinite(per), per, torch.zeros_like(per)).sum()
            loss.backward()
            for prm in nets.parameters():
                if prm.grad is not None:
                    prm.grad.nan_to_num_(0.0, 0.0, 0.0)
            torch.nn.utils.clip_grad_norm_(nets.parameters(), cfg.clip * M)
            opt.step()
            sched.step()
            if log is not None and step % 50 == 0:
                log.append(("tf", wms, step, per.detach().numpy().copy()))
    # 3. closed loop with a curriculum on the trace length
    opt = torch.optim.Adam(nets.parameters(), lr=cfg.cl_lr)
    best = [None] * M
    for frac in cfg.cl_fractions:
        n = max(2, int(T * frac))
        for step in tqdm(range(cfg.cl_steps), desc=f"closed loop {frac:.0%}", disable=not progress, mininterval=2):
            if time.perf_counter() - t0 > cfg.time_budget_s:
                break
            opt.zero_grad()
            V = simulate(model, stim[:, :n], dt, params, nets, learned)
            per = ((V - v_obs[:, :n + 1]) ** 2).mean(1)
            bad = ~torch.isfinite(per)
            loss = torch.where(bad, torch.zeros_like(per), per).sum()
            loss.backward()
            for prm in nets.parameters():  # a diverged member must not poison the others
                if prm.grad is not None:
                    prm.grad.nan_to_num_(0.0, 0.0, 0.0)
            torch.nn.utils.clip_grad_norm_(nets.parameters(), cfg.clip * M)
            opt.step()
            if log is not None and step % 20 == 0:
                log.append(("cl", frac, step, per.detach().numpy().copy()))
    nets.train_seconds = time.perf_counter() - t0
    return nets


def _tf_integrate(x_inf, tau, dt):
    """cnexp integration of dx/dt = (x_inf - x)/tau along a given V: x_inf, tau [M, T+1] -> x [M, T+1].

    x[0] = x_inf[0]; x[k+1] = a x[k] + (1 - a) x_inf[k+1] with a = exp(-dt/tau[k+1]) (rates at the new V).
    Computed as a parallel (Hillis-Steele) scan of the affine maps: log2(T) vectorised levels."""
    a = torch.exp(-dt / tau)
    b = (1 - a) * x_inf
    a = torch.cat([torch.zeros_like(a[:, :1]), a[:, 1:]], 1)  # x[0] = x_inf[0]
    b = torch.cat([x_inf[:, :1], b[:, 1:]], 1)
    shift = 1
    T = a.shape[1]
    while shift < T:
        a_prev = torch.cat([torch.ones_like(a[:, :shift]), a[:, :-shift]], 1)
        b_prev = torch.cat([torch.zeros_like(b[:, :shift]), b[:, :-shift]], 1)
        b = a * b_prev + b
        a = a * a_prev
        shift *= 2
    return b


def _sim_windows(model, stimW, dt, pW, nets, learned, state0, M, W):
    """Free runs from every window start; nets are evaluated per member (windows reshaped to [M, W])."""

    class _PerWindow(torch.nn.Module):
        def forward(self, v):  # v [M*W, 1] -> rates with member m's networks
            r = nets(v.reshape(M, W))
            return {g: (a.reshape(M * W, 1), b.reshape(M * W, 1)) for g, (a, b) in r.items()}

    return simulate(model, stimW, dt, pW, _PerWindow(), learned, "", state0=dict(state0))


def member_rmse(a, b):
    """RMSE per member (mV) of [M, T] traces; inf where non-finite."""
    r = torch.sqrt(((a - b) ** 2).mean(1))
    return torch.where(torch.isfinite(r), r, torch.full_like(r, math.inf))


def learned_curves(nets: LearnedGates, v):
    """{gate: (x_inf [M, N], tau [M, N])} of the trained members on voltages v [N] (mV)."""
    with torch.no_grad():
        return {g: (a.numpy(), b.numpy()) for g, (a, b) in nets(torch.as_tensor(v, dtype=DT).repeat(nets.M, 1)).items()}

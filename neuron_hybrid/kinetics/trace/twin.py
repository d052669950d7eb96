"""The torch twin of the compartment with learned gates: :class:`LearnedGates` (per-member gate networks) and
:func:`simulate`, NEURON's fixed-step scheme batched over members (exact rates, or tables and a compiled loop).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..gatenet import GateEnsemble
from ..parametric import KnownCorrections
from .compartment import CompartmentModel, DT, _known_rates
from .tables import _tables


class LearnedGates(KnownCorrections, torch.nn.Module):
    """Networks for the learned gates of M members: an ensemble of M * n_gates MLPs.

    Optional per-member conductance scale ``exp(log_g)`` and reversal shift ``de`` (mV) of the learned
    channel (``learn_conductance``); both start at the assumed values (0). Optional corrections ``known_u`` [M, K]
    of the known compartment's parameters named in ``known`` (:class:`..parametric.KnownCorrections`; trainable
    only after :meth:`set_refine_known`). Member m's networks are initialised from random streams keyed by
    ``(seed, *member_keys[m], gate index)`` (default key ``(m,)``): independent of the other members."""

    tau_min = 1e-3

    def __init__(self, n_members: int, gates: tuple, width: int, depth: int, seed: int, v_min=-100.0, v_max=60.0,
                 channel: str = "", learn_conductance: bool = False, known: tuple = (), member_keys=None):
        super().__init__()
        self.known = tuple(known)
        self.known_u = torch.nn.Parameter(torch.zeros(n_members, len(self.known), dtype=DT), requires_grad=False)
        self.gates, self.M, self.channel = tuple(gates), n_members, channel
        self.width, self.depth = width, depth
        keys = [(m,) for m in range(n_members)] if member_keys is None else [tuple(k) for k in member_keys]
        self.ens = GateEnsemble(n_members * len(gates), width, depth, seed,
                                row_keys=[(*k, j) for k in keys for j in range(len(gates))])
        self.center, self.scale = 0.5 * (v_min + v_max), 0.5 * (v_max - v_min)
        self.learn_conductance = bool(learn_conductance)
        self.log_g = torch.nn.Parameter(torch.zeros(n_members, dtype=DT), requires_grad=self.learn_conductance)
        self.de = torch.nn.Parameter(torch.zeros(n_members, dtype=DT), requires_grad=self.learn_conductance)

    def forward(self, v):
        """v [M, N] -> {gate: (x_inf [M, N], tau [M, N] ms)}."""
        G = len(self.gates)
        u = ((v - self.center) / self.scale).repeat_interleave(G, dim=0)  # [M*G, N]
        o = self.ens(u).reshape(self.M, G, v.shape[1], 2)
        out = {}
        for j, g in enumerate(self.gates):
            out[g] = (torch.sigmoid(o[:, j, :, 0]), self.tau_min + torch.exp(torch.clamp(o[:, j, :, 1], -12.0, 9.0)))
        return out

    def channel_mods(self):
        """(learned channel, conductance factor [M], reversal shift [M] mV)."""
        return self.channel, torch.exp(self.log_g), self.de

    def subset(self, idx) -> "LearnedGates":
        """A new LearnedGates with members ``idx`` (list of member indices) of this one."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        G = len(self.gates)
        out = LearnedGates(len(idx), self.gates, self.width, self.depth, 0, channel=self.channel,
                           learn_conductance=self.learn_conductance, known=self.known)
        out.center, out.scale = self.center, self.scale
        rows = (idx.reshape(-1, 1) * G + torch.arange(G).reshape(1, -1)).reshape(-1)
        with torch.no_grad():
            for d, s in zip(list(out.ens.W) + list(out.ens.b), list(self.ens.W) + list(self.ens.b)):
                d.copy_(s[rows])
            out.log_g.copy_(self.log_g[idx])
            out.de.copy_(self.de[idx])
            out.known_u.copy_(self.known_u[idx])
        return out.set_refine_known(self.refine_known)

    def copy_members_from(self, other: "LearnedGates", mask):
        """Overwrite the members where ``mask`` [M] (bool) is true by those of ``other`` (same shape)."""
        G = len(self.gates)
        rows = torch.as_tensor(mask).repeat_interleave(G)
        with torch.no_grad():
            for d, s in zip(list(self.ens.W) + list(self.ens.b), list(other.ens.W) + list(other.ens.b)):
                d[rows] = s[rows]
            self.log_g[mask] = other.log_g[mask]
            self.de[mask] = other.de[mask]
            self.known_u[mask] = other.known_u[mask]


def _run(model: CompartmentModel, stim, dt, p, rate_fn, learned, v, st, mods, record_gates, known_fn=None):
    """The fixed-step scheme for B rows; rate_fn(v [B]) -> {learned gate: (x_inf [B], tau [B])}; known_fn(v) -> the
    same for the known gates (default: their exact rates) or for all gates, the learned ones included."""
    T = stim.shape[1]
    cap = p["cm"] * 1e-3 / dt
    vs, recs = [v], ({k: [x] for k, x in st.items()} if record_gates else None)
    glist = model.gate_list()
    lcur, lscale, lde = mods if mods is not None else ("", None, None)
    for k in range(T):
        i_tot = p["g_leak"] * (v - p["e_leak"])
        g_tot = p["g_leak"] + torch.zeros_like(v)
        for cur, _, powers, _, _, _ in model.channels:
            gk = p[f"g_{cur}"]
            e = p[f"e_{cur}"]
            if cur == lcur:
                gk, e = gk * lscale, e + lde
            for g, pw in powers.items():
                gk = gk * st[g] ** pw
            i_tot = i_tot + gk * (v - e)
            g_tot = g_tot + gk
        v = v + (stim[:, k] - i_tot) / (cap + g_tot)
        rates = _known_rates(model, v, learned) if known_fn is None else known_fn(v)
        if learned and rate_fn is not None:
            rates.update(rate_fn(v))
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


def simulate(model: CompartmentModel, stim, dt: float, params: dict, nets: LearnedGates | None = None,
             learned: tuple = (), learned_current: str = "", state0: dict | None = None, record_gates: bool = False,
             tabulated: bool = False):
    """Run M members for stim.shape[1] steps; stim [M, T] mA/cm2 at mid-step times. Returns V [M, T+1] (and gates).

    params: {"cm", "g_leak", "e_leak", "g_<cur>", "e_<cur>"} tensors [M] or floats. state0: {"v": [M], gate: [M]}.
    ``nets`` (a :class:`LearnedGates`) replaces the gates ``learned``; its conductance scale / reversal shift
    (if any) apply to its channel (``learned_current`` overrides the channel name). ``tabulated``: every gate's
    x_inf and tau linearly interpolated from 0.05 mV tables (``nets`` evaluated once per call, not per time step)
    and stepped by a compiled loop (no autograd): within ~0.01-0.04 mV of the exact rates over a spiking HH trace
    (largest at spike peaks); Pospischil, closed forms, 3 rows x 200 ms: 0.01 s against 6 s exact; used by the
    Levenberg-Marquardt stage.
    """
    M, T = stim.shape
    p = {k: torch.as_tensor(v, dtype=DT) for k, v in params.items()}
    if learned and hasattr(nets, "adjust_params"):  # refined known parameters (closed-form stage)
        p = nets.adjust_params(p)
    if state0 is None:
        v = torch.full((M,), model.v_init, dtype=DT)
        st = _steady(model, v, nets, learned)
    else:
        v = state0["v"]
        st = {k: x for k, x in state0.items() if k != "v"}
    mods = None
    if learned and hasattr(nets, "channel_mods"):
        cur, s, de = nets.channel_mods()
        mods = (learned_current or cur, s, de)

    def rate_fn(vv):
        r = nets(vv.unsqueeze(1))
        return {g: (a[:, 0], b[:, 0]) for g, (a, b) in r.items()}

    if tabulated:
        return _run_tabulated(model, stim, dt, p, nets, learned, v, st, mods, record_gates)
    return _run(model, stim, dt, p, rate_fn, learned, v, st, mods, record_gates)


def _steady(model, v, nets, learned):
    r = _known_rates(model, v, learned)
    if learned:
        rl = nets(v.unsqueeze(1))
        r.update({g: (a[:, 0], b[:, 0]) for g, (a, b) in rl.items()})
    return {g: r[g][0] for (_, g, _) in model.gate_list()}


#: (lowest, highest, step) mV of the tables of ``simulate(..., tabulated=True)``
_FINE_GRID = (-120.0, 80.0, 0.05)


def _learned_tables(nets, learned, B, lo, h, Ng):
    """Tables of the learned gates on the grid lo + h i (i < Ng, mV) for :func:`..compiled.run_rows`: (tab [U, Ng, 2]
    (x_inf, tau ms), index [B, Gl] int: row b's gate j is tab[index[b, j]]). Closed-form gates: each distinct
    (family, parameters) once (:meth:`..parametric.ParametricGates.distinct`); networks: one table per row and gate."""
    from ..parametric import gate_curves

    Gl = len(learned)
    if not Gl:
        return np.zeros((1, Ng, 2)), np.zeros((B, 0), dtype=np.int64)
    vg = lo + h * torch.arange(Ng, dtype=DT)
    if hasattr(nets, "distinct") and list(nets.gates) == list(learned):
        tabs, idx, off = [], [], 0
        for fam, th, inv in nets.distinct():
            tabs.append(torch.stack(gate_curves(fam, th, vg.expand(len(fam), Ng)), 2))
            idx.append(inv + off)
            off += len(fam)
        return (np.ascontiguousarray(torch.cat(tabs, 0).numpy()),
                np.ascontiguousarray(torch.stack(idx, 1).numpy(), dtype=np.int64))
    r = _tables(nets, vg)  # {gate: ([B, Ng], [B, Ng])}
    tab = torch.stack([torch.stack(r[g], 2) for g in learned], 1).reshape(B * Gl, Ng, 2)
    idx = torch.arange(B * Gl).reshape(B, Gl)
    return np.ascontiguousarray(tab.numpy(), dtype=np.float64), idx.numpy().astype(np.int64)


def _run_tabulated(model: CompartmentModel, stim, dt, p, nets, learned, v, st, mods, record_gates):
    """:func:`_run` (no autograd) with every gate's x_inf and tau interpolated from tables on _FINE_GRID (learned
    gates: see :func:`_learned_tables`; known gates: one shared table), stepped by the compiled loop
    :func:`..compiled.run_rows`."""
    from ..compiled import run_rows

    lo, hi, h = _FINE_GRID
    vg = torch.arange(lo, hi + h / 2, h, dtype=DT)
    Ng = len(vg)
    B = stim.shape[0]
    known_g = [g for (_, g, _) in model.gate_list() if g not in learned]
    order = known_g + list(learned)  # the state's column order
    with torch.no_grad():
        kr = _known_rates(model, vg, learned)
        tab_k = torch.stack([kr[g][0] for g in known_g] + [kr[g][1] for g in known_g], 1) if known_g \
            else torch.zeros(Ng, 0, dtype=DT)  # [Ng, 2 Gk]: x_inf columns, then tau
        tab_l, lidx = _learned_tables(nets, learned, B, lo, h, Ng)
        lcur, lscale, lde = mods if mods is not None else ("", None, None)
        full = lambda x: torch.as_tensor(x, dtype=DT).expand(B)  # noqa: E731
        gbar, erev = [full(p["g_leak"])], [full(p["e_leak"])]  # column 0: the leak
        powers = np.zeros((len(order), len(model.channels) + 1), dtype=np.int64)
        for c, (cur, _, pw, _, _, _) in enumerate(model.channels):
            g, e = full(p[f"g_{cur}"]), full(p[f"e_{cur}"])
            if cur == lcur:
                g, e = g * lscale, e + lde
            gbar.append(g)
            erev.append(e)
            for gate, n in pw.items():
                if n != int(n) or n < 0:
                    raise ValueError(f"gate {gate!r} of {model.name}: power {n} (the tabulated twin needs whole powers)")
                powers[order.index(gate), c + 1] = int(n)
        arr = lambda x: np.ascontiguousarray(x.detach().numpy(), dtype=np.float64)  # noqa: E731
        V, S = run_rows(arr(stim), arr(v.expand(B)), arr(torch.stack([st[g].expand(B) for g in order], 1)), arr(tab_k),
                        tab_l, lidx, arr(torch.stack(gbar, 1)), arr(torch.stack(erev, 1)), powers, float(dt),
                        arr(full(p["cm"]) * 1e-3 / dt), float(lo), float(h), bool(record_gates))
    V = torch.from_numpy(V)
    if record_gates:
        return V, {g: torch.from_numpy(S[:, :, i].copy()) for i, g in enumerate(order)}
    return V


def member_rmse(a, b):
    """RMSE per member (mV) of [M, T] traces; inf where non-finite."""
    r = torch.sqrt(((a - b) ** 2).mean(1))
    return torch.where(torch.isfinite(r), r, torch.full_like(r, math.inf))


def learned_curves(nets: LearnedGates, v):
    """{gate: (x_inf [M, N], tau [M, N])} of the trained members on voltages v [N] (mV)."""
    with torch.no_grad():
        return {g: (a.numpy(), b.numpy()) for g, (a, b) in nets(torch.as_tensor(v, dtype=DT).repeat(nets.M, 1)).items()}

"""Single-compartment fixed-step simulation in torch with NEURON's staggered scheme.

NEURON's fixed step (``secondorder = 0``), reproduced here step by step:

1. ion reversal potentials are computed (Nernst ``eca`` from ``cai`` where a pool writes ``cai``);
2. at ``t + dt/2`` the stimulus is evaluated (IClamp is on when ``del <= t_mid < del + dur``);
   the membrane currents ``i(v)`` and conductances ``di/dv`` are evaluated at the old ``v`` and
   old states;
3. ``v`` is advanced by backward Euler with the current linearised at the old ``v``:
   ``(cm*1e-3/dt + di/dv) * (v_new - v) = i_stim - i(v)`` (cm in uF/cm2, currents in mA/cm2,
   conductances in S/cm2);
4. pools (e.g. the Ca pool) are advanced by cnexp with the ion current of step 2, then every gate
   is advanced by cnexp with x_inf/tau evaluated at the **new** ``v`` (and new ``cai``).
   (Order of pools before channels: in a library built from ``mod/channels`` the pool
   ``CaDynamics_E2`` has a lower mechanism type than ``SK_E2``, so NEURON updates it first.)

All operations are differentiable torch float64 operations (gbar or parameters given as tensors
with ``requires_grad`` get gradients through the whole trace).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from .core import (DEFAULT_CAI, DEFAULT_CAO, DEFAULT_CELSIUS, Channel, Pool, _t, default_reversal,
                   nernst)

__all__ = ["Inserted", "iclamp", "simulate_compartment", "initial_states"]


@dataclass
class Inserted:
    """A mechanism inserted in the compartment with its densities and parameter overrides.

    ``gbar``: S/cm2, a number/tensor for single-current channels or ``{gbar name: value}``;
    ``params``: other parameter overrides, e.g. ``{"vt": -55.0}`` or ``{"e": -70.0}`` for pas.
    """

    mechanism: Channel | Pool
    gbar: Any = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.mechanism, Pool) and self.gbar is not None:
            raise TypeError("a Pool has no gbar; pass its parameters in `params`")
        self.params = dict(self.params)
        if isinstance(self.mechanism, Channel) and isinstance(self.gbar, Mapping):
            # dict of gbars: keep them as parameter overrides
            self.params.update(self.gbar)
            self.gbar = None


def iclamp(delay: float, dur: float, amp) -> Callable[[torch.Tensor], torch.Tensor]:
    """A step current (nA) with NEURON IClamp semantics: ``amp`` while ``delay <= t < delay+dur``.

    The integrator evaluates it at mid-step times, as NEURON's fixed step does.
    """

    def stim(t):
        on = (t >= delay) & (t < delay + dur)
        return torch.where(on, _t(amp), _t(0.0))

    return stim


def _as_inserted(m) -> Inserted:
    if isinstance(m, Inserted):
        return m
    if isinstance(m, (Channel, Pool)):
        return Inserted(m)
    if isinstance(m, tuple):
        return Inserted(*m)
    raise TypeError(f"cannot insert {m!r}")


def initial_states(mechanisms: Sequence, v_init, *, celsius=DEFAULT_CELSIUS, cai=DEFAULT_CAI):
    """Steady-state gates at ``v_init`` (mV), ``{suffix: {gate: tensor}}``, as NEURON's INITIAL."""
    out = {}
    for ins in map(_as_inserted, mechanisms):
        m = ins.mechanism
        if isinstance(m, Channel):
            out[m.suffix] = m.steady_state(v_init, celsius=celsius,
                                           cai=cai if m.uses_cai else None, **ins.params)
    return out


def simulate_compartment(mechanisms: Sequence, *, tstop: float, dt: float = 0.025,
                         v_init: float = -65.0, area: float | None = None, cm: float = 1.0,
                         stimulus: Callable[[torch.Tensor], torch.Tensor] | None = None,
                         celsius: float = DEFAULT_CELSIUS, e_rev: Mapping[str, Any] | None = None,
                         cai0: float = DEFAULT_CAI, cao: float = DEFAULT_CAO,
                         record_states: bool = False) -> dict[str, Any]:
    """Simulate one isopotential compartment with NEURON's fixed-step scheme (see module doc).

    Parameters
    ----------
    mechanisms: Channels/Pools, :class:`Inserted` objects or ``(mechanism, gbar, params)`` tuples.
    tstop, dt: ms. The trace has ``round(tstop/dt) + 1`` samples, starting at t = 0.
    v_init: mV; gates start at steady state there (cai at ``cai0``).
    area: membrane area in um2 (needed only with a stimulus; NEURON's ``seg.area()``).
    cm: uF/cm2.
    stimulus: ``f(t_ms) -> current in nA`` (depolarising positive, like IClamp), e.g. :func:`iclamp`.
    celsius: degC. e_rev: reversal potentials (mV) by ion, defaults NEURON's (ena 50, ek -77,
        eca Nernst). With a Ca pool, eca follows cai by the Nernst equation (cao in mM) unless
        ``e_rev["ca"]`` is given.
    record_states: also return the gate (and pool) traces.

    Returns ``{"t": (n,), "v": (n,) mV, "cai": (n,) mM, "states": {suffix: {gate: (n,)}}}``
    (``states`` only with ``record_states``).
    """
    ins = [_as_inserted(m) for m in mechanisms]
    channels = [i for i in ins if isinstance(i.mechanism, Channel)]
    pools = [i for i in ins if isinstance(i.mechanism, Pool)]
    ca_pool = any(p.mechanism.ion == "ca" and p.mechanism.state == "cai" for p in pools)
    if any(p.mechanism.state != "cai" for p in pools):
        raise NotImplementedError("only calcium pools writing cai are supported")
    e_rev = dict(e_rev or {})
    if stimulus is not None and area is None:
        raise TypeError("a stimulus needs the membrane area (um2)")

    nsteps = int(round(tstop / dt))
    dt_t = _t(dt)
    v = _t(v_init).clone()
    cai = _t(cai0)
    states = initial_states(channels, v, celsius=celsius, cai=cai)
    cap = _t(cm) * 1e-3 / dt_t  # mA/cm2 per mV

    def reversals(cai):
        e = {ion: _t(e_rev[ion]) if ion in e_rev else None for ion in ("na", "k", "ca")}
        for ion in ("na", "k"):
            if e[ion] is None:
                e[ion] = _t(default_reversal(ion, celsius))
        if e["ca"] is None:
            e["ca"] = nernst(cai, cao, celsius, 2) if ca_pool else _t(default_reversal("ca", celsius))
        return e

    vs, cais = [v], [cai]
    rec = {c.mechanism.suffix: {g: [x] for g, x in states[c.mechanism.suffix].items()} for c in channels}
    t = 0.0
    e = reversals(cai)
    for _ in range(nsteps):
        if ca_pool:
            e = reversals(cai)
        i_tot = torch.zeros_like(v)
        g_tot = torch.zeros_like(v)
        ica = torch.zeros_like(v)
        for c in channels:
            ch = c.mechanism
            st = states[ch.suffix]
            parts = ch.currents_by_variable(v, st, c.gbar, e, celsius=celsius, **c.params)
            gs = ch.conductances(st, c.gbar, v=v, **c.params)
            for name, i in parts.items():
                i_tot = i_tot + i
                g_tot = g_tot + gs[name]
                if name == "ica":
                    ica = ica + i
        rhs = -i_tot
        if stimulus is not None:
            rhs = rhs + _t(stimulus(_t(t + 0.5 * dt))) * 100.0 / _t(area)
        v = v + rhs / (cap + g_tot)
        t += dt
        for p in pools:
            cai = p.mechanism.step(cai, ica, dt_t, **p.params)
        for c in channels:
            ch = c.mechanism
            states[ch.suffix] = ch.step(states[ch.suffix], v, dt_t, celsius=celsius,
                                        cai=cai if ch.uses_cai else None, **c.params)
            if record_states:
                for g, x in states[ch.suffix].items():
                    rec[ch.suffix][g].append(x)
        vs.append(v)
        cais.append(cai)

    out = {"t": torch.arange(nsteps + 1, dtype=torch.float64) * dt,
           "v": torch.stack(vs), "cai": torch.stack([_t(c) + torch.zeros_like(v) for c in cais])}
    if record_states:
        out["states"] = {s: {g: torch.stack(x) for g, x in d.items()} for s, d in rec.items()}
    return out

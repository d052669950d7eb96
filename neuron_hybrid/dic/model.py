"""Single-compartment conductance-based models for DICs, populations and batch simulation.

A :class:`CompartmentModel` lists its maximal conductances (:class:`Conductance`, one column each,
named ``g_<name>`` in mS/cm2), an optional calcium pool and the DIC conventions
(:class:`DICConvention`). Its gates come from the package's channel definitions
(:mod:`neuron_hybrid.channels`) or from learned gate modules (:class:`LearnedGates`), so that

* the DIC toolkit (:mod:`neuron_hybrid.dic.dics`) differentiates x_inf(V) with autograd;
* :meth:`CompartmentModel.simulate` integrates many parameter sets at once (vectorised NumPy)
  with NEURON's fixed-step scheme (the same arithmetic as the generated MOD files);
* :meth:`CompartmentModel.build_neuron` builds the same model as a NEURON section.

Units (the Spike2Pop convention, C_m = 1 uF/cm2): V in mV, t in ms, maximal conductances in
mS/cm2, currents in uA/cm2, [Ca] in mM as NEURON's ``cai`` (1 mM = 1000 uM). Internally the
integrator works in NEURON's units (S/cm2, mA/cm2) so that it matches the MOD files exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import sympy
import torch

from ..channels.core import CAI, CELSIUS, V, Channel, Pool

__all__ = ["Conductance", "LearnedGates", "DICConvention", "CompartmentModel", "SimulationResult",
           "as_gbar_array"]


class LearnedGates:
    """Gates whose steady states and time constants come from a torch module.

    ``module.rates(v) -> (x_inf, tau)`` with ``v`` of shape (B,) in mV and outputs of shape
    (B, K) (dimensionless, ms): the learned-current contract of :mod:`neuron_hybrid.runtime`.
    ``names`` names the K gates (e.g. ``("n",)``) and ``powers`` their exponents in the current
    ``g = gbar * prod(x**p)``. Derivatives of x_inf for DICs are taken by autograd.
    """

    def __init__(self, module: torch.nn.Module, names: Sequence[str], powers: Sequence[int], suffix: str = "learned"):
        if len(names) != len(powers):
            raise ValueError("names and powers must have the same length")
        self.module = module
        self.names = tuple(names)
        self.powers_ = tuple(int(p) for p in powers)
        self.suffix = suffix
        self.uses_cai = False
        self.coupled = False

    @property
    def gate_names(self):
        return self.names

    def rates(self, v, *, cai=None, **_):
        v = torch.as_tensor(v, dtype=torch.float64)
        shape = v.shape
        with torch.enable_grad() if v.requires_grad else torch.no_grad():
            xinf, tau = self.module.rates(v.reshape(-1))
        return {n: (xinf[:, k].to(torch.float64).reshape(shape), tau[:, k].to(torch.float64).reshape(shape))
                for k, n in enumerate(self.names)}

    def steady_state(self, v, *, cai=None, **_):
        return {k: a for k, (a, _) in self.rates(v).items()}

    def __repr__(self):
        return f"LearnedGates({type(self.module).__name__}, {self.names})"


@dataclass(frozen=True)
class Conductance:
    """One maximal conductance of a model (a column of the sensitivity matrix).

    ``name``: short name, the column is ``g_<name>`` (mS/cm2). ``mechanism``: a
    :class:`~neuron_hybrid.channels.Channel` (or :class:`LearnedGates`). ``current``: which current
    of a multi-current channel (NMODL variable, e.g. ``"ina"`` of ``hh_nh``); default its only
    current. ``reversal``: mV. ``gbar_param``: the channel's S/cm2 parameter set in NEURON.
    ``params``: other parameter overrides of the channel (e.g. ``{"mg": 1.4}``).
    """

    name: str
    mechanism: Any
    reversal: float
    current: str | None = None
    gbar_param: str | None = None
    params: Mapping[str, float] = field(default_factory=dict)

    @property
    def column(self) -> str:
        return f"g_{self.name}"

    def _current(self):
        m = self.mechanism
        if isinstance(m, LearnedGates):
            return None
        if self.current is None:
            if len(m.currents) != 1:
                raise ValueError(f"{m.suffix} has several currents: set Conductance.current")
            return m.currents[0]
        for c in m.currents:
            if c.variable == self.current:
                return c
        raise ValueError(f"{m.suffix} has no current {self.current!r}")

    @property
    def gates(self) -> tuple[tuple[str, int], ...]:
        """``((gate, power), ...)`` of this current."""
        if isinstance(self.mechanism, LearnedGates):
            return tuple(zip(self.mechanism.names, self.mechanism.powers_))
        return tuple((g, int(p)) for g, p in self._current().gates)

    @property
    def ion(self) -> str | None:
        return None if isinstance(self.mechanism, LearnedGates) else self._current().ion

    @property
    def factor(self):
        return None if isinstance(self.mechanism, LearnedGates) else self._current().factor

    @property
    def gbar_name(self) -> str:
        if self.gbar_param is not None:
            return self.gbar_param
        return self._current().gbar


@dataclass(frozen=True)
class DICConvention:
    """How gating variables are split between the fast, slow and ultraslow timescales.

    ``tau_f``, ``tau_s``, ``tau_u``: reference time constants, each a number (ms) or a
    ``(conductance name, gate)`` pair meaning that gate's tau(V) (e.g. ``("Na", "m")``). ``None``
    for ``tau_f`` means "the fastest gate of the model at that V". ``forced``: ``{(conductance,
    gate): (w_fs, w_su)}`` fixed weights (``(1, 1)`` fully fast, ``(0, 0)`` fully ultraslow);
    instantaneous current factors (e.g. an NMDA Mg2+ block) are always fully fast. ``pool_tau``:
    the time constant (ms) used to weight gate dependences on the pool concentration
    (calcium), ``None`` for the pool's own time constant. ``v_th``: the model's reference
    threshold voltage (mV) used by populations and the spike-to-DIC network.
    """

    tau_f: Any = None
    tau_s: Any = 10.0
    tau_u: Any = 100.0
    forced: Mapping[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    pool_tau: float | None = None
    v_th: float | None = None


@dataclass
class SimulationResult:
    """Output of :meth:`CompartmentModel.simulate`.

    ``spikes``: one array of spike times (ms, after the transient, measured from the start of the
    recording window) per model; ``t`` (ms) and ``v`` (n_record, n_t) mV for the recorded models
    (``record`` indices), ``dt`` ms, ``duration`` ms (recorded window).
    """

    spikes: list
    t: np.ndarray | None
    v: np.ndarray | None
    dt: float
    duration: float
    diverged: np.ndarray


def as_gbar_array(model: "CompartmentModel", gbar) -> np.ndarray:
    """Maximal conductances as an (N, n_g) float64 array in mS/cm2 (columns in model order).

    ``gbar``: a dict ``{"g_Na": ..., ...}`` (values scalars or arrays; ``"Na"`` also accepted), a
    list of such dicts, or an array with the model's columns.
    """
    if isinstance(gbar, Mapping):
        missing = [c.column for c in model.conductances if c.column not in gbar and c.name not in gbar]
        if missing:
            raise KeyError(f"{model.name}: missing maximal conductances {missing}; expected keys "
                           f"{list(model.columns)} (mS/cm2)")
        extra = set(gbar) - set(model.columns) - {c.name for c in model.conductances}
        if extra:
            raise KeyError(f"{model.name}: unknown conductances {sorted(extra)}; expected {list(model.columns)}")
        cols = [np.asarray(gbar[c.column] if c.column in gbar else gbar[c.name], dtype=np.float64)
                for c in model.conductances]
        return np.atleast_2d(np.stack(np.broadcast_arrays(*cols), axis=-1))
    if isinstance(gbar, (list, tuple)) and gbar and isinstance(gbar[0], Mapping):
        return np.concatenate([as_gbar_array(model, g) for g in gbar], axis=0)
    arr = np.atleast_2d(np.asarray(gbar, dtype=np.float64))
    if arr.shape[-1] != len(model.conductances):
        raise ValueError(f"{model.name}: gbar has {arr.shape[-1]} columns, the model has "
                         f"{len(model.conductances)} ({list(model.columns)})")
    return arr


def _np_vtrap(x, y):
    x = np.asarray(x, dtype=np.float64)
    r = x / y
    small = np.abs(r) < 1e-6
    with np.errstate(divide="ignore", invalid="ignore"):
        regular = x / (np.exp(r) - 1)
    return np.where(small, y * (1 - r / 2), regular)


class CompartmentModel:
    """A single-compartment conductance-based model; see the module docstring.

    ``name``; ``conductances`` (ordered columns); ``leak``: the name of the leak conductance
    (used for normalisation, its gbar must be > 0); ``pool``: optional
    :class:`~neuron_hybrid.channels.Pool` writing ``cai`` from the ``ica`` of the conductances
    whose ion is ``ca``; ``pool_params``: its parameter overrides; ``cai0`` mM initial
    concentration; ``v_init`` mV; ``cm`` uF/cm2; ``dic``: :class:`DICConvention`; ``doc``.
    """

    def __init__(self, name: str, conductances: Sequence[Conductance], leak: str, *, pool: Pool | None = None,
                 pool_params: Mapping[str, float] | None = None, cai0: float = 5e-5, v_init: float = -65.0,
                 cm: float = 1.0, dic: DICConvention | None = None, doc: str = "", celsius: float = 6.3):
        self.name = name
        self.conductances = tuple(conductances)
        names = [c.name for c in self.conductances]
        if len(set(names)) != len(names):
            raise ValueError("duplicate conductance names")
        if leak not in names:
            raise ValueError(f"leak {leak!r} is not one of the conductances {names}")
        self.leak = leak
        self.pool = pool
        self.pool_params = dict(pool_params or {})
        self.cai0 = cai0
        self.v_init = v_init
        self.cm = cm
        self.dic = dic or DICConvention()
        self.doc = doc
        self.celsius = celsius
        self._np = None

    # -- description ---------------------------------------------------------------------------
    @property
    def columns(self) -> tuple[str, ...]:
        """Column names ``g_<name>`` (mS/cm2), in order."""
        return tuple(c.column for c in self.conductances)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.conductances)

    def index(self, name: str) -> int:
        """Column index of conductance ``name`` (``"Na"`` or ``"g_Na"``)."""
        key = name[2:] if name.startswith("g_") and name[2:] in self.names else name
        try:
            return self.names.index(key)
        except ValueError:
            raise KeyError(f"{self.name} has no conductance {name!r}; it has {list(self.columns)}") from None

    def conductance(self, name: str) -> Conductance:
        return self.conductances[self.index(name)]

    @property
    def leak_index(self) -> int:
        return self.index(self.leak)

    def as_dicts(self, gbar) -> list[dict[str, float]]:
        """Rows of an (N, n_g) array as ``{"g_Na": ..., ...}`` dicts (mS/cm2)."""
        arr = as_gbar_array(self, gbar)
        return [{c: float(x) for c, x in zip(self.columns, row)} for row in arr]

    def __repr__(self):
        return f"CompartmentModel({self.name!r}, {list(self.columns)})"

    # -- torch gate evaluation (for DICs) --------------------------------------------------------
    def gate_rates(self, cond: Conductance, v: torch.Tensor, cai: torch.Tensor | None):
        """``{gate: (x_inf_steady, tau)}`` of one conductance at ``v`` (mV), torch float64.

        x_inf is the steady state (closed form for kinetic schemes); tau in ms. ``cai`` (mM) is
        used by calcium-dependent gates.
        """
        m = cond.mechanism
        if isinstance(m, LearnedGates):
            return m.rates(v)
        kw = dict(cond.params)
        if m.uses_cai:
            kw["cai"] = cai
        r = m.rates(v, celsius=self.celsius, **kw)
        if m.coupled or any(g.steady is not None for g in m.gates):
            ss = m.steady_state(v, celsius=self.celsius, **kw)
            return {g: (ss[g], r[g][1]) for g in r}
        return r

    def factor_value(self, cond: Conductance, v: torch.Tensor) -> torch.Tensor | None:
        c = cond._current() if not isinstance(cond.mechanism, LearnedGates) else None
        if c is None or c.factor is None:
            return None
        m = cond.mechanism
        _, args = m._args(v, self.celsius, None, dict(cond.params))
        return m._factor_function(c)(*args)

    # -- numpy batch simulation ------------------------------------------------------------------
    def _numpy_functions(self):
        """Lambdified NumPy functions: all gates' (inf, tau) at once, factors, pool."""
        if self._np is not None:
            return self._np
        state_syms, exprs, learned = [], [], []
        slots = []  # (cond index, gate name) in state order
        for ci, c in enumerate(self.conductances):
            m = c.mechanism
            if isinstance(m, LearnedGates):
                for g in m.names:
                    slots.append((ci, g))
                    state_syms.append(sympy.Symbol(f"s{len(slots) - 1}", real=True))
                learned.append(ci)
                continue
            for g in m.gates:
                slots.append((ci, g.name))
                state_syms.append(sympy.Symbol(f"s{len(slots) - 1}", real=True))
        sym_of = {slot: s for slot, s in zip(slots, state_syms)}
        for ci, c in enumerate(self.conductances):
            m = c.mechanism
            if isinstance(m, LearnedGates):
                continue
            sub = {p.symbol: sympy.Float(c.params.get(p.name, p.default)) for p in m.parameters}
            sub[CELSIUS] = sympy.Float(self.celsius)
            for g in m.gates:
                sub[Channel.state_symbol(g.name)] = sym_of[(ci, g.name)]
            for g in m.gates:
                exprs.append((slots.index((ci, g.name)), g.substituted_inf.subs(sub), g.substituted_tau.subs(sub),
                              g.substituted_steady.subs(sub)))
        order = sorted(exprs, key=lambda e: e[0])
        args = [V, CAI] + state_syms
        mods = [{"vtrap": _np_vtrap}, "numpy"]
        rates = sympy.lambdify(args, [e[1] for e in order] + [e[2] for e in order], modules=mods, cse=True)
        steady = sympy.lambdify([V, CAI], [e[3] for e in order], modules=mods, cse=True)
        channel_slots = [e[0] for e in order]
        factors = {}
        for ci, c in enumerate(self.conductances):
            if c.factor is not None:
                m = c.mechanism
                sub = {p.symbol: sympy.Float(c.params.get(p.name, p.default)) for p in m.parameters}
                factors[ci] = sympy.lambdify([V], sympy.sympify(c.factor).subs(sub), modules=mods)
        pool = None
        if self.pool is not None:
            p = self.pool
            x = p.state_symbol
            b = sympy.diff(p.derivative, x)
            a = sympy.expand(p.derivative - b * x)
            sub = {q.symbol: sympy.Float(self.pool_params.get(q.name, q.default)) for q in p.parameters}
            from ..channels.core import FARADAY, FARADAY_VALUE
            sub[FARADAY] = sympy.Float(FARADAY_VALUE)
            pool = (sympy.lambdify([p.current_symbol], (-a / b).subs(sub), modules=mods),
                    float((-1 / b).subs(sub)))
        self._np = dict(slots=slots, rates=rates, steady=steady, channel_slots=channel_slots,
                        factors=factors, pool=pool, learned=learned)
        return self._np

    def pool_tau(self) -> float | None:
        """The pool's relaxation time constant (ms), if the model has a pool."""
        if self.pool is None:
            return None
        return self._numpy_functions()["pool"][1]

    def _eval_rates(self, fns, v, cai, states):
        n_ch = len(fns["channel_slots"])
        out = fns["rates"](v, cai, *states)
        inf = [None] * len(fns["slots"])
        tau = [None] * len(fns["slots"])
        for k, s in enumerate(fns["channel_slots"]):
            inf[s], tau[s] = out[k], out[n_ch + k]
        for ci in fns["learned"]:
            c = self.conductances[ci]
            r = c.mechanism.rates(torch.as_tensor(np.broadcast_to(v, states[0].shape if states else np.shape(v)).copy()))
            for g, (xi, ta) in r.items():
                s = fns["slots"].index((ci, g))
                inf[s], tau[s] = xi.numpy(), ta.numpy()
        return inf, tau

    def initial_state(self, n: int, v_init: float | None = None):
        """Steady state at ``v_init`` (mV): ``(v (n,), cai (n,), [gate arrays (n,)])``."""
        fns = self._numpy_functions()
        v0 = self.v_init if v_init is None else v_init
        v = np.full(n, float(v0))
        cai = np.full(n, float(self.cai0))
        st = fns["steady"](v, cai)
        states = [None] * len(fns["slots"])
        for k, s in enumerate(fns["channel_slots"]):
            states[s] = np.broadcast_to(np.asarray(st[k], dtype=np.float64), (n,)).copy()
        if fns["learned"]:
            inf, _ = self._eval_rates(fns, v, cai, [np.zeros(n)] * len(states))
            for ci in fns["learned"]:
                for g in self.conductances[ci].mechanism.names:
                    s = fns["slots"].index((ci, g))
                    states[s] = np.asarray(inf[s], dtype=np.float64).copy()
        return v, cai, states

    def simulate(self, gbar, *, tstop: float, dt: float = 0.05, transient: float = 0.0,
                 record: Sequence[int] | None = None, record_dt: float | None = None,
                 i_inj: float | np.ndarray | Callable = 0.0, noise_std: float = 0.0, seed: int | None = None,
                 v_up: float = 10.0, v_down: float = 0.0, progress: bool = False,
                 max_spikes: int = 4096, method: str = "neuron") -> SimulationResult:
        """Simulate N models at once with a fixed step (vectorised NumPy).

        ``method="neuron"`` (default) is NEURON's scheme (below), identical to the MOD files in
        NEURON up to rounding; ``method="rl2"`` is a second-order exponential (Rush-Larsen)
        midpoint scheme: every variable (V with its chord conductance, [Ca], gates) relaxes
        exponentially to its frozen-coefficient steady state over a half step, the coefficients
        are re-evaluated there and the full step is taken from the start. It costs two
        evaluations per step but is much more accurate at a given dt (use it for datasets).

        ``gbar``: (N, n_g) mS/cm2 (or dicts, see :func:`as_gbar_array`). ``tstop``/``dt``/
        ``transient`` in ms: spikes before ``transient`` are discarded and the returned times are
        relative to it. Scheme per step (as NEURON with ``secondorder = 0``): currents and di/dv at
        the old V, backward-Euler V update, pool update with the old ``ica``, then every gate
        ``x += (1 - exp(-dt/tau)) (x_inf - x)`` with x_inf, tau at the new V and [Ca].
        ``i_inj``: injected current density (uA/cm2, depolarising positive): a number, an (N,)
        array or ``f(t_ms) -> array``. ``noise_std``: white-noise current density (uA/cm2 per
        step, Gaussian, seeded by ``seed``). Spikes: upward crossings of ``v_up`` (mV, time
        linearly interpolated) re-armed once V falls below ``v_down``. ``record``: indices of
        models whose V is returned (sampled every ``record_dt`` ms, default ``dt``).
        """
        g = as_gbar_array(self, gbar) * 1e-3  # S/cm2
        n = g.shape[0]
        fns = self._numpy_functions()
        v, cai, states = self.initial_state(n)
        cap = self.cm * 1e-3 / dt
        powers = [[(fns["slots"].index((ci, gn)), p) for gn, p in c.gates] for ci, c in enumerate(self.conductances)]
        erev = np.array([c.reversal for c in self.conductances])
        is_ca = [c.ion == "ca" for c in self.conductances]
        rng = np.random.default_rng(seed) if noise_std > 0 else None
        nsteps = int(round(tstop / dt))
        n_skip = int(round(transient / dt))
        spikes = np.full((n, max_spikes), np.nan)
        counts = np.zeros(n, dtype=np.int64)
        armed = v < v_down
        rec_idx = np.asarray(record if record is not None else [], dtype=np.int64)
        rec_every = max(1, int(round((record_dt or dt) / dt)))
        rec_v, rec_t = [], []
        diverged = np.zeros(n, dtype=bool)
        iterator = range(nsteps)
        if progress:
            from tqdm.auto import tqdm
            iterator = tqdm(iterator, desc=f"simulate {self.name} x{n}", mininterval=1.0)
        pool = fns["pool"]
        if method not in ("neuron", "rl2"):
            raise ValueError(f"method must be 'neuron' or 'rl2', not {method!r}")

        def gated(ci, states):
            """maximal conductance of channel ci times its gate product (no instantaneous factor)"""
            gk = g[:, ci]
            for s, p in powers[ci]:
                x = states[s]
                gk = gk * (x if p == 1 else x ** p)
            return gk

        def quasi_linear(v, cai, states, t):
            """chord conductance (S/cm2), V_inf (mV), ica (mA/cm2) at a state"""
            g_tot = np.zeros(n)
            ge = np.zeros(n)
            ica = np.zeros(n) if pool is not None else None
            for ci, c in enumerate(self.conductances):
                gk = gated(ci, states)
                f = fns["factors"].get(ci)
                if f is not None:
                    gk = gk * f(v)
                g_tot += gk
                ge += gk * erev[ci]
                if ica is not None and is_ca[ci]:
                    ica += gk * (v - erev[ci])
            i_ext = np.zeros(n)
            if callable(i_inj):
                i_ext = i_ext + np.asarray(i_inj(t), dtype=np.float64) * 1e-3
            elif np.any(i_inj):
                i_ext = i_ext + np.asarray(i_inj, dtype=np.float64) * 1e-3
            if rng is not None:
                i_ext = i_ext + noise[0]
            return g_tot, (ge + i_ext) / g_tot, ica

        def after_step(step, v_old, v):
            """spike detection, recording and the divergence check after a step; returns v (reset where not finite)"""
            self._record_spikes(step, n_skip, v_old, v, dt, transient, v_up, armed, spikes, counts, max_spikes)
            np.logical_or(armed, v < v_down, out=armed)
            if rec_idx.size and (step + 1) % rec_every == 0 and step + 1 >= n_skip:
                rec_v.append(v[rec_idx].copy())
                rec_t.append((step + 1) * dt - transient)
            if step % 2000 == 0:
                bad = ~np.isfinite(v)
                if bad.any():
                    np.logical_or(diverged, bad, out=diverged)
                    v = np.where(bad, self.v_init, v)
            return v

        noise = [None]
        for step in iterator:
            t_mid = (step + 0.5) * dt
            if method == "rl2":
                # exponential (Rush-Larsen) midpoint: second order, every variable relaxes
                # exponentially towards its frozen-coefficient steady state
                if rng is not None:
                    noise[0] = rng.standard_normal(n) * noise_std * 1e-3
                v_old = v
                g1, vinf1, ica1 = quasi_linear(v, cai, states, step * dt)
                v_h = vinf1 + (v - vinf1) * np.exp(-0.5 * dt * g1 / (self.cm * 1e-3))
                cai_h = cai
                if pool is not None:
                    cinf = pool[0](ica1)
                    cai_h = cinf + (cai - cinf) * np.exp(-0.5 * dt / pool[1])
                inf, tau = self._eval_rates(fns, v, cai, states)
                st_h = [inf[s] + (states[s] - inf[s]) * np.exp(-0.5 * dt / tau[s]) for s in range(len(states))]
                g2, vinf2, ica2 = quasi_linear(v_h, cai_h, st_h, t_mid)
                v = vinf2 + (v - vinf2) * np.exp(-dt * g2 / (self.cm * 1e-3))
                if pool is not None:
                    cinf = pool[0](ica2)
                    cai_new = cinf + (cai - cinf) * np.exp(-dt / pool[1])
                inf, tau = self._eval_rates(fns, v_h, cai_h, st_h)
                states = [inf[s] + (states[s] - inf[s]) * np.exp(-dt / tau[s]) for s in range(len(states))]
                if pool is not None:
                    cai = cai_new
                v = after_step(step, v_old, v)
                continue
            i_tot = np.zeros(n)
            g_tot = np.zeros(n)
            ica = np.zeros(n) if pool is not None else None
            for ci, c in enumerate(self.conductances):
                gk = gated(ci, states)
                f = fns["factors"].get(ci)
                if f is not None:
                    # NEURON: di/dv by a 0.001 mV finite difference of the whole current
                    i0 = gk * f(v) * (v - erev[ci])
                    i1 = gk * f(v + 0.001) * (v + 0.001 - erev[ci])
                    i_tot += i0
                    g_tot += (i1 - i0) / 0.001
                    ik = i0
                else:
                    ik = gk * (v - erev[ci])
                    i_tot += ik
                    g_tot += gk
                if ica is not None and is_ca[ci]:
                    ica += ik
            rhs = -i_tot
            if callable(i_inj):
                rhs = rhs + np.asarray(i_inj(t_mid), dtype=np.float64) * 1e-3
            elif np.any(i_inj):
                rhs = rhs + np.asarray(i_inj, dtype=np.float64) * 1e-3
            if rng is not None:
                rhs = rhs + rng.standard_normal(n) * noise_std * 1e-3
            v_old = v
            v = v + rhs / (cap + g_tot)
            if pool is not None:
                inf_c = pool[0](ica)
                cai = cai + (1.0 - np.exp(-dt / pool[1])) * (inf_c - cai)
            inf, tau = self._eval_rates(fns, v, cai, states)
            for s in range(len(states)):
                states[s] = states[s] + (1.0 - np.exp(-dt / tau[s])) * (inf[s] - states[s])
            v = after_step(step, v_old, v)
        diverged |= ~np.isfinite(v)
        counts = np.minimum(counts, max_spikes)
        out = [spikes[k, :counts[k]].copy() for k in range(n)]
        for k in np.nonzero(diverged)[0]:
            out[k] = np.array([])
        return SimulationResult(spikes=out, t=np.array(rec_t) if rec_idx.size else None,
                                v=np.array(rec_v).T if rec_idx.size else None, dt=dt,
                                duration=tstop - transient, diverged=diverged)

    @staticmethod
    def _record_spikes(step, n_skip, v_old, v, dt, transient, v_up, armed, spikes, counts, max_spikes):
        if step + 1 <= n_skip:
            return
        up = armed & (v >= v_up)
        if up.any():
            idx = np.nonzero(up)[0]
            frac = (v_up - v_old[idx]) / (v[idx] - v_old[idx])
            t_cross = (step + frac) * dt - transient
            ok = counts[idx] < max_spikes
            spikes[idx[ok], counts[idx[ok]]] = t_cross[ok]
            counts[idx] += 1
            armed[idx] = False

    # -- NEURON ----------------------------------------------------------------------------------
    def build_neuron(self, h, gbar: Mapping[str, float], *, name: str = "cell", diam: float = 20.0):
        """A NEURON section implementing the model with maximal conductances ``gbar`` (mS/cm2).

        Needs :func:`neuron_hybrid.load_mechanisms` (the generated STG/DA mechanisms). ``cm`` is
        the model's, reversal potentials are set (ionic ones with ``sec.e<ion>``; with a calcium
        pool ``eca`` is kept fixed through ``ion_style``), gbar in S/cm2 = 1e-3 x mS/cm2.
        Returns the section (one segment).
        """
        g = as_gbar_array(self, gbar)[0]
        sec = h.Section(name=name)
        sec.L = sec.diam = diam
        sec.nseg = 1
        sec.cm = self.cm
        for c in self.conductances:
            if isinstance(c.mechanism, LearnedGates):
                raise NotImplementedError("learned gates in NEURON: export them with neuron_hybrid.export")
            sec.insert(c.mechanism.suffix)
        if self.pool is not None:
            sec.insert(self.pool.suffix)
        seg = sec(0.5)
        for c, val in zip(self.conductances, g):
            m = c.mechanism
            setattr(seg, f"{c.gbar_name}_{m.suffix}", float(val) * 1e-3)
            for k, x in c.params.items():
                setattr(seg, f"{k}_{m.suffix}", float(x))
            cur = c._current()
            if cur.ion is None:
                setattr(seg, f"{cur.erev}_{m.suffix}", float(c.reversal))
        for c in self.conductances:
            if c.ion is not None:
                if c.ion == "ca" and self.pool is not None:
                    # cai is a state written by the pool, eca a fixed parameter (not Nernst)
                    h.ion_style("ca_ion", 3, 2, 0, 0, 0, sec=sec)
                setattr(sec, f"e{c.ion}", float(c.reversal))
        if self.pool is not None:
            for k, x in self.pool_params.items():
                setattr(seg, f"{k}_{self.pool.suffix}", float(x))
        return sec

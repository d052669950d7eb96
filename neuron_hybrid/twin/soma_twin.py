"""``SomaTwin``: the soma compartment of a reduced cell in torch, stepped exactly like NEURON.

The compartment is built from a soma description (``neuron_hybrid.reduce.soma.describe_soma``):
its mechanisms come from ``neuron_hybrid.channels`` (the same definitions the MOD files are
generated from), plus an optional learned point current (nA) such as the axial current. One fixed
step dt (ms), as NEURON's ``fadvance`` with ``secondorder = 0``:

1. currents i(v) and conductances di/dv of every mechanism at the old v and states, the learned
   current with its di/dv: sum_k g_k(z) for the conductance form (``conductance_of``), else the
   model's ``conductance``;
2. v_new = v + (i_stim*100/area - i) / (cm*1e-3/dt + di/dv)  (mA/cm2, S/cm2; i_stim in nA is the
   value NEURON's IClamp holds during the step);
3. pools (Ca) advance with the old ionic current, then gates and latents by cnexp at v_new.

Batched over the first dimension (B windows or protocols), float64, differentiable.
"""
from dataclasses import dataclass

import torch

from neuron_hybrid import channels as chlib
from neuron_hybrid.channels import Pool, nernst
from neuron_hybrid.channels.core import cnexp_step


@dataclass
class TwinState:
    """v [B] (mV), gates {suffix: {gate: [B]}}, cai [B] (mM) or None, z [B, K] latents."""

    v: torch.Tensor
    gates: dict
    cai: torch.Tensor
    z: torch.Tensor

    def detach(self):
        return TwinState(self.v.detach(), {s: {g: x.detach() for g, x in d.items()} for s, d in self.gates.items()},
                         None if self.cai is None else self.cai.detach(), None if self.z is None else self.z.detach())

    def index(self, idx):
        """States of a subset (or a time-gathered set) of the batch."""
        return TwinState(self.v[idx], {s: {g: x[idx] for g, x in d.items()} for s, d in self.gates.items()},
                         None if self.cai is None else self.cai[idx], None if self.z is None else self.z[idx])


def _strip(params: dict, suffix: str) -> dict:
    tail = f"_{suffix}"
    return {(k[: -len(tail)] if k.endswith(tail) else k): float(v) for k, v in params.items()}


#: NEURON built-ins: the definition the twin uses for each, and the rate TABLE of the built-in's MOD file
#: (``FROM lo TO hi WITH n``, mV), used while ``usetable_<suffix>`` is 1 (NEURON's default)
BUILTIN_ALIASES = {"hh": ("hh_nh", (-100.0, 100.0, 200))}


class TabulatedRates:
    """A channel whose x_inf and tau are read from NEURON's rate table: the rates at ``n + 1`` voltages from
    ``lo`` to ``hi`` mV, linearly interpolated, the end values beyond them (as nocmodl's TABLE code does).
    Everything else is the wrapped channel's. Built-in hh's 1 mV table moves its spikes by several ms within
    60 ms of firing relative to the exact rates, so the twin must step with the same table."""

    def __init__(self, channel, lo_mV: float, hi_mV: float, n: int):
        self.channel, self.lo, self.hi, self.n = channel, float(lo_mV), float(hi_mV), int(n)
        self._tables = {}  # the table per set of plain-number arguments (celsius, ...): built once, not per step

    def __getattr__(self, name):
        return getattr(self.channel, name)

    def _table(self, kwargs):
        key = tuple(sorted(kwargs.items())) if all(v is None or isinstance(v, (int, float)) for v in kwargs.values()) \
            else None  # tensor arguments (differentiable parameters): rebuilt each call
        if key is not None and key in self._tables:
            return self._tables[key]
        grid = torch.linspace(self.lo, self.hi, self.n + 1, dtype=torch.float64)
        table = {g: tuple(torch.broadcast_to(t, grid.shape) for t in pair)
                 for g, pair in self.channel.rates(grid, **kwargs).items()}
        if key is not None:
            self._tables[key] = table
        return table

    def rates(self, v, **kwargs):
        v = torch.as_tensor(v, dtype=torch.float64)
        x = ((v - self.lo) * (self.n / (self.hi - self.lo))).clamp(0.0, float(self.n))
        i = x.floor().long().clamp(max=self.n - 1)
        theta = x - i
        return {g: tuple(t[i] * (1 - theta) + t[i + 1] * theta for t in pair) for g, pair in self._table(kwargs).items()}

    def steady_state(self, v, **kwargs):
        return {g: xinf for g, (xinf, _) in self.rates(v, **kwargs).items()}

    def time_constant(self, v, **kwargs):
        return {g: tau for g, (_, tau) in self.rates(v, **kwargs).items()}

    def step(self, states, v, dt, **kwargs):
        """One cnexp step of every gate with the tabulated rates (cf. ``Channel.step``)."""
        return {g: cnexp_step(states[g], xinf, tau, dt) for g, (xinf, tau) in self.rates(v, **kwargs).items()}


def _definition(name: str, usetable: dict = None):
    """The twin's definition of the soma mechanism ``name`` (KeyError if ``neuron_hybrid.channels`` lacks it)."""
    if name not in BUILTIN_ALIASES:
        return chlib.get(name)
    alias, table = BUILTIN_ALIASES[name]
    mech = chlib.get(alias)
    return TabulatedRates(mech, *table) if (usetable or {}).get(name, 1.0) else mech


class SomaTwin:
    """Torch model of the soma described by `soma_desc` (dict from describe_soma)."""

    @staticmethod
    def missing_mechanisms(soma_desc: dict) -> list:
        """The soma's mechanisms that have no definition in ``neuron_hybrid.channels`` (the twin needs all)."""
        missing = []
        for name in soma_desc["mechanisms"]:
            try:
                _definition(name)
            except KeyError:
                missing.append(name)
        return missing

    def __init__(self, soma_desc: dict, learned=None):
        self.desc = soma_desc
        self.learned = learned  # a module following the learned-current contract, kind "point" (nA)
        self.area = float(soma_desc["area_um2"])
        self.cm = float(soma_desc["cm_uF_per_cm2"])
        self.celsius = float(soma_desc["celsius_degC"])
        self.channels, self.pools = [], []
        missing = self.missing_mechanisms(soma_desc)
        if missing:
            raise KeyError(f"the soma mechanism(s) {', '.join(map(repr, missing))} have no definition in "
                           "neuron_hybrid.channels; the torch twin needs every somatic mechanism defined there")
        for name, params in soma_desc["mechanisms"].items():
            mech = _definition(name, soma_desc.get("usetable"))
            p = _strip(params, name)
            if isinstance(mech, Pool):
                self.pools.append((mech, p))
            else:
                gbar = p.pop("gbar", None)
                self.channels.append((mech, gbar, p))
        self.ions = soma_desc["ions"]
        self.ca_pool = any(m.ion == "ca" for m, _ in self.pools)
        self.cao = float(self.ions.get("ca", {}).get("cao", 2.0))

    # -- reversal potentials -----------------------------------------------------------------
    def reversals(self, cai):
        e = {}
        for ion in ("na", "k", "ca"):
            vals = self.ions.get(ion, {})
            if f"e{ion}" in vals:
                e[ion] = torch.as_tensor(vals[f"e{ion}"], dtype=torch.float64)
        if self.ca_pool and cai is not None:
            e["ca"] = nernst(cai, self.cao, self.celsius, 2)
        for ion in ("na", "k", "ca"):
            e.setdefault(ion, torch.as_tensor(chlib.default_reversal(ion, self.celsius), dtype=torch.float64))
        return e

    # -- states ------------------------------------------------------------------------------
    def rest_state(self, v, z=None, settle_steps: int = 60, settle_dt_ms: float = 200.0) -> TwinState:
        """Every state at steady state with the membrane held at v [B] mV (gates, Ca pool, latents).

        The pool and gates are relaxed by `settle_steps` large clamped steps, which reaches the
        fixed point NEURON's steady-state initialisation ends in. z defaults to z_inf(v).
        """
        v = torch.as_tensor(v, dtype=torch.float64)
        cai = torch.full_like(v, float(self.ions.get("ca", {}).get("cai", 5e-5))) if self.ca_pool else None
        gates = {m.suffix: m.steady_state(v, celsius=self.celsius, cai=cai if m.uses_cai else None, **p)
                 for m, _, p in self.channels if m.gates}
        if z is None and self.learned is not None and self.learned.n_latent:
            z = self.learned.rates(v)[0]
        st = TwinState(v, gates, cai, z)
        if self.pools:
            for _ in range(settle_steps):
                st = self.step(st, torch.zeros_like(v), settle_dt_ms, v_clamp=v)
        return st

    # -- one step ----------------------------------------------------------------------------
    def membrane(self, st: TwinState):
        """(i mA/cm2, di/dv S/cm2, ica mA/cm2) of the built-in mechanisms at the state."""
        e = self.reversals(st.cai)
        i_tot = torch.zeros_like(st.v)
        g_tot = torch.zeros_like(st.v)
        ica = torch.zeros_like(st.v)
        for m, gbar, p in self.channels:
            gates = st.gates.get(m.suffix, {})
            parts = m.currents_by_variable(st.v, gates, gbar, e, celsius=self.celsius, **p)
            gs = m.conductances(gates, gbar, v=st.v, **p)
            for name, i in parts.items():
                i_tot = i_tot + i
                g_tot = g_tot + gs[name]
                if name == "ica":
                    ica = ica + i
        return i_tot, g_tot, ica

    def learned_current(self, v, z):
        """(i mA/cm2, di/dv S/cm2) of the learned point current (nA, uS) spread over the soma area."""
        if self.learned is None:
            return torch.zeros_like(v), torch.zeros_like(v)
        to_density = 100.0 / self.area  # nA -> mA/cm2 (and uS -> S/cm2 * 1e-?): 1 nA/um2 = 100 mA/cm2
        i = self.learned.current(v, z)
        if hasattr(self.learned, "conductance_of"):  # conductance form: di/dv = sum g_k(z) (uS)
            g = self.learned.conductance_of(z).sum(-1) * torch.ones_like(v)
        else:
            g = self.learned.conductance(v, z)
        return i * to_density, g * to_density

    def step(self, st: TwinState, i_stim_nA, dt: float, v_clamp=None) -> TwinState:
        """Advance one fixed step. With v_clamp [B], v is set to it instead of being solved for."""
        i_m, g_m, ica = self.membrane(st)
        if v_clamp is None:
            i_l, g_l = self.learned_current(st.v, st.z) if self.learned is not None else (0.0, 0.0)
            rhs = i_stim_nA * (100.0 / self.area) - i_m - i_l
            v_new = st.v + rhs / (self.cm * 1e-3 / dt + g_m + g_l)
        else:
            v_new = v_clamp
        cai = st.cai
        for pool, p in self.pools:
            cai = pool.step(cai, ica, dt, **p)
        gates = {m.suffix: m.step(st.gates[m.suffix], v_new, dt, celsius=self.celsius,
                                  cai=cai if m.uses_cai else None, **p)
                 for m, _, p in self.channels if m.gates}
        z = st.z
        if self.learned is not None and self.learned.n_latent:
            zinf, tau = self.learned.rates(v_new)
            z = z + (-torch.expm1(-dt / tau)) * (zinf - z)
        return TwinState(v_new, gates, cai, z)

    def run(self, st: TwinState, i_stim_nA: torch.Tensor, dt: float, v_clamp=None, keep_states: bool = False):
        """Run T steps. i_stim_nA: [B, T] (current during each step); v_clamp: optional [B, T].

        Returns V [B, T+1] (and the list of states if keep_states).
        """
        vs, states = [st.v], [st]
        for n in range(i_stim_nA.shape[1]):
            st = self.step(st, i_stim_nA[:, n], dt, None if v_clamp is None else v_clamp[:, n])
            vs.append(st.v)
            if keep_states:
                states.append(st)
        v = torch.stack(vs, dim=1)
        return (v, states) if keep_states else v

    # -- states along a recorded voltage (teacher forcing) -----------------------------------
    @torch.no_grad()
    def teacher_states(self, v: torch.Tensor, dt: float) -> dict:
        """Gate and pool trajectories when the membrane follows the recorded v [S, T] (mV).

        Gates are driven exactly as in NEURON (cnexp at v[n] after step n), starting from the rest
        state at v[:, 0]; gate recurrences run as scans, the Ca pool sequentially (its current
        depends on eca(cai)). Returns {"gates": {suffix: {gate: [S, T]}}, "cai": [S, T] or None}.
        """
        from neuron_hybrid.train.scan import linear_recurrence

        v = torch.as_tensor(v, dtype=torch.float64)
        rest = self.rest_state(v[:, 0])
        S, T = v.shape

        def scan_gates(m, p, cai):
            r = m.rates(v, celsius=self.celsius, cai=cai if m.uses_cai else None, **p)
            out = {}
            for g, (xinf, tau) in r.items():
                xinf = torch.broadcast_to(xinf, v.shape)
                log_alpha = (-dt / torch.broadcast_to(tau, v.shape)).unsqueeze(-1)
                b = (-torch.expm1(log_alpha)) * xinf.unsqueeze(-1)
                x0 = rest.gates[m.suffix][g].reshape(S, 1)
                x = linear_recurrence(log_alpha[:, 1:], b[:, 1:], x0)[..., 0]
                out[g] = torch.cat([x0, x], dim=1)
            return out

        gates = {}
        for m, _, p in self.channels:
            if m.gates and not m.uses_cai:
                if getattr(m, "coupled", False):
                    raise NotImplementedError(f"{m.suffix}: coupled (kinetic-scheme) gates are not supported here")
                gates[m.suffix] = scan_gates(m, p, None)
        cai = None
        if self.ca_pool:
            cai_list = [rest.cai]
            c = rest.cai
            ca_channels = [(m, gbar, p) for m, gbar, p in self.channels if not m.uses_cai]
            for n in range(T - 1):
                e = self.reversals(c)
                ica = torch.zeros(S, dtype=torch.float64)
                for m, gbar, p in ca_channels:
                    st = {g: x[:, n] for g, x in gates.get(m.suffix, {}).items()}
                    parts = m.currents_by_variable(v[:, n], st, gbar, e, celsius=self.celsius, **p)
                    if "ica" in parts:
                        ica = ica + parts["ica"]
                for pool, pp in self.pools:
                    c = pool.step(c, ica, dt, **pp)
                cai_list.append(c)
            cai = torch.stack(cai_list, dim=1)
        for m, _, p in self.channels:
            if m.gates and m.uses_cai:
                gates[m.suffix] = scan_gates(m, p, cai)
        return {"gates": gates, "cai": cai}

    def state_at(self, traj: dict, v: torch.Tensor, rows, cols, z=None) -> TwinState:
        """The TwinState of samples (rows, cols) of a teacher_states trajectory and voltage v [S, T]."""
        gates = {s: {g: x[rows, cols] for g, x in d.items()} for s, d in traj["gates"].items()}
        cai = None if traj["cai"] is None else traj["cai"][rows, cols]
        return TwinState(v[rows, cols], gates, cai, z)

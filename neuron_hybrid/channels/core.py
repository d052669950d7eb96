"""The channel definition language: one symbolic definition, many numerical forms.

A :class:`Channel` is one NEURON density mechanism (one ``SUFFIX``). It is made of

* :class:`Gate` objects: a gating variable ``x`` with ``dx/dt = (x_inf - x)/tau_x``. Each gate is
  given either by opening/closing rates (``Gate.from_rates``: ``x_inf = a/(a+b)``,
  ``tau_x = tau_scale/(a+b)``) or directly by ``x_inf`` and ``tau_x`` (``Gate.from_inf_tau``).
  The expressions are sympy expressions of the module-level symbols :data:`V` (membrane
  potential, mV), :data:`CELSIUS` (degC), :data:`CAI` (intracellular Ca, mM) and of the channel's
  :class:`Parameter` symbols. Rates are in 1/ms, time constants in ms.
* :class:`Current` objects: ``i = gbar * prod(x**p) * (v - e)`` in mA/cm2 (outward positive),
  with ``gbar`` a parameter in S/cm2 and ``e`` either the ion's reversal potential (``ena``,
  ``ek``, ``eca``, read from NEURON) or a parameter of the mechanism (nonspecific currents).
* :class:`Parameter` objects: PARAMETERs of the mechanism, RANGE or GLOBAL.

A :class:`Pool` is the escape hatch for concentration mechanisms (e.g. Hay's ``CaDynamics_E2``):
its state obeys a first-order ODE that is linear in the state, written as one sympy expression.

From the same definition the package generates the NMODL text (:meth:`Channel.mod_text`) and
elementwise float64 torch functions (:meth:`Channel.steady_state`, :meth:`Channel.time_constant`,
:meth:`Channel.current`, :meth:`Channel.step`, ...). The torch side is obtained with
``sympy.lambdify`` and uses exactly the same arithmetic as the MOD side (same constants, same
order of the ``a/(a+b)`` and ``tau_scale/(a+b)`` operations, same 0/0 guard), so the two agree to
rounding (~1e-15 relative) wherever the functions are well conditioned.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import sympy
from sympy.printing.pytorch import TorchPrinter
import torch

__all__ = [
    "V", "CELSIUS", "CAI", "FARADAY", "FARADAY_VALUE", "GAS_CONSTANT_VALUE",
    "vtrap", "vtrap_torch", "Parameter", "Gate", "Current", "Channel", "Pool",
    "cnexp_step", "nernst", "DEFAULT_REVERSAL",
]

DTYPE = torch.float64

#: membrane potential (mV)
V = sympy.Symbol("v", real=True)
#: temperature (degC), NEURON's ``celsius``
CELSIUS = sympy.Symbol("celsius", real=True)
#: intracellular calcium concentration (mM), NEURON's ``cai``
CAI = sympy.Symbol("cai", positive=True)
#: Faraday constant symbol; NMODL: ``FARADAY = (faraday) (coulombs)``
FARADAY = sympy.Symbol("FARADAY", positive=True)

#: NEURON 9 values (CODATA 2018), C/mol and J/(K mol)
FARADAY_VALUE = 96485.33212331001
GAS_CONSTANT_VALUE = 8.31446261815324

#: NEURON's default reversal potentials (mV) for ions whose concentrations are not modelled.
#: ``eca`` is computed by NEURON from cai0 = 5e-5 mM and cao0 = 2 mM with the Nernst equation
#: (it depends on celsius); see :func:`nernst`.
DEFAULT_REVERSAL = {"na": 50.0, "k": -77.0}
DEFAULT_CAI = 5e-5  # mM, NEURON's cai0_ca_ion
DEFAULT_CAO = 2.0  # mM, NEURON's cao0_ca_ion
DEFAULT_CELSIUS = 6.3  # degC, NEURON's default


# ---------------------------------------------------------------------------------------------
# guarded functions shared by the MOD and torch sides
# ---------------------------------------------------------------------------------------------
VTRAP_EPS = 1e-6


class vtrap(sympy.Function):
    """``vtrap(x, y) = x / (exp(x/y) - 1)`` with the 0/0 limit handled.

    Same guard as NEURON's built-in ``hh.mod``: if ``|x/y| < 1e-6`` the first-order expansion
    ``y*(1 - x/y/2)`` is used. ``x`` in mV, ``y`` in mV; the result is in mV. Typical use:
    ``a*(v - v0)/(1 - exp(-(v - v0)/k)) == a*vtrap(-(v - v0), k)``.
    """

    nargs = 2

    def fdiff(self, argindex=1):
        x, y = self.args
        e = sympy.exp(x / y)
        if argindex == 1:
            return (e - 1 - x / y * e) / (e - 1) ** 2
        if argindex == 2:
            return x**2 / y**2 * e / (e - 1) ** 2
        raise sympy.ArgumentIndexError(self, argindex)

    def _eval_rewrite_as_exp(self, x, y, **kwargs):
        return x / (sympy.exp(x / y) - 1)


def vtrap_torch(x, y):
    """Torch version of :class:`vtrap` (float64, elementwise, gradient-safe at the singularity)."""
    x = torch.as_tensor(x, dtype=DTYPE)
    y = torch.as_tensor(y, dtype=DTYPE)
    small = torch.abs(x / y) < VTRAP_EPS
    # evaluate the regular branch on a safe argument so that gradients stay finite (double-where)
    x_safe = torch.where(small, y, x)
    regular = x_safe / (torch.exp(x_safe / y) - 1)
    limit = y * (1 - x / y / 2)
    return torch.where(small, limit, regular)


VTRAP_NMODL = """FUNCTION vtrap(x, y) {
    : x/(exp(x/y) - 1) with the 0/0 limit (same guard as NEURON's hh.mod)
    if (fabs(x/y) < 1e-6) {
        vtrap = y*(1 - x/y/2)
    } else {
        vtrap = x/(exp(x/y) - 1)
    }
}"""

#: sympy function class -> (NMODL FUNCTION text, torch implementation)
SPECIAL_FUNCTIONS: dict[type, tuple[str, Callable]] = {vtrap: (VTRAP_NMODL, vtrap_torch)}


# ---------------------------------------------------------------------------------------------
# torch helpers
# ---------------------------------------------------------------------------------------------
def _t(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x if x.dtype == DTYPE else x.to(DTYPE)
    return torch.as_tensor(x, dtype=DTYPE)


def cnexp_step(x, x_inf, tau, dt):
    """One ``METHOD cnexp`` update as generated by NEURON's nocmodl.

    ``x <- x + (1 - exp(-dt/tau)) * (x_inf - x)``, with ``dt`` and ``tau`` in ms. Exact for
    ``dx/dt = (x_inf - x)/tau`` with ``x_inf`` and ``tau`` frozen during the step.
    """
    x = _t(x)
    return x + (1.0 - torch.exp(_t(dt) * (-1.0 / _t(tau)))) * (_t(x_inf) - x)


def nernst(c_in, c_out, celsius=DEFAULT_CELSIUS, valence=2):
    """Nernst reversal potential (mV) as NEURON computes it: ``1000 R T/(z F) ln(c_out/c_in)``.

    Concentrations in mM (any consistent unit), ``celsius`` in degC.
    """
    ktf = 1000.0 * GAS_CONSTANT_VALUE * (_t(celsius) + 273.15) / FARADAY_VALUE
    return ktf / valence * torch.log(_t(c_out) / _t(c_in))


class _FullPrecisionTorchPrinter(TorchPrinter):
    """TorchPrinter that writes floats as their shortest round-trip repr (as the NMODL printer)."""

    def _print_Float(self, expr):
        return repr(float(expr))

    def _print_Function(self, expr):
        if type(expr) in SPECIAL_FUNCTIONS:
            return "%s(%s)" % (type(expr).__name__, ", ".join(self._print(a) for a in expr.args))
        return super()._print_Function(expr)

    _print_Expr = _print_Function
    _print_Application = _print_Function


def _lambdify(args: Sequence[sympy.Symbol], expr: sympy.Expr) -> Callable:
    namespace = {cls.__name__: impl for cls, (_, impl) in SPECIAL_FUNCTIONS.items()}
    return sympy.lambdify(list(args), expr, modules=[namespace, "torch"],
                          printer=_FullPrecisionTorchPrinter, cse=False)


def _as_expr(x) -> sympy.Expr:
    return sympy.sympify(x)


# ---------------------------------------------------------------------------------------------
# definition objects
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Parameter:
    """A mechanism PARAMETER.

    ``scope`` is ``"range"`` (per segment, ``seg.<name>_<suffix>``) or ``"global"``
    (``h.<name>_<suffix>``). ``unit`` is the NMODL unit string, e.g. ``"S/cm2"``, ``"mV"``.
    """

    name: str
    default: float
    unit: str = "1"
    scope: str = "range"
    doc: str = ""

    def __post_init__(self):
        if self.scope not in ("range", "global"):
            raise ValueError(f"scope must be 'range' or 'global', not {self.scope!r}")

    @property
    def symbol(self) -> sympy.Symbol:
        return sympy.Symbol(self.name, real=True)


@dataclass(frozen=True)
class Gate:
    """A gating variable with ``dx/dt = (inf - x)/tau``.

    ``inf`` (dimensionless) and ``tau`` (ms) are sympy expressions of :data:`V`, :data:`CELSIUS`,
    :data:`CAI`, parameter symbols and the gate's ``locals``: an ordered tuple of
    ``(name, expression)`` intermediate quantities (e.g. the rates ``alpha`` and ``beta`` in 1/ms)
    that become ``LOCAL`` variables in NMODL. ``alpha``/``beta`` are used by the constructors.

    Coupled gates (kinetic schemes such as C <-> O <-> I): ``inf`` and ``tau`` may use the state
    symbols of the other gates of the same channel (:meth:`Channel.state_symbol`), so that
    ``dx/dt = (inf - x)/tau`` is the scheme's linear ODE for ``x`` at frozen other states. Such
    gates need ``steady``: the closed-form steady state of the whole scheme (a function of v,
    celsius, cai and parameters only), used in INITIAL, by :meth:`Channel.steady_state` and by the
    DIC toolkit. ``steady`` may also be given for ordinary gates (it must then equal ``inf``).
    """

    name: str
    inf: sympy.Expr
    tau: sympy.Expr
    locals: tuple[tuple[str, sympy.Expr], ...] = ()
    doc: str = ""
    steady: sympy.Expr | None = None

    @staticmethod
    def local(name: str) -> sympy.Symbol:
        """The symbol to use in ``inf``/``tau`` for the local quantity ``name``."""
        return sympy.Symbol("_local_" + name, real=True)

    @classmethod
    def from_rates(cls, name: str, alpha, beta, tau_scale=1, doc: str = "") -> "Gate":
        """Gate from opening/closing rates (1/ms): ``inf = a/(a+b)``, ``tau = tau_scale/(a+b)``.

        ``tau_scale`` is dimensionless (e.g. ``1/q10`` or ``1/qt``).
        """
        a, b = cls.local("alpha"), cls.local("beta")
        return cls(name, a / (a + b), _as_expr(tau_scale) / (a + b),
                   (("alpha", _as_expr(alpha)), ("beta", _as_expr(beta))), doc)

    @classmethod
    def from_inf_tau(cls, name: str, inf, tau, locals: Mapping[str, object] | None = None,
                     doc: str = "", steady=None) -> "Gate":
        """Gate from ``inf`` (dimensionless) and ``tau`` (ms); ``locals`` and ``steady`` as in the
        class doc."""
        loc = tuple((k, _as_expr(e)) for k, e in (locals or {}).items())
        return cls(name, _as_expr(inf), _as_expr(tau), loc, doc,
                   None if steady is None else _as_expr(steady))

    @property
    def substituted_inf(self) -> sympy.Expr:
        """``inf`` with the locals substituted: a closed form in v, celsius, cai, parameters."""
        return self._substitute(self.inf)

    @property
    def substituted_tau(self) -> sympy.Expr:
        """``tau`` (ms) with the locals substituted."""
        return self._substitute(self.tau)

    def _substitute(self, expr):
        for name, e in reversed(self.locals):
            expr = expr.subs(self.local(name), e)
        return expr

    def free_symbols(self) -> set[sympy.Symbol]:
        syms = set(self.inf.free_symbols) | set(self.tau.free_symbols)
        if self.steady is not None:
            syms |= self.steady.free_symbols
        for _, e in self.locals:
            syms |= e.free_symbols
        return {s for s in syms if not s.name.startswith("_local_")}

    @property
    def substituted_steady(self) -> sympy.Expr:
        """The steady state (closed form): ``steady`` if given, else ``inf`` with locals substituted."""
        return self.steady if self.steady is not None else self.substituted_inf


@dataclass(frozen=True)
class Current:
    """``i = gbar * prod(gate**power) * (v - e)`` in mA/cm2, outward positive.

    ``ion`` is ``"na"``, ``"k"``, ``"ca"`` (then ``e`` is ``e<ion>`` read from NEURON and the
    current variable is ``i<ion>``), or ``None`` for a NONSPECIFIC_CURRENT named ``name`` whose
    reversal potential is the mechanism parameter ``erev``. ``gbar`` names the S/cm2 parameter;
    ``g`` optionally names an ASSIGNED RANGE variable holding the conductance ``gbar*prod(x**p)``
    (S/cm2). ``factor`` is an optional instantaneous dimensionless factor, a sympy expression of
    :data:`V` and parameters (e.g. the Mg2+ block of an NMDA conductance):
    ``i = gbar * factor(v) * prod(x**p) * (v - e)``.
    """

    gbar: str
    gates: tuple[tuple[str, int], ...] = ()
    ion: str | None = None
    name: str | None = None
    erev: str | None = None
    g: str | None = None
    factor: sympy.Expr | None = None

    def __post_init__(self):
        if self.ion is None and (self.name is None or self.erev is None):
            raise ValueError("a nonspecific current needs `name` and `erev`")
        if self.ion is not None and self.ion not in ("na", "k", "ca"):
            raise ValueError(f"unsupported ion {self.ion!r}")

    @property
    def variable(self) -> str:
        """NMODL name of the current variable (``ina``, ``ik``, ``ica`` or the nonspecific name)."""
        return f"i{self.ion}" if self.ion else self.name

    @property
    def reversal(self) -> str:
        """NMODL name of the reversal potential (``ena``... or the parameter name)."""
        return f"e{self.ion}" if self.ion else self.erev


def _broadcast(value, like: torch.Tensor) -> torch.Tensor:
    value = _t(value)
    if value.shape == like.shape:
        return value
    return value + torch.zeros_like(like)


@dataclass(frozen=True, eq=False)
class Channel:
    """One NEURON density mechanism defined once; see the module docstring.

    Attributes: ``suffix`` (NMODL SUFFIX), ``gates`` (tuple of :class:`Gate`), ``currents``
    (tuple of :class:`Current`), ``parameters`` (tuple of :class:`Parameter`), ``doc``,
    ``inf_name``/``tau_name`` (format strings for the RANGE variables holding x_inf and tau in
    the MOD file, e.g. ``"{}inf"`` gives ``minf``), ``builtin`` (True for NEURON built-ins such
    as ``pas`` that are not generated), ``reference`` (citation text for the MOD header).
    """

    suffix: str
    gates: tuple[Gate, ...]
    currents: tuple[Current, ...]
    parameters: tuple[Parameter, ...] = ()
    doc: str = ""
    inf_name: str = "{}inf"
    tau_name: str = "{}tau"
    builtin: bool = False
    reference: str = ""
    _compiled: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        names = [g.name for g in self.gates]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.suffix}: duplicate gate names")
        pnames = {p.name for p in self.parameters}
        for c in self.currents:
            for gname, power in c.gates:
                if gname not in names:
                    raise ValueError(f"{self.suffix}: current uses unknown gate {gname!r}")
                if int(power) != power or power < 1:
                    raise ValueError(f"{self.suffix}: gate powers must be positive integers")
            if c.gbar not in pnames:
                raise ValueError(f"{self.suffix}: gbar parameter {c.gbar!r} not declared")
            if c.ion is None and c.erev not in pnames:
                raise ValueError(f"{self.suffix}: reversal parameter {c.erev!r} not declared")
        allowed = {V, CELSIUS, CAI} | {p.symbol for p in self.parameters}
        states = {self.state_symbol(n) for n in names}
        for g in self.gates:
            extra = g.free_symbols() - allowed - states
            if extra:
                raise ValueError(f"{self.suffix}.{g.name}: undeclared symbols {sorted(map(str, extra))}")
            if g.steady is not None and g.steady.free_symbols & states:
                raise ValueError(f"{self.suffix}.{g.name}: `steady` must not depend on gate states")
            coupled = (g.free_symbols() - {self.state_symbol(g.name)}) & states
            for s_ in coupled:
                if self.gate(s_.name).steady is None:
                    raise ValueError(f"{self.suffix}.{g.name} depends on gate {s_.name}, which needs a "
                                     "closed-form `steady` expression")
            if self.state_symbol(g.name) in g.free_symbols():
                raise ValueError(f"{self.suffix}.{g.name}: inf/tau must not depend on the gate itself")
        for c in self.currents:
            if c.factor is not None:
                extra = set(sympy.sympify(c.factor).free_symbols) - allowed
                if extra:
                    raise ValueError(f"{self.suffix}: current factor uses undeclared symbols "
                                     f"{sorted(map(str, extra))}")

    # -- description ---------------------------------------------------------------------------
    @staticmethod
    def state_symbol(name: str) -> sympy.Symbol:
        """The sympy symbol of gate ``name``'s state, for use in coupled gates' ``inf``/``tau``."""
        return sympy.Symbol(name, real=True)

    @property
    def coupled(self) -> bool:
        """True if some gate's inf/tau depends on another gate's state (kinetic scheme)."""
        if "coupled" not in self._compiled:
            states = {self.state_symbol(g.name) for g in self.gates}
            self._compiled["coupled"] = any(g.free_symbols() & states for g in self.gates)
        return self._compiled["coupled"]

    @property
    def gate_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.gates)

    @property
    def gate_powers(self) -> dict[str, dict[str, int]]:
        """``{current variable: {gate: power}}``, e.g. ``{"ina": {"m": 3, "h": 1}}``."""
        return {c.variable: dict(c.gates) for c in self.currents}

    @property
    def powers(self) -> dict[str, int]:
        """``{gate: exponent}`` in the order of :attr:`gates` (e.g. ``{"m": 3, "h": 1}``)."""
        out: dict[str, int] = {}
        for c in self.currents:
            for gname, p in c.gates:
                if out.setdefault(gname, int(p)) != int(p):
                    raise ValueError(f"{self.suffix}: gate {gname} has different powers; use gate_powers")
        return {g.name: out[g.name] for g in self.gates if g.name in out}

    def gate(self, name: str) -> Gate:
        for g in self.gates:
            if g.name == name:
                return g
        raise KeyError(name)

    @property
    def ions(self) -> tuple[str, ...]:
        """Ions whose currents the mechanism writes."""
        return tuple(dict.fromkeys(c.ion for c in self.currents if c.ion))

    def _free_symbols(self) -> set:
        if "free" not in self._compiled:
            self._compiled["free"] = set().union(*(g.free_symbols() for g in self.gates))
        return self._compiled["free"]

    @property
    def uses_celsius(self) -> bool:
        """True if a gate depends on temperature (the MOD file reads ``celsius``)."""
        return CELSIUS in self._free_symbols()

    @property
    def uses_cai(self) -> bool:
        """True if a gate depends on ``cai`` (the MOD file has ``USEION ca READ cai``)."""
        return CAI in self._free_symbols()

    @property
    def defaults(self) -> dict[str, float]:
        """Default parameter values ``{name: value}`` (units as declared)."""
        return {p.name: p.default for p in self.parameters}

    @property
    def gbar_names(self) -> tuple[str, ...]:
        return tuple(c.gbar for c in self.currents)

    def mod_text(self) -> str:
        """The NMODL source of this mechanism (THREADSAFE, cnexp, steady-state INITIAL)."""
        from .nmodl import channel_mod_text

        return channel_mod_text(self)

    # -- torch evaluation ----------------------------------------------------------------------
    def _arg_symbols(self) -> list[sympy.Symbol]:
        return ([V, CELSIUS, CAI] + [p.symbol for p in self.parameters]
                + [self.state_symbol(g.name) for g in self.gates])

    def _steady_function(self, gate: Gate):
        key = ("steady", gate.name)
        if key not in self._compiled:
            self._compiled[key] = _lambdify(self._arg_symbols(), gate.substituted_steady)
        return self._compiled[key]

    def _factor_function(self, current: "Current"):
        key = ("factor", current.variable)
        if key not in self._compiled:
            self._compiled[key] = _lambdify(self._arg_symbols(), sympy.sympify(current.factor))
        return self._compiled[key]

    def _gate_functions(self, gate: Gate):
        key = ("gate", gate.name)
        if key not in self._compiled:
            base = self._arg_symbols()
            local_syms = [gate.local(n) for n, _ in gate.locals]
            fl = [_lambdify(base + local_syms[:k], e) for k, (_, e) in enumerate(gate.locals)]
            finf = _lambdify(base + local_syms, gate.inf)
            ftau = _lambdify(base + local_syms, gate.tau)
            self._compiled[key] = (fl, finf, ftau)
        return self._compiled[key]

    def _args(self, v, celsius, cai, params: Mapping[str, object], states=None):
        unknown = set(params) - {p.name for p in self.parameters}
        if unknown:
            raise TypeError(f"{self.suffix}: unknown parameters {sorted(unknown)}")
        v = _t(v)
        if cai is None:
            if self.uses_cai:
                raise TypeError(f"{self.suffix} depends on cai: pass cai (mM)")
            cai = DEFAULT_CAI
        vals = [v, _t(celsius), _t(cai)]
        vals += [_t(params.get(p.name, p.default)) for p in self.parameters]
        if not self.coupled:
            return v, vals + [_t(0.0)] * len(self.gates)
        if states is None:  # coupled gates at the scheme's steady state
            zero = [_t(0.0)] * len(self.gates)
            states = {g.name: self._steady_function(g)(*vals, *zero) for g in self.gates}
        return v, vals + [_t(states[g.name]) for g in self.gates]

    def rate_locals(self, v, *, celsius=DEFAULT_CELSIUS, cai=None, **params) -> dict[str, dict[str, torch.Tensor]]:
        """The intermediate quantities of every gate, ``{gate: {local: tensor}}``.

        For rate-form gates these are ``alpha`` and ``beta`` in 1/ms.
        """
        v, args = self._args(v, celsius, cai, params)
        out = {}
        for g in self.gates:
            fl, _, _ = self._gate_functions(g)
            vals = []
            for f in fl:
                vals.append(_broadcast(f(*args, *vals), v))
            out[g.name] = {n: x for (n, _), x in zip(g.locals, vals)}
        return out

    def rates(self, v, *, celsius=DEFAULT_CELSIUS, cai=None, states=None, gates=None,
              **params) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{gate: (x_inf, tau_ms)}`` at membrane potential ``v`` (mV), float64 tensors.

        ``celsius`` in degC (only mechanisms that read it use it), ``cai`` in mM (required for
        calcium-dependent gates), ``params`` override parameter defaults (tensors allowed, they
        broadcast elementwise and are differentiable). ``states`` (``{gate: value}``) is used only
        by coupled channels (kinetic schemes), whose x_inf depends on the other states; it
        defaults to the scheme's steady state at ``v``. ``gates`` (names) limits the result to those
        gates (default: all).
        """
        v, args = self._args(v, celsius, cai, params, states)
        out = {}
        for g in self.gates:
            if gates is not None and g.name not in gates:
                continue
            fl, finf, ftau = self._gate_functions(g)
            vals = []
            for f in fl:
                vals.append(f(*args, *vals))
            out[g.name] = (_broadcast(finf(*args, *vals), v), _broadcast(ftau(*args, *vals), v))
        return out

    def steady_state(self, v, *, celsius=DEFAULT_CELSIUS, cai=None, **params) -> dict[str, torch.Tensor]:
        """``{gate: x_inf(v)}`` (dimensionless); arguments as in :meth:`rates`.

        For coupled gates this is the closed-form steady state of the scheme (``Gate.steady``).
        """
        if not self.coupled and not any(g.steady is not None for g in self.gates):
            return {k: a for k, (a, _) in self.rates(v, celsius=celsius, cai=cai, **params).items()}
        v, args = self._args(v, celsius, cai, params)
        return {g.name: _broadcast(self._steady_function(g)(*args), v) for g in self.gates}

    def time_constant(self, v, *, celsius=DEFAULT_CELSIUS, cai=None, **params) -> dict[str, torch.Tensor]:
        """``{gate: tau_x(v)}`` in ms; arguments as in :meth:`rates`."""
        return {k: b for k, (_, b) in self.rates(v, celsius=celsius, cai=cai, **params).items()}

    def step(self, states: Mapping[str, torch.Tensor], v, dt, *, celsius=DEFAULT_CELSIUS, cai=None,
             **params) -> dict[str, torch.Tensor]:
        """Advance every gate by one cnexp step of ``dt`` ms with x_inf/tau evaluated at ``v``
        (NEURON evaluates them at the new membrane potential, after the voltage update)."""
        r = self.rates(v, celsius=celsius, cai=cai, states=states if self.coupled else None, **params)
        return {k: cnexp_step(states[k], xi, tau, dt) for k, (xi, tau) in r.items()}

    def _gbar_of(self, c: Current, gbar, params) -> torch.Tensor:
        if gbar is None:
            val = params.get(c.gbar, self.defaults[c.gbar])
        elif isinstance(gbar, Mapping):
            val = gbar.get(c.gbar, params.get(c.gbar, self.defaults[c.gbar]))
        else:
            if len(self.currents) != 1:
                raise TypeError(f"{self.suffix} has several currents: pass gbar as a dict "
                                f"keyed by {list(self.gbar_names)}")
            val = gbar
        return _t(val)

    def _erev_of(self, c: Current, e_rev, params, celsius) -> torch.Tensor:
        if c.ion is None:
            if isinstance(e_rev, Mapping) and c.erev in e_rev:
                return _t(e_rev[c.erev])
            return _t(params.get(c.erev, self.defaults[c.erev]))
        if e_rev is None:
            return _t(default_reversal(c.ion, celsius))
        if isinstance(e_rev, Mapping):
            for key in (c.ion, c.reversal):
                if key in e_rev:
                    return _t(e_rev[key])
            return _t(default_reversal(c.ion, celsius))
        if len(self.ions) != 1:
            raise TypeError(f"{self.suffix} uses several ions: pass e_rev as a dict keyed by ion")
        return _t(e_rev)

    def conductances(self, states: Mapping[str, torch.Tensor], gbar=None, v=None,
                     **params) -> dict[str, torch.Tensor]:
        """``{current variable: gbar*factor(v)*prod(x**p)}`` in S/cm2 (chord conductances).

        ``gbar``: a number/tensor (single-current channels) or a dict ``{gbar name: value}``;
        missing values fall back to ``params`` then the defaults. ``v`` (mV) is needed only by
        currents with an instantaneous ``factor``.
        """
        out = {}
        for c in self.currents:
            g = self._gbar_of(c, gbar, params)
            for gname, p in c.gates:
                g = g * _t(states[gname]) ** int(p)
            if c.factor is not None:
                if v is None:
                    raise TypeError(f"{self.suffix}: current {c.variable} has a voltage-dependent "
                                    "factor; pass v (mV)")
                _, args = self._args(v, DEFAULT_CELSIUS, None, params)
                g = g * self._factor_function(c)(*args)
            out[c.variable] = g
        return out

    def currents_by_variable(self, v, states: Mapping[str, torch.Tensor], gbar=None, e_rev=None, *,
                             celsius=DEFAULT_CELSIUS, **params) -> dict[str, torch.Tensor]:
        """``{current variable: i}`` in mA/cm2 (outward positive), e.g. ``{"ina": ..., "ik": ...}``.

        ``e_rev``: reversal potential(s) in mV for ionic currents, a number (single-ion channels)
        or a dict keyed by ion (``"na"``) or by reversal name (``"ena"``); defaults are NEURON's
        (ena 50, ek -77, eca Nernst at cai0/cao0 and ``celsius``). Nonspecific currents use the
        reversal parameter (e.g. ``el``, ``ehcn``), overridable through ``params``.
        """
        v = _t(v)
        g = self.conductances(states, gbar, v=v, **params)
        return {c.variable: g[c.variable] * (v - self._erev_of(c, e_rev, params, celsius))
                for c in self.currents}

    def current(self, v, states: Mapping[str, torch.Tensor], gbar=None, e_rev=None, *,
                celsius=DEFAULT_CELSIUS, **params) -> torch.Tensor:
        """Total current density of the mechanism in mA/cm2 (outward positive).

        ``v`` in mV, ``states`` ``{gate: value}``, ``gbar`` in S/cm2, ``e_rev`` in mV; see
        :meth:`currents_by_variable` and :meth:`conductances`.
        """
        parts = self.currents_by_variable(v, states, gbar, e_rev, celsius=celsius, **params)
        total = None
        for x in parts.values():
            total = x if total is None else total + x
        return total

    def conductance(self, states: Mapping[str, torch.Tensor], gbar=None, v=None, **params) -> torch.Tensor:
        """Total chord conductance at fixed gates, in S/cm2 (``di/dv`` unless a current has a
        voltage-dependent ``factor``)."""
        total = None
        for x in self.conductances(states, gbar, v=v, **params).values():
            total = x if total is None else total + x
        return total

    def __repr__(self):
        return f"Channel({self.suffix!r}, gates={self.gate_names})"


def default_reversal(ion: str, celsius=DEFAULT_CELSIUS):
    """NEURON's default reversal potential (mV) of ``ion`` when concentrations are untouched."""
    if ion == "ca":
        return nernst(DEFAULT_CAI, DEFAULT_CAO, celsius, 2)
    return DEFAULT_REVERSAL[ion]


@dataclass(frozen=True, eq=False)
class Pool:
    """A concentration mechanism: one STATE obeying ``d state/dt = derivative``.

    ``derivative`` is a sympy expression (concentration per ms) that must be linear in the state
    symbol (so that ``METHOD cnexp`` is exact); it may use the ion current symbol (``ica``, in
    mA/cm2), the :data:`FARADAY` symbol and the parameter symbols. NMODL: ``USEION <ion> READ
    <current> WRITE <state>``. If ``initial`` is None the MOD file has no INITIAL statement, so
    the state starts at NEURON's ion default (``cai0_ca_ion``), as in Hay et al. 2011.
    """

    suffix: str
    ion: str
    state: str
    derivative: sympy.Expr
    parameters: tuple[Parameter, ...] = ()
    state_unit: str = "mM"
    initial: sympy.Expr | None = None
    doc: str = ""
    reference: str = ""
    builtin: bool = False
    _compiled: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def state_symbol(self) -> sympy.Symbol:
        return CAI if self.state == "cai" else sympy.Symbol(self.state, positive=True)

    @property
    def current_symbol(self) -> sympy.Symbol:
        return sympy.Symbol(f"i{self.ion}", real=True)

    @property
    def defaults(self) -> dict[str, float]:
        return {p.name: p.default for p in self.parameters}

    def __post_init__(self):
        x = self.state_symbol
        b = sympy.diff(self.derivative, x)
        if x in b.free_symbols:
            raise ValueError(f"{self.suffix}: derivative must be linear in {self.state}")
        allowed = {x, self.current_symbol, FARADAY} | {p.symbol for p in self.parameters}
        extra = self.derivative.free_symbols - allowed
        if extra:
            raise ValueError(f"{self.suffix}: undeclared symbols {sorted(map(str, extra))}")

    def mod_text(self) -> str:
        from .nmodl import pool_mod_text

        return pool_mod_text(self)

    def _functions(self):
        if not self._compiled:
            x = self.state_symbol
            b = sympy.diff(self.derivative, x)
            a = sympy.expand(self.derivative - b * x)
            args = [self.current_symbol, FARADAY] + [p.symbol for p in self.parameters]
            self._compiled["inf"] = _lambdify(args, -a / b)
            self._compiled["tau"] = _lambdify(args, -1 / b)
            self._compiled["deriv"] = _lambdify([x] + args, self.derivative)
        return self._compiled

    def _args(self, current, params):
        unknown = set(params) - {p.name for p in self.parameters}
        if unknown:
            raise TypeError(f"{self.suffix}: unknown parameters {sorted(unknown)}")
        return [_t(current), _t(FARADAY_VALUE)] + [_t(params.get(p.name, p.default)) for p in self.parameters]

    def derivative_value(self, state, current, **params) -> torch.Tensor:
        """d state/dt (state unit per ms) for ion current density ``current`` (mA/cm2)."""
        return self._functions()["deriv"](_t(state), *self._args(current, params))

    def steady_state(self, current, **params) -> torch.Tensor:
        """State value at which the derivative vanishes for a fixed current (mA/cm2)."""
        c = _t(current)
        return _broadcast(self._functions()["inf"](*self._args(c, params)), c)

    def time_constant(self, current, **params) -> torch.Tensor:
        """Relaxation time constant (ms) of the linear ODE."""
        c = _t(current)
        return _broadcast(self._functions()["tau"](*self._args(c, params)), c)

    def step(self, state, current, dt, **params) -> torch.Tensor:
        """One cnexp step (exact for the linear ODE at frozen current), ``dt`` in ms."""
        return cnexp_step(state, self.steady_state(current, **params),
                          self.time_constant(current, **params), dt)

    def __repr__(self):
        return f"Pool({self.suffix!r}, state={self.state!r})"

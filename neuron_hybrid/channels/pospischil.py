"""Pospischil et al. (2008) cortical channels: ``na_pos``, ``kdr_pos``, ``km_pos``.

Minimal Hodgkin-Huxley type models of cortical and thalamic neurons (Biol Cybern 99:427-441),
Traub-Miles rates with the threshold adjust ``vt``, as in ``shared/reference/channel_kinetics.md``
section 2.2 (u = v - vt, rates in 1/ms, V in mV):

* ``na_pos``: ``ina = gbar*m^3*h*(v - ena)``; RANGE ``gbar`` (S/cm2, default 0.05), ``vt`` (mV,
  default -58);
* ``kdr_pos``: ``ik = gbar*n^4*(v - ek)``; RANGE ``gbar`` (default 0.005), ``vt`` (default -58);
* ``km_pos``: ``ik = gbar*p*(v - ek)``, ``p_inf = 1/(1 + exp(-(v+35)/10))``,
  ``tau_p = tau_max/(3.3 exp((v+35)/20) + exp(-(v+35)/20))``; RANGE ``gbar`` (default 7e-5),
  ``tau_max`` (ms, default 1000).

Temperature: **no temperature factor** (celsius is not read). The rates are those of the paper
and of the authors' ModelDB code at 36 degC, where ModelDB's factors (hh2 ``tadj``, IM's Q10 2.3)
equal 1; Jaxley also uses no factor. Gates start at steady state (ModelDB starts them at 0).
The 0/0 points (u = 13, 40, 15) use the analytic limit through ``vtrap`` (Jaxley has no guard).
Also RANGE: ``g`` (S/cm2) and the gate x_inf/tau (``minf``, ``mtau``, ...). The leak is NEURON's
built-in ``pas``.
"""
from sympy import exp

from .core import V, Channel, Current, Gate, Parameter, vtrap

__all__ = ["na_pos", "kdr_pos", "km_pos"]

_vt = Parameter("vt", -58.0, "mV", doc="spike threshold adjust")
_u = V - _vt.symbol

na_pos = Channel(
    suffix="na_pos",
    doc="Pospischil 2008 transient Na current (Traub-Miles)",
    reference="Pospischil M et al. (2008) Biol Cybern 99:427-441; Traub RD, Miles R (1991)",
    gates=(
        Gate.from_rates("m", alpha=0.32 * vtrap(-(_u - 13), 4), beta=0.28 * vtrap(_u - 40, 5),
                        doc="activation"),
        Gate.from_rates("h", alpha=0.128 * exp(-(_u - 17) / 18), beta=4 / (1 + exp(-(_u - 40) / 5)),
                        doc="inactivation"),
    ),
    currents=(Current(gbar="gbar", gates=(("m", 3), ("h", 1)), ion="na", g="g"),),
    parameters=(Parameter("gbar", 0.05, "S/cm2", doc="maximal conductance"), _vt),
)

kdr_pos = Channel(
    suffix="kdr_pos",
    doc="Pospischil 2008 delayed-rectifier K current (Traub-Miles)",
    reference="Pospischil M et al. (2008) Biol Cybern 99:427-441; Traub RD, Miles R (1991)",
    gates=(
        Gate.from_rates("n", alpha=0.032 * vtrap(-(_u - 15), 5), beta=0.5 * exp(-(_u - 10) / 40),
                        doc="activation"),
    ),
    currents=(Current(gbar="gbar", gates=(("n", 4),), ion="k", g="g"),),
    parameters=(Parameter("gbar", 0.005, "S/cm2", doc="maximal conductance"), _vt),
)

_tau_max = Parameter("tau_max", 1000.0, "ms", doc="maximal time constant")
km_pos = Channel(
    suffix="km_pos",
    doc="Pospischil 2008 slow non-inactivating M-type K current",
    reference="Pospischil M et al. (2008) Biol Cybern 99:427-441; Yamada WM et al. (1989)",
    gates=(
        Gate.from_inf_tau("p", inf=1 / (1 + exp(-(V + 35) / 10)),
                          tau=_tau_max.symbol / (3.3 * exp((V + 35) / 20) + exp(-(V + 35) / 20)),
                          doc="activation"),
    ),
    currents=(Current(gbar="gbar", gates=(("p", 1),), ion="k", g="g"),),
    parameters=(Parameter("gbar", 7e-5, "S/cm2", doc="maximal conductance"), _tau_max),
)

"""NEURON's built-in ``hh`` re-expressed in the channel language (SUFFIX ``hh_nh``), and ``pas``.

Hodgkin & Huxley (1952) squid axon as in NEURON's ``src/nrnoc/hh.mod`` (see
``shared/reference/channel_kinetics.md`` section 1): V in absolute mV (rest -65 mV), rates in 1/ms,

* Na: ``gnabar*m^3*h*(v - ena)``; K: ``gkbar*n^4*(v - ek)``; leak ``gl*(v - el)`` (nonspecific
  ``il``);
* temperature factor ``q10 = 3^((celsius - 6.3)/10)`` on the time constants only
  (``tau = 1/(q10*(alpha + beta))``), x_inf does not depend on temperature;
* the same 0/0 guard (``vtrap``) as hh.mod. ``hh_nh`` has no rate TABLE: it equals built-in
  ``hh`` with ``usetable_hh = 0``.

RANGE names as in ``hh``: gnabar, gkbar, gl (S/cm2), el (mV), gna, gk (S/cm2), ina/ik/il (mA/cm2);
additionally minf, mtau, hinf, htau, ninf, ntau are RANGE (hh has them GLOBAL).
"""
from sympy import exp, Integer

from .core import CELSIUS, V, Channel, Current, Gate, Parameter, vtrap

__all__ = ["hh_nh", "pas"]

_q10 = Integer(3) ** ((CELSIUS - 6.3) / 10)

hh_nh = Channel(
    suffix="hh_nh",
    doc="Hodgkin-Huxley squid axon channels, NEURON's built-in hh without tables",
    reference="Hodgkin AL, Huxley AF (1952) J Physiol 117:500-544; as in NEURON src/nrnoc/hh.mod",
    gates=(
        Gate.from_rates("m", alpha=0.1 * vtrap(-(V + 40), 10), beta=4 * exp(-(V + 65) / 18),
                        tau_scale=1 / _q10, doc="Na activation"),
        Gate.from_rates("h", alpha=0.07 * exp(-(V + 65) / 20), beta=1 / (exp(-(V + 35) / 10) + 1),
                        tau_scale=1 / _q10, doc="Na inactivation"),
        Gate.from_rates("n", alpha=0.01 * vtrap(-(V + 55), 10), beta=0.125 * exp(-(V + 65) / 80),
                        tau_scale=1 / _q10, doc="K activation"),
    ),
    currents=(
        Current(gbar="gnabar", gates=(("m", 3), ("h", 1)), ion="na", g="gna"),
        Current(gbar="gkbar", gates=(("n", 4),), ion="k", g="gk"),
        Current(gbar="gl", ion=None, name="il", erev="el"),
    ),
    parameters=(
        Parameter("gnabar", 0.12, "S/cm2", doc="maximal Na conductance"),
        Parameter("gkbar", 0.036, "S/cm2", doc="maximal K conductance"),
        Parameter("gl", 0.0003, "S/cm2", doc="leak conductance"),
        Parameter("el", -54.3, "mV", doc="leak reversal potential"),
    ),
)

#: NEURON's built-in passive leak ``pas`` (i = g*(v - e), g in S/cm2, e in mV); not generated,
#: defined here so that the torch side can treat it like any other channel.
pas = Channel(
    suffix="pas",
    doc="NEURON built-in passive leak",
    gates=(),
    currents=(Current(gbar="g", ion=None, name="i", erev="e"),),
    parameters=(Parameter("g", 0.001, "S/cm2"), Parameter("e", -70.0, "mV")),
    builtin=True,
)

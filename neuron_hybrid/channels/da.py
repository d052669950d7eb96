"""Midbrain dopaminergic (DA) neuron with Qian et al. (2014) Na fits, as used by Spike2Pop.

Qian K, Yu N, Tucker KR, Levitan ES, Canavier CC (2014) J Neurophysiol 112:2779-2790, in the
form of the Drion/Fyon/Brandoit DA model (``shared/reference/channel_kinetics.md`` section 4).
V in mV, tau in ms, rates in 1/ms, no temperature factor.

NEURON mechanisms (RANGE ``gbar`` in S/cm2 = 1e-3 x the model's mS/cm2):

* ``da_na``   ``ina = gbar m^3 h (v - ena)``  (E_Na = +60 mV in the model)
* ``da_kd``   ``ik = gbar n^3 (v - ek)``       (E_K = -85 mV)
* ``da_cal``  ``ica = gbar m^2 (v - eca)``     (E_Ca = +60 mV)
* ``da_can``  ``ica = gbar m (v - eca)``
* ``da_erg``  ``ik = gbar o (v - ek)``: open state of the C <-> O <-> I scheme
  (C -> O: a0 = 0.0036 exp(0.0759 v), O -> C: b0 = 1.2523e-5 exp(-0.0671 v),
  O -> I: ai = 0.1 exp(0.1189 v), I -> O: bi = 0.003 exp(-0.0733 v)); two coupled gates ``o``
  and ``inac`` (the I state), started at the scheme's steady state
  (Brandoit starts o at a0(V0) and I at 0; the difference is a transient)
* ``da_nmda`` ``inmda = gbar B(v) (v - e_nmda)``, nonspecific, instantaneous Mg2+ block
  ``B(v) = 1/(1 + mg/10 exp(-0.08 v))`` with RANGE ``mg`` = 1.4 mM and ``e_nmda`` = 0 mV
* leak: NEURON's ``pas`` with ``e_pas = -50`` mV.

The Na activation time constant ``0.01 + 1/(a + b)`` with the published coefficient 0.5052 has a
genuine pole near -38.725 mV (a band ~0.01 mV wide where ``a + b <= 0``); it is clamped below at
0.01 ms (``tau_m = 0.01`` there), which changes nothing outside that band.
"""
from sympy import Piecewise, exp

from .core import V, Channel, Current, Gate, Parameter

__all__ = ["da_na", "da_kd", "da_cal", "da_can", "da_erg", "da_nmda", "DA_CHANNELS"]

_REF = ("Qian K et al. (2014) J Neurophysiol 112:2779-2790; Drion/Fyon/Brandoit DA model "
        "(constants of the Spike2Pop code)")


def _gbar(default):
    return Parameter("gbar", default, "S/cm2", doc="maximal conductance")


def _sig(v_half, k):
    return 1 / (1 + exp((V + v_half) / k))


_a = Gate.local("a")
_b = Gate.local("b")
_tau_raw = 0.01 + 1 / (_a + _b)
# defaults: NmodController's DA_spiking set (channel_kinetics.md 4.4), in S/cm2
da_na = Channel(
    suffix="da_na", doc="DA transient Na current (Qian et al. 2014 fits)", reference=_REF,
    gates=(Gate.from_inf_tau("m", _sig(30.0907, -9.7264),
                             Piecewise((_tau_raw, _a + _b > 0), (0.01, True)),
                             locals={"a": -(15.6504 + 0.4043 * V) / (exp(-19.565 - 0.5052 * V) - 1),
                                     "b": 3.0212 * exp(-0.007463 * V)},
                             doc="activation; tau clamped to 0.01 ms where a + b <= 0 (pole)"),
           Gate.from_inf_tau("h", _sig(54.0289, 10.7665),
                             0.4 + 1 / (5.0754e-4 * exp(-0.063213 * V) + 9.7529 * exp(0.13442 * V)),
                             doc="inactivation")),
    currents=(Current(gbar="gbar", gates=(("m", 3), ("h", 1)), ion="na", g="g"),),
    parameters=(_gbar(0.030),),
)

da_kd = Channel(
    suffix="da_kd", doc="DA delayed-rectifier K current", reference=_REF,
    gates=(Gate.from_inf_tau("n", _sig(25, -12), 20 - 18 * _sig(38, -10), doc="activation"),),
    currents=(Current(gbar="gbar", gates=(("n", 3),), ion="k", g="g"),),
    parameters=(_gbar(0.005),),
)

da_cal = Channel(
    suffix="da_cal", doc="DA L-type Ca current", reference=_REF,
    gates=(Gate.from_inf_tau("m", _sig(50, -2), 30 - 28 * _sig(45, -3), doc="activation"),),
    currents=(Current(gbar="gbar", gates=(("m", 2),), ion="ca", g="g"),),
    parameters=(_gbar(3e-5),),
)

da_can = Channel(
    suffix="da_can", doc="DA N-type Ca current", reference=_REF,
    gates=(Gate.from_inf_tau("m", _sig(30, -7), 30 - 25 * _sig(55, -6), doc="activation"),),
    currents=(Current(gbar="gbar", gates=(("m", 1),), ion="ca", g="g"),),
    parameters=(_gbar(3e-5),),
)

_a0 = 0.0036 * exp(0.0759 * V)
_b0 = 1.2523e-5 * exp(-0.0671 * V)
_ai = 0.1 * exp(0.1189 * V)
_bi = 0.003 * exp(-0.0733 * V)
_D = _a0 * (_ai + _bi) + _b0 * _bi
_o, _inac = Channel.state_symbol("o"), Channel.state_symbol("inac")
_la0, _lb0, _lai, _lbi = (Gate.local(n) for n in ("a0", "b0", "ai", "bi"))
_rates = {"a0": _a0, "b0": _b0, "ai": _ai, "bi": _bi}
da_erg = Channel(
    suffix="da_erg", doc="DA ERG K current (C <-> O <-> I kinetic scheme)", reference=_REF,
    gates=(
        # do/dt = a0 (1 - o - i) + bi i - (ai + b0) o  =  (inf - o)/tau at frozen i
        Gate.from_inf_tau("o", (_la0 * (1 - _inac) + _lbi * _inac) / (_la0 + _lai + _lb0),
                          1 / (_la0 + _lai + _lb0), locals=_rates, steady=_a0 * _bi / _D,
                          doc="open state"),
        # di/dt = ai o - bi i  =  (inf - i)/tau at frozen o
        Gate.from_inf_tau("inac", _lai * _o / _lbi, 1 / _lbi, locals=_rates, steady=_a0 * _ai / _D,
                          doc="inactivated state"),
    ),
    currents=(Current(gbar="gbar", gates=(("o", 1),), ion="k", g="g"),),
    parameters=(_gbar(1.2e-4),),
)

_mg = Parameter("mg", 1.4, "mM", doc="extracellular Mg2+")
da_nmda = Channel(
    suffix="da_nmda", doc="DA tonic NMDA current with instantaneous Mg2+ block", reference=_REF,
    gates=(),
    currents=(Current(gbar="gbar", ion=None, name="inmda", erev="e_nmda", g="g",
                      factor=1 / (1 + _mg.symbol / 10 * exp(-0.08 * V))),),
    parameters=(_gbar(0.0), Parameter("e_nmda", 0.0, "mV", doc="reversal potential"), _mg),
)

#: the DA mechanisms; leak is NEURON's pas
DA_CHANNELS = (da_na, da_kd, da_cal, da_can, da_erg, da_nmda)

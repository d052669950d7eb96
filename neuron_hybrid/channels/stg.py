"""Liu et al. (1998) stomatogastric ganglion (STG) neuron, as used by the Spike2Pop pipeline.

Liu Z, Golowasch J, Marder E, Abbott LF (1998) J Neurosci 18:2309-2320; kinetics and constants of
Brandoit's dataset generator / Spike2Pop code (``shared/reference/channel_kinetics.md`` section 3):
generalised sigmoids ``A + B/(1 + exp((V + D)/C))``, V in mV, tau in ms, no temperature factor.

NEURON mechanisms (SUFFIX, RANGE ``gbar`` in S/cm2 = 1e-3 x the model's mS/cm2):

* ``stg_na``   ``ina = gbar m^3 h (v - ena)``   (E_Na = +50 mV in the model)
* ``stg_kd``   ``ik = gbar m^4 (v - ek)``        (E_K = -80 mV)
* ``stg_cat``  ``ica = gbar m^3 h (v - eca)``    (E_Ca = +80 mV, fixed)
* ``stg_cas``  ``ica = gbar m^3 h (v - eca)``
* ``stg_kca``  ``ik = gbar m^4 (v - ek)``, ``m_inf = Ca/(Ca + 3 uM) / (1 + exp(-(v + 28.3)/12.6))``,
  reads ``cai`` (mM; Ca = 1000 cai in uM)
* ``stg_a``    ``ik = gbar m^3 h (v - ek)``
* ``stg_h``    ``ih = gbar m (v - eh)``, nonspecific, RANGE ``eh`` = -20 mV
* ``stg_ca``   Ca pool: ``tau_ca dCa/dt = -alpha_ca I_Ca - Ca + beta_ca`` with tau_ca 20 ms,
  alpha_ca 0.94 uM per uA/cm2, beta_ca 0.05 uM. In NEURON units (cai in mM, ica in mA/cm2) the
  numbers are the same: ``dcai/dt = (-0.94 ica - cai + 5e-5)/20``; cai starts at 0.5 uM.
* leak: NEURON's ``pas`` with ``e_pas = -50`` mV.

With C_m = 1 uF/cm2 and gbar[S/cm2] = 1e-3 gbar[mS/cm2] this is exactly Brandoit's
``dV/dt = -sum I`` (mS/cm2, uA/cm2). The reversal potentials are not the NEURON defaults: the
model builder :func:`neuron_hybrid.dic.stg.STG.build_neuron` sets ``ena``, ``ek`` and fixes
``eca`` = 80 mV (``ion_style`` so that NEURON does not compute it from ``cai``).
"""
import sympy
from sympy import exp

from .core import CAI, V, Channel, Current, Gate, Parameter, Pool

__all__ = ["stg_na", "stg_kd", "stg_cat", "stg_cas", "stg_kca", "stg_a", "stg_h", "stg_ca", "STG_CHANNELS"]

_REF = ("Liu Z, Golowasch J, Marder E, Abbott LF (1998) J Neurosci 18:2309-2320; constants of the "
        "Brandoit/Spike2Pop STG model")


def _sig(v_half, k):
    """1/(1 + exp((V + v_half)/k))."""
    return 1 / (1 + exp((V + v_half) / k))


def _gbar(default):
    return Parameter("gbar", default, "S/cm2", doc="maximal conductance")


# defaults: the thesis "Spiking" set (channel_kinetics.md 3.4), converted to S/cm2
stg_na = Channel(
    suffix="stg_na", doc="STG transient Na current (Liu et al. 1998)", reference=_REF,
    gates=(Gate.from_inf_tau("m", _sig(25.5, -5.29), 1.32 - 1.26 * _sig(120, -25), doc="activation"),
           Gate.from_inf_tau("h", _sig(48.9, 5.18),
                             (0.67 * _sig(62.9, -10)) * (1.5 + _sig(34.9, 3.6)), doc="inactivation")),
    currents=(Current(gbar="gbar", gates=(("m", 3), ("h", 1)), ion="na", g="g"),),
    parameters=(_gbar(4.75933),),
)

stg_kd = Channel(
    suffix="stg_kd", doc="STG delayed-rectifier K current (Liu et al. 1998)", reference=_REF,
    gates=(Gate.from_inf_tau("m", _sig(12.3, -11.8), 7.2 - 6.4 * _sig(28.3, -19.2), doc="activation"),),
    currents=(Current(gbar="gbar", gates=(("m", 4),), ion="k", g="g"),),
    parameters=(_gbar(0.263884),),
)

stg_cat = Channel(
    suffix="stg_cat", doc="STG transient (T-type) Ca current (Liu et al. 1998)", reference=_REF,
    gates=(Gate.from_inf_tau("m", _sig(27.1, -7.2), 21.7 - 21.3 * _sig(68.1, -20.5), doc="activation"),
           Gate.from_inf_tau("h", _sig(32.1, 5.5), 105 - 89.8 * _sig(55, -16.9), doc="inactivation")),
    currents=(Current(gbar="gbar", gates=(("m", 3), ("h", 1)), ion="ca", g="g"),),
    parameters=(_gbar(0.00438604),),
)

stg_cas = Channel(
    suffix="stg_cas", doc="STG slow Ca current (Liu et al. 1998)", reference=_REF,
    gates=(Gate.from_inf_tau("m", _sig(33, -8.1), 1.4 + 7 / (exp((V + 27) / 10) + exp(-(V + 70) / 13)),
                             doc="activation"),
           Gate.from_inf_tau("h", _sig(60, 6.2), 60 + 150 / (exp((V + 55) / 9) + exp(-(V + 65) / 16)),
                             doc="inactivation")),
    currents=(Current(gbar="gbar", gates=(("m", 3), ("h", 1)), ion="ca", g="g"),),
    parameters=(_gbar(0.0268272),),
)

_ca_um = 1000 * CAI  # uM
stg_kca = Channel(
    suffix="stg_kca", doc="STG Ca-activated K current (Liu et al. 1998)", reference=_REF,
    gates=(Gate.from_inf_tau("m", _ca_um / (_ca_um + 3) * _sig(28.3, -12.6), 90.3 - 75.1 * _sig(46, -22.7),
                             doc="activation (Ca in uM = 1000 cai)"),),
    currents=(Current(gbar="gbar", gates=(("m", 4),), ion="k", g="g"),),
    parameters=(_gbar(0.0931089),),
)

stg_a = Channel(
    suffix="stg_a", doc="STG transient (A-type) K current (Liu et al. 1998)", reference=_REF,
    gates=(Gate.from_inf_tau("m", _sig(27.2, -8.7), 11.6 - 10.4 * _sig(32.9, -15.2), doc="activation"),
           Gate.from_inf_tau("h", _sig(56.9, 4.9), 38.6 - 29.2 * _sig(38.9, -26.5), doc="inactivation")),
    currents=(Current(gbar="gbar", gates=(("m", 3), ("h", 1)), ion="k", g="g"),),
    parameters=(_gbar(0.49487),),
)

stg_h = Channel(
    suffix="stg_h", doc="STG hyperpolarisation-activated current (Liu et al. 1998)", reference=_REF,
    gates=(Gate.from_inf_tau("m", _sig(70, 6), 272 + 1499 * _sig(42.2, -8.73), doc="activation"),),
    currents=(Current(gbar="gbar", gates=(("m", 1),), ion=None, name="ih", erev="eh", g="g"),),
    parameters=(_gbar(0.000372943), Parameter("eh", -20.0, "mV", doc="reversal potential")),
)

_tau_ca = Parameter("tau_ca", 20.0, "ms", doc="Ca time constant")
_alpha_ca = Parameter("alpha_ca", 0.94, "1", doc="uM per uA/cm2 (= mM per mA/cm2)")
_beta_ca = Parameter("beta_ca", 5e-5, "mM", doc="resting Ca (0.05 uM)")
_ica = sympy.Symbol("ica", real=True)
stg_ca = Pool(
    suffix="stg_ca", ion="ca", state="cai", doc="STG intracellular Ca pool (Liu et al. 1998)",
    reference=_REF,
    derivative=(-_alpha_ca.symbol * _ica - CAI + _beta_ca.symbol) / _tau_ca.symbol,
    parameters=(_tau_ca, _alpha_ca, _beta_ca),
    initial=sympy.Float(5e-4),
)

#: the STG mechanisms (channels, then the Ca pool); leak is NEURON's pas
STG_CHANNELS = (stg_na, stg_kd, stg_cat, stg_cas, stg_kca, stg_a, stg_h, stg_ca)

"""Hay et al. (2011) layer 5b pyramidal cell mechanisms, with their published names.

Hay E, Hill S, Schuermann F, Markram H, Segev I (2011) PLoS Comput Biol 7:e1002107 (ModelDB
139653). Kinetics as in ``shared/reference/hay2011_l5pc.md`` section 4; V in mV, tau in ms,
rates in 1/ms, conductances in S/cm2, currents in mA/cm2, cai in mM.

Temperature: as in the published files, no mechanism reads ``celsius``. NaTa_t, NaTs2_t, Nap_Et2,
K_Pst, K_Tst, Ca_LVAst and Im divide their time constants by the hard-coded
``qt = 2.3^((34 - 21)/10)`` (q10 2.3 from 21 to 34 degC); Ih, SKv3_1, SK_E2 and Ca_HVA have no
factor. ``celsius`` only matters through NEURON's Nernst ``eca`` (computed because
``CaDynamics_E2`` writes ``cai``): Ca_HVA and Ca_LVAst ``USEION ca READ eca WRITE ica``.

Names: SUFFIX and RANGE names as published (``gNaTa_tbar``, ``gNaTa_t``, ``ina``, ...); gate
steady states/time constants are RANGE ``mInf``, ``mTau``, ``hInf``, ``hTau`` (``zInf``/``zTau``).
``ehcn`` (Ih) is GLOBAL as published. Default densities are the published MOD defaults (1e-5
S/cm2; 1e-6 for SK_E2).

Differences from the published files (numerically negligible, deliberate):

* 0/0 points: the published files shift v by 1e-4 mV when v hits the singular voltage exactly
  (``if (v == -38) v = v + 0.0001``); here the analytic limit is used through ``vtrap``.
* SK_E2's ``zTau`` (a GLOBAL PARAMETER of 1 ms in the published file) is the constant 1 ms.
* Every gate is written ``x' = (xInf - x)/xTau`` (Ca_LVAst's original multiplies by qt/xTau).
"""
import sympy
from sympy import Piecewise, exp

from .core import CAI, FARADAY, V, Channel, Current, Gate, Parameter, Pool, vtrap

__all__ = ["NaTa_t", "NaTs2_t", "Nap_Et2", "K_Pst", "K_Tst", "SKv3_1", "SK_E2", "Ca_HVA",
           "Ca_LVAst", "Ih", "Im", "CaDynamics_E2", "QT", "HAY2011"]

#: hard-coded temperature factor of the Hay mechanisms, 2.3^1.3 = 2.9528826...
QT = 2.3 ** ((34 - 21) / 10)
_HAY = dict(inf_name="{}Inf", tau_name="{}Tau")
_REF = "Hay E et al. (2011) PLoS Comput Biol 7:e1002107 (ModelDB 139653)"


def _gbar(name, default=1e-5):
    return Parameter(name, default, "S/cm2", doc="maximal conductance")


def _transient_na(suffix, vm, vh, doc, ref):
    """NaTa_t-type transient Na (Colbert & Pan 2002), midpoints vm (m) and vh (h)."""
    return Channel(
        suffix=suffix, doc=doc, reference=f"{_REF}\n{ref}", **_HAY,
        gates=(
            Gate.from_rates("m", alpha=0.182 * vtrap(-(V - vm), 6), beta=0.124 * vtrap(V - vm, 6),
                            tau_scale=1 / QT, doc="activation"),
            Gate.from_rates("h", alpha=0.015 * vtrap(V - vh, 6), beta=0.015 * vtrap(-(V - vh), 6),
                            tau_scale=1 / QT, doc="inactivation"),
        ),
        currents=(Current(gbar=f"g{suffix}bar", gates=(("m", 3), ("h", 1)), ion="na", g=f"g{suffix}"),),
        parameters=(_gbar(f"g{suffix}bar"),),
    )


NaTa_t = _transient_na("NaTa_t", -38, -66, "Hay 2011 transient Na current (NaTa_t)",
                       "Colbert CM, Pan E (2002) Nat Neurosci 5:533-538")
NaTs2_t = _transient_na("NaTs2_t", -32, -60, "Hay 2011 transient Na current, +6 mV shift (NaTs2_t)",
                        "Colbert CM, Pan E (2002) Nat Neurosci 5:533-538")

Nap_Et2 = Channel(
    suffix="Nap_Et2", doc="Hay 2011 persistent Na current (Nap_Et2)", **_HAY,
    reference=f"{_REF}\nMagistretti J, Alonso A (1999) J Gen Physiol 114:491-509",
    gates=(
        Gate.from_inf_tau("m", inf=1 / (1 + exp((V + 52.6) / -4.6)),
                          tau=(6 / QT) / (Gate.local("alpha") + Gate.local("beta")),
                          locals={"alpha": 0.182 * vtrap(-(V + 38), 6),
                                  "beta": 0.124 * vtrap(V + 38, 6)},
                          doc="activation; tau from the NaTa_t rates, times 6"),
        Gate.from_inf_tau("h", inf=1 / (1 + exp((V + 48.8) / 10)),
                          tau=(1 / QT) / (Gate.local("alpha") + Gate.local("beta")),
                          locals={"alpha": 2.88e-6 * vtrap(V + 17, 4.63),
                                  "beta": 6.94e-6 * vtrap(-(V + 64.4), 2.63)},
                          doc="inactivation"),
    ),
    currents=(Current(gbar="gNap_Et2bar", gates=(("m", 3), ("h", 1)), ion="na", g="gNap_Et2"),),
    parameters=(_gbar("gNap_Et2bar"),),
)

_u = V + 10  # "shifted by -10 mV to correct for junction potential": rates evaluated at v + 10

K_Pst = Channel(
    suffix="K_Pst", doc="Hay 2011 persistent K current (K_Pst)", **_HAY,
    reference=f"{_REF}\nKorngreen A, Sakmann B (2000) J Physiol 525:621-639",
    gates=(
        Gate.from_inf_tau("m", inf=1 / (1 + exp(-(_u + 1) / 12)),
                          tau=Piecewise(((1.25 + 175.03 * exp(0.026 * _u)) / QT, _u < -50),
                                        ((1.25 + 13 * exp(-0.026 * _u)) / QT, True)),
                          doc="activation"),
        Gate.from_inf_tau("h", inf=1 / (1 + exp((_u + 54) / 11)),
                          tau=(360 + (1010 + 24 * (_u + 55)) * exp(-((_u + 75) / 48) ** 2)) / QT,
                          doc="inactivation"),
    ),
    currents=(Current(gbar="gK_Pstbar", gates=(("m", 2), ("h", 1)), ion="k", g="gK_Pst"),),
    parameters=(_gbar("gK_Pstbar"),),
)

K_Tst = Channel(
    suffix="K_Tst", doc="Hay 2011 transient K current (K_Tst)", **_HAY,
    reference=f"{_REF}\nKorngreen A, Sakmann B (2000) J Physiol 525:621-639",
    gates=(
        Gate.from_inf_tau("m", inf=1 / (1 + exp(-_u / 19)),
                          tau=(0.34 + 0.92 * exp(-((_u + 71) / 59) ** 2)) / QT, doc="activation"),
        Gate.from_inf_tau("h", inf=1 / (1 + exp((_u + 66) / 10)),
                          tau=(8 + 49 * exp(-((_u + 73) / 23) ** 2)) / QT, doc="inactivation"),
    ),
    currents=(Current(gbar="gK_Tstbar", gates=(("m", 4), ("h", 1)), ion="k", g="gK_Tst"),),
    parameters=(_gbar("gK_Tstbar"),),
)

SKv3_1 = Channel(
    suffix="SKv3_1", doc="Hay 2011 Kv3.1 K current (SKv3_1)", **_HAY,
    reference=f"{_REF}\nRettig J et al. (1992) EMBO J 11:2473-2486",
    gates=(
        Gate.from_inf_tau("m", inf=1 / (1 + exp((V - 18.7) / -9.7)),
                          tau=0.2 * 20 / (1 + exp((V + 46.56) / -44.14)), doc="activation"),
    ),
    currents=(Current(gbar="gSKv3_1bar", gates=(("m", 1),), ion="k", g="gSKv3_1"),),
    parameters=(_gbar("gSKv3_1bar"),),
)

_ca_floor = Piecewise((CAI + 1e-7, CAI < 1e-7), (CAI, True))
SK_E2 = Channel(
    suffix="SK_E2", doc="Hay 2011 SK-type Ca-activated K current (SK_E2)", **_HAY,
    reference=f"{_REF}\nKoehler M et al. (1996) Science 273:1709-1714",
    gates=(
        Gate.from_inf_tau("z", inf=1 / (1 + (0.00043 / _ca_floor) ** 4.8), tau=1,
                          doc="Ca activation (cai in mM; 1e-7 mM added below 1e-7 mM)"),
    ),
    currents=(Current(gbar="gSK_E2bar", gates=(("z", 1),), ion="k", g="gSK_E2"),),
    parameters=(_gbar("gSK_E2bar", 1e-6),),
)

Ca_HVA = Channel(
    suffix="Ca_HVA", doc="Hay 2011 high-voltage-activated Ca current (Ca_HVA)", **_HAY,
    reference=f"{_REF}\nReuveni I et al. (1993) J Neurosci 13:4609-4621",
    gates=(
        Gate.from_rates("m", alpha=0.055 * vtrap(-27 - V, 3.8), beta=0.94 * exp((-75 - V) / 17),
                        doc="activation"),
        Gate.from_rates("h", alpha=0.000457 * exp((-13 - V) / 50),
                        beta=0.0065 / (exp((-V - 15) / 28) + 1), doc="inactivation"),
    ),
    currents=(Current(gbar="gCa_HVAbar", gates=(("m", 2), ("h", 1)), ion="ca", g="gCa_HVA"),),
    parameters=(_gbar("gCa_HVAbar"),),
)

Ca_LVAst = Channel(
    suffix="Ca_LVAst", doc="Hay 2011 low-voltage-activated Ca current (Ca_LVAst)", **_HAY,
    reference=f"{_REF}\nAvery RB, Johnston D (1996) J Neurosci 16:5567-5582; tau: Randall AD (1997)",
    gates=(
        Gate.from_inf_tau("m", inf=1 / (1 + exp((_u + 30) / -6)),
                          tau=(5 + 20 / (1 + exp((_u + 25) / 5))) / QT, doc="activation"),
        Gate.from_inf_tau("h", inf=1 / (1 + exp((_u + 80) / 6.4)),
                          tau=(20 + 50 / (1 + exp((_u + 40) / 7))) / QT, doc="inactivation"),
    ),
    currents=(Current(gbar="gCa_LVAstbar", gates=(("m", 2), ("h", 1)), ion="ca", g="gCa_LVAst"),),
    parameters=(_gbar("gCa_LVAstbar"),),
)

Ih = Channel(
    suffix="Ih", doc="Hay 2011 HCN (h) current (Ih), nonspecific", **_HAY,
    reference=f"{_REF}\nKole MH, Hallermann S, Stuart GJ (2006) J Neurosci 26:1677-1687",
    gates=(
        Gate.from_rates("m", alpha=0.001 * 6.43 * vtrap(V + 154.9, 11.9),
                        beta=0.001 * 193 * exp(V / 33.1), doc="activation"),
    ),
    currents=(Current(gbar="gIhbar", gates=(("m", 1),), ion=None, name="ihcn", erev="ehcn", g="gIh"),),
    parameters=(_gbar("gIhbar"), Parameter("ehcn", -45.0, "mV", scope="global",
                                           doc="reversal potential")),
)

Im = Channel(
    suffix="Im", doc="Hay 2011 M-type K current (Im)", **_HAY,
    reference=f"{_REF}\nAdams PR et al. (1982) J Physiol 330:537-572",
    gates=(
        Gate.from_rates("m", alpha=3.3e-3 * exp(2.5 * 0.04 * (V + 35)),
                        beta=3.3e-3 * exp(-2.5 * 0.04 * (V + 35)), tau_scale=1 / QT, doc="activation"),
    ),
    currents=(Current(gbar="gImbar", gates=(("m", 1),), ion="k", g="gIm"),),
    parameters=(_gbar("gImbar"),),
)

_gamma = Parameter("gamma", 0.05, "1", doc="fraction of free Ca (not buffered)")
_decay = Parameter("decay", 80.0, "ms", doc="rate of removal of Ca")
_depth = Parameter("depth", 0.1, "um", doc="depth of the submembrane shell")
_min_cai = Parameter("minCai", 1e-4, "mM", doc="resting Ca concentration")
_ica = sympy.Symbol("ica", real=True)

CaDynamics_E2 = Pool(
    suffix="CaDynamics_E2", ion="ca", state="cai",
    doc="Hay 2011 submembrane Ca pool (CaDynamics_E2)",
    reference=f"{_REF}\nafter Destexhe A et al. (1994)",
    # d cai/dt = -10000 * ica * gamma / (2 F depth) - (cai - minCai)/decay
    # (ica mA/cm2, depth um, F C/mol -> mM/ms); no INITIAL: cai starts at cai0_ca_ion
    derivative=-10000 * _ica * _gamma.symbol / (2 * FARADAY * _depth.symbol)
    - (CAI - _min_cai.symbol) / _decay.symbol,
    parameters=(_gamma, _decay, _depth, _min_cai),
)

#: every Hay 2011 mechanism, channels then the pool
HAY2011 = (NaTa_t, NaTs2_t, Nap_Et2, K_Pst, K_Tst, SKv3_1, SK_E2, Ca_HVA, Ca_LVAst, Ih, Im,
           CaDynamics_E2)

"""The STG model (Liu et al. 1998) in the Spike2Pop form, and its DIC/population conventions.

Maximal conductances (mS/cm2, C_m = 1 uF/cm2), in this order: ``g_Na, g_Kd, g_CaT, g_CaS, g_KCa,
g_A, g_H, g_leak``. Reversal potentials (mV): E_Na 50, E_K -80, E_Ca 80, E_H -20, E_leak -50.
Calcium (mM): ``tau_Ca dCa/dt = -0.94 I_Ca - Ca + 0.05 uM`` (tau_Ca = 20 ms, I_Ca in uA/cm2 and Ca
in uM, identical numbers in mM and mA/cm2). Initial state V0 = -70 mV, Ca0 = 0.5 uM, gates at
steady state. Mechanisms: :mod:`neuron_hybrid.channels.stg`.

DIC conventions (Spike2Pop / Fyon): tau_f = tau_m,Na(V), tau_s = tau_m,Kd(V), tau_u = tau_m,H(V);
calcium at its steady state Ca_inf(V) = 0.05 uM - 0.94 I_Ca,inf(V); the Ca-mediated KCa term
(dm_KCa,inf/dCa * dCa_inf/dV) weighted with tau = 20 ms; V_th = -51 mV; values divided by g_leak.
"""
from ..channels import pas
from ..channels.stg import stg_a, stg_ca, stg_cas, stg_cat, stg_h, stg_kca, stg_kd, stg_na
from .model import CompartmentModel, Conductance, DICConvention

__all__ = ["STG", "STG_SPIKING", "STG_BURSTING", "STG_EXAMPLES"]

STG = CompartmentModel(
    "stg",
    [Conductance("Na", stg_na, 50.0), Conductance("Kd", stg_kd, -80.0), Conductance("CaT", stg_cat, 80.0),
     Conductance("CaS", stg_cas, 80.0), Conductance("KCa", stg_kca, -80.0), Conductance("A", stg_a, -80.0),
     Conductance("H", stg_h, -20.0), Conductance("leak", pas, -50.0)],
    leak="leak", pool=stg_ca, cai0=5e-4, v_init=-70.0,
    dic=DICConvention(tau_f=("Na", "m"), tau_s=("Kd", "m"), tau_u=("H", "m"), pool_tau=20.0, v_th=-51.0),
    doc=__doc__,
)

#: thesis notebook sets (channel_kinetics.md 3.4), mS/cm2
STG_SPIKING = dict(zip(STG.columns, [4759.33, 263.884, 4.38604, 26.8272, 93.1089, 494.870, 0.372943, 0.0120014]))
STG_BURSTING = dict(zip(STG.columns, [4459.33, 215.423, 12.6581, 53.1943, 116.559, 415.288, 0.575437, 0.0142446]))
#: NmodController.jl sets
STG_NMOD_SPIKING = dict(g_Na=4000.0, g_Kd=137.0, g_CaT=3.0, g_CaS=4.0, g_KCa=110.0, g_A=175.0, g_H=0.3, g_leak=0.01)
STG_NMOD_BURSTING = dict(STG_NMOD_SPIKING, g_CaS=19.0, g_A=70.0)
STG_EXAMPLES = {"spiking": STG_SPIKING, "bursting": STG_BURSTING,
                "nmod_spiking": STG_NMOD_SPIKING, "nmod_bursting": STG_NMOD_BURSTING}

"""The dopaminergic (DA) model (Qian et al. 2014 Na fits) in the Spike2Pop form, and its conventions.

Maximal conductances (mS/cm2, C_m = 1 uF/cm2), in this order: ``g_Na, g_Kd, g_CaL, g_CaN, g_ERG,
g_NMDA, g_leak``. Reversal potentials (mV): E_Na 60, E_K -85, E_Ca 60, E_NMDA 0, E_leak -50.
NMDA: instantaneous Mg2+ block B(V) = 1/(1 + 1.4/10 exp(-0.08 V)). ERG: C <-> O <-> I scheme.
Initial V0 = -90 mV, gates at steady state. Mechanisms: :mod:`neuron_hybrid.channels.da`.

DIC conventions (Spike2Pop): tau_f = tau_m,Na(V), tau_s = tau_n,Kd(V), tau_u = 100 ms; ERG fully
ultraslow, the NMDA block fully fast; V_th = -55.5 mV; values divided by g_leak.
"""
from ..channels import pas
from ..channels.da import da_cal, da_can, da_erg, da_kd, da_na, da_nmda
from .model import CompartmentModel, Conductance, DICConvention

__all__ = ["DA", "DA_EXAMPLES"]

DA = CompartmentModel(
    "da",
    [Conductance("Na", da_na, 60.0), Conductance("Kd", da_kd, -85.0), Conductance("CaL", da_cal, 60.0),
     Conductance("CaN", da_can, 60.0), Conductance("ERG", da_erg, -85.0), Conductance("NMDA", da_nmda, 0.0),
     Conductance("leak", pas, -50.0)],
    leak="leak", v_init=-90.0,
    dic=DICConvention(tau_f=("Na", "m"), tau_s=("Kd", "n"), tau_u=100.0,
                      forced={("ERG", "o"): (0.0, 0.0), ("ERG", "inac"): (0.0, 0.0)}, v_th=-55.5),
    doc=__doc__,
)

_cols = DA.columns
#: thesis notebook sets and NmodController.jl sets (channel_kinetics.md 4.4), mS/cm2
DA_EXAMPLES = {
    "fast": dict(zip(_cols, [29.3363, 5.55358, 0.187374, 0.0328793, 0.0888514, 0.00997159, 0.0106779])),
    "spiking": dict(zip(_cols, [34.1176, 13.2287, 0.0215680, 0.0560284, 0.209517, 0.0115522, 0.0123704])),
    "bursting": dict(zip(_cols, [25.1759, 7.03265, 0.112492, 0.0482002, 0.0777861, 0.00848305, 0.00908393])),
    "nmod_spiking": dict(g_Na=30.0, g_Kd=5.0, g_CaL=0.03, g_CaN=0.03, g_ERG=0.12, g_NMDA=0.0, g_leak=0.01),
    "nmod_bursting": dict(g_Na=30.0, g_Kd=5.0, g_CaL=0.02, g_CaN=0.15, g_ERG=0.12, g_NMDA=0.0, g_leak=0.01),
}

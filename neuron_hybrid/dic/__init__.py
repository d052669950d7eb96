"""Dynamic input conductances (DICs), degenerate populations, and spike times -> populations.

    import neuron_hybrid.dic as dic
    g_f, g_s, g_u = dic.dics("stg", gbar, V)          # leak-normalised arrays over V (mV)
    v_th = dic.threshold_voltage("stg", gbar)          # mV
    pop = dic.population("stg", g_s=-8.0, g_u=6.0, n=200, seed=0)   # list of gbar dicts
    sim = dic.STG.simulate(pop, tstop=4000, transient=2000)          # vectorised NumPy
    net = dic.load_pretrained("stg"); g_s, g_u, cls = net.predict([spike_times_ms])

``model`` is ``"stg"`` (Liu et al. 1998; conductances ``g_Na, g_Kd, g_CaT, g_CaS, g_KCa, g_A,
g_H, g_leak``), ``"da"`` (Qian et al. 2014 Na; ``g_Na, g_Kd, g_CaL, g_CaN, g_ERG, g_NMDA,
g_leak``) or any :class:`CompartmentModel` built from the package's channel definitions or from
learned gates (:class:`LearnedGates`). Units: mV, ms, mS/cm2 (C_m = 1 uF/cm2), uA/cm2; DICs are
divided by g_leak (dimensionless). Modules: :mod:`.model` (models, batch simulation, NEURON
builder), :mod:`.dics`, :mod:`.population`, :mod:`.dataset`, :mod:`.network`,
:mod:`.spikes2pop` (the ``neuron-hybrid spikes2pop`` pipeline), :mod:`.report`.
"""
from .model import CompartmentModel, Conductance, DICConvention, LearnedGates, SimulationResult, as_gbar_array
from .stg import STG, STG_EXAMPLES
from .da import DA, DA_EXAMPLES
from .dics import SensitivityAtV, dics, get_model, log_weight, sensitivity_matrix, threshold_voltage
from .population import (DA_POPULATION, STG_POPULATION, PopulationConfig, PopulationResult, generate_population,
                         population)
from .spikes import classify, firing_metrics, jitter_and_drop, parse_spike_list
from .network import NetworkConfig, SpikeDICNet, TrainConfig, load_pretrained
from .spikes2pop import Spikes2PopConfig, read_spike_csv, spikes_to_population

__all__ = [
    "CompartmentModel", "Conductance", "DICConvention", "LearnedGates", "SimulationResult", "as_gbar_array",
    "STG", "STG_EXAMPLES", "DA", "DA_EXAMPLES",
    "dics", "sensitivity_matrix", "threshold_voltage", "log_weight", "get_model", "SensitivityAtV",
    "population", "generate_population", "PopulationConfig", "PopulationResult", "STG_POPULATION", "DA_POPULATION",
    "classify", "firing_metrics", "jitter_and_drop", "parse_spike_list",
    "NetworkConfig", "TrainConfig", "SpikeDICNet", "load_pretrained",
    "Spikes2PopConfig", "read_spike_csv", "spikes_to_population",
]

"""Learned channel kinetics: gating curves from NEURON channels, gate networks, symbolic distillation to
NMODL, and unknown gating from current-clamp traces.

* :func:`measure_channel_curves` (``neuron-hybrid channel-curves``): x_inf(V), tau(V) of every gate of a
  MOD file by voltage clamp in NEURON; :func:`save_curves` / :func:`load_curves` (HDF5 schema in
  :mod:`.curves_io`).
* :class:`GateMLP`, :class:`GatedChannel`, :func:`fit_gate_networks`, :func:`gated_channel_from_curves`:
  one MLP per gate, exported with ``nh.export`` as a learned current ``gbar * prod x^p * (V - E)``.
* :mod:`.closedform`, :func:`distill_model`: closed-form candidates chosen by AIC/BIC, written as a
  standalone NMODL file (:class:`DistilledChannel`).
* :func:`fit_channel` (``neuron-hybrid fit-channel``): curves or recordings -> .pt + .mod + plot + report.
* :mod:`.trace`: gates learned from one current-clamp voltage trace (torch twin, batched BPTT), then closed
  forms refined on the free-running error where they fit better (:mod:`.parametric`).
* :mod:`.parametric`: closed-form gates in torch (HH alpha/beta rate laws, Boltzmann + bell), batched.
* :mod:`.recordings`: current-clamp sweeps from NWB / CSV / NumPy.
* :mod:`.library`: the generated channel library of the benchmark.
"""
from .curves import ChannelCurveError, CurveConfig, measure_channel_curves, plot_curves
from .curves_io import ChannelCurves, CurvesFileError, GateCurve, load_curves, save_curves
from .distill import DistilledChannel, compare_in_neuron, distill_curves, distill_model
from .gatenet import ChannelFitError, GateFitConfig, GatedChannel, GateMLP, fit_gate_networks, gated_channel_from_curves
from .modfile import ModParseError, parse_mod
from .pipeline import FitChannelConfig, fit_channel, fit_channel_from_curves

__all__ = ["CurveConfig", "ChannelCurveError", "measure_channel_curves", "plot_curves", "ChannelCurves", "GateCurve",
           "CurvesFileError", "load_curves", "save_curves", "DistilledChannel", "distill_curves", "distill_model",
           "compare_in_neuron", "GateFitConfig", "GatedChannel", "GateMLP", "fit_gate_networks",
           "gated_channel_from_curves", "ChannelFitError", "ModParseError", "parse_mod", "FitChannelConfig", "fit_channel",
           "fit_channel_from_curves"]

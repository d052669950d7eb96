"""Unknown gating from current-clamp voltage alone: gate networks trained through the torch twin.

A single compartment (``hh`` or ``pospischil``) in which the gates of one channel (K: n; Na: m and h)
are replaced by networks, integrated with NEURON's fixed-step scheme (currents at the old V, backward
Euler for V linearised in V, then cnexp for every gate at the new V; the same scheme as
:mod:`neuron_hybrid.channels.simulate`), **batched over M independent members** (seeds x conditions),
each with its own networks (a :class:`~..gatenet.GateEnsemble`), parameters and data.

Training (:func:`train_members`) never starts a free-running simulation from a random network:

1. *prior*: every network starts as a generic gate (Boltzmann x_inf with the slope sign of the gate
   type, constant tau; restarts get jittered priors), fitted in a few hundred vectorised steps;
2. *current matching* (voltage-forced, teacher-forced): the observed trace is smoothed (automatic
   Savitzky-Golay width from the estimated noise level); all gates are integrated along it (cnexp,
   exact for a given V; parallel scan), and the learned current ``gbar s x1^p1 x2^p2 (V - E - dE)``
   is fitted to the current balance ``I_stim - C dV/dt - I_known(V, gates)`` of the discrete scheme.
   This objective is nearly linear in the unknowns and very stable;
   on noisy traces the denoised voltage is then estimated jointly with the networks (data misfit plus an annealed
   current-balance misfit; :mod:`.trajectory`), and current matching is repeated along it;
3. *multiple shooting*: from window starts on the (smoothed) trace with teacher-forced gates, the
   model runs free for ``window_ms`` (growing lengths); loss = MSE to the observed (noisy) V;
4. optional *closed loop* over the whole trace from rest (``cl_steps``);
5. *closed forms* (``parametric``): every family of :mod:`..parametric` (HH alpha/beta rate laws, Boltzmann + bell)
   is fitted to the trained networks' curves where the trace went, the best two per gate are refined by
   Levenberg-Marquardt on the free-running error over the whole trace (7 parameters per gate: this is the
   output-error, i.e. maximum-likelihood, fit that the networks' many parameters make impractical), jointly with
   corrections of the known compartment's parameters (``refine_known``: cm, leak, the other channels' g and E,
   each under a Gaussian prior around its assumed value; :func:`simulate` applies them), and each member keeps
   its closed form unless its networks run clearly closer to the training trace (:class:`SelectedGates`).

After every stage each member keeps the parameters with the lowest free-running voltage error on the
training trace (training data only), and with ``restarts > 1`` the best restart of each member is
selected by the same criterion. During training the networks are tabulated on a 0.25 mV grid and
linearly interpolated (one network evaluation per optimisation step); :func:`simulate` evaluates them
exactly. With ``learn_conductance`` the learned channel also gets a per-member conductance scale ``s``
and reversal shift ``dE`` (it is the unknown channel: this lets it absorb misspecified parameters).

Units: V mV, t ms, stimulus as a current density in mA/cm2 (depolarising positive; 0.01 mA/cm2 =
10 uA/cm2), conductances S/cm2, C uF/cm2.

Modules: :mod:`.compartment` (the known compartment, protocols), :mod:`.twin` (:class:`LearnedGates`,
:func:`simulate`), :mod:`.tables` (gate tables, teacher-forced gates), :mod:`.smoothing` (noise estimate,
smoothing), :mod:`.config` (:class:`TraceFitConfig`), :mod:`.fit` (:func:`train_members`: the pipeline, restarts,
restart rounds), :mod:`.shooting` (multiple shooting), :mod:`.closed_forms` (stage 5, Levenberg-Marquardt),
:mod:`.choice` (per-member choices between fits), :mod:`.optim` (batched optimisers).
"""
from .choice import MemberChoice, SelectedGates
from .closed_forms import lm_output_error
from .compartment import HH, LEARN, MODELS, POSPISCHIL, CompartmentModel, noisy_stimulus, step_stimulus, training_protocol
from .config import TraceFitConfig
from .fit import noise_floor_rmse, train_members
from .optim import batched_lbfgs
from .smoothing import estimate_noise_sd
from .twin import LearnedGates, learned_curves, member_rmse, simulate

__all__ = ["CompartmentModel", "HH", "POSPISCHIL", "MODELS", "LEARN", "TraceFitConfig", "LearnedGates", "simulate",
           "step_stimulus", "noisy_stimulus", "training_protocol", "train_members", "noise_floor_rmse", "member_rmse",
           "learned_curves", "estimate_noise_sd", "SelectedGates", "MemberChoice", "lm_output_error", "batched_lbfgs"]

"""Stimulus protocols for reduction: training, validation and held-out test sets, scaled to the cell.

Amplitudes are multiples of the cell's rheobase r (nA, the smallest step that makes the full cell
fire within `probe_ms`), so the same recipe suits a CA1 cell (r ~ 0.24 nA) and an L5PC (r ~ 0.5 nA).
The training set has short steps around rheobase (the approach to threshold), long steps (1.5 s:
slow adaptation is identifiable) and a ramp, a hyperpolarising step and noisy (Ornstein-Uhlenbeck)
currents at three time constants. On ca1_pospischil, replacing four of five long steps by short
steps and adding OU currents raised held-out Gamma on noise from about 0.3 to 0.6-0.8. Somatic voltage-clamp steps below and near threshold
add the dendrites' steady-state load, which current clamp only samples in passing (ca1: Gamma on
noise 0.76 -> 0.91, step spike-count error 30 -> 5). The test set uses other amplitudes, longer steps,
other noise seeds and time constants, another ramp slope and Poisson-driven synaptic conductances on
the soma (a kind of input absent from training), so nothing in it was seen in training.
"""
import dataclasses
from dataclasses import dataclass

from neuron_hybrid.stimuli import OU, Composite, Ramp, Step, Synaptic, VoltageStep
from neuron_hybrid.stimuli.synaptic import exp2syn_charge_per_event


@dataclass
class ProtocolScale:
    """rheobase_nA: the full cell's rheobase; v_rest_mV: its resting potential (voltage-clamp levels
    are relative to it); delay_ms before every stimulus (rest is recorded)."""

    rheobase_nA: float
    delay_ms: float = 100.0
    v_rest_mV: float = None

    def vstep(self, dv_mV: float, dur_ms: float = 600.0, tail_ms: float = 200.0):
        """Somatic voltage clamp at rest + dv_mV, released after dur_ms (the recovery is recorded)."""
        return VoltageStep(v_step_mV=round(self.v_rest_mV + dv_mV, 3), delay_ms=self.delay_ms, dur_ms=dur_ms,
                           tstop_ms=self.delay_ms + dur_ms + tail_ms)

    def step(self, k: float, dur_ms: float, tail_ms: float = 200.0):
        return Step(amp_nA=round(k * self.rheobase_nA, 6), delay_ms=self.delay_ms, dur_ms=dur_ms,
                    tstop_ms=self.delay_ms + dur_ms + tail_ms)

    def ou(self, mean_k: float, sd_k: float, tau_ms: float, seed: int, dur_ms: float = 2000.0):
        return OU(mean_nA=round(mean_k * self.rheobase_nA, 6), sd_nA=round(sd_k * self.rheobase_nA, 6), tau_ms=tau_ms,
                  seed=seed, delay_ms=self.delay_ms, dur_ms=dur_ms, tstop_ms=self.delay_ms + dur_ms)

    def pulse_train(self, k: float, n: int, rate_Hz: float, width_ms: float = 3.0, tail_ms: float = 400.0):
        """n pulses of k x rheobase, width_ms each, at rate_Hz; the recovery is recorded for tail_ms."""
        period = 1000.0 / rate_Hz
        tstop = self.delay_ms + (n - 1) * period + width_ms + tail_ms
        return Composite(tuple(Step(amp_nA=round(k * self.rheobase_nA, 6), delay_ms=round(self.delay_ms + j * period, 6),
                                    dur_ms=width_ms, tstop_ms=tstop) for j in range(n)), tstop_ms=tstop)

    def synaptic(self, exc_k: float, seed: int, dur_ms: float = 2000.0, n_exc: int = 100, rate_exc_hz: float = 10.0,
                 n_inh: int = 25, rate_inh_hz: float = 20.0, inh_to_exc_conductance: float = 0.5):
        """Poisson-driven ``Exp2Syn`` conductances on the soma (``somatic`` sections): a conductance input, where
        every other protocol injects current. The excitatory weight (uS) makes the mean excitatory current at
        rest ``exc_k`` x rheobase; the mean inhibitory conductance is ``inh_to_exc_conductance`` x the
        excitatory one (E_exc 0 mV, E_inh -80 mV; needs ``v_rest_mV``)."""
        if self.v_rest_mV is None:
            raise ValueError("synaptic protocols need the cell's resting potential (ProtocolScale.v_rest_mV)")
        base = Synaptic(tstop_ms=self.delay_ms + dur_ms, seed=seed, n_exc=n_exc, n_inh=n_inh, rate_exc_hz=rate_exc_hz,
                        rate_inh_hz=rate_inh_hz, delay_ms=self.delay_ms, dur_ms=dur_ms, section_lists=("somatic",))
        g_exc_uS = exc_k * self.rheobase_nA / (base.e_exc_mV - self.v_rest_mV)
        events_exc = n_exc * rate_exc_hz / 1000.0  # per ms
        events_inh = n_inh * rate_inh_hz / 1000.0
        w_exc = g_exc_uS / (events_exc * exp2syn_charge_per_event(base.tau1_exc_ms, base.tau2_exc_ms))
        w_inh = inh_to_exc_conductance * g_exc_uS / (events_inh * exp2syn_charge_per_event(base.tau1_inh_ms,
                                                                                            base.tau2_inh_ms))
        return dataclasses.replace(base, weight_exc_uS=round(w_exc, 9), weight_inh_uS=round(w_inh, 9))

    def ramp(self, end_k: float, dur_ms: float):
        return Ramp(amp_start_nA=0.0, amp_end_nA=round(end_k * self.rheobase_nA, 6), delay_ms=self.delay_ms,
                    dur_ms=dur_ms, tstop_ms=self.delay_ms + dur_ms + 100.0)


def recovery_protocols(scale: ProtocolScale):
    """Bursts followed by a long recorded recovery: short strong steps and high-frequency pulse trains.
    After a burst the dendrites draw a slow load (Ca-activated K, Ih, ...) that sets the pause before
    the next spike; in long steps it is masked by the tonic spikes that follow."""
    return [scale.step(1.6, 60, tail_ms=400.0), scale.step(2.0, 150, tail_ms=400.0),
            scale.pulse_train(8.0, 3, 100.0), scale.pulse_train(8.0, 5, 50.0)]


def training_protocols(scale: ProtocolScale, size: str = "standard", vclamp_mV=(), recovery: bool = False):
    """Protocols the model is fitted to. size: "standard" or "small" (tests, tiny cells);
    vclamp_mV: somatic voltage-clamp levels relative to rest (mV; needs scale.v_rest_mV);
    recovery: add :func:`recovery_protocols` (standard size)."""
    if vclamp_mV and scale.v_rest_mV is None:
        raise ValueError("voltage-clamp training protocols need the cell's resting potential (ProtocolScale.v_rest_mV)")
    if size == "small":
        return [scale.step(-0.5, 150), scale.step(0.6, 150), scale.step(1.3, 150), scale.ou(0.7, 0.6, 5.0, seed=1, dur_ms=300),
                *(scale.vstep(dv, 150.0, 100.0) for dv in sorted(set(vclamp_mV[:1] + vclamp_mV[-1:])))]
    return [
        # subthreshold and the approach to threshold: a hyperpolarising step, short steps around rheobase
        scale.step(-0.7, 500), scale.step(0.6, 400), scale.step(1.0, 400), scale.step(1.12, 400),
        scale.step(1.25, 400), scale.step(1.4, 400),
        # slow adaptation: long steps and a ramp
        scale.step(0.9, 1500), scale.step(1.2, 1500), scale.step(1.45, 1500), scale.ramp(2.0, 2000.0),
        # fluctuating input at three time constants (none of them the held-out 3 and 10 ms)
        scale.ou(0.8, 0.5, 5.0, seed=1), scale.ou(0.8, 0.5, 5.0, seed=2), scale.ou(0.6, 0.8, 20.0, seed=3),
        scale.ou(0.9, 0.4, 2.0, seed=4),
        # the dendrites' steady-state load and its slow kinetics below and near threshold
        *(scale.vstep(dv) for dv in vclamp_mV),
        *(recovery_protocols(scale) if recovery else ()),
    ]


def validation_protocols(scale: ProtocolScale, size: str = "standard"):
    """Protocols for early stopping and model selection (closed loop in NEURON); not test protocols."""
    if size == "small":
        return [scale.step(0.9, 150), scale.ou(0.6, 0.6, 8.0, seed=101, dur_ms=300)]
    return [scale.step(1.15, 1000), scale.ou(0.8, 0.5, 5.0, seed=101, dur_ms=1500)]


def held_out_protocols(scale: ProtocolScale, size: str = "standard"):
    """Held-out protocols of the benchmark: other amplitudes, longer steps, other noise, another ramp, and (when
    ``scale.v_rest_mV`` is known) somatic synaptic conductances, a kind of input never used in training."""
    synaptic = scale.v_rest_mV is not None
    if size == "small":
        return [scale.step(1.0, 200), scale.step(-0.8, 150), scale.ou(0.65, 0.7, 10.0, seed=202, dur_ms=300),
                *([scale.synaptic(1.5, seed=203, dur_ms=300.0)] if synaptic else [])]
    return [
        scale.step(1.1, 2000), scale.step(1.3, 2000), scale.step(1.6, 2000), scale.step(-1.0, 1000),
        scale.ou(0.8, 0.5, 5.0, seed=11, dur_ms=2000), scale.ou(0.7, 0.6, 10.0, seed=12, dur_ms=2000),
        scale.ou(0.9, 0.4, 3.0, seed=13, dur_ms=2000), scale.ramp(1.6, 1500.0),
        *([scale.synaptic(1.5, seed=21), scale.synaptic(2.0, seed=22)] if synaptic else []),
    ]


def protocol_kind(protocol) -> str:
    """'step' (depolarising, >= 1 s: 'long_step'), 'hyperpolarizing', 'noise', 'ramp' or 'synaptic' (for reports)."""
    d = protocol.to_dict()
    if d["type"] == "step":
        if d["amp_nA"] < 0:
            return "hyperpolarizing"
        return "long_step" if d["dur_ms"] >= 1000 else "step"
    if d["type"] == "ou":
        return "noise"
    if d["type"] == "vstep":
        return "voltage_clamp"
    return d["type"]

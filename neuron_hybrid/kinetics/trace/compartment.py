"""The known single compartment (HH or Pospischil), its learned channels, and the current-clamp protocols.

Units: V mV, t ms, stimulus as a current density in mA/cm2 (depolarising positive), conductances S/cm2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ... import channels as nc


DT = torch.float64


@dataclass(frozen=True)
class CompartmentModel:
    """Known single compartment: channels as (name, Channel, {gate: power}, gbar S/cm2, E mV)."""

    name: str
    channels: tuple  # (current name, Channel, powers dict, gbar, e_rev, channel params dict)
    g_leak: float
    e_leak: float
    cm: float = 1.0
    v_init: float = -65.0
    celsius: float = 6.3

    def gate_list(self):
        """[(current, gate, power)] in a fixed order."""
        return [(c[0], g, p) for c in self.channels for g, p in c[2].items()]

    def default_params(self) -> dict:
        out = {"cm": self.cm, "g_leak": self.g_leak, "e_leak": self.e_leak}
        for cur, _, _, g, e, _ in self.channels:
            out[f"g_{cur}"], out[f"e_{cur}"] = g, e
        return out


HH = CompartmentModel("hh", (("na", nc.hh_nh, {"m": 3, "h": 1}, 0.12, 50.0, {}),
                             ("k", nc.hh_nh, {"n": 4}, 0.036, -77.0, {})), 3e-4, -54.3, 1.0, -65.0, 6.3)


POSPISCHIL = CompartmentModel("pospischil", (("na", nc.na_pos, {"m": 3, "h": 1}, 0.05, 50.0, {}),
                                             ("k", nc.kdr_pos, {"n": 4}, 0.005, -90.0, {}),
                                             ("m", nc.km_pos, {"p": 1}, 1e-4, -90.0, {})), 1e-4, -70.0, 1.0, -70.0, 36.0)


MODELS = {"hh": HH, "pospischil": POSPISCHIL}


#: learned channel -> its gates
LEARN = {"k": ("n",), "na": ("m", "h")}


def step_stimulus(t, delay, dur, amp):
    """amp (mA/cm2, tensor [M] or scalar) for delay <= t < delay + dur (t: [T] ms) -> [M, T]."""
    on = ((t >= delay) & (t < delay + dur)).to(DT)
    return torch.as_tensor(amp, dtype=DT).reshape(-1, 1) * on.reshape(1, -1)


def noisy_stimulus(t, delay, dur, mean, sd, tau_ms, seed):
    """Ornstein-Uhlenbeck current (mA/cm2) with mean/sd, correlation time tau_ms, between delay and delay+dur."""
    g = torch.Generator().manual_seed(seed)
    dt = float(t[1] - t[0])
    a = math.exp(-dt / tau_ms)
    noise = (torch.randn(len(t), generator=g, dtype=DT) * sd * math.sqrt(1 - a * a)).numpy()
    x = np.zeros(len(t))
    for k in range(1, len(t)):
        x[k] = a * x[k - 1] + noise[k]
    on = ((t >= delay) & (t < delay + dur)).to(DT)
    return ((mean + torch.as_tensor(x, dtype=DT)) * on).reshape(1, -1)


def training_protocol(dt: float = 0.025, amp: float = 0.01, seed: int = 123, repeats: int = 1):
    """One current-clamp trace with a multi-step protocol (t [T] mid-step times, stim [1, T] mA/cm2).

    0-200 ms: a hyperpolarising step (-0.3 amp, 5-25 ms), steps of 0.4, 1.0 and 2.0 amp (35-60, 70-100,
    110-130 ms) and an Ornstein-Uhlenbeck current (mean 0.8 amp, sd 0.6 amp, 2 ms; 140-195 ms).
    Amplitudes, durations and the noise realisation differ from the held-out stimuli of the benchmark.
    repeats > 1: a longer trace (repeats x 200 ms), the same protocol again with the noise seeds seed + 1, ..."""
    if repeats < 1:
        raise ValueError(f"training_protocol: repeats must be >= 1, got {repeats}")
    t = torch.arange(0, 200, dt, dtype=DT) + dt / 2
    steps = (step_stimulus(t, 5, 20, -0.3 * amp) + step_stimulus(t, 35, 25, 0.4 * amp) + step_stimulus(t, 70, 30, amp)
             + step_stimulus(t, 110, 20, 2.0 * amp))
    parts = [steps + noisy_stimulus(t, 140, 55, 0.8 * amp, 0.6 * amp, 2.0, seed + r) for r in range(repeats)]
    return torch.cat([t + 200.0 * r for r in range(repeats)]), torch.cat(parts, 1)


def _known_rates(model: CompartmentModel, v, learned: tuple):
    """{gate: (x_inf, tau)} of the known gates at v (any shape)."""
    out = {}
    for cur, ch, powers, _, _, params in model.channels:
        need = [g for g in powers if g not in learned]
        if not need:
            continue
        r = ch.rates(v, celsius=model.celsius, gates=need, **params)
        for g in need:
            out[g] = r[g]
    return out

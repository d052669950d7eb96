"""Poisson-driven Exp2Syn barrages on dendrites (excitatory and inhibitory)."""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .base import (Protocol, ProtocolError, _check_int, _check_number, _check_window,
                   register_protocol)

#: Names of the independent random streams derived from ``seed`` (order is part of the format).
_STREAMS = ("placement_exc", "placement_inh", "spikes_exc", "spikes_inh")


def _weak_callback(handle):
    """FInitializeHandler callback that does not keep ``handle`` alive: a strong reference
    would form a cycle through the hoc object (handle -> FIH -> bound method -> handle) that
    Python's GC cannot see, leaking the synapses, their sections and their events forever."""
    ref = weakref.ref(handle)

    def callback():
        hd = ref()
        if hd is not None:
            hd._queue_events()

    return callback


def exp2syn_charge_per_event(tau1_ms: float, tau2_ms: float) -> float:
    """Integral over time of one ``Exp2Syn`` event's conductance per unit weight (ms; NEURON normalises the
    peak of tau2-tau1 difference of exponentials to the NetCon weight)."""
    t_peak = tau1_ms * tau2_ms / (tau2_ms - tau1_ms) * math.log(tau2_ms / tau1_ms)
    factor = 1.0 / (math.exp(-t_peak / tau2_ms) - math.exp(-t_peak / tau1_ms))
    return factor * (tau2_ms - tau1_ms)


@register_protocol
@dataclass
class Synaptic(Protocol):
    """Background synaptic bombardment: ``n_exc`` excitatory and ``n_inh`` inhibitory
    ``Exp2Syn`` synapses, each driven by an independent homogeneous Poisson train
    (``rate_exc_hz`` / ``rate_inh_hz``) active in ``[delay_ms, delay_ms + dur_ms)``
    (``dur_ms=None``: until ``tstop_ms``).

    Placement: each synapse picks a section with probability proportional to its length ``L``
    and a position ``x`` uniform in (0, 1), from ``seed``. The sections are those of the cell's
    section lists named in ``section_lists`` (attributes of the cell, default basal + apical),
    or an explicit list passed to :meth:`attach`; the same seed and the same section list give
    the same placement. Spike times are generated in NumPy from the seed, so they do not depend
    on dt. Four independent streams are derived with ``numpy.random.SeedSequence(seed).spawn``
    (exc placement, inh placement, exc spikes, inh spikes), so e.g. changing ``n_inh`` does not
    move the excitatory synapses.

    Units: rates Hz, weights uS (peak conductance of one event), times ms, reversal mV.
    """

    tstop_ms: float
    seed: int
    n_exc: int = 100
    n_inh: int = 25
    rate_exc_hz: float = 5.0
    rate_inh_hz: float = 10.0
    weight_exc_uS: float = 0.0005
    weight_inh_uS: float = 0.001
    tau1_exc_ms: float = 0.2
    tau2_exc_ms: float = 2.0
    tau1_inh_ms: float = 0.5
    tau2_inh_ms: float = 8.0
    e_exc_mV: float = 0.0
    e_inh_mV: float = -80.0
    delay_ms: float = 0.0
    dur_ms: Optional[float] = None
    section_lists: Tuple[str, ...] = ("basal", "apical")

    type_name = "synaptic"
    is_current = False

    def validate(self) -> None:
        _check_window(self)
        _check_int("seed", self.seed)
        _check_int("n_exc", self.n_exc)
        _check_int("n_inh", self.n_inh)
        for name in ("rate_exc_hz", "rate_inh_hz", "weight_exc_uS", "weight_inh_uS"):
            _check_number(name, getattr(self, name), nonneg=True)
        for name in ("tau1_exc_ms", "tau2_exc_ms", "tau1_inh_ms", "tau2_inh_ms"):
            _check_number(name, getattr(self, name), positive=True)
        for kind in ("exc", "inh"):
            if getattr(self, f"tau1_{kind}_ms") >= getattr(self, f"tau2_{kind}_ms"):
                raise ProtocolError(
                    f"field 'tau1_{kind}_ms' must be < 'tau2_{kind}_ms' (Exp2Syn rise < decay)")
        _check_number("e_exc_mV", self.e_exc_mV)
        _check_number("e_inh_mV", self.e_inh_mV)
        if isinstance(self.section_lists, str):
            self.section_lists = (self.section_lists,)
        self.section_lists = tuple(self.section_lists)
        if not all(isinstance(s, str) for s in self.section_lists):
            raise ProtocolError("field 'section_lists' must be a list of section-list names "
                                "such as 'basal', 'apical', 'somatic', 'axonal', 'all'")

    # -- deterministic parts -----------------------------------------------------------------
    def _rngs(self) -> Dict[str, np.random.Generator]:
        children = np.random.SeedSequence(int(self.seed)).spawn(len(_STREAMS))
        return {name: np.random.default_rng(ss) for name, ss in zip(_STREAMS, children)}

    @property
    def window_ms(self) -> Tuple[float, float]:
        end = self.tstop_ms if self.dur_ms is None else min(self.tstop_ms, self.delay_ms + self.dur_ms)
        return float(self.delay_ms), float(end)

    def placement_indices(self, lengths_um: Sequence[float]) -> List[Tuple[str, int, float]]:
        """``[(kind, section_index, x), ...]`` (excitatory first) for sections with the given
        lengths, chosen with probability proportional to length."""
        L = np.asarray(lengths_um, dtype=float)
        if L.ndim != 1 or len(L) == 0 or not np.all(L >= 0) or L.sum() <= 0:
            raise ValueError("synapse placement needs at least one section of positive length")
        p = L / L.sum()
        rngs = self._rngs()
        out = []
        for kind, n in (("exc", self.n_exc), ("inh", self.n_inh)):
            rng = rngs[f"placement_{kind}"]
            idx = rng.choice(len(L), size=n, p=p)
            xs = rng.uniform(0.0, 1.0, size=n)
            out += [(kind, int(i), float(x)) for i, x in zip(idx, xs)]
        return out

    def spike_times(self) -> Dict[str, List[np.ndarray]]:
        """``{"exc": [times of synapse 0, ...], "inh": [...]}`` in ms, sorted, inside the
        active window."""
        t0, t1 = self.window_ms
        rngs = self._rngs()
        out: Dict[str, List[np.ndarray]] = {}
        for kind, n, rate in (("exc", self.n_exc, self.rate_exc_hz),
                              ("inh", self.n_inh, self.rate_inh_hz)):
            rng = rngs[f"spikes_{kind}"]
            trains = []
            for _ in range(n):
                if rate <= 0 or t1 <= t0:
                    trains.append(np.zeros(0))
                    continue
                lam = rate * (t1 - t0) / 1000.0
                k = rng.poisson(lam)
                trains.append(np.sort(rng.uniform(t0, t1, size=k)))
            out[kind] = trains
        return out

    # -- NEURON ------------------------------------------------------------------------------
    def resolve_sections(self, cell_or_section, sections=None) -> list:
        """The sections synapses are spread over: ``sections`` if given, else the cell's lists
        named in ``section_lists`` (in that order, without duplicates), else the Section itself."""
        from neuron import nrn

        if sections is not None:
            secs = list(sections)
        elif isinstance(cell_or_section, nrn.Section):
            secs = [cell_or_section]
        else:
            secs = []
            missing = []
            for name in self.section_lists:
                lst = getattr(cell_or_section, name, None)
                if lst is None:
                    missing.append(name)
                    continue
                secs.extend(list(lst))
            if missing and not secs:
                raise ValueError(
                    f"the cell has no section list(s) {missing}; give 'section_lists' that exist "
                    f"(e.g. 'basal', 'apical', 'all') or pass sections=[...] to attach()")
        seen, uniq = set(), []
        for s in secs:
            if s not in seen:
                seen.add(s)
                uniq.append(s)
        if not uniq:
            raise ValueError("no sections to place synapses on")
        return uniq

    def placements(self, cell_or_section, sections=None) -> List[Tuple[str, object, float]]:
        """``[(kind, section, x), ...]`` for this cell (see :meth:`placement_indices`)."""
        secs = self.resolve_sections(cell_or_section, sections)
        return [(k, secs[i], x) for k, i, x in self.placement_indices([s.L for s in secs])]

    def attach(self, cell_or_section, dt_ms: float = 0.025, record: bool = False,
               sections=None, **kwargs):
        """Create the Exp2Syn synapses and their NetCons; spike times are queued with
        ``NetCon.event`` at every ``finitialize``. ``record=True`` records each synapse's
        current every ``dt_ms``. Returns a :class:`~neuron_hybrid.stimuli.handles.SynapticHandle`.
        """
        from .handles import SynapticHandle, _h

        h = _h()
        place = self.placements(cell_or_section, sections)
        spikes = self.spike_times()
        iters = {"exc": iter(spikes["exc"]), "inh": iter(spikes["inh"])}
        hd = SynapticHandle(protocol=self)
        for kind, sec, x in place:
            syn = h.Exp2Syn(sec(x))
            syn.tau1 = getattr(self, f"tau1_{kind}_ms")
            syn.tau2 = getattr(self, f"tau2_{kind}_ms")
            syn.e = getattr(self, f"e_{kind}_mV")
            nc = h.NetCon(None, syn)
            nc.weight[0] = getattr(self, f"weight_{kind}_uS")
            nc.delay = 0.0
            hd.synapses.append(syn)
            hd.netcons.append(nc)
            hd.kinds.append(kind)
            hd.placements.append((kind, sec, x))
            hd.spike_times_ms.append(next(iters[kind]))
        hd.objects += hd.synapses + hd.netcons
        hd._fih = h.FInitializeHandler(1, _weak_callback(hd))
        hd.objects.append(hd._fih)
        if record:
            rt = h.Vector()
            rt.record(h._ref_t, dt_ms)
            hd.t_vec = rt
            for syn in hd.synapses:
                v = h.Vector()
                v.record(syn._ref_i, dt_ms)
                hd.syn_i_vecs.append(v)
            hd.objects += [rt] + hd.syn_i_vecs
        return hd

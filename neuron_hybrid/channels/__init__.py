"""Ion channels defined once, generated for NEURON (NMODL) and torch.

Each channel is a :class:`Channel` (gates as sympy expressions of v (mV), celsius (degC) and, where
needed, cai (mM); gate exponents; ion or nonspecific reversal; gbar name and default). From that
single definition:

* ``channel.mod_text()`` gives the NMODL file; :func:`write_mod_files` writes all of them
  (``mod/channels/<SUFFIX>.mod`` in the repository, regenerate with
  ``python -m neuron_hybrid.channels``);
* ``channel.steady_state(v, ...)``, ``channel.time_constant(v, ...)``, ``channel.rates(v, ...)``,
  ``channel.current(v, states, gbar, e_rev)``, ``channel.step(states, v, dt, ...)`` are
  elementwise float64 torch functions (mV, ms, S/cm2, mA/cm2, outward positive);
* :mod:`neuron_hybrid.channels.simulate` integrates a single compartment with NEURON's fixed-step
  scheme in torch.

Defined mechanisms (``CHANNELS``, by SUFFIX): ``hh_nh`` (NEURON's ``hh`` without tables),
``na_pos``, ``kdr_pos``, ``km_pos`` (Pospischil et al. 2008), and the Hay et al. 2011 L5PC set
``NaTa_t``, ``NaTs2_t``, ``Nap_Et2``, ``K_Pst``, ``K_Tst``, ``SKv3_1``, ``SK_E2``, ``Ca_HVA``,
``Ca_LVAst``, ``Ih``, ``Im`` and the Ca pool ``CaDynamics_E2`` (a :class:`Pool`), the STG model
of Liu et al. 1998 (``stg_na``, ``stg_kd``, ``stg_cat``, ``stg_cas``, ``stg_kca``, ``stg_a``,
``stg_h``, pool ``stg_ca``) and the dopaminergic model with Qian et al. 2014 Na (``da_na``,
``da_kd``, ``da_cal``, ``da_can``, ``da_erg`` (kinetic scheme), ``da_nmda``). ``pas`` (NEURON's
built-in leak) is available as a Channel for the torch side but is not generated.
"""
from __future__ import annotations

from pathlib import Path

from .core import (CAI, CELSIUS, DEFAULT_REVERSAL, FARADAY, FARADAY_VALUE, V, Channel, Current, Gate,
                   Parameter, Pool, cnexp_step, default_reversal, nernst, vtrap, vtrap_torch)
from .hh import hh_nh, pas
from .simulate import Inserted, iclamp, simulate_compartment
from .pospischil import kdr_pos, km_pos, na_pos
from .hay2011 import (HAY2011, QT, CaDynamics_E2, Ca_HVA, Ca_LVAst, Ih, Im, K_Pst, K_Tst, NaTa_t,
                      NaTs2_t, Nap_Et2, SK_E2, SKv3_1)
from .stg import STG_CHANNELS, stg_a, stg_ca, stg_cas, stg_cat, stg_h, stg_kca, stg_kd, stg_na
from .da import DA_CHANNELS, da_cal, da_can, da_erg, da_kd, da_na, da_nmda

__all__ = [
    "V", "CELSIUS", "CAI", "FARADAY", "FARADAY_VALUE", "DEFAULT_REVERSAL", "Channel", "Current",
    "Gate", "Parameter", "Pool", "cnexp_step", "default_reversal", "nernst", "vtrap", "vtrap_torch",
    "hh_nh", "pas", "na_pos", "kdr_pos", "km_pos", "NaTa_t", "NaTs2_t", "Nap_Et2", "K_Pst", "K_Tst",
    "SKv3_1", "SK_E2", "Ca_HVA", "Ca_LVAst", "Ih", "Im", "CaDynamics_E2", "QT", "HAY2011",
    "stg_na", "stg_kd", "stg_cat", "stg_cas", "stg_kca", "stg_a", "stg_h", "stg_ca", "STG_CHANNELS",
    "da_na", "da_kd", "da_cal", "da_can", "da_erg", "da_nmda", "DA_CHANNELS",
    "CHANNELS", "INSTANTANEOUS", "INSTANTANEOUS_MOD_DIR", "write_instantaneous_mod_files", "POSPISCHIL", "Inserted", "iclamp", "simulate_compartment", "get", "generated_mod_texts", "write_mod_files", "MOD_DIR",
]

POSPISCHIL = (na_pos, kdr_pos, km_pos)

#: every generated mechanism by SUFFIX (Channels and Pools)
#: (mechanisms without gates are in :data:`INSTANTANEOUS`)
CHANNELS: dict[str, Channel | Pool] = {m.suffix: m for m in (hh_nh, *POSPISCHIL, *HAY2011, *STG_CHANNELS, *DA_CHANNELS)
                                       if not (isinstance(m, Channel) and not m.gates)}

#: generated mechanisms without gating states (instantaneous currents only, e.g. ``da_nmda``);
#: their MOD files live in ``mod/channels/instantaneous`` (no ``SOLVE``/``DERIVATIVE`` blocks)
INSTANTANEOUS: dict[str, Channel] = {m.suffix: m for m in (*STG_CHANNELS, *DA_CHANNELS)
                                     if isinstance(m, Channel) and not m.gates}

#: where the committed MOD files live: <repo>/mod/channels
MOD_DIR = Path(__file__).resolve().parents[2] / "mod" / "channels"
#: where the gateless mechanisms' MOD files live
INSTANTANEOUS_MOD_DIR = MOD_DIR / "instantaneous"


def get(suffix: str) -> Channel | Pool:
    """The mechanism with this SUFFIX (including the built-in ``pas`` and gateless mechanisms)."""
    if suffix == "pas":
        return pas
    if suffix in INSTANTANEOUS:
        return INSTANTANEOUS[suffix]
    return CHANNELS[suffix]


def write_instantaneous_mod_files(directory: str | Path = INSTANTANEOUS_MOD_DIR) -> list[Path]:
    """Write ``<SUFFIX>.mod`` for every mechanism of :data:`INSTANTANEOUS` (see
    :func:`write_mod_files`); stale ``*.mod`` files in ``directory`` are removed."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix, m in INSTANTANEOUS.items():
        path = directory / f"{suffix}.mod"
        text = m.mod_text()
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        paths.append(path)
    for path in directory.glob("*.mod"):
        if path not in paths:
            path.unlink()
    return paths


def generated_mod_texts() -> dict[str, str]:
    """``{file name: NMODL text}`` for every generated mechanism."""
    return {f"{suffix}.mod": m.mod_text() for suffix, m in CHANNELS.items()}


def write_mod_files(directory: str | Path = MOD_DIR, *, clean: bool = False) -> list[Path]:
    """Write ``<SUFFIX>.mod`` for every mechanism of :data:`CHANNELS` into ``directory``.

    Files whose content is unchanged are not rewritten. With ``clean=True``, other ``*.mod`` files
    in ``directory`` are removed (stale generated files). Returns the written paths.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    texts = generated_mod_texts()
    paths = []
    for name, text in texts.items():
        path = directory / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        paths.append(path)
    if clean:
        for path in directory.glob("*.mod"):
            if path.name not in texts:
                path.unlink()
    return paths

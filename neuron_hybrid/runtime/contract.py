"""The learned-current contract: what a module must provide to run inside NEURON.

A learned current is a ``torch.nn.Module`` with

* attributes ``n_latent: int`` (K >= 0), ``v_min``/``v_max`` (mV, the trained range) and ``kind``
  (``"density"``: current in mA/cm2, conductance in S/cm2; ``"point"``: nA and uS);
* ``rates(v: Tensor[N]) -> (z_inf: Tensor[N, K], tau: Tensor[N, K])``, tau in ms, with
  dz/dt = (z_inf(v) - z) / tau(v);
* ``current(v: Tensor[N], z: Tensor[N, K]) -> Tensor[N]``, outward positive;
* optionally ``conductance(v, z) -> di/dv`` (``neuron_hybrid.export`` adds one by autograd).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

KINDS = ("density", "point")


class ContractError(ValueError):
    """A module or file breaks the learned-current contract; the message says what and how to fix it."""


@dataclass(frozen=True)
class ContractInfo:
    """Attributes read from a conforming module."""

    n_latent: int
    v_min: float
    v_max: float
    kind: str


def read_attributes(module, where: str) -> ContractInfo:
    """Check and return ``n_latent``, ``v_min``, ``v_max`` and ``kind`` of a module."""
    missing = [a for a in ("n_latent", "v_min", "v_max", "kind") if not hasattr(module, a)]
    if missing:
        raise ContractError(
            f"{where} lacks the attribute(s) {', '.join(missing)}; a learned current needs n_latent (int), "
            "v_min and v_max (mV, the trained voltage range) and kind ('density' or 'point')"
        )
    for meth in ("rates", "current"):
        if not callable(getattr(module, meth, None)):
            hint = (
                " (a scripted module keeps methods other than forward only if they are marked @torch.jit.export; "
                "neuron_hybrid.export does this for you)"
                if isinstance(module, torch.jit.ScriptModule)
                else ""
            )
            raise ContractError(
                f"{where} has no method {meth}(); see the contract: rates(v) -> (z_inf, tau), current(v, z) -> i{hint}"
            )
    n = module.n_latent
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ContractError(f"{where}: n_latent must be an int >= 0, got {n!r}")
    try:
        v_min, v_max = float(module.v_min), float(module.v_max)
    except (TypeError, ValueError):
        raise ContractError(f"{where}: v_min and v_max must be numbers in mV, got {module.v_min!r}, {module.v_max!r}") from None
    if not (v_min < v_max) or not all(map(lambda x: abs(x) < 1e4, (v_min, v_max))):
        raise ContractError(f"{where}: need v_min < v_max (mV), got v_min={v_min}, v_max={v_max}")
    kind = module.kind
    if kind not in KINDS:
        raise ContractError(f"{where}: kind must be 'density' (mA/cm2) or 'point' (nA), got {kind!r}")
    return ContractInfo(n, v_min, v_max, kind)


def _call(where: str, what: str, fn, *args):
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - the user's model raised: report it with context
        raise ContractError(f"{where}: calling {what} failed: {type(exc).__name__}: {exc}") from exc


def check_numerics(module, info: ContractInfo, where: str, n_points: int = 1001, seed: int = 0) -> None:
    """Evaluate the module over [v_min, v_max] and check shapes, finiteness and tau > 0."""
    K = info.n_latent
    v = torch.linspace(info.v_min, info.v_max, n_points, dtype=torch.float64)
    out = _call(where, "rates(v)", module.rates, v)
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise ContractError(f"{where}: rates(v) must return a tuple (z_inf, tau), got {type(out).__name__}")
    zinf, tau = out
    for name, t in (("z_inf", zinf), ("tau", tau)):
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != (n_points, K):
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ContractError(
                f"{where}: rates(v) returned {name} of shape {shape} for v of shape ({n_points},); "
                f"expected ({n_points}, {K}) = (N, n_latent)"
            )
        bad = ~torch.isfinite(t)
        if bad.any():
            j, k = (int(x) for x in bad.nonzero()[0])
            raise ContractError(f"{where}: rates(v) gives a non-finite {name}[{k}] = {t[j, k].item()} at v = {v[j].item():.3f} mV")
    if (tau <= 0).any():
        j, k = (int(x) for x in (tau <= 0).nonzero()[0])
        raise ContractError(
            f"{where}: rates(v) gives tau[{k}] = {tau[j, k].item()} ms <= 0 at v = {v[j].item():.3f} mV; time constants "
            "must be positive (e.g. tau = softplus(x) + tau_min or exp(x))"
        )
    gen = torch.Generator().manual_seed(seed)
    states = [zinf]
    if K:
        perm = torch.randperm(n_points, generator=gen)
        states.append(zinf[perm])  # z_inf of other voltages: states the model can reach
    for z in states:
        i = _call(where, "current(v, z)", module.current, v, z)
        if not isinstance(i, torch.Tensor) or tuple(i.shape) != (n_points,):
            shape = tuple(i.shape) if isinstance(i, torch.Tensor) else type(i).__name__
            raise ContractError(
                f"{where}: current(v, z) returned shape {shape} for v ({n_points},) and z ({n_points}, {K}); expected ({n_points},)"
            )
        bad = ~torch.isfinite(i)
        if bad.any():
            j = int(bad.nonzero()[0, 0])
            raise ContractError(f"{where}: current(v, z) is non-finite ({i[j].item()}) at v = {v[j].item():.3f} mV, z = {z[j].tolist()}")
        if hasattr(module, "conductance"):
            g = _call(where, "conductance(v, z)", module.conductance, v, z)
            if not isinstance(g, torch.Tensor) or tuple(g.shape) != (n_points,):
                raise ContractError(f"{where}: conductance(v, z) must return a tensor of shape ({n_points},)")
            if (~torch.isfinite(g)).any():
                j = int((~torch.isfinite(g)).nonzero()[0, 0])
                raise ContractError(f"{where}: conductance(v, z) is non-finite at v = {v[j].item():.3f} mV")
    # batch independence: one voltage at a time gives the same numbers
    j = n_points // 3
    zi1, _ = _call(where, "rates(v)", module.rates, v[j : j + 1])
    i1 = _call(where, "current(v, z)", module.current, v[j : j + 1], zinf[j : j + 1])
    i_all = module.current(v, zinf)
    if not torch.allclose(zi1, zinf[j : j + 1], rtol=1e-9, atol=1e-12) or not torch.allclose(i1, i_all[j : j + 1], rtol=1e-9, atol=1e-15):
        raise ContractError(
            f"{where}: outputs for one voltage differ from the same voltage inside a batch; rates/current must act "
            "on each element independently (no batch statistics such as BatchNorm in training mode)"
        )

"""The compiled tapes against TorchScript for the reduction's axial current with trained-looking
parameters (negative slopes, per-latent constants), under aggressive garbage collection."""
import gc

import numpy as np
import torch

import neuron_hybrid as nh
from neuron_hybrid.models.axial import LatentAxialCurrent

from .conftest import OneLatentDensity


def test_axial_current_tapes_match_torchscript_under_gc(mechanisms, tmp_path):
    m = LatentAxialCurrent(n_latent=4, v_min=-110.0, v_max=70.0, e0_mV=-70.0, tau_init_ms=[0.2, 3.0, 40.0, 1000.0],
                           seed=0, v_rest_mV=-70.0, log_tau_range=8.0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        m.set_linear([0.01, 0.005, 0.002, 0.001], [4.1, -1.5, -0.35, -0.016], [0.0, 0.0, 0.0, 0.0],
                     [0.2, 3.0, 40.0, 1000.0])
        for p in m.net.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    threshold = gc.get_threshold()
    gc.set_threshold(1)  # collect garbage at every allocation while the tape is compiled
    try:
        path = nh.export(m, tmp_path / "axial.pt")
    finally:
        gc.set_threshold(*threshold)
    lc = nh.LearnedCurrent.load(path, engine="compiled")
    v = np.linspace(-110.0, 70.0, 361)
    z_c, tau_c = lc.rates(v)
    z_r, tau_r = (x.detach().numpy() for x in m.rates(torch.as_tensor(v)))
    np.testing.assert_allclose(z_c, z_r, rtol=0, atol=1e-9)
    np.testing.assert_allclose(tau_c, tau_r, rtol=1e-9)
    assert lc.engine_errors["tau"] < 1e-9


def test_constant_slots_are_not_reused_after_garbage_collection():
    """A constant's slot is keyed by the object's id: the compiler must keep the object alive, or a
    later constant allocated at the same address gets the earlier constant's values."""
    from neuron_hybrid.runtime.compiler import TVal, _Compiler

    comp = _Compiler(n_latent=1)
    examples = [torch.full([4], float(k), dtype=torch.float64) for k in range(40)]
    slots = []
    for ex in examples:  # nothing else is allocated between two constants: freed addresses are reused
        t = TVal(ex)
        slots.append(comp.slot_of(t))
        del t
        gc.collect()
    assert len(set(slots)) == 40
    consts = {out: vals for op, out, _, _, vals in comp.code if op == "const"}
    assert [consts[s][0] for s in slots] == [float(k) for k in range(40)]


class _EveryScalarOp(OneLatentDensity):
    """A one-latent current using every element-wise op the scalar tape interpreter runs."""

    def rates(self, v: torch.Tensor):
        x = v / 40.0
        zinf = torch.sigmoid(x) * 0.5 + 0.25 * torch.tanh(x) ** 2 + 0.1 * torch.sin(x) * torch.cos(x)
        tau = 1.0 + torch.exp(-x * x) + torch.nn.functional.softplus(x) + torch.relu(x) + torch.sqrt(x * x + 1.0)
        return zinf.unsqueeze(-1), tau.unsqueeze(-1)

    def current(self, v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        n = z[:, 0]
        x = (v + 30.0) / 25.0
        a = torch.expm1(x / 4.0) + torch.log1p(x * x) + torch.log(2.0 + torch.abs(x)) + torch.reciprocal(3.0 + x * x)
        b = torch.clamp(x, -1.5, 1.5) + torch.maximum(x, -x / 2.0) - torch.minimum(x, n) + torch.pow(1.0 + n, x / 10.0)
        c = torch.where(x > 0.3, a, b) + torch.where(x <= -0.2, -x, x * n) + (x < 0.0).to(x.dtype) * n ** 3
        d = (x >= 1.0).to(x.dtype) + (x == 0.5).to(x.dtype) + (x != 0.25).to(x.dtype) * 1e-3
        return 1e-3 * (c + d - a / (2.0 + n)) * (v + 77.0)


def test_every_scalar_op_matches_torchscript(mechanisms, tmp_path):
    """The compiled scalar program (one dispatch per instruction) against TorchScript, value and di/dv."""
    path = nh.export(_EveryScalarOp(), tmp_path / "ops.pt")
    lc = nh.LearnedCurrent.load(path, engine="compiled")
    ref = nh.LearnedCurrent.load(path, engine="torchscript")
    v = np.linspace(-99.0, 59.0, 317)
    z = np.linspace(0.05, 0.95, v.size).reshape(-1, 1)
    for a, b in zip(lc.rates(v), ref.rates(v)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    (i_c, g_c), (i_r, g_r) = lc.current(v, z), ref.current(v, z)
    np.testing.assert_allclose(i_c, i_r, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(g_c, g_r, rtol=1e-8, atol=1e-12)

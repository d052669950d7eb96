"""The chunked linear recurrence and its adjoint gradient against a plain step-by-step loop."""
import torch

from neuron_hybrid.train.scan import linear_recurrence


def _loop(log_alpha, b, z0, chunk, restart=None, z_restart=None):
    """z[n] = exp(log_alpha[n]) z[n-1] + b[n], one step at a time (differentiated by autograd)."""
    z, out = z0.expand(b.shape[0], b.shape[-1]), []
    for n in range(b.shape[1]):
        if restart is not None and n % chunk == 0:
            z = torch.where(restart[:, n // chunk, None], z_restart[:, n // chunk], z)
        z = torch.exp(log_alpha[:, n]) * z + b[:, n]
        out.append(z)
    return torch.stack(out, 1)


def _inputs(seed, S=3, T=70, K=2, chunk=16):
    g = torch.Generator().manual_seed(seed)
    la = (-torch.rand(S, T, K, generator=g, dtype=torch.float64) * 0.5).requires_grad_()
    b = torch.randn(S, T, K, generator=g, dtype=torch.float64).requires_grad_()
    z0 = torch.randn(S, K, generator=g, dtype=torch.float64).requires_grad_()
    C = -(-T // chunk)
    restart = torch.rand(S, C, generator=g) < 0.4
    zr = torch.randn(S, C, K, generator=g, dtype=torch.float64).requires_grad_()
    w = torch.randn(S, T, K, generator=g, dtype=torch.float64)
    return la, b, z0, restart, zr, w


def test_values_and_gradients_match_a_step_by_step_loop():
    chunk = 16
    for seed, with_restart in [(0, False), (1, True), (2, True)]:
        la, b, z0, restart, zr, w = _inputs(seed, chunk=chunk)
        if with_restart:
            restart[0, 0] = True  # a restart before the first chunk replaces z0
            args, kw = (la, b, z0), dict(restart=restart, z_restart=zr)
            leaves = (la, b, z0, zr)
        else:
            args, kw, leaves = (la, b, z0), {}, (la, b, z0)
        fast = linear_recurrence(*args, chunk=chunk, **kw)
        ref = _loop(*args, chunk, **kw)
        assert torch.allclose(fast, ref, rtol=1e-12, atol=1e-12)
        g_fast = torch.autograd.grad((fast * w).sum(), leaves)
        g_ref = torch.autograd.grad((ref * w).sum(), leaves)
        for a, r in zip(g_fast, g_ref):
            assert torch.allclose(a, r, rtol=1e-10, atol=1e-12), (a - r).abs().max()


def test_gradcheck_of_the_adjoint():
    la, b, z0, restart, zr, _ = _inputs(3, S=2, T=20, K=1, chunk=8)
    f = lambda la, b, z0, zr: linear_recurrence(la, b, z0, chunk=8, restart=restart, z_restart=zr)  # noqa: E731
    assert torch.autograd.gradcheck(f, (la, b, z0, zr))

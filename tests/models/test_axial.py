"""The reduction's axial current: modulated conductances keep the properties the closed loop relies on
(positive di/dV, zero current at rest, the untrained module equals the plain one)."""
import torch

from neuron_hybrid.models import LatentAxialCurrent


def _trained_looking(modulated: bool, seed: int = 2) -> LatentAxialCurrent:
    m = LatentAxialCurrent(n_latent=4, v_min=-110.0, v_max=60.0, e0_mV=-70.0, tau_init_ms=[0.2, 3.0, 40.0, 600.0],
                           seed=seed, v_rest_mV=-68.0, modulated=modulated)
    m.set_linear([0.01, 0.005, 0.002, 0.001], [1.5, -0.5, -0.3, 0.2], [0.0, 1.0, -2.0, 0.5], [0.2, 3.0, 40.0, 600.0])
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        m.net[-1].weight.normal_(0.0, 0.3, generator=gen)
    return m


def _latents(n=500, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return -110.0 + 170.0 * torch.rand(n, 4, generator=gen, dtype=torch.float64)


def test_a_new_modulated_module_equals_the_plain_one():
    plain, mod = _trained_looking(False), _trained_looking(True)
    v = torch.linspace(-110.0, 60.0, 500, dtype=torch.float64)
    z = _latents()
    torch.testing.assert_close(mod.current(v, z), plain.current(v, z), rtol=0, atol=0)
    torch.testing.assert_close(mod.rates(v), plain.rates(v), rtol=0, atol=0)
    assert not mod.mod_b.any() and plain.mod_b.requires_grad is False and mod.mod_b.requires_grad


def test_modulated_conductance_is_positive_bounded_and_shift_invariant():
    m = _trained_looking(True)
    with torch.no_grad():
        m.mod_b.copy_(torch.tensor([3.0, -3.0, 1.0, -0.5]))
        m.mod_m.mul_(30.0)  # saturating modulation
    z = _latents()
    g0 = m.w.detach() ** 2
    g = m.conductance_of(z).detach()
    assert (g >= 0).all() and (g <= 2 * g0).all()
    assert (g - g0).abs().max() > 0.5 * g0.min()  # it does modulate
    torch.testing.assert_close(m.conductance_of(z + 17.0), m.conductance_of(z))  # differences of latents only
    # di/dV (what NEURON's implicit step uses) is the positive total conductance
    v = torch.linspace(-100.0, 50.0, 500, dtype=torch.float64).requires_grad_(True)
    (didv,) = torch.autograd.grad(m.current(v, z).sum(), v)
    torch.testing.assert_close(didv, g.sum(-1))
    assert (didv > 0).all()


def test_modulated_current_vanishes_at_rest():
    m = _trained_looking(True)
    with torch.no_grad():
        m.mod_b.copy_(torch.tensor([2.0, -1.0, 0.5, 1.5]))
        m.mod_m.mul_(10.0)
    v_rest = torch.tensor([-68.0], dtype=torch.float64)
    z_rest = m.rates(v_rest)[0]
    assert abs(float(m.current(v_rest, z_rest).detach())) < 1e-12
    assert (m.conductance_of(z_rest) - m.w.detach() ** 2).abs().max() > 1e-4  # modulated at rest, still anchored


def test_states_saved_before_the_modulation_existed_still_load():
    plain = _trained_looking(False)
    old = {k: v for k, v in plain.state_dict().items() if not k.startswith("mod_")}
    fresh = LatentAxialCurrent(n_latent=4, v_min=-110.0, v_max=60.0, e0_mV=-70.0, seed=5, v_rest_mV=-68.0)
    fresh.load_state_dict(old)
    v = torch.linspace(-110.0, 60.0, 50, dtype=torch.float64)
    torch.testing.assert_close(fresh.rates(v), plain.rates(v))


def test_spike_drive_moves_z_inf_and_tau_only_during_spikes_and_old_states_load_without_it():
    m = _trained_looking(False)
    v = torch.linspace(-110.0, 60.0, 341, dtype=torch.float64)
    z0 = m.rates(v)[0].detach()
    m.spike_dz.copy_(torch.tensor([0.0, 0.0, 5.0, -5.0], dtype=torch.float64))
    z1 = m.rates(v)[0].detach()
    sub = v <= -50.0
    assert (z1 - z0)[sub].abs().max() < 5.0 * 1e-4  # sigma((-50 + 25) / 2.5) = 4.5e-5
    torch.testing.assert_close((z1 - z0)[v >= 20.0], torch.tensor([0.0, 0.0, 5.0, -5.0], dtype=torch.float64)
                               .expand(int((v >= 20.0).sum()), 4), atol=1e-6, rtol=0)
    tau0 = m.rates(v)[1].detach()
    m.spike_dlogtau.copy_(torch.tensor([0.0, -1.0, 0.0, 0.5], dtype=torch.float64))  # tau during spikes only
    tau1 = m.rates(v)[1].detach()
    assert ((tau1 / tau0 - 1.0)[sub].abs().max()) < 5.0 * 1e-4
    ratio = ((tau1 - m.tau_min) / (tau0 - m.tau_min))[v >= 20.0]
    torch.testing.assert_close(ratio, torch.exp(torch.tensor([0.0, -1.0, 0.0, 0.5], dtype=torch.float64))
                               .expand(int((v >= 20.0).sum()), 4), atol=0, rtol=1e-5)
    old = {k: val for k, val in m.state_dict().items() if k not in ("spike_dz", "spike_dlogtau")}
    fresh = LatentAxialCurrent(n_latent=4, v_min=-110.0, v_max=60.0, e0_mV=-70.0, seed=5, v_rest_mV=-68.0)
    fresh.load_state_dict(old)
    assert fresh.spike_dz.abs().max() == 0 and fresh.spike_dlogtau.abs().max() == 0
    torch.testing.assert_close(fresh.rates(v)[0], z0)
    torch.testing.assert_close(fresh.rates(v)[1], tau0)

"""Part 3: the HH K gate n recovered from one clean current-clamp trace (voltage-forced current matching,
batched L-BFGS, short multiple shooting), checked free-running on held-out stimuli."""
import numpy as np
import torch

from neuron_hybrid.kinetics.trace import (HH, TraceFitConfig, learned_curves, member_rmse, noisy_stimulus, simulate,
                                          step_stimulus, training_protocol, train_members)
from neuron_hybrid.kinetics.trace.compartment import _known_rates


# The noisy-trace tests of other stages switch the trajectory stage off (trajectory_levels=()): it is tested on its
# own below, and its rounds would add minutes each.


def _hh_training_trace(dt=0.025):
    """(stimulus [1, T], true parameters, true voltage [1, T+1]) of the multi-step training protocol."""
    torch.set_num_threads(1)
    _, stim = training_protocol(dt)
    p = {k: torch.full((1,), v, dtype=torch.float64) for k, v in HH.default_params().items()}
    with torch.no_grad():
        v = simulate(HH, stim, dt, p)
    return stim, p, v


def _n_gate_errors(nets, vg):
    """|learned - true| n_inf and |log(learned / true)| tau_n of member 0 at voltages vg (mV)."""
    c = learned_curves(nets, vg)["n"]
    true = _known_rates(HH, torch.as_tensor(vg), ())["n"]
    return np.abs(c[0][0] - true[0].numpy()), np.abs(np.log(c[1][0] / true[1].numpy()))


def test_recovers_hh_n_gate_from_clean_trace():
    dt = 0.025
    stim, p, v = _hh_training_trace(dt)
    cfg = TraceFitConfig(restarts=2, restart_rounds=0,
                         cm_steps=150, cm_lbfgs_steps=200, window_ms=(3.0,), tf_steps=8, max_windows=40,
                         cm_refine_known=False,
                         learn_conductance=False, parametric="off")
    nets = train_members(HH, "k", stim, v, dt, p, cfg)
    assert float(nets.train_rmse[0]) < 2.0
    # learned n_inf / tau_n in the visited sub-threshold and spiking range
    err_inf, err_tau = _n_gate_errors(nets, np.linspace(-70, 30, 21))
    assert err_inf.max() < 0.03
    assert err_tau.max() < 0.15
    # held-out stimuli: other amplitudes, a longer step, a noisy current
    t50 = torch.arange(0, 50, dt, dtype=torch.float64) + dt / 2
    t100 = torch.arange(0, 100, dt, dtype=torch.float64) + dt / 2
    for s in (step_stimulus(t50, 5, 40, 0.007), step_stimulus(t50, 5, 40, 0.013), step_stimulus(t100, 5, 90, 0.01),
              noisy_stimulus(t100, 5, 90, 0.01, 0.005, 2.0, 7)):
        with torch.no_grad():
            r = member_rmse(simulate(HH, s, dt, p, nets, ("n",)), simulate(HH, s, dt, p))
        assert float(r[0]) < 2.0, float(r[0])


def test_recovers_hh_n_gate_from_noisy_trace():
    """1 % white observation noise (sd 0.76 mV): n_inf / tau_n still match the true HH curves where the trace
    lives (smoothing from the estimated noise level, filtered current balance; current matching only)."""
    dt = 0.025
    stim, p, v = _hh_training_trace(dt)
    sd = 0.01 * float(v.abs().max())
    v_obs = v + sd * torch.randn(v.shape, generator=torch.Generator().manual_seed(1000), dtype=torch.float64)
    from neuron_hybrid.kinetics.trace import estimate_noise_sd
    from neuron_hybrid.kinetics.trace.smoothing import _smooth_auto
    assert abs(float(estimate_noise_sd(v_obs)[0]) / sd - 1) < 0.1
    vs, half = _smooth_auto(v_obs, dt, None, TraceFitConfig().smooth_auto)
    assert float(((vs - v) ** 2).mean().sqrt()) < 0.55 * sd
    # TraceFitConfig.smooth_auto sets the half-width (samples) from the estimated noise sd (mV)
    est = float(estimate_noise_sd(v_obs)[0])
    assert float(half[0]) == round(3 + est)
    # a wider window removes more noise from these slow 6.3 C spikes (but flattens fast ones: TraceFitConfig)
    wide, half = _smooth_auto(v_obs, dt, None, (6.0, 1.5))
    assert float(half[0]) == round(6 + 1.5 * est) and float(((wide - v) ** 2).mean().sqrt()) < 0.45 * sd
    cfg = TraceFitConfig(trajectory_levels=(), restarts=1, restart_rounds=0,
                         prior_steps=150, cm_steps=150, cm_lbfgs_steps=150, tf_steps=0, learn_conductance=False,
                         cm_refine_known=False,
                         parametric="off")
    nets = train_members(HH, "k", stim, v_obs, dt, p, cfg)
    vg = np.linspace(-70, 30, 21)
    err_inf, err_tau = _n_gate_errors(nets, vg)
    assert err_inf.max() < 0.04
    assert err_tau.max() < 0.3
    sub = vg <= -50  # the sub-threshold range that sets the firing rate
    assert err_inf[sub].max() < 0.015


def test_closed_form_stage_recovers_hh_n_rate_laws():
    """Stage 5: closed forms fitted to the networks and refined by Levenberg-Marquardt on the free-running error
    find HH's own rate laws for n (linoid alpha, exponential beta), run closer to the training trace than the
    networks they started from (so the selection keeps them) and stay within the issue's 2 mV on a held-out
    100 ms step (with this short CI budget of 8 iterations: 0.81 mV; the networks 0.24 mV)."""
    from neuron_hybrid.kinetics.parametric import FAMILIES
    from neuron_hybrid.kinetics.trace import SelectedGates

    dt = 0.025
    stim, p, v = _hh_training_trace(dt)
    cfg = TraceFitConfig(restarts=1, restart_rounds=0,
                         prior_steps=150, cm_steps=150, cm_lbfgs_steps=150, window_ms=(3.0,), tf_steps=4,
                         cm_refine_known=False,
                         max_windows=30, learn_conductance=False, parametric_top=1, parametric_steps=4,
                         parametric_lm_iters=8, parametric_lm_curricula=((1.0,),),
                         parametric_polish_iters=8)
    nets = train_members(HH, "k", stim, v, dt, p, cfg)
    assert isinstance(nets, SelectedGates) and bool(nets.use_parametric[0])
    assert FAMILIES[int(nets.parametric.family[0, 0])] == "linoid/exp"
    assert float(nets.parametric_train_rmse[0]) < 0.6 * float(nets.network_train_rmse[0])
    err_inf, err_tau = _n_gate_errors(nets, np.linspace(-70, 30, 21))
    assert err_inf.max() < 5e-3 and err_tau.max() < 0.02
    t100 = torch.arange(0, 100, dt, dtype=torch.float64) + dt / 2
    s = step_stimulus(t100, 5, 90, 0.01)  # held out: the most timing-sensitive test of the benchmark
    with torch.no_grad():
        truth = simulate(HH, s, dt, p)
        r = float(member_rmse(simulate(HH, s, dt, p, nets, ("n",)), truth)[0])
        r_net = float(member_rmse(simulate(HH, s, dt, p, nets.nets, ("n",)), truth)[0])
    print("closed form", nets.describe(0)["n"], "train RMSE", float(nets.parametric_train_rmse[0]), "networks",
          float(nets.network_train_rmse[0]), "held-out 100 ms step", r, "networks", r_net)
    assert r < 2.0, (r, r_net)
    assert "alpha" in nets.describe(0)["n"]


def test_current_matching_recovers_misspecified_known_parameters():
    """cm_refine_known: with cm assumed 6 % too high and g_na 5 % too low (clean trace), current matching refines
    them jointly with the n networks and finds the true values (the reference: the parameters that generated the
    trace), and the networks then run closer to the trace than those trained with the wrong values.
    cm_refine_known="both" trains both ways and keeps, per member, the fit closer to the training trace: member 0
    has the misspecified parameters, member 1 the exact ones."""
    from neuron_hybrid.kinetics.trace import MemberChoice

    dt = 0.025
    stim, p, v = _hh_training_trace(dt)
    assumed = {k: torch.cat([x, x]) for k, x in p.items()}
    assumed["cm"][0] *= 1.06
    assumed["g_na"][0] *= 0.95
    cfg = TraceFitConfig(restarts=1, restart_rounds=0, prior_steps=150, cm_steps=150, cm_lbfgs_steps=150, tf_steps=0,
                         learn_conductance=True, parametric="off", cm_refine_known="both")
    both = train_members(HH, "k", stim.repeat(2, 1), v.repeat(2, 1), dt, assumed, cfg)
    assert isinstance(both, MemberChoice)
    fixed, refined = both.candidates
    adj = {k: float(x.reshape(-1)[0]) for k, x in refined.adjust_params(assumed).items()}
    assert abs(adj["cm"] / float(p["cm"][0]) - 1) < 0.01, refined.known_u
    assert abs(adj["g_na"] / float(p["g_na"][0]) - 1) < 0.02, refined.known_u
    assert float(refined.train_rmse[0]) < 0.6 * float(fixed.train_rmse[0]), (refined.train_rmse, fixed.train_rmse)
    # the choice: per member the lower training error, and the combined model runs each member as its picked fit
    errs = torch.stack([fixed.train_rmse, refined.train_rmse])
    assert both.pick.tolist()[0] == 1 and both.pick.tolist() == errs.argmin(0).tolist()
    assert torch.equal(both.train_rmse, errs.min(0).values)
    t50 = torch.arange(0, 50, dt, dtype=torch.float64) + dt / 2
    s = step_stimulus(t50, 5, 40, 0.013).repeat(2, 1)
    with torch.no_grad():
        v_both = simulate(HH, s, dt, assumed, both, ("n",))
        for m in range(2):
            v_pick = simulate(HH, s, dt, assumed, both.candidates[int(both.pick[m])], ("n",))
            assert torch.allclose(v_both[m], v_pick[m], rtol=0, atol=1e-9)
    sub = both.subset([1])
    assert sub.M == 1 and sub.pick.tolist() == both.pick.tolist()[1:]


def test_current_matching_refines_only_the_named_known_parameters():
    """cm_refine_names: current matching corrects only those (here cm, assumed 6 % too high); every other known
    parameter stays at its assumed value."""
    dt = 0.025
    stim, p, v = _hh_training_trace(dt)
    assumed = dict(p, cm=p["cm"] * 1.06)
    cfg = TraceFitConfig(restarts=1, restart_rounds=0,
                         prior_steps=20, cm_steps=60, cm_lbfgs_steps=40, tf_steps=0, learn_conductance=False,
                         parametric="off", cm_refine_known=True, cm_refine_names=("cm",))
    nets = train_members(HH, "k", stim, v, dt, assumed, cfg)
    assert nets.known == ("cm",)
    adj = {k: float(torch.as_tensor(x).reshape(-1)[0]) for k, x in nets.adjust_params(assumed).items()}
    assert abs(adj["cm"] / float(p["cm"][0]) - 1) < 0.03, nets.known_u
    for k in ("g_leak", "e_leak", "g_na", "e_na"):
        assert adj[k] == float(torch.as_tensor(assumed[k]).reshape(-1)[0])


def test_more_closed_form_starts_never_fit_the_training_trace_worse():
    """Jittered starting points of the closed-form refinement (parametric_lm_starts) add rows to the search; the
    unjittered start is among them and each member keeps its best, so the chosen form runs at least as close to
    its (noisy) training trace as with one start."""
    dt = 0.025
    stim, p, v = _hh_training_trace(dt)
    v_obs = v + 0.05 * float(v.abs().max()) * torch.randn(v.shape, generator=torch.Generator().manual_seed(1003),
                                                         dtype=torch.float64)
    base = dict(trajectory_levels=(), restarts=1, restart_rounds=0,
                prior_steps=100, cm_steps=100, cm_lbfgs_steps=60, tf_steps=0, cm_refine_known=False,
                learn_conductance=False, parametric_top=1, parametric_steps=0, parametric_lm_iters=6,
                parametric_lm_curricula=((1.0,),), parametric_polish_iters=0, parametric="always")
    rmse = {}
    for starts in (1, 3):
        nets = train_members(HH, "k", stim, v_obs, dt, p, TraceFitConfig(parametric_lm_starts=starts, **base))
        rmse[starts] = float(nets.parametric_train_rmse[0])
    assert rmse[3] <= rmse[1] * (1 + 1e-9), rmse


def test_member_fit_does_not_depend_on_the_batch():
    """A member's initialisations are keyed by its seed, not its position: the member with seed 5 trained alone and
    trained beside another member (seed 3, a noisy trace) ends with the same networks, closed form and training
    error (restarts, closed-form jitter and both current-matching modes included)."""
    dt = 0.025
    stim, p, v = _hh_training_trace(dt)
    stim, v = stim[:, :2400], v[:, :2401]  # the first 60 ms: two steps (spiking), enough to tell fits apart
    v_noisy = v + 0.5 * torch.randn(v.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    cfg = TraceFitConfig(trajectory_levels=(), restarts=2, restart_rounds=0,
                         prior_steps=40, cm_steps=40, cm_lbfgs_steps=20, window_ms=(3.0,), tf_steps=2,
                         max_windows=10, parametric_fit_iters=20, parametric_steps=1, parametric_lm_iters=1,
                         parametric_lm_curricula=((1.0,),), parametric_polish_iters=1, parametric_lm_starts=2)
    pair = {k: x.repeat(2) for k, x in p.items()}
    both = train_members(HH, "k", torch.cat([stim, stim]), torch.cat([v_noisy, v]), dt, pair, cfg, member_seeds=[3, 5])
    alone = train_members(HH, "k", stim, v, dt, p, cfg, member_seeds=[5])
    assert abs(float(both.train_rmse[1]) / float(alone.train_rmse[0]) - 1) < 1e-6, (both.train_rmse, alone.train_rmse)
    vg = np.linspace(-80, 40, 13)
    a, b = learned_curves(both, vg)["n"], learned_curves(alone, vg)["n"]
    np.testing.assert_allclose(a[0][1], b[0][0], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(a[1][1], b[1][0], rtol=1e-6)
    assert both.describe(1) == alone.describe(0)
    # and the seed matters: another member seed, other initial networks
    from neuron_hybrid.kinetics.trace import LearnedGates
    w = [LearnedGates(1, ("n",), 8, 2, 0, member_keys=[(s, 0)]).ens.W[0] for s in (3, 5, 5)]
    assert not torch.equal(w[0], w[1]) and torch.equal(w[1], w[2])


def test_restart_rounds_retrain_only_the_members_above_the_noise_floor():
    """restart_rounds: a member whose fit stays above the noise floor of its own trace gets another round of fresh
    initialisations and keeps the better fit; a member at its floor is not retrained; the combined model runs each
    member exactly as its picked fit. The floor comes from the trace's estimated noise (reference: the sd of the
    noise that was added)."""
    from neuron_hybrid.kinetics.trace import MemberChoice, noise_floor_rmse

    dt = 0.025
    stim, p, v = _hh_training_trace(dt)
    stim, v = stim[:, :2400], v[:, :2401]
    sd = 0.5 * float(v.abs().max())  # very noisy: a short fit is within its floor
    noisy = v + sd * torch.randn(v.shape, generator=torch.Generator().manual_seed(1004), dtype=torch.float64)
    floor = noise_floor_rmse(torch.cat([v, noisy]), TraceFitConfig())
    assert float(floor[0]) < 0.11 and abs(float(floor[1]) / (1.05 * sd) - 1) < 0.05, (floor, sd)
    # a short fit: far from the clean trace (floor 0.13 mV), within 1.3 noise sds of the noisy one
    base = dict(trajectory_levels=(), restarts=1, prior_steps=30, cm_steps=30, cm_lbfgs_steps=10, tf_steps=0,
                parametric="off", learn_conductance=False, cm_refine_known=False, restart_floor_factor=1.3)
    pair = {k: x.repeat(2) for k, x in p.items()}
    S, V = torch.cat([stim, stim]), torch.cat([v, noisy])
    r0 = train_members(HH, "k", S, V, dt, pair, TraceFitConfig(restart_rounds=0, **base), member_seeds=[1, 2])
    floor = noise_floor_rmse(V, TraceFitConfig(**base))
    assert float(r0.train_rmse[0]) > float(floor[0]) and float(r0.train_rmse[1]) <= float(floor[1]), (r0.train_rmse,
                                                                                                      floor)
    log = []
    r1 = train_members(HH, "k", S, V, dt, pair, TraceFitConfig(restart_rounds=1, **base), log=log, member_seeds=[1, 2])
    assert isinstance(r1, MemberChoice)
    assert [e[3].tolist() for e in log if e[0] == "restart_round"] == [[0.0]]  # only member 0 was retrained
    first, second = r1.candidates
    assert second.M == 1 and torch.equal(first.train_rmse, r0.train_rmse)  # round 0 as without rounds
    assert float(second.train_rmse[0]) != float(r0.train_rmse[0])  # other initialisations
    assert torch.equal(r1.train_rmse, torch.minimum(r0.train_rmse, torch.cat([second.train_rmse, r0.train_rmse[1:]])))
    assert int(r1.pick[1]) == 0 and int(r1.rows[1]) == 1
    t50 = torch.arange(0, 50, dt, dtype=torch.float64) + dt / 2
    s = step_stimulus(t50, 5, 40, 0.013).repeat(2, 1)
    with torch.no_grad():
        v_r1 = simulate(HH, s, dt, pair, r1, ("n",))
        for m in range(2):
            cand = r1.candidates[int(r1.pick[m])]
            row = int(r1.rows[m])
            ref = simulate(HH, s[:1], dt, {k: x[:1] for k, x in pair.items()}, cand.subset([row]), ("n",))
            assert torch.allclose(v_r1[m], ref[0], rtol=0, atol=1e-9)
    assert r1.describe(0)["fit"].startswith("restart round") and r1.subset([1]).M == 1


def test_current_matching_keeps_na_activation_resolvable_under_noise():
    """Pospischil's Na m and h learned by current matching from a trace with 1 % noise: with the time-constant floor
    (cm_tau_floor_dt) m keeps a time constant near the true one (reference: Pospischil's rate laws), instead of
    collapsing to instantaneous (tau_m at the networks' 1 us bound, m_inf saturating near 0.5), and m_inf reaches
    the true plateau."""
    from neuron_hybrid.kinetics.trace import MODELS

    torch.set_num_threads(1)
    model, dt = MODELS["pospischil"], 0.025
    _, stim = training_protocol(dt)
    p = {k: torch.full((1,), v, dtype=torch.float64) for k, v in model.default_params().items()}
    with torch.no_grad():
        v = simulate(model, stim, dt, p)
    v_obs = v + 0.01 * float(v.abs().max()) * torch.randn(v.shape, generator=torch.Generator().manual_seed(1004),
                                                           dtype=torch.float64)
    cfg = TraceFitConfig(trajectory_levels=(), restarts=1, restart_rounds=0, prior_steps=150, cm_steps=150,
                         cm_lbfgs_steps=200, tf_steps=0, parametric="off", cm_refine_known=False)
    assert cfg.cm_tau_floor_dt >= 1.0
    nets = train_members(model, "na", stim, v_obs, dt, p, cfg, member_seeds=[4])
    vg = np.linspace(-50.0, 20.0, 15)  # where m opens during the spikes
    c = learned_curves(nets, vg)["m"]
    true = _known_rates(model, torch.as_tensor(vg), ())["m"]
    ratio = c[1][0] / true[1].numpy()
    assert 0.5 < np.median(ratio) < 2.0, ratio
    assert abs(c[0][0][-1] - float(true[0][-1])) < 0.1, (c[0][0], true[0])


def test_trajectory_estimation_denoises_beyond_the_linear_smoother():
    """HH Na at 5 % observation noise (sd ~3.8 mV): after current matching, the trajectory estimated jointly with the
    gate networks (data misfit / sigma^2 + current-balance misfit / sigma_I^2, sigma_I annealed; then current
    matching along it) runs much closer to the clean voltage than the Savitzky-Golay trace it starts from
    (reference: the noise-free simulation); a noise-free member in the same batch keeps its trace and networks."""
    from neuron_hybrid.kinetics.trace import MODELS
    from neuron_hybrid.kinetics.trace.current_matching import match_currents
    from neuron_hybrid.kinetics.trace.fit import _fit_prior
    from neuron_hybrid.kinetics.trace.trajectory import estimate_trajectory
    from neuron_hybrid.kinetics.trace.twin import LearnedGates

    torch.set_num_threads(1)
    model, dt = MODELS["hh"], 0.025
    stim = training_protocol(dt)[1][:, :4000].repeat(2, 1)  # 100 ms: the steps
    p = {k: torch.full((2,), v, dtype=torch.float64) for k, v in model.default_params().items()}
    with torch.no_grad():
        v = simulate(model, stim, dt, p)
    v_obs = v.clone()
    v_obs[0] += 0.05 * float(v.abs().max()) * torch.randn(v.shape[1], generator=torch.Generator().manual_seed(1000),
                                                           dtype=torch.float64)
    cfg = TraceFitConfig(restarts=1, prior_steps=150, cm_steps=150, cm_lbfgs_steps=100, cm_refine_known=False,
                         trajectory_levels=(0.03, 0.01, 0.003, 0.001), trajectory_iters=300, trajectory_rounds=1)
    nets = LearnedGates(2, ("m", "h"), cfg.width, cfg.depth, 0, channel="na", learn_conductance=True,
                        member_keys=[(0, 0), (1, 0)])
    _fit_prior(nets, [(0, 0), (1, 0)], 1, 0, cfg)
    vs, _, _ = match_currents(nets, model, "na", stim, v_obs, dt, p, cfg, False, None, lambda: False)
    vg = torch.linspace(-80, 40, 25, dtype=torch.float64).repeat(2, 1)
    with torch.no_grad():
        clean_curves = {g: (a[1].clone(), b[1].clone()) for g, (a, b) in nets(vg).items()}
    x, kn, _ = estimate_trajectory(nets, model, "na", stim, v_obs, vs, dt, p, cfg)
    before, after = float(member_rmse(vs, v)[0]), float(member_rmse(x, v)[0])
    assert before > 1.0 and after < 0.6 * before, (before, after)
    assert torch.equal(x[1], vs[1]) and torch.equal(vs[1], v_obs[1])
    with torch.no_grad():
        for g, (a, b) in nets(vg).items():
            assert torch.equal(a[1], clean_curves[g][0]) and torch.equal(b[1], clean_curves[g][1])
    assert set(kn) == {"n"} and kn["n"].shape == x.shape

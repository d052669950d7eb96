"""Gate networks: one small MLP of V per gate giving x_inf (sigmoid) and tau (positive, ms).

* :class:`GateMLP` is one gate's network (plain ``nn.Linear``/``tanh`` layers, so that the exported
  graph compiles to the runtime's fast engine).
* :class:`GatedChannel` is a learned current following the contract (README):
  ``i = gbar * prod_k x_k^p_k * (V - E)`` in mA/cm2 with one latent per gate.
* :func:`fit_gate_networks` fits many gates at once: the networks of all gates are stacked into one
  batched ensemble (weights ``[G, ...]``), trained full-batch with Adam on
  ``mean((x_inf - x_hat)^2)/s_x^2 + mean((ln tau - ln tau_hat)^2)`` (``s_x`` = max(std, 0.05)),
  then split into per-gate :class:`GateMLP` modules.

Voltages enter as ``u = (V - v_center)/v_scale`` with the centre and half-width of [v_min, v_max].
"""
import math
import time
from dataclasses import asdict, dataclass
from typing import List, Optional

import numpy as np
import torch
from torch import nn

__all__ = ["ChannelFitError", "GateFitConfig", "GateMLP", "GatedChannel", "GateEnsemble", "fit_gate_networks",
           "seeded_generator", "gated_channel_from_curves"]


@dataclass
class GateFitConfig:
    """Settings of :func:`fit_gate_networks`."""

    width: int = 32
    depth: int = 2
    steps: int = 3000
    lr: float = 1e-2
    lr_final: float = 1e-4
    #: L-BFGS iterations after Adam (full batch; the gates' problems are independent)
    lbfgs_steps: int = 300
    seed: int = 0
    #: lower bound of tau (ms) added to exp(output)
    tau_min_ms: float = 1e-4
    v_min_mV: float = -100.0
    v_max_mV: float = 60.0


class GateMLP(nn.Module):
    """One gate: ``u -> tanh layers -> (x_inf = sigmoid(o0), tau = tau_min + exp(o1))``; v in mV, tau in ms."""

    def __init__(self, width: int = 32, depth: int = 2, v_min: float = -100.0, v_max: float = 60.0,
                 tau_min_ms: float = 1e-4):
        super().__init__()
        self.v_center = 0.5 * (v_min + v_max)
        self.v_scale = 0.5 * (v_max - v_min)
        self.tau_min_ms = tau_min_ms
        layers = []
        n = 1
        for _ in range(depth):
            layers += [nn.Linear(n, width), nn.Tanh()]
            n = width
        layers.append(nn.Linear(n, 2))
        self.net = nn.Sequential(*layers)

    def forward(self, v: torch.Tensor):
        o = self.net(((v - self.v_center) / self.v_scale).unsqueeze(-1))
        return torch.sigmoid(o[:, 0]), self.tau_min_ms + torch.exp(torch.clamp(o[:, 1], -20.0, 20.0))


class GatedChannel(nn.Module):
    """Learned current ``gbar * prod x_k^p_k * (V - E)`` (mA/cm2; gbar S/cm2, E mV), one latent per gate."""

    n_latent: int
    v_min: float
    v_max: float
    kind: str

    def __init__(self, gates: List[GateMLP], powers: List[int], gbar: float, e_rev: float,
                 v_min: float = -100.0, v_max: float = 60.0, gate_names: Optional[List[str]] = None):
        super().__init__()
        if len(gates) != len(powers):
            raise ValueError("one power per gate")
        self.gates = nn.ModuleList(gates)
        self.powers = [int(p) for p in powers]
        self.gbar = float(gbar)
        self.e_rev = float(e_rev)
        self.n_latent = len(gates)
        self.v_min, self.v_max, self.kind = float(v_min), float(v_max), "density"
        self.gate_names = list(gate_names or [f"x{k}" for k in range(len(gates))])

    def rates(self, v: torch.Tensor):
        z = v.unsqueeze(-1)
        t = v.unsqueeze(-1)
        for k, g in enumerate(self.gates):  # unrolled by TorchScript; no list appends (fast-engine tape)
            xi, ta = g(v)
            if k == 0:
                z = xi.unsqueeze(-1)
                t = ta.unsqueeze(-1)
            else:
                z = torch.cat([z, xi.unsqueeze(-1)], dim=-1)
                t = torch.cat([t, ta.unsqueeze(-1)], dim=-1)
        return z, t

    def current(self, v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        g = self.gbar * (v - self.e_rev)
        k = 0
        for p in self.powers:
            x = z[:, k]
            for _ in range(p):
                g = g * x
            k += 1
        return g


def seeded_generator(*key: int) -> torch.Generator:
    """A torch generator seeded from a tuple of integers (numpy's SeedSequence: distinct keys, independent streams)."""
    state = np.random.SeedSequence([int(k) for k in key]).generate_state(2, np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


class GateEnsemble(nn.Module):
    """G independent gate MLPs evaluated together: weights are stacked along a leading gate axis.

    Row r is initialised from its own random stream, keyed by ``(seed, *row_keys[r])`` (default key ``(r,)``), so
    a network's initial weights do not depend on how many others share the ensemble."""

    def __init__(self, n_gates: int, width: int, depth: int, seed: int = 0, row_keys=None):
        super().__init__()
        keys = [(r,) for r in range(n_gates)] if row_keys is None else [tuple(k) for k in row_keys]
        if len(keys) != n_gates:
            raise ValueError(f"GateEnsemble: {len(keys)} row keys for {n_gates} networks")
        dims = [1] + [width] * depth + [2]
        Ws = [torch.empty(n_gates, dims[i], dims[i + 1], dtype=torch.float64) for i in range(len(dims) - 1)]
        bs = [torch.empty(n_gates, 1, dims[i + 1], dtype=torch.float64) for i in range(len(dims) - 1)]
        for r, key in enumerate(keys):
            gen = seeded_generator(seed, *key)
            for i in range(len(dims) - 1):
                bound = 1.0 / math.sqrt(dims[i])
                Ws[i][r] = (torch.rand(dims[i], dims[i + 1], generator=gen, dtype=torch.float64) * 2 - 1) * bound
                bs[i][r] = (torch.rand(1, dims[i + 1], generator=gen, dtype=torch.float64) * 2 - 1) * bound
        self.W = nn.ParameterList([nn.Parameter(w) for w in Ws])
        self.b = nn.ParameterList([nn.Parameter(b) for b in bs])

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u [G, N] (scaled voltage) -> raw outputs [G, N, 2]."""
        x = u.unsqueeze(-1)
        for i, (W, b) in enumerate(zip(self.W, self.b)):
            x = torch.baddbmm(b, x, W)
            if i < len(self.W) - 1:
                x = torch.tanh(x)
        return x

    def extract(self, k: int, cfg: GateFitConfig) -> GateMLP:
        m = GateMLP(cfg.width, cfg.depth, cfg.v_min_mV, cfg.v_max_mV, cfg.tau_min_ms).double()
        lin = [mod for mod in m.net if isinstance(mod, nn.Linear)]
        with torch.no_grad():
            for layer, W, b in zip(lin, self.W, self.b):
                layer.weight.copy_(W[k].T)
                layer.bias.copy_(b[k, 0])
        return m


def fit_gate_networks(v: np.ndarray, x_inf: np.ndarray, tau: np.ndarray, config: Optional[GateFitConfig] = None,
                      progress: bool = False) -> tuple:
    """Fit one :class:`GateMLP` per row of ``x_inf``/``tau`` ([G, N] on the voltages ``v`` [N] or [G, N], mV/ms).

    NaN entries are ignored. Returns (modules, info) with info: ``x_rmse``, ``tau_rel_rmse`` (RMSE of
    ln tau, about the relative error), ``x_mse``, ``tau_mse`` (ms^2) per gate, ``seconds``.
    """
    from tqdm import tqdm

    cfg = config or GateFitConfig()
    t0 = time.perf_counter()
    xi = torch.as_tensor(np.atleast_2d(x_inf), dtype=torch.float64)
    ta = torch.as_tensor(np.atleast_2d(tau), dtype=torch.float64)
    G, N = xi.shape
    vv = torch.as_tensor(np.broadcast_to(np.asarray(v, dtype=float), (G, N)).copy(), dtype=torch.float64)
    center, scale = 0.5 * (cfg.v_min_mV + cfg.v_max_mV), 0.5 * (cfg.v_max_mV - cfg.v_min_mV)
    u = (vv - center) / scale
    mask = torch.isfinite(xi) & torch.isfinite(ta) & (ta > 0)
    xi_t = torch.where(mask, xi, torch.zeros_like(xi))
    lt_t = torch.where(mask, torch.log(torch.where(mask, ta, torch.ones_like(ta)) - cfg.tau_min_ms * 0.0), torch.zeros_like(ta))
    cnt = mask.sum(1).clamp(min=1).to(torch.float64)
    mean_x = (xi_t * mask).sum(1) / cnt
    sx = torch.sqrt(((xi_t - mean_x[:, None]) ** 2 * mask).sum(1) / cnt).clamp(min=0.05)
    ens = GateEnsemble(G, cfg.width, cfg.depth, cfg.seed)
    with torch.no_grad():  # start at the mean: logit(mean x_inf), mean ln tau
        mlt = (lt_t * mask).sum(1) / cnt
        mx = mean_x.clamp(1e-4, 1 - 1e-4)
        ens.b[-1][:, 0, 0] += torch.log(mx / (1 - mx))
        ens.b[-1][:, 0, 1] += mlt
    opt = torch.optim.Adam(ens.parameters(), lr=cfg.lr)
    gamma = (cfg.lr_final / cfg.lr) ** (1.0 / max(1, cfg.steps))
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma)

    def losses():
        o = ens(u)
        xp = torch.sigmoid(o[..., 0])
        ltp = torch.log(cfg.tau_min_ms + torch.exp(torch.clamp(o[..., 1], -20.0, 20.0)))
        lx = (((xp - xi_t) ** 2) * mask).sum(1) / cnt / sx**2
        lt = (((ltp - lt_t) ** 2) * mask).sum(1) / cnt
        return lx, lt, xp, ltp

    for _ in tqdm(range(cfg.steps), desc=f"fitting {G} gate network(s)", disable=not progress, unit="step",
                  mininterval=2.0):
        opt.zero_grad()
        lx, lt, _, _ = losses()
        (lx + lt).sum().backward()
        opt.step()
        sched.step()
    if cfg.lbfgs_steps > 0:
        lb = torch.optim.LBFGS(ens.parameters(), lr=1.0, max_iter=cfg.lbfgs_steps, history_size=50,
                               tolerance_grad=1e-12, tolerance_change=1e-16, line_search_fn="strong_wolfe")

        def closure():
            lb.zero_grad()
            lx, lt, _, _ = losses()
            total = (lx + lt).sum()
            total.backward()
            return total

        lb.step(closure)
    with torch.no_grad():
        _, _, xp, ltp = losses()
        tp = torch.exp(ltp)
        tt = torch.exp(lt_t)
        info = {
            "x_mse": (((xp - xi_t) ** 2 * mask).sum(1) / cnt).numpy(),
            "tau_mse": (((tp - tt) ** 2 * mask).sum(1) / cnt).numpy(),
            "x_rmse": torch.sqrt(((xp - xi_t) ** 2 * mask).sum(1) / cnt).numpy(),
            "tau_rel_rmse": torch.sqrt(((ltp - lt_t) ** 2 * mask).sum(1) / cnt).numpy(),
            "seconds": time.perf_counter() - t0,
            "config": asdict(cfg),
        }
    return [ens.extract(k, cfg) for k in range(G)], info


class ChannelFitError(ValueError):
    """The curves cannot be fitted as asked (message names the problem and the fix)."""


def gated_channel_from_curves(curves, config: Optional[GateFitConfig] = None, *, current: Optional[str] = None,
                              cai_mM: Optional[float] = None, progress: bool = False,
                              gbar_S_cm2: Optional[float] = None, e_rev_mV: Optional[float] = None):
    """Fit gate networks to the gates of one current in ``curves`` and build the learned current.

    current: which current (e.g. ``"ik"``) when the mechanism has several (default: the first with gates).
    cai_mM: for calcium-dependent gates, the cai at which the curves are taken (the contract's rates
    depend on V only). Returns (GatedChannel, info) with info as in :func:`fit_gate_networks` plus
    ``gate_names``, ``powers``, ``gbar``, ``e_rev``, ``current``.
    gbar_S_cm2, e_rev_mV: overrides of the maximal conductance and reversal potential. The learned current is
    ohmic, ``gbar * prod(x^p) * (V - E)``; a current measured not to be (``i_open``: an instantaneous
    voltage-dependent factor, a GHK driving force, a POINT_PROCESS in uS) is refused unless ``gbar_S_cm2``
    is given, which fits the gates with that ohmic approximation.
    """
    groups = {k: g for k, g in curves.currents().items()}
    if current is None:
        current = next(iter(groups))
    if current not in groups:
        raise ChannelFitError(f"{curves.mechanism} has no current {current!r}; choose one of {sorted(groups)}")
    gates = groups[current]
    sel = []
    for g in gates:
        if g.depends_on_cai:
            if cai_mM is None:
                raise ChannelFitError(f"gate {g.name} of {curves.mechanism} depends on cai; a learned current's rates depend "
                                 "on V only: pass cai_mM (fit-channel --cai) to fit it at a fixed calcium concentration")
            g = g.at_cai(cai_mM)
        sel.append(g)
    for g in sel:
        if g.power is None:
            raise ChannelFitError(f"the exponent of gate {g.name} is unknown (not found in the MOD file's BREAKPOINT); "
                             "give it with fit-channel --power GATE=P")
    g0 = sel[0]
    e_rev = g0.e_rev if e_rev_mV is None else float(e_rev_mV)
    where = f"current {current} of {curves.mechanism}"
    if gbar_S_cm2 is not None:
        gbar = float(gbar_S_cm2)
    else:
        if g0.point_process:
            raise ChannelFitError(f"{curves.mechanism} is a POINT_PROCESS (conductance {g0.gbar_name} = {g0.gbar} uS); the "
                             "learned current and the distilled mechanism are density mechanisms: give the maximal "
                             "conductance density with fit-channel --gbar S_PER_CM2")
        if e_rev is None and g0.i_open is not None:
            raise ChannelFitError(f"{where} has no (V - E) driving force in its BREAKPOINT (e.g. a GHK current "
                             f"{g0.gbar_name or 'p'}*...*ghk(v, cai, cao)); fit-channel's learned and distilled currents "
                             "are ohmic, gbar*prod(x^p)*(V - E): to fit the gates with an ohmic approximation give "
                             "fit-channel --e-rev MV and --gbar S_PER_CM2")
        g_open = g0.open_conductance(e_rev)
        if g_open is not None and np.isfinite(g_open).any():
            lo, hi = float(np.nanmin(g_open)), float(np.nanmax(g_open))
            if not (lo > 0 and hi - lo <= 1e-6 * hi):
                raise ChannelFitError(
                    f"{where} is not gbar*prod(x^p)*(V - E) in the gates {[g.name for g in sel]}: with every gate "
                    f"open its conductance i/(V - E) still varies with V ({lo:.3g} .. {hi:.3g} S/cm2 over "
                    f"{g0.v[0]:g}..{g0.v[-1]:g} mV). The BREAKPOINT has an instantaneous voltage-dependent factor "
                    "that is not a STATE (such as minf of a persistent Na channel) or a non-ohmic driving force "
                    "(GHK). Make that factor a STATE gate (m' = (minf - m)/mtau with a small mtau) in the MOD file "
                    "and measure again, or give fit-channel --gbar S_PER_CM2 to fit the STATE gates alone with an "
                    "ohmic approximation that leaves the factor out")
        gbar = g0.gbar
        if gbar is None:
            raise ChannelFitError(f"the maximal conductance of {where} is unknown (conductance parameter "
                             f"{g0.gbar_name or 'not found'} in the BREAKPOINT); give it with fit-channel --gbar S_PER_CM2")
    if e_rev is None:
        raise ChannelFitError(f"the reversal potential of {current} is unknown; give it with fit-channel --e-rev MV")
    cfg = config or GateFitConfig()
    v = sel[0].v
    cfg.v_min_mV, cfg.v_max_mV = float(v.min()), float(v.max())
    nets, info = fit_gate_networks(v, np.stack([g.x_inf for g in sel]), np.stack([g.tau for g in sel]), cfg, progress)
    model = GatedChannel(nets, [g.power for g in sel], gbar, e_rev, cfg.v_min_mV, cfg.v_max_mV, [g.name for g in sel])
    info.update(gate_names=[g.name for g in sel], powers=[g.power for g in sel], gbar=gbar, e_rev=e_rev, current=current)
    return model, info

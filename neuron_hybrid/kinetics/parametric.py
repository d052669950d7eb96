"""Closed-form gates in torch, batched over members: the low-dimensional alternative to gate networks.

Each gate of each member is one family with 8 parameters (voltages in units of 10 mV inside, so that every
parameter is of order one for the optimiser; ``u = V / 10``):

* HH alpha/beta families ``(fa, fb)``, fa, fb in {exp, sigmoid, linoid}: x_inf = a / (a + b),
  tau = exp(c0) + 1 / (a + b) ms, with rates (1/ms)

  - exp:     ln r = c + s (u - vh)                  (vh is fixed: it is redundant with c)
  - sigmoid: ln r = c - softplus(-s (u - vh))
  - linoid:  r = exp(c) z / (1 - exp(-z)),  z = s (u - vh)

  slots ``[c_a, vh_a, s_a, c_b, vh_b, s_b, c0, -]``. This covers the standard rate families of HH-type
  channel models exactly (HH, Traub/Pospischil Na and K, most published K, Na and Ca gates);
* ``sep``: Boltzmann x_inf = 1 / (1 + exp(-s1 (u - vh1))) and a bell-shaped time constant
  tau = exp(c0) + exp(c) / (exp(s2 (u - vh2)) + exp(-s3 (u - vh2))) ms (M-type, Ih-type gates);
  slots ``[vh1, s1, c0, c, vh2, s2, s3, -]``.

:class:`ParametricGates` has the interface of :class:`~.trace.LearnedGates` (``forward``, ``channel_mods``,
``subset``, ``copy_members_from``, ``log_g``, ``de``), so the twin, multiple shooting and the batched
L-BFGS of :mod:`.trace` use it unchanged. :func:`fit_to_curves` fits every family to given curves (e.g. a
trained network's) from a grid of starting points, all rows in one batch; :func:`family_formula` prints one.
"""
from __future__ import annotations

import math

import torch

DT = torch.float64

RATE_FORMS = ("exp", "sigmoid", "linoid")
#: family index -> name; 0..8 alpha/beta pairs, 9 the separate Boltzmann + bell form
FAMILIES = tuple(f"{a}/{b}" for a in RATE_FORMS for b in RATE_FORMS) + ("boltzmann+bell",)
N_SLOTS = 8
_ZMAX = 80.0


def _log_linoid(z):
    """ln(z / (1 - exp(-z))), stable for every z (limit 0 at z = 0)."""
    z = z.clamp(-_ZMAX, _ZMAX)
    small = z.abs() < 1e-4
    zs = torch.where(small, torch.ones_like(z), z)
    val = torch.log(zs / -torch.expm1(-zs))
    return torch.where(small, 0.5 * z, val)


def _log_rate(form, c, vh, s, u):
    """ln rate (1/ms) of ``form`` (int tensor, 0 exp, 1 sigmoid, 2 linoid) at u = V/10 mV."""
    z = s * (u - vh)
    le = c + s * (u + 5.0)  # exp: vh fixed at -50 mV
    ls = c - torch.nn.functional.softplus(-z)
    ll = c + _log_linoid(z)
    return torch.where(form == 0, le, torch.where(form == 1, ls, ll))


def gate_curves(family, theta, v):
    """(x_inf, tau ms) of closed-form gates: family [R] (int), theta [R, 8], v [R, N] mV -> [R, N] each."""
    u = v / 10.0
    th = [theta[:, k:k + 1] for k in range(N_SLOTS)]
    fam = family.reshape(-1, 1)
    fa, fb = fam // 3, fam % 3
    la = _log_rate(fa, th[0], th[1], th[2], u)
    lb = _log_rate(fb, th[3], th[4], th[5], u)
    x_ab = torch.sigmoid(la - lb)
    ltau_ab = torch.logaddexp(th[6], -torch.logaddexp(la, lb))
    # separate Boltzmann + bell
    x_sep = torch.sigmoid(th[1] * (u - th[0]))
    d = u - th[4]
    ltau_sep = torch.logaddexp(th[2], th[3] - torch.logaddexp(th[5] * d, -th[6] * d))
    sep = fam == 9
    x = torch.where(sep, x_sep, x_ab)
    ltau = torch.where(sep, ltau_sep, ltau_ab).clamp(-12.0, 12.0)
    return x, torch.exp(ltau)


class KnownCorrections:
    """Mixin of gate modules with corrections ``known_u`` [M, K] of the known compartment's parameters named in
    ``known`` (capacitance and conductances times exp(u), reversal potentials + 10 u mV)."""

    @property
    def refine_known(self) -> bool:
        """Whether the corrections are trainable."""
        return bool(self.known_u.requires_grad)

    def set_refine_known(self, on: bool = True):
        """Make the corrections trainable (or frozen); returns self."""
        self.known_u.requires_grad_(bool(on and self.known))
        return self

    def adjust_params(self, params: dict) -> dict:
        """The known compartment's parameters with these corrections (see :func:`adjust_known`); applied by
        :func:`.trace.simulate`."""
        return adjust_known(params, self.known, self.known_u)

    def known_corrections(self, member: int) -> dict:
        """{name: "x1.023" (factor) or "+0.41 mV" (shift)} of one member's corrections."""
        out = {}
        for i, k in enumerate(self.known):
            u = float(self.known_u.detach()[member, i])
            out[k] = f"{10 * u:+.3g} mV" if k.startswith("e_") else f"x{math.exp(u):.4g}"
        return out


class ParametricGates(KnownCorrections, torch.nn.Module):
    """Closed-form learned gates of M members: ``family`` [M, G] (indices into :data:`FAMILIES`), parameters
    ``theta`` [M, G, 8]; optional conductance scale exp(log_g) and reversal shift de (mV) per member, and optional
    corrections ``known_u`` [M, K] of the known compartment's parameters named in ``known`` (see
    :meth:`adjust_params`; trained only with ``refine_known``)."""

    def __init__(self, family, theta, gates: tuple, channel: str = "", learn_conductance: bool = True,
                 log_g=None, de=None, known: tuple = (), known_u=None, refine_known: bool = False):
        super().__init__()
        self.gates, self.channel = tuple(gates), channel
        self.M = int(theta.shape[0])
        self.register_buffer("family", torch.as_tensor(family, dtype=torch.long).reshape(self.M, len(self.gates)))
        self.theta = torch.nn.Parameter(torch.as_tensor(theta, dtype=DT).clone())
        self.learn_conductance = bool(learn_conductance)
        z = torch.zeros(self.M, dtype=DT)
        self.log_g = torch.nn.Parameter(z.clone() if log_g is None else log_g.detach().clone().to(DT),
                                        requires_grad=self.learn_conductance)
        self.de = torch.nn.Parameter(z.clone() if de is None else de.detach().clone().to(DT),
                                     requires_grad=self.learn_conductance)
        # corrections of the known compartment's parameters (see adjust_params); trainable only when refined
        self.known = tuple(known)
        u = torch.zeros(self.M, len(self.known), dtype=DT) if known_u is None else known_u.detach().clone().to(DT)
        self.known_u = torch.nn.Parameter(u, requires_grad=bool(refine_known and self.known))

    def forward(self, v):
        """v [M, N] mV -> {gate: (x_inf [M, N], tau [M, N] ms)}."""
        return {g: gate_curves(self.family[:, j], self.theta[:, j], v) for j, g in enumerate(self.gates)}

    def channel_mods(self):
        return self.channel, torch.exp(self.log_g), self.de

    def distinct(self):
        """Per gate, its distinct (family, parameters) among the members: [(family [U], theta [U, 8], index [M])]
        with member m's gate = row index[m] (no autograd). The Levenberg-Marquardt Jacobian simulates every member
        once per parameter, and most of those rows change only the other gates' or the known parameters: with two
        learned gates (Na m, h) a third of the tables are distinct."""
        out = []
        with torch.no_grad():
            for j in range(len(self.gates)):
                key = torch.cat([self.family[:, j:j + 1].to(DT), self.theta[:, j]], 1)
                uniq, inv = torch.unique(key, dim=0, return_inverse=True)
                out.append((uniq[:, 0].long(), uniq[:, 1:].contiguous(), inv))
        return out

    def subset(self, idx) -> "ParametricGates":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return ParametricGates(self.family[idx], self.theta.detach()[idx], self.gates, self.channel,
                               self.learn_conductance, self.log_g[idx], self.de[idx], self.known,
                               self.known_u.detach()[idx], self.refine_known)

    def copy_members_from(self, other: "ParametricGates", mask):
        mask = torch.as_tensor(mask)
        with torch.no_grad():
            self.theta[mask] = other.theta[mask]
            self.family[mask] = other.family[mask]
            self.log_g[mask] = other.log_g[mask]
            self.de[mask] = other.de[mask]
            self.known_u[mask] = other.known_u[mask]

    def free_mask(self):
        """[M, G, 8] bool: the slots that are free parameters of each member's families (the exponential form's
        midpoint is redundant; the alpha/beta families' tau floor is fixed at its start, ~1 us, because it only
        matters where it would become degenerate)."""
        fam = self.family
        fa, fb = fam // 3, fam % 3
        m = torch.ones(fam.shape + (N_SLOTS,), dtype=torch.bool)
        ab = fam != 9
        m[..., 7] = False
        m[..., 6] &= ~ab
        m[..., 1] &= ~(ab & (fa == 0))
        m[..., 4] &= ~(ab & (fb == 0))
        return m

    def n_params(self) -> int:
        """Free parameters per member (7 per gate, + 2 with the conductance scale and reversal shift, + the refined
        known parameters)."""
        refined = len(self.known) if self.refine_known else 0
        return 7 * len(self.gates) + (2 if self.learn_conductance else 0) + refined

    def formulas(self, member: int) -> dict:
        """{gate: text} of member ``member``'s closed forms (V in mV, tau in ms)."""
        return {g: family_formula(int(self.family[member, j]), self.theta[member, j].detach().tolist())
                for j, g in enumerate(self.gates)}


def adjust_known(params: dict, known: tuple, known_u) -> dict:
    """The known compartment's parameters (``{"cm", "g_leak", "e_leak", "g_<cur>", "e_<cur>"}``, tensors [M] or
    floats) with corrections ``known_u`` [M, K] of the names in ``known``: capacitance and conductances times
    exp(u), reversal potentials + 10 u mV."""
    if not known:
        return params
    out = dict(params)
    for i, k in enumerate(known):
        base = torch.as_tensor(params[k], dtype=DT)
        u = known_u[:, i]
        out[k] = base + 10.0 * u if k.startswith("e_") else base * torch.exp(u)
    return out


def _vminus(vh_mV: float) -> str:
    """'v+40' / 'v-40' for v - vh_mV."""
    return f"v+{-vh_mV:.4g}" if vh_mV < 0 else f"v-{vh_mV:.4g}"


def _ratio(a: float, b: float) -> float:
    return a / b if b != 0 else math.inf


def _exp(x: float) -> float:
    """math.exp that gives inf instead of raising for huge arguments (a degenerate fitted parameter)."""
    return math.exp(x) if x < 700.0 else math.inf


def family_formula(family: int, p) -> str:
    """A readable formula of one closed-form gate (V mV, rates 1/ms, tau ms)."""
    def rate(form, c, vh, s):
        a, k = _exp(c), 10.0 / s if s != 0 else math.inf
        d = _vminus(10 * vh)
        if form == 0:
            return f"{a:.4g}*exp((v+50)/{k:.4g})"
        if form == 1:
            return f"{a:.4g}/(1+exp(-({d})/{k:.4g}))"
        return f"{a / k:.4g}*({d})/(1-exp(-({d})/{k:.4g}))"
    if family == 9:
        d1, d2 = _vminus(10 * p[0]), _vminus(10 * p[4])
        return (f"x_inf = 1/(1+exp(-({d1})/{_ratio(10, p[1]):.4g})); tau = {_exp(p[2]):.3g} + "
                f"{_exp(p[3]):.4g}/(exp(({d2})/{_ratio(10, p[5]):.4g}) + exp(-({d2})/{_ratio(10, p[6]):.4g})) ms")
    fa, fb = divmod(family, 3)
    return (f"alpha = {rate(fa, p[0], p[1], p[2])}; beta = {rate(fb, p[3], p[4], p[5])}; x_inf = alpha/(alpha+beta); "
            f"tau = {_exp(p[6]):.3g} + 1/(alpha+beta) ms")


def _starts(family: int):
    """Starting parameter vectors of one family (a deterministic grid: rate midpoints and directions)."""
    out = []
    if family == 9:
        for vh in (-7.0, -5.0, -3.0, -1.0):
            for s in (1.0, -1.0):
                out.append([vh, s, -7.0, 1.5, vh, 0.5, 0.5, 0.0])
        return out
    fa, fb = divmod(family, 3)
    for vh in (-6.0, -4.0, -2.0):
        for sa in (1.0, -1.0):
            # opening and closing rates run in opposite directions; midpoints shared at first
            out.append([0.0 if fa != 2 else -1.0, vh, sa, 0.0 if fb != 2 else -1.0, vh, -sa, -7.0, 0.0])
    return out


class _CurveFit(torch.nn.Module):
    """Rows = (member, gate, family, start); used with :func:`.trace.batched_lbfgs` (rows are independent)."""

    def __init__(self, family, theta):
        super().__init__()
        self.register_buffer("family", family)
        self.theta = torch.nn.Parameter(theta)


def fit_to_curves(v, x_inf, tau, weight=None, families=None, iters: int = 150, x_scale: float = 0.01,
                  tau_rel: float = 0.05):
    """Fit every closed-form family to curves of R gates (v [N] mV; x_inf, tau [R, N]; weight [R, N] >= 0).

    Loss per row: mean weight * ((x - x_inf)/x_scale)^2 + ((ln tau' - ln tau)/tau_rel)^2 (x_inf to ~0.01,
    tau to ~5 %). Returns (losses [R, F], theta [R, F, 8]) with the best start of every family."""
    from .trace.optim import batched_lbfgs

    fams = list(range(len(FAMILIES))) if families is None else list(families)
    v = torch.as_tensor(v, dtype=DT)
    x_inf, tau = torch.as_tensor(x_inf, dtype=DT), torch.as_tensor(tau, dtype=DT)
    R, N = x_inf.shape
    w = torch.ones(R, N, dtype=DT) if weight is None else torch.as_tensor(weight, dtype=DT)
    w = w / w.mean(1, keepdim=True).clamp_min(1e-12)
    rows_f, rows_r, rows_th = [], [], []
    for f in fams:
        for st in _starts(f):
            for r in range(R):
                rows_f.append(f), rows_r.append(r), rows_th.append(st)
    fam = torch.tensor(rows_f, dtype=torch.long)
    rr = torch.tensor(rows_r, dtype=torch.long)
    mod = _CurveFit(fam, torch.tensor(rows_th, dtype=DT))
    vv = v.reshape(1, -1).expand(len(fam), N)
    lt, xt, ww = torch.log(tau[rr]), x_inf[rr], w[rr]

    def loss_fn():
        x, t = gate_curves(mod.family, mod.theta, vv)
        per = (ww * (((x - xt) / x_scale) ** 2 + ((torch.log(t) - lt) / tau_rel) ** 2)).mean(1)
        per = torch.where(torch.isfinite(per), per, torch.full_like(per, 1e12))
        return per, per.sum()

    f = batched_lbfgs(mod, len(fam), loss_fn, iters)
    f = torch.where(torch.isfinite(f), f, torch.full_like(f, math.inf))
    losses = torch.full((R, len(fams)), math.inf, dtype=DT)
    theta = torch.zeros(R, len(fams), N_SLOTS, dtype=DT)
    for i in range(len(fam)):
        j = fams.index(int(fam[i]))
        r = int(rr[i])
        if float(f[i]) < float(losses[r, j]):
            losses[r, j] = f[i]
            theta[r, j] = mod.theta.detach()[i]
    return losses, theta, fams

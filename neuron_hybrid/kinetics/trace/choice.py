"""Per-member choices between fits: :class:`MemberChoice` (restarts, rounds, ways), :class:`SelectedGates`
(networks or closed forms) and :class:`_Best` (each member's best parameters by free-running training error).
"""
from __future__ import annotations

import math
import time

import torch

from .compartment import DT
from .twin import LearnedGates, simulate


class MemberChoice(torch.nn.Module):
    """Per member the learned gates of one of several fits (``pick`` [M]: index into ``candidates``; ``rows`` [M]:
    the member's row in its picked candidate, default its own index, so a candidate may hold only some members, as
    a restart round does); the interface of :class:`SelectedGates` (forward, channel_mods, adjust_params, subset,
    describe, and the per-member training errors)."""

    _PER_MEMBER = ("train_rmse", "network_train_rmse", "parametric_train_rmse", "use_parametric")

    def __init__(self, candidates, pick, candidate_names=None, rows=None):
        super().__init__()
        self.candidates = torch.nn.ModuleList(candidates)
        self.candidate_names = tuple(candidate_names or (str(i) for i in range(len(candidates))))
        first = candidates[0]
        self.gates, self.channel = first.gates, first.channel
        self.learn_conductance = first.learn_conductance
        pick = torch.as_tensor(pick, dtype=torch.long).reshape(-1)
        self.M = int(pick.numel())
        self.register_buffer("pick", pick)
        self.register_buffer("rows", torch.arange(self.M) if rows is None
                             else torch.as_tensor(rows, dtype=torch.long).reshape(self.M))
        self.log_g = self._gather([c.log_g.detach() for c in candidates])
        self.de = self._gather([c.de.detach() for c in candidates])
        for name in self._PER_MEMBER:
            if all(hasattr(c, name) for c in candidates):
                setattr(self, name, self._gather([getattr(c, name) for c in candidates]))
        if all(hasattr(c, "restart_train_rmse") for c in candidates):
            self.restart_train_rmse = torch.stack([candidates[int(p)].restart_train_rmse[int(r)]
                                                   for p, r in zip(self.pick, self.rows)])
        # derived once from pick and rows, which do not change: each candidate's input rows and the routing of forward
        self._owner_rows = [self._owners_of(c) for c in range(len(candidates))]
        self._route = self._routing_of()

    def _gather(self, values):
        """values: one [M_c] tensor per candidate -> each member's value from its row of its picked candidate."""
        flat = torch.cat([torch.as_tensor(v).reshape(-1) for v in values])
        offsets = torch.tensor([0] + [torch.as_tensor(v).numel() for v in values[:-1]]).cumsum(0)
        return flat[offsets[self.pick] + self.rows]

    def _owners_of(self, c: int):
        """[M_c] for candidate c: the member whose input each of its rows gets (the member that picked the row;
        rows nobody picked get member 0's, and their outputs are not used)."""
        own = torch.zeros(self.candidates[c].M, dtype=torch.long)
        sel = self.pick == c
        own[self.rows[sel]] = torch.nonzero(sel).reshape(-1)
        return own

    def _routing_of(self):
        """(picked candidates, their input rows [M_c] each, each member's row in their concatenated outputs [M], or
        None when one candidate holds every member in its own row)."""
        used = sorted(set(self.pick.tolist()))  # evaluate only the picked fits
        sizes = [self.candidates[c].M for c in used]
        offsets = torch.tensor([0] + sizes[:-1]).cumsum(0)
        at = offsets[torch.as_tensor([used.index(int(p)) for p in self.pick])] + self.rows
        whole = (len(used) == 1 and sizes[0] == self.M and torch.equal(self.rows, torch.arange(self.M)))
        return used, [self._owner_rows[c] for c in used], None if whole else at

    def forward(self, v):
        used, owners, at = self._route
        if at is None:  # one candidate, every member its own row
            return self.candidates[used[0]](v)
        outs = [self.candidates[c](v[own]) for c, own in zip(used, owners)]
        return {g: tuple(torch.cat([o[g][j] for o in outs])[at] for j in (0, 1)) for g in self.gates}

    def channel_mods(self):
        return self.channel, torch.exp(self.log_g), self.de

    def adjust_params(self, params: dict) -> dict:
        """Each member's known parameters as corrected by its picked fit."""
        adj = []
        for c, cand in enumerate(self.candidates):
            own = self._owner_rows[c]
            sub = {k: torch.as_tensor(v, dtype=DT).reshape(-1).expand(self.M)[own] for k, v in params.items()}
            adj.append(cand.adjust_params(sub) if hasattr(cand, "adjust_params") else sub)
        return {k: self._gather([torch.as_tensor(a[k], dtype=DT).expand(self.candidates[c].M)
                                 for c, a in enumerate(adj)]) for k in params}

    def subset(self, idx) -> "MemberChoice":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return MemberChoice(list(self.candidates), self.pick[idx], self.candidate_names, self.rows[idx])

    def describe(self, member: int) -> dict:
        """The picked fit's description of one member ({gate: formula or "network"}), with which fit it is."""
        c = self.candidates[int(self.pick[member])]
        row = int(self.rows[member])
        out = dict(c.describe(row)) if hasattr(c, "describe") else {g: "network" for g in self.gates}
        name = self.candidate_names[int(self.pick[member])]  # "": the candidate's own description names it
        out["fit"] = "; ".join(x for x in (name, out.get("fit", "")) if x)
        return out


class SelectedGates(MemberChoice):
    """Per member either the gate networks or the closed forms (``use_parametric`` [M] bool): a
    :class:`MemberChoice` between the two, described by formula and refined known parameters."""

    def __init__(self, nets: LearnedGates, parametric, use_parametric):
        super().__init__([nets, parametric], torch.as_tensor(use_parametric, dtype=torch.long),
                         ("networks", "closed form"))

    @property
    def nets(self) -> LearnedGates:
        return self.candidates[0]

    @property
    def parametric(self):
        return self.candidates[1]

    @property
    def use_parametric(self) -> torch.Tensor:
        return self.pick.bool()

    def subset(self, idx) -> "SelectedGates":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return SelectedGates(self.nets.subset(idx), self.parametric.subset(idx), self.use_parametric[idx])

    def describe(self, member: int) -> dict:
        """{gate: formula} (closed form) or {gate: "network"} of one member."""
        if bool(self.use_parametric[member]):
            out = self.parametric.formulas(member)
            if self.parametric.known:
                out["known parameters"] = self.parametric.known_corrections(member)
            return out
        out = {g: "network" for g in self.gates}
        if self.nets.known:
            out["known parameters"] = self.nets.known_corrections(member)
        return out


class _Best:
    """Per-member best parameters by free-running MSE on the training trace."""

    def __init__(self, nets, model, stim, v_obs, dt, params, learned, err=None):
        """``err`` [M]: the members' MSE if already known (else simulated)."""
        self.model, self.stim, self.v_obs, self.dt, self.params, self.learned = model, stim, v_obs, dt, params, learned
        self.nets = nets.subset(list(range(nets.M)))
        self.err = self._eval(nets) if err is None else err.clone()

    def _eval(self, nets):
        with torch.no_grad():
            V = simulate(self.model, self.stim, self.dt, self.params, nets, self.learned)
            e = ((V - self.v_obs) ** 2).mean(1)
        return torch.where(torch.isfinite(e), e, torch.full_like(e, math.inf))

    def update(self, nets):
        t0 = time.perf_counter()
        e = self._eval(nets)
        self.eval_seconds = getattr(self, "eval_seconds", 0.0) + time.perf_counter() - t0
        better = e < self.err
        self.nets.copy_members_from(nets, better)
        nets.copy_members_from(self.nets, ~better)  # continue from the best of each member
        self.err = torch.where(better, e, self.err)

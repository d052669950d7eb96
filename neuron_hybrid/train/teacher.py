"""Teacher-forced fitting of a latent axial current to recorded soma voltage and axial current.

The recorded soma voltage V drives the latents, exactly as in NEURON's fixed step: at step n the
current is sum_k g_k (V[n] - z_k[n-1]) (linear in V, so NEURON's implicit step gives this value)
and then z[n] = z[n-1] + (1 - exp(-dt/tau(V[n]))) (z_inf(V[n]) - z[n-1]). Training is fast
because z_inf(V) and tau(V) are functions of V alone: they are evaluated on a voltage grid
(differentiably) and interpolated, and the latent recurrence runs as a chunked scan.
"""
import copy
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .interp import FixedInterpolation
from .memory import retained_heap
from .scan import CHUNK, linear_recurrence


@dataclass
class Sequence:
    """One recorded protocol: soma voltage v_mV, axial current i_nA (leaving the soma), step dt_ms."""

    v_mV: np.ndarray
    i_nA: np.ndarray
    dt_ms: float
    name: str = ""


# ------------------------------------------------------------------------------------------------
# closed-form warm start
# ------------------------------------------------------------------------------------------------
def lowpass(u: np.ndarray, dt_ms: float, tau_ms: float) -> np.ndarray:
    """y[n] = a y[n-1] + (1 - a) u[n], a = exp(-dt/tau), y[-1] = u[0] (unit DC gain)."""
    from scipy.signal import lfilter

    a = math.exp(-dt_ms / tau_ms)
    y, _ = lfilter([1 - a], [1, -a], u, zi=[a * u[0]])
    return y


def fit_linear_filter_bank(seqs, tau_ms, e0_mV: float) -> dict:
    """Least squares I[n] ~ w0 (V[n]-E0) + sum_k w_k y_k[n-1] + b, y_k = lowpass_tau_k(V - E0).

    Returns {"w0" (uS), "w" (uS), "b" (nA), "rmse_nA"}: the best linear time-invariant latent model.
    """
    rows, targets = [], []
    for s in seqs:
        u = np.asarray(s.v_mV, float) - e0_mV
        ys = [lowpass(u, s.dt_ms, t) for t in tau_ms]
        X = np.column_stack([u[1:]] + [y[:-1] for y in ys] + [np.ones(len(u) - 1)])
        rows.append(X)
        targets.append(np.asarray(s.i_nA, float)[1:])
    X = np.concatenate(rows)
    y = np.concatenate(targets)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    rmse = float(np.sqrt(np.mean((X @ coef - y) ** 2)))
    return {"w0": float(coef[0]), "w": coef[1:-1].tolist(), "b": float(coef[-1]), "rmse_nA": rmse}


def warm_start(model, seqs, min_total_g_uS: float = 1e-4) -> dict:
    """Fit the linear filter bank at the model's initial time constants and load it into the model.

    Maps I = w0 u + sum w_k y_k + b onto sum_k g_k (V - z_k) with g_k = w0/K, a_k = -w_k/g_k,
    c_k = -b/w0 (exact for the linear part). Returns the fit summary.
    """
    K = model.n_latent
    tau = (model.tau_min + torch.exp(model.log_tau0)).detach().numpy()
    fit = fit_linear_filter_bank(seqs, tau, model.e0)
    w0 = max(fit["w0"], min_total_g_uS)
    g = np.full(K, w0 / K)
    a = -np.asarray(fit["w"]) / g
    c = np.full(K, -fit["b"] / w0)
    model.set_linear(g, a, c, tau)
    fit["w0_used"] = w0
    return fit


# ------------------------------------------------------------------------------------------------
# teacher forcing
# ------------------------------------------------------------------------------------------------
def tabulate(model, grid: torch.Tensor):
    """(z_inf, tau) of the model on a voltage grid, differentiable w.r.t. the parameters."""
    return model.rates(grid)


@dataclass
class TeacherBatch:
    """Sequences padded to a common length, with fixed interpolation weights on a voltage grid."""

    v: torch.Tensor        # [S, T] mV (padded with the last recorded value)
    target: torch.Tensor   # [S, T-1] nA (I[1..T-1])
    mask: torch.Tensor     # [S, T-1] 1 for real samples
    idx: torch.Tensor      # [S, T] grid index below v
    frac: torch.Tensor     # [S, T, 1] interpolation weight
    dt_ms: float
    grid: torch.Tensor
    restart: torch.Tensor = None  # [S, T // CHUNK] bool: a sequence starts at that chunk (packed rows)
    _interp: FixedInterpolation = None  # the interpolation as a sparse matrix [S*T, G] (built on first use)

    @property
    def n_samples(self) -> int:
        return int(self.mask.sum())

    def interpolate(self, table: torch.Tensor) -> torch.Tensor:
        """Values of `table` [G, M] (on `grid`) at the batch's voltages by linear interpolation: [S, T, M]
        (a fixed sparse matrix, :class:`.interp.FixedInterpolation`, built on first use)."""
        if self._interp is None:
            self._interp = FixedInterpolation(self.idx, self.frac, len(self.grid))
        S, T = self.idx.shape
        return self._interp(table).reshape(S, T, table.shape[1])


def _pack(lengths, chunk: int):
    """First-fit decreasing: [(row, offset)] per sequence, offsets multiples of `chunk`; row length."""
    cap = -(-max(lengths) // chunk) * chunk
    rows, where = [], [None] * len(lengths)
    for j in sorted(range(len(lengths)), key=lambda j: -lengths[j]):
        need = -(-lengths[j] // chunk) * chunk
        r = next((r for r, used in enumerate(rows) if used + need <= cap), None)
        if r is None:
            rows.append(0)
            r = len(rows) - 1
        where[j] = (r, rows[r])
        rows[r] += need
    return where, len(rows), cap


def make_batch(seqs, grid: torch.Tensor, pack: bool = False) -> TeacherBatch:
    """Sequences as rows of a batch. pack: several short sequences share a row (each starting at a
    multiple of the scan's chunk, latents restarted there), which saves the padding of short
    protocols (for teacher forcing; closed-loop windows need one sequence per row)."""
    dts = {float(s.dt_ms) for s in seqs}
    if len(dts) != 1:
        raise ValueError(f"all sequences must share one dt, got {sorted(dts)} ms")
    lengths = [len(s.v_mV) for s in seqs]
    if pack:
        where, S, T = _pack(lengths, CHUNK)
        restart = torch.zeros(S, T // CHUNK, dtype=torch.bool)
    else:
        where, S, T = [(j, 0) for j in range(len(seqs))], len(seqs), max(lengths)
        restart = None
    v = torch.empty(S, T, dtype=torch.float64)
    target = torch.zeros(S, T - 1, dtype=torch.float64)
    mask = torch.zeros(S, T - 1, dtype=torch.float64)
    # in row order, so that each sequence's padding (its last recorded value: no spurious spikes or
    # latents) runs up to the next sequence of the row, which then overwrites it
    for s, (r, o), n in sorted(zip(seqs, where, lengths), key=lambda x: x[1]):
        v[r, o:o + n] = torch.as_tensor(s.v_mV, dtype=torch.float64)
        v[r, o + n:] = float(s.v_mV[-1])
        target[r, o:o + n - 1] = torch.as_tensor(s.i_nA[1:], dtype=torch.float64)
        mask[r, o:o + n - 1] = 1.0
        if restart is not None:
            restart[r, o // CHUNK] = True
    v0, h = float(grid[0]), float(grid[1] - grid[0])
    x = ((v - v0) / h).clamp(0, len(grid) - 1 - 1e-9)
    idx = x.floor().long()
    return TeacherBatch(v, target, mask, idx, (x - idx).unsqueeze(-1), dts.pop(), grid, restart)


def teacher_latents(model, batch: TeacherBatch, tables=None) -> torch.Tensor:
    """Latents z[n] (after step n) driven by the recorded voltage: [S, T, K]; z = z_inf(V) at the
    start of every sequence.

    z[n] = z[n-1] + (1 - exp(-dt/tau(V[n]))) (z_inf(V[n]) - z[n-1]), NEURON's cnexp order.
    """
    zinf_g, tau_g = tables if tables is not None else tabulate(model, batch.grid)
    K = zinf_g.shape[1]
    both = batch.interpolate(torch.cat([zinf_g, tau_g], 1))
    zinf, tau = both[..., :K], both[..., K:]
    log_alpha = -batch.dt_ms / tau
    b = -torch.expm1(log_alpha) * zinf
    # starting from z_inf(V[0]) the first update leaves z at z_inf(V[0]) (b = (1 - alpha) z_inf)
    return linear_recurrence(log_alpha, b, zinf[:, 0], restart=batch.restart, z_restart=zinf[:, ::CHUNK])


def batch_current(model, batch: TeacherBatch, tables=None) -> torch.Tensor:
    """Teacher-forced axial current I[1..T-1] (nA) for every sequence of the batch: [S, T-1].

    At step n NEURON's current is sum_k g_k (V[n] - z_k[n-1]) (exact for this linear-in-V form).
    """
    z_prev = teacher_latents(model, batch, tables)[:, :-1]
    S, T1, K = z_prev.shape
    return model.current(batch.v[:, 1:].reshape(-1), z_prev.reshape(-1, K)).reshape(S, T1)


@dataclass
class TeacherConfig:
    """Teacher-forced training (stage 1): full-batch Adam for `epochs` (lr decays by cosine from lr to
    lr_min), then `lbfgs_iters` full-batch L-BFGS iterations (strong Wolfe line search), validated and
    checkpointed every `lbfgs_chunk` iterations. The loss is deterministic and smooth, where L-BFGS
    goes much further per evaluation than Adam (ca1, 400 Adam epochs: loss 1.12e-3 nA^2; + 200 L-BFGS
    iterations: 8.6e-4, as low as 800 Adam epochs at a third of their extra cost)."""

    epochs: int = 600
    lr: float = 3e-3
    lr_min: float = 1e-4
    clip: float = 10.0
    grid_step_mV: float = 0.1
    seed: int = 0
    checkpoint_every: int = 50
    lbfgs_iters: int = 0
    lbfgs_chunk: int = 25
    spike_weight: float = 0.1          # loss weight of samples with V above spike_threshold_mV
    spike_threshold_mV: float = -40.0  # (spike currents are large; between spikes timing is decided)
    pre_spike_weight: float = 1.0      # loss weight of the approach to each recorded spike: the samples
    pre_spike_ms: float = 8.0          # from pre_spike_ms to 0.5 ms before its 0 mV crossing, where a
                                       # few pA of error move the spike by ms


def sample_weights(batch: "TeacherBatch", config: TeacherConfig) -> torch.Tensor:
    """Loss weight of every target sample I[1..T-1]: [S, T-1] (0 on padding).

    1 by default, spike_weight above spike_threshold_mV, pre_spike_weight in the approach to
    each spike (upward crossing of 0 mV), from pre_spike_ms to 0.5 ms before it.
    """
    v = batch.v[:, 1:]
    w = torch.where(v > config.spike_threshold_mV, config.spike_weight, 1.0).to(torch.float64)
    if config.pre_spike_weight != 1.0:
        n_pre = int(round(config.pre_spike_ms / batch.dt_ms))
        n_gap = int(round(0.5 / batch.dt_ms))
        up = (v[:, :-1] < 0) & (v[:, 1:] >= 0)
        for s, k in up.nonzero().tolist():
            lo, hi = max(k + 1 - n_pre, 0), max(k + 1 - n_gap, 0)
            w[s, lo:hi] = torch.clamp(w[s, lo:hi], min=config.pre_spike_weight)
    return w * batch.mask


def _save_checkpoint(path, state: dict) -> None:
    """Write `state` to `path` atomically (a crash leaves the previous checkpoint intact)."""
    tmp = Path(str(path) + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _weighted_loss(model, batch, weight, n_total):
    """Weighted mean squared error of the teacher-forced current (nA^2)."""
    return (weight * (batch_current(model, batch) - batch.target) ** 2).sum() / n_total


def _lbfgs_polish(model, batch, weight, n_total, config, history, best, best_score, checkpoint, resume, progress,
                  evaluate):
    """L-BFGS after Adam (see TeacherConfig); returns the updated (best loss, best score) pairs."""
    done = 0
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=max(1, config.lbfgs_chunk), history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-15)
    if resume is not None:
        done = resume["done"]
        opt.load_state_dict(resume["opt"])
    history.setdefault("lbfgs_loss", [])
    bar = None
    if progress and done < config.lbfgs_iters:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.lbfgs_iters, initial=done, desc="L-BFGS", leave=False)

    def closure():
        opt.zero_grad()
        loss = _weighted_loss(model, batch, weight, n_total)
        loss.backward()
        return loss

    while done < config.lbfgs_iters:
        n = min(config.lbfgs_chunk, config.lbfgs_iters - done)
        opt.param_groups[0]["max_iter"] = n
        opt.param_groups[0]["max_eval"] = n * 5 // 4
        opt.step(closure)
        done += n
        with torch.no_grad():
            val = float(_weighted_loss(model, batch, weight, n_total))
        if not math.isfinite(val):  # a failed line search: keep the best so far
            model.load_state_dict(best[1])
            break
        history["lbfgs_loss"].append((done, val))
        if val < best[0]:
            best = (val, copy.deepcopy(model.state_dict()))
        if evaluate is not None:
            score = float(evaluate(model))
            history["score"].append((config.epochs + done, score))
            if score > best_score[0]:
                best_score = (score, copy.deepcopy(model.state_dict()))
        if bar is not None:
            bar.update(n)
            bar.set_postfix(rmse_nA=f"{math.sqrt(val):.4f}")
        if checkpoint is not None:
            _save_checkpoint(checkpoint, {"model": model.state_dict(), "history": history, "epoch": config.epochs,
                                          "best": best, "best_score": best_score,
                                          "lbfgs": {"done": done, "opt": opt.state_dict()}})
    if bar is not None:
        bar.close()
    return best, best_score


def current_rmse(model, seqs, grid_step_mV: float = 0.1) -> float:
    """RMSE (nA) of the teacher-forced axial current over all samples of `seqs`."""
    grid = torch.arange(model.v_min, model.v_max + 0.5 * grid_step_mV, grid_step_mV, dtype=torch.float64)
    batch = make_batch(seqs, grid, pack=True)
    with torch.no_grad():
        err = (batch_current(model, batch) - batch.target) * batch.mask
    return math.sqrt(float((err ** 2).sum()) / batch.n_samples)


@retained_heap()
def train_teacher_forced(model, seqs, config: TeacherConfig = TeacherConfig(), checkpoint: Path = None,
                         progress: bool = True, log=None, evaluate=None, eval_every: int = 0) -> dict:
    """Full-batch Adam on the MSE of the teacher-forced axial current (nA^2).

    Resumes from `checkpoint` (a .pt written every `checkpoint_every` epochs) if it exists.
    evaluate: optional callable(model) -> score (higher is better), called every `eval_every`
    epochs and at the end; the model with the best score is kept (a small current error does not
    imply a good closed loop). Without it, the model with the lowest loss is kept.
    Returns a history dict (loss per epoch, scores, time).
    """
    torch.manual_seed(config.seed)
    grid = torch.arange(model.v_min, model.v_max + 0.5 * config.grid_step_mV, config.grid_step_mV, dtype=torch.float64)
    batch = make_batch(seqs, grid, pack=True)
    weight = sample_weights(batch, config)
    n_total = float(weight.sum())
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(config.epochs, 1), eta_min=config.lr_min)
    history = {"loss": [], "config": asdict(config)}
    start = 0
    if checkpoint is not None and Path(checkpoint).exists():
        st = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(st["model"])
        if "opt" in st:  # absent once Adam has finished and L-BFGS has started
            opt.load_state_dict(st["opt"])
            sched.load_state_dict(st["sched"])
        history = st["history"]
        start = st["epoch"]
    best = (float("inf"), None)
    best_score = (-math.inf, None)
    resume_lbfgs = None
    if start:
        best = st.get("best", best)
        best_score = st.get("best_score", best_score)
        resume_lbfgs = st.get("lbfgs")
    history.setdefault("score", [])
    t0 = time.perf_counter()
    bar = range(start, config.epochs)
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(bar, desc="teacher forcing", initial=start, total=config.epochs, leave=False)
    for epoch in bar:
        opt.zero_grad()
        loss = _weighted_loss(model, batch, weight, n_total)
        loss.backward()
        val = float(loss.detach())
        history["loss"].append(val)
        if val < best[0]:  # the loss of the parameters before this step
            best = (val, copy.deepcopy(model.state_dict()))
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        opt.step()
        sched.step()
        if evaluate is not None and eval_every and ((epoch + 1) % eval_every == 0 or epoch + 1 == config.epochs):
            score = float(evaluate(model))
            history["score"].append((epoch + 1, score))
            if score > best_score[0]:
                best_score = (score, copy.deepcopy(model.state_dict()))
        if progress:
            bar.set_postfix(rmse_nA=f"{math.sqrt(val):.4f}")
        if checkpoint is not None and (epoch + 1) % config.checkpoint_every == 0:
            _save_checkpoint(checkpoint, {"model": model.state_dict(), "opt": opt.state_dict(),
                                          "sched": sched.state_dict(), "history": history, "epoch": epoch + 1,
                                          "best": best, "best_score": best_score})
    if progress:
        bar.close()
    best, best_score = _lbfgs_polish(model, batch, weight, n_total, config, history, best, best_score, checkpoint,
                                     resume_lbfgs, progress, evaluate)
    if best_score[1] is not None:
        model.load_state_dict(best_score[1])
        history["best_score"] = best_score[0]
    elif best[1] is not None:
        model.load_state_dict(best[1])
    history["seconds"] = time.perf_counter() - t0
    history["best_rmse_nA"] = math.sqrt(best[0]) if best[1] is not None else float("nan")
    if log:
        log(f"teacher forcing: {len(history['loss'])} epochs, best current RMSE {history['best_rmse_nA']:.4f} nA, "
            f"{history['seconds']:.0f} s")
    return history

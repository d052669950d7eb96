"""Closed-loop fine-tuning of a learned current in the torch twin (backprop through time).

Windows of the recorded protocols are re-simulated by the twin from the recorded state at their
start (gates and Ca from teacher forcing, latents from the teacher-forced recurrence), driven by
the recorded stimulus; the loss compares the simulated and recorded soma voltage. Safeguards that
make it usable where plain BPTT is not: a curriculum on the window length, a soft-clipped voltage
(spike peaks do not dominate), a teacher-forced current term that keeps the model near its stage-1
solution, global-norm gradient clipping, a small learning rate, and early stopping on an external
closed-loop score (in the reduction: the model run in NEURON on held-out validation protocols).
"""
import copy
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .memory import retained_heap
from .teacher import TeacherBatch, batch_current, teacher_latents


@dataclass
class ClosedLoopConfig:
    """Stage 2. window_ms: curriculum of window lengths (ms), iters_per_window iterations each."""

    window_ms: tuple = (10.0, 25.0)
    iters_per_window: int = 10
    batch: int = 12
    lr: float = 2e-4
    clip: float = 1.0
    current_weight: float = 100.0
    spike_window_fraction: float = 0.5
    eval_every: int = 5
    patience: int = 2
    seed: int = 0


def soft_clip(v):
    """-30 + 30 tanh((v + 30)/30) mV: keeps subthreshold detail, compresses spike peaks."""
    return -30.0 + 30.0 * torch.tanh((v + 30.0) / 30.0)


class WindowSampler:
    """Random windows of the training sequences, half of them ending shortly after a recorded spike."""

    def __init__(self, v: np.ndarray, lengths: np.ndarray, seed: int):
        self.v = v
        self.lengths = lengths
        self.rng = np.random.default_rng(seed)
        self.spikes = [np.nonzero((row[:-1] < 0) & (row[1:] >= 0))[0] for row in v]

    def sample(self, n: int, length: int, spike_fraction: float):
        rows, starts = [], []
        for k in range(n):
            for _ in range(20):
                r = int(self.rng.integers(len(self.lengths)))
                hi = int(self.lengths[r]) - length - 1
                if hi <= 1:
                    continue
                sp = self.spikes[r]
                sp = sp[(sp > length) & (sp < hi + length - 40)]
                if k < spike_fraction * n and len(sp):
                    end = int(self.rng.choice(sp)) + int(self.rng.integers(10, 40))
                    s = min(max(end - length, 1), hi)
                else:
                    s = int(self.rng.integers(1, hi))
                rows.append(r)
                starts.append(s)
                break
        return np.array(rows), np.array(starts)


@retained_heap()
def train_closed_loop(model, twin, batch: TeacherBatch, i_stim: torch.Tensor, config: ClosedLoopConfig = ClosedLoopConfig(),
                      evaluate=None, checkpoint: Path = None, progress: bool = True, log=None) -> dict:
    """Fine-tune `model` (the twin's learned current) on voltage windows.

    batch: the teacher-forcing batch of the training sequences (recorded v [S, T], axial current);
    i_stim: [S, T] recorded stimulus (nA; i_stim[:, n+1] acts during step n);
    evaluate: callable(model) -> score (higher is better), used for early stopping; without it
    the last model is kept. Returns the history.
    """
    torch.manual_seed(config.seed)
    dt = batch.dt_ms
    lengths = batch.mask.sum(dim=1).numpy().astype(int) + 1
    sampler = WindowSampler(batch.v.numpy(), lengths, config.seed)
    traj = twin.teacher_states(batch.v, dt)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    history = {"loss": [], "score": [], "config": asdict(config)}
    best_state, best_score = copy.deepcopy(model.state_dict()), -math.inf
    if evaluate is not None:
        best_score = float(evaluate(model))
        history["score"].append((0, best_score))
    stale = 0
    it = 0
    with torch.no_grad():
        z_traj = teacher_latents(model, batch)
    t0 = time.perf_counter()
    total = len(config.window_ms) * config.iters_per_window
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="closed loop", leave=False)
    stop = False
    for window_ms in config.window_ms:
        L = int(round(window_ms / dt))
        for _ in range(config.iters_per_window):
            rows, starts = sampler.sample(config.batch, L, config.spike_window_fraction)
            rr, ss = torch.as_tensor(rows), torch.as_tensor(starts)
            st = twin.state_at(traj, batch.v, rr, ss, z=z_traj[rr, ss])
            idx = torch.as_tensor(starts)[:, None] + torch.arange(1, L + 1)[None, :]
            stim = i_stim[torch.as_tensor(rows)[:, None], idx]
            v_rec = batch.v[torch.as_tensor(rows)[:, None], idx]
            v_sim = twin.run(st, stim, dt)[:, 1:]
            loss_v = ((soft_clip(v_sim) - soft_clip(v_rec)) ** 2).mean()
            sub = _window_batch(batch, rows, starts, L)
            loss_i = (((batch_current(model, sub) - sub.target) * sub.mask) ** 2).sum() / max(sub.n_samples, 1)
            loss = loss_v + config.current_weight * loss_i
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            opt.step()
            it += 1
            history["loss"].append((float(loss_v.detach()), float(loss_i.detach())))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(window_ms=window_ms, v_mse=f"{float(loss_v.detach()):.2f}",
                                i_rmse=f"{math.sqrt(float(loss_i.detach())):.4f}")
            if it % config.eval_every == 0:
                with torch.no_grad():
                    z_traj = teacher_latents(model, batch)  # window start states follow the model
            if evaluate is not None and it % config.eval_every == 0:
                score = float(evaluate(model))
                history["score"].append((it, score))
                if score > best_score:
                    best_score, best_state, stale = score, copy.deepcopy(model.state_dict()), 0
                else:
                    stale += 1
                    if stale >= config.patience:
                        stop = True
                        break
            if checkpoint is not None:
                tmp = Path(str(checkpoint) + ".tmp")
                torch.save({"model": model.state_dict(), "history": history, "iteration": it}, tmp)
                os.replace(tmp, checkpoint)
        if stop:
            break
    if bar is not None:
        bar.close()
    if evaluate is not None:
        model.load_state_dict(best_state)
    history["best_score"] = best_score
    history["seconds"] = time.perf_counter() - t0
    history["iterations"] = it
    if log:
        log(f"closed loop: {it} iterations, best validation score {best_score:.3f}, {history['seconds']:.0f} s")
    return history


def _window_batch(batch: TeacherBatch, rows, starts, L: int) -> TeacherBatch:
    """The teacher-forcing batch restricted to windows [start, start + L] of the given rows."""
    r = torch.as_tensor(rows)[:, None]
    idx = torch.as_tensor(starts)[:, None] + torch.arange(0, L + 1)[None, :]
    return TeacherBatch(v=batch.v[r, idx], target=batch.target[r, idx[:, :-1]], mask=batch.mask[r, idx[:, :-1]],
                        idx=batch.idx[r, idx], frac=batch.frac[r, idx], dt_ms=batch.dt_ms, grid=batch.grid)

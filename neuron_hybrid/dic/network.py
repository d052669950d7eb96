"""A small sequence network: spike times -> (g_s, g_u) at V_th and spiking/bursting class.

Input: one spike train (ms). Tokens are inter-spike intervals: features ``log(1 + ISI)`` and
its first difference (0 for the first), z-scored with training-set statistics stored in the
model (as Spike2Pop). At most ``max_isi`` ISIs are used (the first ones). Architecture (chosen
for CPU training in minutes; Spike2Pop uses a transformer): linear embedding, residual dilated
1-D convolution blocks (a temporal convolutional network) with padding masked, attention pooling
with a learned query concatenated with the masked mean, then a regression head (g_s, g_u;
leak-normalised DICs) and a classification head (spiking, bursting). Trained with a Huber loss on (g_s, g_u)/10 plus
cross-entropy, with Spike2Pop's augmentation (2 ms jitter, 5 % dropped spikes, random windows).

Weights file (``torch.save`` dict, ``format = "neuron_hybrid.dic.network"``, ``version = 1``):
``state_dict``, ``config`` (:class:`NetworkConfig` as a dict), ``model`` ("stg"/"da"), ``v_th``
(mV), ``metrics`` (held-out evaluation), ``train`` (:class:`TrainConfig` as a dict).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .spikes import BURSTING, CLASSES, SPIKING, classify, jitter_and_drop

__all__ = ["NetworkConfig", "TrainConfig", "SpikeDICNet", "train_network", "evaluate_network",
           "load_pretrained", "WEIGHTS_DIR", "FORMAT", "VERSION"]

FORMAT = "neuron_hybrid.dic.network"
VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SCALE = 10.0  # (g_s, g_u) are regressed as value / SCALE


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture: ``d_model`` channels, ``n_layers`` residual dilated-convolution blocks
    (kernel ``kernel``, dilations 1, 2, 4, ...), ``dropout``, ``max_isi`` (longest ISI sequence
    used: the first ``max_isi`` intervals)."""

    d_model: int = 32
    n_layers: int = 4
    kernel: int = 5
    dropout: float = 0.05
    max_isi: int = 96


class _Block(nn.Module):
    def __init__(self, d, kernel, dilation, dropout):
        super().__init__()
        self.conv1 = nn.Conv1d(d, d, kernel, padding=dilation * (kernel // 2), dilation=dilation)
        self.conv2 = nn.Conv1d(d, d, 1)
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, h, keep):  # h (B, L, d), keep (B, L, 1) float
        y = self.conv2(nn.functional.gelu(self.conv1(h.transpose(1, 2)))).transpose(1, 2)
        return self.norm(h + self.drop(y)) * keep


@dataclass(frozen=True)
class TrainConfig:
    """Training: ``epochs``, ``batch_size``, ``lr`` (AdamW, cosine decay), ``weight_decay``,
    ``class_weight`` (cross-entropy weight), ``jitter_ms``/``drop_fraction``/``window_prob``
    (augmentation), ``val_fraction``/``test_fraction`` (held-out split), ``seed``, ``threads``."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    class_weight: float = 0.5
    jitter_ms: float = 2.0
    drop_fraction: float = 0.05
    window_prob: float = 0.5
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    threads: int = 2


def _features(spike_times, max_isi):
    s = np.sort(np.asarray(spike_times, dtype=np.float64))
    isi = np.diff(s)[:max_isi]
    x = np.log1p(np.abs(isi))
    dx = np.concatenate([[0.0], np.diff(x)]) if x.size else x
    return np.stack([x, dx], axis=-1).astype(np.float32)


class SpikeDICNet(nn.Module):
    """See the module docstring. ``forward(x, mask) -> (dics (B, 2), logits (B, 2))`` with
    x (B, L, 2) standardised features and mask (B, L) True at padding."""

    def __init__(self, config: NetworkConfig = NetworkConfig()):
        super().__init__()
        self.config = config
        d = config.d_model
        self.embed = nn.Linear(2, d)
        self.blocks = nn.ModuleList(_Block(d, config.kernel, 2 ** k, config.dropout) for k in range(config.n_layers))
        self.query = nn.Parameter(torch.randn(d) / math.sqrt(d))
        self.key = nn.Linear(d, d)
        self.norm = nn.LayerNorm(2 * d)
        self.head = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, 2))
        self.cls = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, 2))
        self.register_buffer("mu", torch.zeros(2))
        self.register_buffer("sigma", torch.ones(2))

    def forward(self, x, mask):
        keep = (~mask).unsqueeze(-1).float()
        h = self.embed((x - self.mu) / self.sigma) * keep
        for b in self.blocks:
            h = b(h, keep)
        scores = (self.key(h) @ self.query) / math.sqrt(h.shape[-1])
        scores = scores.masked_fill(mask, float("-inf"))
        w = torch.softmax(scores, dim=1).unsqueeze(-1)
        att = (w * h).sum(dim=1)
        mean = (h * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1.0)
        z = self.norm(torch.cat([att, mean], dim=-1))
        return self.head(z), self.cls(z)

    # -- batching and inference -----------------------------------------------------------------
    def batch(self, trains):
        feats = [_features(s, self.config.max_isi) for s in trains]
        if any(len(f) < 2 for f in feats):
            raise ValueError("every spike train needs at least 3 spikes")
        L = max(len(f) for f in feats)
        x = np.zeros((len(feats), L, 2), dtype=np.float32)
        mask = np.ones((len(feats), L), dtype=bool)
        for k, f in enumerate(feats):
            x[k, :len(f)] = f
            mask[k, :len(f)] = False
        return torch.from_numpy(x), torch.from_numpy(mask)

    @torch.no_grad()
    def predict(self, trains, batch_size: int = 512):
        """``(g_s, g_u, class)`` for a list of spike trains (ms, >= 3 spikes each): two arrays and a
        list of ``"spiking"``/``"bursting"``."""
        self.eval()
        gs, gu, cls = [], [], []
        for i in range(0, len(trains), batch_size):
            x, mask = self.batch(trains[i:i + batch_size])
            y, logits = self(x, mask)
            y = y.double().numpy() * SCALE
            gs.append(y[:, 0])
            gu.append(y[:, 1])
            cls += [CLASSES[k] for k in logits.argmax(-1).tolist()]
        if not gs:
            return np.zeros(0), np.zeros(0), []
        return np.concatenate(gs), np.concatenate(gu), cls

    @classmethod
    def load(cls, path) -> "SpikeDICNet":
        d = torch.load(path, map_location="cpu", weights_only=False)
        if d.get("format") != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT} weights file")
        if int(d.get("version", 0)) != VERSION:
            raise ValueError(f"{path}: unsupported weights version {d.get('version')} (expected {VERSION})")
        net = cls(NetworkConfig(**d["config"]))
        net.load_state_dict(d["state_dict"])
        net.meta = {k: v for k, v in d.items() if k != "state_dict"}
        net.eval()
        return net

    def save(self, path, **meta):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"format": FORMAT, "version": VERSION, "state_dict": self.state_dict(),
                    "config": asdict(self.config), **meta}, path)


def load_pretrained(model: str = "stg") -> SpikeDICNet:
    """The network shipped with the package for ``model`` ("stg" or "da")."""
    path = WEIGHTS_DIR / f"{model}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no shipped weights for model {model!r} ({path}); train them with "
                                f"`python benchmarks/spikes2pop_train.py --model {model}`")
    return SpikeDICNet.load(path)


def _split(n, cfg: TrainConfig):
    rng = np.random.default_rng(cfg.seed)
    perm = rng.permutation(n)
    n_test = int(round(cfg.test_fraction * n))
    n_val = int(round(cfg.val_fraction * n))
    return perm[n_test + n_val:], perm[n_test:n_test + n_val], perm[:n_test]


def _augment(s, rng, cfg: TrainConfig):
    s = jitter_and_drop(s, jitter_ms=cfg.jitter_ms, drop_fraction=cfg.drop_fraction, rng=rng)
    if len(s) > 10 and rng.uniform() < cfg.window_prob:
        k = int(rng.integers(len(s) // 2, len(s) + 1))
        start = int(rng.integers(0, len(s) - k + 1))
        s = s[start:start + k]
    return s if len(s) >= 3 else None


def prepare(data: dict):
    """Usable samples of a dataset: (spike trains, targets (n, 2), class index (n,)); silent
    trains (< 3 spikes) are dropped."""
    trains, y, c = [], [], []
    for s, t in zip(data["spikes"], data["target"]):
        k = classify(s)
        if k in CLASSES:
            trains.append(np.asarray(s))
            y.append(t)
            c.append(CLASSES.index(k))
    return trains, np.array(y, dtype=np.float64), np.array(c, dtype=np.int64)


def train_network(data: dict, out_path, *, net_config: NetworkConfig = NetworkConfig(),
                  train_config: TrainConfig = TrainConfig(), checkpoint: str | Path | None = None,
                  model_name: str = "stg", v_th: float = -51.0, progress: bool = True) -> SpikeDICNet:
    """Train on a dataset (:func:`neuron_hybrid.dic.dataset.load_dataset`) and save the weights.

    Resumable: with ``checkpoint`` the state is saved after every epoch and training continues
    from it. Every random step is seeded by ``train_config.seed``.
    """
    cfg = train_config
    torch.set_num_threads(cfg.threads)
    trains, y, c = prepare(data)
    tr, va, te = _split(len(trains), cfg)
    torch.manual_seed(cfg.seed)
    net = SpikeDICNet(net_config)
    feats = np.concatenate([_features(trains[i], net_config.max_isi) for i in tr])
    net.mu.copy_(torch.from_numpy(feats.mean(0)))
    net.sigma.copy_(torch.from_numpy(feats.std(0) + 1e-6))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = -(-len(tr) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    start, best, history = 0, float("inf"), []
    best_state = None
    if checkpoint is not None and Path(checkpoint).is_file():
        ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
        net.load_state_dict(ck["net"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        start, best, history, best_state = ck["epoch"], ck["best"], ck["history"], ck["best_state"]
    from tqdm.auto import tqdm
    huber = nn.HuberLoss(delta=1.0)
    ce = nn.CrossEntropyLoss()
    for epoch in tqdm(range(start, cfg.epochs), desc="train", disable=not progress, initial=start, total=cfg.epochs):
        net.train()
        rng = np.random.default_rng([cfg.seed, epoch])
        order = rng.permutation(tr)
        tot = 0.0
        for b in range(0, len(order), cfg.batch_size):
            idx = order[b:b + cfg.batch_size]
            batch = [(_augment(trains[i], rng, cfg), i) for i in idx]
            batch = [(s, i) for s, i in batch if s is not None]
            x, mask = net.batch([s for s, _ in batch])
            ii = [i for _, i in batch]
            yt = torch.from_numpy(y[ii] / SCALE).float()
            ct = torch.from_numpy(c[ii])
            pred, logits = net(x, mask)
            loss = huber(pred, yt) + cfg.class_weight * ce(logits, ct)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            sched.step()
            tot += loss.item() * len(ii)
        val = evaluate_network(net, [trains[i] for i in va], y[va], c[va])
        history.append({"epoch": epoch + 1, "train_loss": tot / len(tr), **{f"val_{k}": v for k, v in val.items()}})
        score = val["mae_g_s"] + val["mae_g_u"]
        if score < best:
            best = score
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        if progress:
            tqdm.write(f"epoch {epoch + 1}: loss {tot / len(tr):.4f}  val MAE g_s {val['mae_g_s']:.2f} "
                       f"g_u {val['mae_g_u']:.2f}  acc {val['accuracy']:.3f}")
        if checkpoint is not None:
            Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(str(checkpoint) + ".tmp")
            torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "epoch": epoch + 1, "best": best, "history": history, "best_state": best_state}, tmp)
            tmp.replace(checkpoint)  # atomic: an interruption never leaves a broken checkpoint
    if best_state is not None:
        net.load_state_dict(best_state)
    test = evaluate_network(net, [trains[i] for i in te], y[te], c[te])
    net.save(out_path, model=model_name, v_th=v_th, metrics={"test": test, "n_train": len(tr), "n_val": len(va),
                                                              "n_test": len(te)},
             train=asdict(cfg), history=history)
    net.meta = {"metrics": {"test": test}}
    return net


@torch.no_grad()
def evaluate_network(net: SpikeDICNet, trains, y, c, *, jitter_ms: float = 0.0, drop_fraction: float = 0.0,
                     seed: int = 0) -> dict:
    """MAE of g_s, g_u (overall, and for spiking / bursting trains), class accuracy, optionally on
    perturbed trains (jitter sd ``jitter_ms``, dropped fraction ``drop_fraction``)."""
    rng = np.random.default_rng(seed)
    keep, tt = [], []
    for k, s in enumerate(trains):
        if jitter_ms or drop_fraction:
            s = jitter_and_drop(s, jitter_ms=jitter_ms, drop_fraction=drop_fraction, rng=rng)
        if len(s) >= 3:
            keep.append(k)
            tt.append(s)
    keep = np.array(keep, dtype=int)
    gs, gu, cls = net.predict(tt)
    y, c = np.asarray(y)[keep], np.asarray(c)[keep]
    pred_c = np.array([CLASSES.index(k) for k in cls])
    out = {"n": int(len(keep)), "mae_g_s": float(np.mean(np.abs(gs - y[:, 0]))),
           "mae_g_u": float(np.mean(np.abs(gu - y[:, 1]))), "accuracy": float(np.mean(pred_c == c))}
    for name, k in ((SPIKING, 0), (BURSTING, 1)):
        sel = c == k
        if sel.any():
            out[f"mae_g_s_{name}"] = float(np.mean(np.abs(gs[sel] - y[sel, 0])))
            out[f"mae_g_u_{name}"] = float(np.mean(np.abs(gu[sel] - y[sel, 1])))
    return out

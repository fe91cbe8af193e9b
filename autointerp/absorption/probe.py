"""One-vs-rest logistic-regression probes trained as SAEBench trains them (``probing.py``):
a linear layer ``[d] -> [C]``, ``BCEWithLogitsLoss`` with ``pos_weight = negatives /
positives`` per class, Adam with weight decay, the learning rate decayed exponentially from
``lr`` to ``end_lr`` over the epochs (one step per epoch), shuffled mini-batches, an optional L1
penalty ``l1 * mean_c sum_j |W_cj|``. The random init and shuffles come from ``seed`` (the same
draws as SAEBench's code after ``torch.manual_seed(seed)``); the global RNG is left as it was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


@dataclass(frozen=True)
class Probe:
    """``logits = x @ W.T + b``; ``W [C, d]``, ``b [C]`` (float32)."""

    W: np.ndarray
    b: np.ndarray

    def logits(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
        return (xt @ torch.from_numpy(self.W).T + torch.from_numpy(self.b)).numpy()

    def unit_direction(self, c: int) -> np.ndarray:
        w = self.W[c].astype(np.float32)
        return w / np.linalg.norm(w)


def pos_weights(y: torch.Tensor) -> torch.Tensor:
    """negatives / positives per class; 1 for a class with no positive (SAEBench: inf, and a
    NaN loss)."""
    pos = y.sum(0)
    w = (len(y) - pos) / pos
    return torch.where(pos > 0, w, torch.ones_like(w))


def train_probe(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    end_lr: float,
    weight_decay: float,
    batch_size: int,
    seed: int,
    l1: float = 0.0,
) -> Probe:
    """Fit ``C = y.shape[1]`` probes on ``x [N, d]`` with multi-hot targets ``y [N, C]``, on
    ``x``'s device."""
    dev = x.device
    y = y.to(dtype=x.dtype)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
        probe = nn.Linear(x.shape[1], y.shape[1]).to(dev, dtype=x.dtype)
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weights(y).to(dev))
        opt = torch.optim.Adam(probe.parameters(), lr=lr, weight_decay=weight_decay)
        gamma = math.exp(math.log(end_lr / lr) / epochs)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=gamma)
        probe.train()
        for _ in range(epochs):
            for xb, yb in loader:
                opt.zero_grad()
                loss = loss_fn(probe(xb), yb)
                if l1:
                    loss = loss + l1 * probe.weight.abs().sum(dim=-1).mean()
                loss.backward()
                opt.step()
            sched.step()
    W = probe.weight.detach().float().cpu().numpy()
    b = probe.bias.detach().float().cpu().numpy()
    return Probe(W, b)


def f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """Binary F1, ``2TP / (2TP + FP + FN)``; 0 when there is neither a positive nor a
    prediction (scikit-learn's ``zero_division`` default)."""
    truth = np.asarray(truth, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    tp = int((truth & pred).sum())
    den = 2 * tp + int((~truth & pred).sum()) + int((truth & ~pred).sum())
    return 2 * tp / den if den else 0.0


def one_hot(labels: np.ndarray, n: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.as_tensor(labels, dtype=torch.long), n).float()

"""k-sparse probing on a basis's codes (SAEBench's ``k_sparse_probing.py``).

An L1-penalised 26-way probe on the training words' codes ranks the latents of each letter by
their (signed) weight; for ``k = 1 .. max_k`` a scikit-learn logistic regression
(``max_iter=500``, ``class_weight="balanced"``, otherwise its defaults) is fitted on the top-k
latents' codes, and scored on the test words (predicted positive when its logit > 0). Feature
splitting: starting at k = 1, k grows while the F1 rises by more than ``f1_jump``; the last
accepted k's latents are the letter's *main* latents.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from autointerp.absorption.probe import Probe, f1, one_hot, train_probe


@dataclass
class LetterSparse:
    """One letter's k-sparse probes: the latents and test F1 for each k, and the main ones."""

    letter: int
    feats: dict[int, list[int]] = field(default_factory=dict)
    f1: dict[int, float] = field(default_factory=dict)
    main: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "feats": {str(k): v for k, v in self.feats.items()},
            "f1": {str(k): round(v, 6) for k, v in self.f1.items()},
            "main": self.main,
        }


def l1_probe(codes: torch.Tensor, labels: np.ndarray, cfg, seed: int) -> Probe:
    """The L1-penalised probe choosing the latents (classes ``0 .. max(labels)``, as
    SAEBench's one-hot of the training labels)."""
    y = one_hot(labels, int(labels.max()) + 1).to(codes.device)
    return train_probe(
        codes, y, epochs=cfg.sparse_epochs, lr=cfg.probe_lr, end_lr=cfg.probe_end_lr,
        weight_decay=cfg.sparse_weight_decay, batch_size=cfg.sparse_batch_size, seed=seed,
        l1=cfg.sparse_l1,
    )  # fmt: skip


def top_latents(weights: np.ndarray, k: int) -> list[int]:
    """The ``k`` latents of largest weight (torch's topk: the order SAEBench uses)."""
    return torch.from_numpy(np.ascontiguousarray(weights)).topk(k).indices.tolist()


def fit_k_probe(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(max_iter=500, class_weight="balanced").fit(x, y.astype(np.int64))
    return lr.coef_[0].astype(np.float32), float(lr.intercept_[0])


def feature_split(f1s: dict[int, float], feats: dict[int, list[int]], jump: float) -> list[int]:
    """The main latents: the latents of the last k before the F1 stops rising by > ``jump``."""
    best, main = -100.0, []
    for k in sorted(f1s):
        if f1s[k] > best + jump:
            best, main = f1s[k], feats[k]
        else:
            break
    return main


def k_sparse_probing(
    train_codes: torch.Tensor,
    train_labels: np.ndarray,
    test_codes: np.ndarray,
    test_labels: np.ndarray,
    letters: list[int],
    cfg,
    seed: int,
) -> dict[int, LetterSparse]:
    """Every letter in ``letters``'s k-sparse probes and main latents."""
    probe = l1_probe(train_codes, train_labels, cfg, seed)
    xtr = train_codes.float().cpu().numpy()
    max_k = min(cfg.max_k, xtr.shape[1])
    out: dict[int, LetterSparse] = {}
    for c in letters:
        if c >= len(probe.W) or not (train_labels == c).any():
            continue
        ls = LetterSparse(c)
        y = train_labels == c
        for k in range(1, max_k + 1):
            fs = top_latents(probe.W[c], k)
            w, b = fit_k_probe(xtr[:, fs], y)
            score = torch.from_numpy(np.ascontiguousarray(test_codes[:, fs])) @ torch.from_numpy(
                w
            ) + np.float32(b)
            ls.feats[k] = fs
            ls.f1[k] = f1(test_labels == c, score.numpy() > 0.0)
        ls.main = feature_split(ls.f1, ls.feats, cfg.f1_jump)
        out[c] = ls
    return out

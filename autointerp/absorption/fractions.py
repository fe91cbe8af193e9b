"""Absorption fraction and full absorption per word, and their per-letter rates
(SAEBench's ``feature_absorption_calculator.py`` and ``main.py``; docs/absorption.md).

For a word of letter L whose ground-truth probe fires, with ``x`` its activation, ``u`` the unit
probe direction of L, ``c_i`` the codes, ``cos_i`` the cosine of latent i's decoder direction
with ``u`` and ``M`` the letter's main latents:

* ``P = x·u`` (probe projection), ``p_i = c_i cos_i`` (latent projections), ``m = Σ_{i∈M} p_i``;
* absorbers: up to 3 latents outside M with ``cos_i ≥ 0.1`` and ``p_i > 0``, the largest ``p_i``;
  ``a`` their sum;
* absorption fraction: 0 if ``m ≥ P`` or ``a / P < 0.4``; else 1 if ``m ≤ 0``; else
  ``min(a, P − m) / (min(a, P − m) + m)`` clipped to [0, 1];
* full absorption: every main latent's code < 1e-8, the latent of largest ``p_i`` has
  ``cos ≥ 0.025``, ``P ≥ 0`` and its ``p_i / P ≥ 0.4``.

A letter's mean absorption fraction and full-absorption rate are the sums over its words divided
by the number of its test words the probe fires on; its number of split features is ``|M|``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

EPS = 1e-8
FULL_ABSORPTION_COS = 0.025
ABSORBER_COS = 0.1
PROJECTION_SHARE = 0.4
MAX_ABSORBERS = 3
TOP_FEATURES = 10


@dataclass
class WordAbsorption:
    word: str
    fraction: float
    full: bool
    probe_projection: float
    main_projection: float
    absorbers: list[int] = field(default_factory=list)  # latents counted as absorbing
    top: list[int] = field(default_factory=list)  # latents of largest projection


def cosines(directions: torch.Tensor, u: np.ndarray) -> torch.Tensor:
    """``[F]``: cosine of each decoder direction ``[F, d]`` with ``u``."""
    ut = torch.as_tensor(u, dtype=directions.dtype, device=directions.device)
    return torch.nn.functional.cosine_similarity(ut[None, :], directions, dim=-1).float().cpu()


def word_absorption(
    word: str, x: np.ndarray, codes: torch.Tensor, cos: torch.Tensor, u: np.ndarray, main: list[int]
) -> WordAbsorption:
    """One word's absorption fraction and full absorption (module docstring)."""
    P = float(torch.as_tensor(x, dtype=torch.float32) @ torch.as_tensor(u, dtype=torch.float32))
    proj = codes.float().cpu() * cos
    m = float(proj[main].sum()) if main else 0.0
    cand = torch.ones(len(proj), dtype=torch.bool)
    cand[main] = False
    cand &= (cos >= ABSORBER_COS) & (proj > 0)
    idx = cand.nonzero().flatten()
    top_abs = proj[idx].topk(min(MAX_ABSORBERS, len(idx)))
    a = float(top_abs.values.sum())
    share = a / P if P != 0 else 0.0
    if m >= P or share < PROJECTION_SHARE:
        frac = 0.0
    elif m <= 0.0:
        frac = 1.0
    else:
        absorbed = min(a, P - m)
        frac = float(np.clip(absorbed / (absorbed + m), 0.0, 1.0))
    top = proj.topk(min(TOP_FEATURES, len(proj))).indices.tolist()
    c = codes.float().cpu()
    full = (
        all(float(c[i]) < EPS for i in main)
        and float(cos[top[0]]) >= FULL_ABSORPTION_COS
        and P > 0
        and float(proj[top[0]]) / P >= PROJECTION_SHARE
    )
    absorbers = idx[top_abs.indices].tolist() if frac > 0 else []
    return WordAbsorption(word, frac, bool(full), P, m, absorbers, top)


def words_absorption(
    words: list[str], X: np.ndarray, codes: torch.Tensor, cos: torch.Tensor, u: np.ndarray,
    main: list[int],
) -> list[WordAbsorption]:  # fmt: skip
    """:func:`word_absorption` of many words of one letter at once (``X [n, d]``, ``codes
    [n, F]``): the tensor work batched, the same formulas."""
    n, F = len(words), int(cos.shape[0])
    if n == 0:
        return []
    P = (torch.as_tensor(X, dtype=torch.float32) @ torch.as_tensor(u, dtype=torch.float32)).tolist()
    c = codes.float().cpu()
    proj = c * cos[None, :]
    m = proj[:, main].sum(1).tolist() if main else [0.0] * n
    cand = cos >= ABSORBER_COS
    cand[main] = False
    masked = torch.where(cand[None, :] & (proj > 0), proj, torch.tensor(float("-inf")))
    tv, ti = masked.topk(min(MAX_ABSORBERS, F), dim=1)
    ok = torch.isfinite(tv)
    a = torch.where(ok, tv, torch.zeros(())).sum(1).tolist()
    top = proj.topk(min(TOP_FEATURES, F), dim=1).indices
    off = (c[:, main] < EPS).all(1).tolist() if main else [True] * n
    top0 = top[:, 0]
    top_cos = cos[top0].tolist()
    top_proj = proj[torch.arange(n), top0].tolist()
    out = []
    for i in range(n):
        p, mi, ai = P[i], m[i], a[i]
        share = ai / p if p != 0 else 0.0
        if mi >= p or share < PROJECTION_SHARE:
            frac = 0.0
        elif mi <= 0.0:
            frac = 1.0
        else:
            absorbed = min(ai, p - mi)
            frac = float(np.clip(absorbed / (absorbed + mi), 0.0, 1.0))
        full = off[i] and top_cos[i] >= FULL_ABSORPTION_COS and p > 0 and (
            top_proj[i] / p >= PROJECTION_SHARE)  # fmt: skip
        absorbers = ti[i][ok[i]].tolist() if frac > 0 else []
        out.append(WordAbsorption(words[i], frac, bool(full), p, mi, absorbers, top[i].tolist()))
    return out


@dataclass
class LetterAbsorption:
    """One letter's rates over its probe-positive test words."""

    letter: str
    mean_absorption_fraction: float
    full_absorption_rate: float
    num_full_absorption: int
    num_probe_true_positives: int
    num_split_features: int

    def to_dict(self) -> dict:
        return {
            "first_letter": self.letter,
            "mean_absorption_fraction": self.mean_absorption_fraction,
            "full_absorption_rate": self.full_absorption_rate,
            "num_full_absorption": self.num_full_absorption,
            "num_probe_true_positives": self.num_probe_true_positives,
            "num_split_features": self.num_split_features,
        }


def letter_absorption(letter: str, words: list[WordAbsorption], n_main: int) -> LetterAbsorption:
    n = len(words)
    n_full = sum(w.full for w in words)
    return LetterAbsorption(
        letter,
        sum(w.fraction for w in words) / n,
        n_full / n,
        n_full,
        n,
        n_main,
    )

"""Faithfulness of the top-k edges into one downstream feature under mean ablation.

With every upstream code outside the kept set ``K`` set to its mean (the error term kept),
``m(K) = sum_t w_t a_j(t)``; the circuit's faithfulness is
``f(K) = (m(K) - m(none)) / (m(all) - m(none))``: 1 when the kept features carry all of the
change from the mean-ablated model, undefined when that change is 0. ``K`` = the ``k``
upstream features of largest ``|edge_ij|``, k = 1, 2, 4, ... (and all of them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from autointerp.circuits.edges import _select
from autointerp.circuits.forward import Pair


@dataclass
class Faithfulness:
    """One downstream feature: ``ks`` and ``f [len(ks)]`` (None when undefined), ``n80`` the
    smallest k of ``ks`` with f >= 0.8 (None if none), ``lin_r`` the correlation over the
    top edges of the edge (linear prediction) with the actual effect of ablating that one
    feature (None with fewer than 3 edges or a constant side), ``reason`` when undefined."""

    feat: int
    ks: list[int]
    f: list[float | None]
    n80: int | None
    lin_r: float | None
    linear: list[float]
    actual: list[float]
    reason: str = ""


def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson correlation clipped to [-1, 1]; None when either side is constant."""
    x, y = x - x.mean(), y - y.mean()
    d = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return None if d <= 0 else max(-1.0, min(1.0, float((x * y).sum()) / d))


def k_grid(n: int) -> list[int]:
    """1, 2, 4, ... below ``n``, then ``n``."""
    return [2**p for p in range(int(math.log2(n)) + 1) if 2**p < n] + [n]


@torch.no_grad()
def _metric(
    pair: Pair,
    ids: torch.Tensor,
    w: torch.Tensor,
    err: torch.Tensor,
    codes: list[torch.Tensor],
    feat: int,
    chunk: int,
) -> list[float]:
    out: list[float] = []
    for s in range(0, len(codes), chunk):
        cs = codes[s : s + chunk]
        n = len(cs)
        a = _select(
            pair.down(ids.repeat(n, 1), torch.cat(cs), err.repeat(n, 1, 1)),
            torch.full((n,), feat),
            n,
        )
        out += (a * w).sum((1, 2)).double().cpu().tolist()
    return out


def faithfulness(
    pair: Pair,
    ids: torch.Tensor,
    weights: torch.Tensor,
    cbar: torch.Tensor,
    feat: int,
    edge_row: np.ndarray,
    *,
    ks: list[int] | None = None,
    n_linear: int = 16,
    chunk: int = 8,
    fixed: torch.Tensor | None = None,
) -> Faithfulness:
    """Faithfulness curve of downstream ``feat`` given its edges ``edge_row [F1]`` (from
    :func:`autointerp.circuits.edges.edges` on the same contexts ``ids [B, T]``); ``fixed``
    ``[B, T]`` (bool): positions whose codes are never ablated (as in ``edges``)."""
    c, err = pair.upstream(ids)
    dev = c.device
    w = weights.to(dev, torch.float32)
    cb = cbar.to(dev, torch.float32).expand_as(c)
    if fixed is not None:
        cb = torch.where(fixed.to(dev)[..., None], c, cb)
    order = np.argsort(-np.abs(edge_row), kind="stable")
    ks = ks or k_grid(len(edge_row))
    codes = [c, cb.clone()]
    for k in ks:
        keep = torch.from_numpy(order[:k].copy()).to(dev)
        ck = cb.clone()
        ck[..., keep] = c[..., keep]
        codes.append(ck)
    lin_idx = [int(i) for i in order[:n_linear] if edge_row[i] != 0]
    for i in lin_idx:
        ci = c.clone()
        ci[..., i] = cb[..., i]
        codes.append(ci)
    m = _metric(pair, ids, w, err, codes, feat, chunk)
    m_all, m_none = m[0], m[1]
    mk, m_single = m[2 : 2 + len(ks)], m[2 + len(ks) :]
    actual = [m_all - v for v in m_single]
    linear = [float(edge_row[i]) for i in lin_idx]
    r = pearson(np.array(linear), np.array(actual)) if len(lin_idx) >= 3 else None
    denom = m_all - m_none
    if abs(denom) <= 1e-6 * max(1.0, abs(m_all), abs(m_none)):
        return Faithfulness(
            feat,
            ks,
            [None] * len(ks),
            None,
            r,
            linear,
            actual,
            "undefined: mean-ablating every upstream feature leaves the activation unchanged",
        )
    f = [(v - m_none) / denom for v in mk]
    n80 = next((k for k, v in zip(ks, f, strict=True) if v >= 0.8), None)
    return Faithfulness(feat, ks, f, n80, r, linear, actual)

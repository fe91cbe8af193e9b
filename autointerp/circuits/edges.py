"""Edges between the features of two hookpoints: attribution patching with the mean baseline.

For downstream feature ``j`` its activation summed over the counted positions,
``m_j = sum_t w_t a_j(t)``, is attributed to each upstream feature ``i`` as
``edge_ij = sum_s (dm_j / dc_i(s)) * (c_i(s) - cbar_i)`` (gradient x delta, ``s`` over every
upstream position), the upstream error term ``e`` as one more node:
``edge_err,j = sum_s (dm_j / de(s)) . (e(s) - ebar)``. Integrated gradients replace the
gradient at the actual codes by its mean over ``n`` midpoints ``cbar + (k + 1/2)/n (c - cbar)``
(error kept at its actual value). One backward pass per batch of downstream features: the
contexts are repeated once per feature of the batch and each copy's metric is one feature.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from autointerp.circuits.forward import Pair


@dataclass
class Edges:
    """Edges into downstream features ``feats``: ``edges [J, F1]`` (gradient x delta),
    ``error [J]`` (the upstream error node), ``act [J]`` (``m_j`` at the actual codes) and
    ``base [J]`` (``m_j`` with every upstream code at its mean, error kept). With integrated
    gradients, ``ig [J, F1]`` and ``ig_gap [J] = sum|ig - edges| / sum|ig|`` (None when
    ``sum|ig|`` is 0); ``sum_i ig_ij`` approximates ``act - base``."""

    feats: list[int]
    edges: np.ndarray
    error: np.ndarray
    act: np.ndarray
    base: np.ndarray
    ig: np.ndarray | None = None
    ig_gap: list[float | None] | None = None
    backward_passes: int = 0


def _select(a2: torch.Tensor, feats: torch.Tensor, n: int) -> torch.Tensor:
    """``[n, B, T]``: copy ``k``'s downstream feature ``feats[k]`` from ``a2 [n*B, T, F2]``."""
    a = a2.reshape(n, -1, *a2.shape[1:])
    idx = feats.to(a.device)[:, None, None, None].expand(*a.shape[:-1], 1)
    return a.gather(-1, idx).squeeze(-1)


def edges(
    pair: Pair,
    ids: torch.Tensor,
    weights: torch.Tensor,
    cbar: torch.Tensor,
    ebar: torch.Tensor,
    feats: list[int],
    *,
    batch_feats: int = 8,
    ig_steps: int = 0,
) -> Edges:
    """Edges into ``feats`` over contexts ``ids [B, T]``; ``weights [B, T]`` says which
    downstream positions count (and how much); ``cbar [F1]`` and ``ebar [d1]`` are the
    upstream mean codes and mean error (from other text than ``ids``, or the sum of deltas
    is ~0)."""
    if ids.shape != weights.shape:
        raise ValueError(f"ids {tuple(ids.shape)} and weights {tuple(weights.shape)} differ")
    c, err = pair.upstream(ids)
    dev = c.device
    cbar, ebar = cbar.to(dev, torch.float32), ebar.to(dev, torch.float32)
    w = weights.to(dev, torch.float32)
    dc, de = c - cbar, err - ebar
    n_f1 = c.shape[-1]
    J = len(feats)
    out = {k: np.zeros((J, n_f1)) for k in ("edges", "ig")}
    error, act, base = np.zeros(J), np.zeros(J), np.zeros(J)
    passes = 0
    alphas = [1.0] + [(k + 0.5) / ig_steps for k in range(ig_steps)]
    for s in range(0, J, batch_feats):
        fb = torch.tensor(feats[s : s + batch_feats])
        n = len(fb)
        ids_r = ids.repeat(n, 1)
        e_r = err.repeat(n, 1, 1)
        for a_i, alpha in enumerate(alphas):
            leaf = (cbar + alpha * dc).repeat(n, 1, 1).requires_grad_(True)
            e_leaf = e_r.clone().requires_grad_(a_i == 0)
            with torch.enable_grad():
                m = _select(pair.down(ids_r, leaf, e_leaf), fb, n)
                m = (m * w).sum((1, 2))
                wrt = [leaf, e_leaf] if a_i == 0 else [leaf]
                grads = torch.autograd.grad(m.sum(), wrt, allow_unused=True)
            passes += 1
            g = grads[0] if grads[0] is not None else torch.zeros_like(leaf)
            contrib = (g.reshape(n, *c.shape) * dc).sum((1, 2)).double().cpu().numpy()
            if a_i == 0:
                out["edges"][s : s + n] = contrib
                act[s : s + n] = m.detach().double().cpu().numpy()
                ge = grads[1] if grads[1] is not None else torch.zeros_like(e_leaf)
                error[s : s + n] = (ge.reshape(n, *err.shape) * de).sum((1, 2, 3)).cpu().numpy()
            else:
                out["ig"][s : s + n] += contrib / ig_steps
        with torch.no_grad():
            mb = _select(pair.down(ids_r, cbar.expand_as(c).repeat(n, 1, 1), e_r), fb, n)
            base[s : s + n] = (mb * w).sum((1, 2)).double().cpu().numpy()
    res = Edges(list(feats), out["edges"], error, act, base, backward_passes=passes)
    if ig_steps:
        res.ig = out["ig"]
        tot = np.abs(res.ig).sum(1)
        gap = np.abs(res.ig - res.edges).sum(1)
        res.ig_gap = [float(g / t) if t > 0 else None for g, t in zip(gap, tot, strict=True)]
    return res


@torch.no_grad()
def mean_codes(
    pair: Pair, ids: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Upstream mean codes ``[F1]`` and mean error ``[d1]`` over ``ids`` (positions where
    ``mask`` is True, default all)."""
    c, err = pair.upstream(ids)
    keep = torch.ones(ids.shape, dtype=torch.bool) if mask is None else mask
    keep = keep.to(c.device)
    return c[keep].mean(0), err[keep].mean(0)

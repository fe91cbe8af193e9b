"""Edges between the features of two hookpoints: attribution patching with the mean baseline.

For downstream feature ``j`` its activation summed over the counted positions,
``m_j = sum_t w_t a_j(t)``, is attributed to each upstream feature ``i`` as
``edge_ij = sum_s (dm_j / dc_i(s)) * (c_i(s) - cbar_i)`` (gradient x delta, ``s`` over every
upstream position), the upstream error term ``e`` as one more node:
``edge_err,j = sum_s (dm_j / de(s)) . (e(s) - ebar)``. Integrated gradients replace the
gradient at the actual codes by its mean over ``n`` midpoints ``cbar + (k + 1/2)/n (c - cbar)``
(error kept at its actual value). One backward pass per batch of downstream features: the
contexts (shared, or each feature's own) are stacked once per feature of the batch and each
copy's metric is one feature.
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


def _batch(
    pair: Pair,
    ids: torch.Tensor,
    weights: torch.Tensor,
    fixed: torch.Tensor | None,
    s: int,
    n: int,
    shared: tuple[torch.Tensor, torch.Tensor] | None,
) -> tuple[torch.Tensor, ...]:
    """The contexts of features ``s .. s+n`` stacked ``[n*B, T]``: ids, weights, fixed mask,
    upstream codes and error (``shared``: the codes of 2-D ``ids``, repeated ``n`` times)."""
    if shared is None:
        sl = slice(s, s + n)
        ids_r, w = ids[sl].flatten(0, 1), weights[sl].flatten(0, 1)
        fx = None if fixed is None else fixed[sl].flatten(0, 1)
        c, err = pair.upstream(ids_r)
    else:
        ids_r, w = ids.repeat(n, 1), weights.repeat(n, 1)
        fx = None if fixed is None else fixed.repeat(n, 1)
        c, err = shared[0].repeat(n, 1, 1), shared[1].repeat(n, 1, 1)
    if fx is None:
        fx = torch.zeros(ids_r.shape, dtype=torch.bool)
    return ids_r, w, fx.to(c.device)[..., None], c, err


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
    fixed: torch.Tensor | None = None,
) -> Edges:
    """Edges into ``feats`` over contexts ``ids``: ``[B, T]`` shared by every feature, or
    ``[J, B, T]`` (feature ``feats[k]``'s own contexts ``ids[k]``); ``weights`` (same shape)
    says which downstream positions count (and how much); ``cbar [F1]`` and ``ebar [d1]`` are
    the upstream mean codes and mean error (from other text than ``ids``, or the sum of deltas
    is ~0). ``fixed`` (bool, same shape): positions whose codes and error are never moved off
    their actual values (special tokens, the attention sink): no edge runs through them."""
    if ids.shape != weights.shape or (fixed is not None and fixed.shape != ids.shape):
        raise ValueError(
            f"ids {tuple(ids.shape)}, weights {tuple(weights.shape)} and fixed "
            f"{None if fixed is None else tuple(fixed.shape)} must have one shape"
        )
    if ids.dim() == 3 and ids.shape[0] != len(feats):
        raise ValueError(f"ids hold contexts of {ids.shape[0]} features, not {len(feats)}")
    shared = pair.upstream(ids) if ids.dim() == 2 else None
    J = len(feats)
    n_f1 = pair.b1.n_features
    out = {k: np.zeros((J, n_f1)) for k in ("edges", "ig")}
    error, act, base = np.zeros(J), np.zeros(J), np.zeros(J)
    passes = 0
    alphas = [1.0] + [(k + 0.5) / ig_steps for k in range(ig_steps)]
    for s in range(0, J, batch_feats):
        fb = torch.tensor(feats[s : s + batch_feats])
        n = len(fb)
        ids_r, w, fx, c, err = _batch(pair, ids, weights, fixed, s, n, shared)
        dev = c.device
        w = w.to(dev, torch.float32).reshape(n, -1, w.shape[-1])
        cb = cbar.to(dev, torch.float32).expand_as(c)
        c0 = torch.where(fx, c, cb)  # the mean-ablated codes (fixed positions: actual)
        dc = c - c0
        de = (err - ebar.to(dev, torch.float32)).masked_fill(fx, 0.0)
        for a_i, alpha in enumerate(alphas):
            leaf = (c0 + alpha * dc).requires_grad_(True)
            e_leaf = err.clone().requires_grad_(a_i == 0)
            with torch.enable_grad():
                m = (_select(pair.down(ids_r, leaf, e_leaf), fb, n) * w).sum((1, 2))
                wrt = [leaf, e_leaf] if a_i == 0 else [leaf]
                grads = torch.autograd.grad(m.sum(), wrt, allow_unused=True)
            passes += 1
            g = grads[0] if grads[0] is not None else torch.zeros_like(leaf)
            contrib = (g * dc).reshape(n, -1, n_f1).sum(1).double().cpu().numpy()
            if a_i == 0:
                out["edges"][s : s + n] = contrib
                act[s : s + n] = m.detach().double().cpu().numpy()
                ge = grads[1] if grads[1] is not None else torch.zeros_like(e_leaf)
                error[s : s + n] = (ge * de).reshape(n, -1).sum(1).double().cpu().numpy()
            else:
                out["ig"][s : s + n] += contrib / ig_steps
        with torch.no_grad():
            mb = _select(pair.down(ids_r, c0, err), fb, n)
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

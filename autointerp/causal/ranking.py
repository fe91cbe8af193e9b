"""Feature rankings for the IOI curve, and the curves of one basis under each ranking
(docs/causal.md).

The first-order effect of patching feature ``i`` on pair ``p`` is ``a[p, i]`` (attribution
patching, :func:`autointerp.causal.patching.attribution`): the change in KL(P_cf || P) the
patch predicts. Orders:

* ``signed`` (default): ascending ``a`` -- the features whose patch lowers the KL most first
  (those predicted to raise it come last);
* ``abs``: descending ``|a|`` (the old ranking; admits features that raise the KL).

Rankings (which pairs an order is fitted on, for which pairs it is used):

* ``in_sample``: one order from ``sum_p a[p, i]`` over all pairs, used for every pair;
* ``held_out``: the pairs of half ``h`` (split by template and names,
  :mod:`autointerp.causal.ioi_prompts`) use the order fitted on the other half (cross-fitting:
  every pair is evaluated with a ranking that never saw it);
* ``per_pair``: each pair its own order from ``a[p, :]``.

All rankings' feature sets of a basis are run in one batched call, so states two rankings
share (k = all, for one) run once.
"""

from __future__ import annotations

import numpy as np
import torch

from autointerp.bases.base import Basis
from autointerp.causal.patching import Curve, IOIData, attribution, k_values, patched_runs
from autointerp.errors import AutointerpError
from autointerp.model import Hookpoint, SubjectModel

RANKINGS = ("in_sample", "held_out", "per_pair")


def order_of(a: np.ndarray, signed: bool = True) -> np.ndarray:
    """Features by rank along the last axis of ``a`` (``[F]`` or ``[P, F]``): ascending ``a``
    when ``signed``, else descending ``|a|`` (stable on ties)."""
    return np.argsort(a if signed else -np.abs(a), axis=-1, kind="stable")


def pair_orders(a: np.ndarray, halves: np.ndarray, ranking: str, signed: bool) -> np.ndarray:
    """``[P, F]``: the order each pair is patched in under ``ranking`` (module docstring)."""
    n_p = len(a)
    if ranking == "in_sample":
        return np.tile(order_of(a.sum(0), signed), (n_p, 1))
    if ranking == "per_pair":
        return order_of(a, signed)
    if ranking == "held_out":
        if len(set(halves.tolist())) < 2:
            raise AutointerpError(
                "held-out ranking needs pairs in both halves (IOIPair.half 0 and 1); build the "
                "pairs with ioi_pairs, or use n_pairs >= 2 templates' worth"
            )
        out = np.empty(a.shape, dtype=np.int64)
        for h in (0, 1):
            rows = halves == h
            out[rows] = order_of(a[~rows].sum(0), signed)
        return out
    raise AutointerpError(f"unknown IOI ranking {ranking!r}; use one of {', '.join(RANKINGS)}")


def top_k_masks(orders: np.ndarray, ks: list[int]) -> list[torch.Tensor]:
    """``[P, F]`` bool masks of each pair's first ``k`` features, one per k."""
    o = torch.from_numpy(np.ascontiguousarray(orders))
    out = []
    for k in ks:
        m = torch.zeros(o.shape, dtype=torch.bool)
        m.scatter_(1, o[:, :k], True)
        out.append(m)
    return out


def ioi_curves(
    sm: SubjectModel,
    hp: Hookpoint,
    data: IOIData,
    basis: Basis,
    ks: list[int] | str = "pow2",
    batch_size: int = 64,
    signed: bool = True,
    rankings: tuple[str, ...] = RANKINGS,
) -> dict[str, Curve]:
    """The curve of ``basis`` under each of ``rankings`` (one batched run for all)."""
    a = attribution(sm, hp, data, basis)
    halves = np.array([p.half for p in data.pairs])
    kv = k_values(ks, basis.n_features)
    sets: list[torch.Tensor] = []
    for r in rankings:
        sets += top_k_masks(pair_orders(a, halves, r, signed), kv)
    runs = patched_runs(sm, hp, data, basis, sets, batch_size)
    pooled = a.sum(0)
    order = order_of(pooled, signed)
    out = {}
    n_k = len(kv)
    for j, r in enumerate(rankings):
        sl = slice(j * n_k, (j + 1) * n_k)
        info = {"ranking": r, "order": "signed" if signed else "abs", "states": runs.n_states}
        out[r] = Curve(
            basis.name, basis.n_features, kv, runs.kl[sl], runs.edit[sl], pooled, order, info,
            runs.edit_abs[sl],
        )  # fmt: skip
    return out

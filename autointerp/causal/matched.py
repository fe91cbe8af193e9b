"""Comparisons of IOI curves at matched quantities (docs/causal.md). Each takes one curve's
mean points in k order, with the unpatched point (k = 0: edit 0, KL = the unpatched KL ``kl0``)
in front, and returns ``None`` where the quantity is not reached.

* :func:`half_k`: features for half the unpatched KL, interpolated linearly in ``log k``
  between the two grid points around the first crossing of ``kl0 / 2``.
* :func:`edit_at_half`: the edit size at the same crossing, interpolated linearly in KL along
  the curve's own (edit, KL) points, so every basis is read at the same KL.
* :func:`kl_at_edit`: the KL where the curve's running maximum of the edit first reaches
  ``e``, interpolated linearly in edit.
* :func:`auc_edit`: the area under KL / kl0 against the relative edit over [0, 1], trapezoids
  on the (running-max edit, KL) points; past the last point the last KL holds.
"""

from __future__ import annotations

import math

import numpy as np


def _first_at_or_below(y: np.ndarray, target: float) -> int | None:
    hit = np.nonzero(y <= target)[0]
    return int(hit[0]) if len(hit) else None


def half_k(ks: list[int], kl: np.ndarray, kl0: float) -> float | None:
    """``k*`` with ``KL(k*) = kl0 / 2``: at the first grid index ``j`` with ``kl[j] <= kl0/2``,
    ``log k* = log k_{j-1} + (log k_j - log k_{j-1}) (kl_{j-1} - h) / (kl_{j-1} - kl_j)``;
    ``ks[0]`` when the first grid point is already there; None when no point is."""
    h = kl0 / 2
    j = _first_at_or_below(kl, h)
    if j is None:
        return None
    if j == 0:
        return float(ks[0])
    k0, k1, y0, y1 = math.log(ks[j - 1]), math.log(ks[j]), kl[j - 1], kl[j]
    t = (y0 - h) / (y0 - y1) if y0 != y1 else 1.0
    return float(math.exp(k0 + (k1 - k0) * t))


def edit_at_half(edit: np.ndarray, kl: np.ndarray, kl0: float) -> float | None:
    """The edit where the curve (edit 0, kl0), (edit_j, kl_j), ... first reaches ``kl0 / 2``,
    linear in KL between the two points around the crossing; None when it never does."""
    h = kl0 / 2
    x = np.concatenate([[0.0], edit])
    y = np.concatenate([[kl0], kl])
    j = _first_at_or_below(y, h)
    if j is None:
        return None
    if j == 0:
        return 0.0
    t = (y[j - 1] - h) / (y[j - 1] - y[j]) if y[j - 1] != y[j] else 1.0
    return float(x[j - 1] + (x[j] - x[j - 1]) * t)


def kl_at_edit(edit: np.ndarray, kl: np.ndarray, kl0: float, e: float) -> float | None:
    """KL at edit size ``e`` along the curve (running maximum of the edit, so the x axis never
    goes back); None when the curve's largest edit is below ``e``."""
    x = np.maximum.accumulate(np.concatenate([[0.0], edit]))
    y = np.concatenate([[kl0], kl])
    hit = np.nonzero(x >= e)[0]
    if not len(hit):
        return None
    j = int(hit[0])
    if j == 0 or x[j] == x[j - 1]:
        return float(y[j])
    t = (e - x[j - 1]) / (x[j] - x[j - 1])
    return float(y[j - 1] + (y[j] - y[j - 1]) * t)


def auc_edit(edit: np.ndarray, kl: np.ndarray, kl0: float) -> float:
    """``integral_0^1 KL(e) / kl0 de`` on the (running-max relative edit, KL) points,
    clipped at edit 1, the last KL held to 1 (lower: the KL falls with less edit)."""
    x = np.minimum(np.maximum.accumulate(np.concatenate([[0.0], edit])), 1.0)
    y = np.concatenate([[kl0], kl]) / kl0
    area = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))
    return area + float((1.0 - x[-1]) * y[-1])

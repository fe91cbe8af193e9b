"""Across features: rank correlations with CIs, and the top-quartile check (docs/steering.md).

``spearman``: Pearson correlation of the average ranks (ties share their mean rank). Its CI is
a seeded percentile bootstrap over features (pairs resampled together); undefined under 4
pairs, when either side is constant, or when more than 2.5% of the resamples have a constant
side (a score that is nonzero for one or two features: the CI of the rest would be conditioned
on drawing them). ``top_quartile``: mean steering score of the features
whose other score is at or above its 75th percentile minus the mean of the rest, with a
bootstrap CI of that difference (each group resampled on its own).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_PAIRS = 4
#: the largest share of bootstrap resamples with a constant side that a CI may ignore
MAX_UNDEFINED = 0.025


@dataclass(frozen=True)
class Estimate:
    value: float | None
    low: float | None = None
    high: float | None = None
    n: int = 0
    reason: str = ""


def ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based; ties get the mean of the ranks they span)."""
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    xs = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and xs[j + 1] == xs[i]:
            j += 1
        r[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return r


def _rho(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def _pairs(a: Sequence[float | None], b: Sequence[float | None]) -> tuple[np.ndarray, np.ndarray]:
    keep = [
        (x, y)
        for x, y in zip(a, b, strict=True)
        if x is not None and y is not None and np.isfinite(x) and np.isfinite(y)
    ]
    if not keep:
        return np.zeros(0), np.zeros(0)
    arr = np.asarray(keep, dtype=np.float64)
    return arr[:, 0], arr[:, 1]


def spearman(
    a: Sequence[float | None], b: Sequence[float | None], *, n_boot: int = 1000, seed: int = 0
) -> Estimate:
    """Spearman's rho of the defined pairs with a bootstrap CI (module docstring)."""
    x, y = _pairs(a, b)
    n = len(x)
    if n < MIN_PAIRS:
        return Estimate(None, n=n, reason=f"{n} features with both scores (needs {MIN_PAIRS})")
    if np.all(x == x[0]) or np.all(y == y[0]):
        return Estimate(None, n=n, reason="one of the scores is constant across features")
    rho = _rho(x, y)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, n, n)
        v = _rho(x[i], y[i])
        if np.isfinite(v):
            boots.append(v)
    if len(boots) < (1 - MAX_UNDEFINED) * n_boot:
        # dropping the resamples with a constant side would condition the CI on the few
        # features that vary (it can then exclude rho itself): no CI, no rho
        u = min(len(np.unique(x)), len(np.unique(y)))
        return Estimate(None, n=n, reason=(
            f"{1 - len(boots) / n_boot:.0%} of the bootstrap resamples have a constant side "
            f"(one score takes {u} distinct values over {n} features): no CI"))  # fmt: skip
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return Estimate(rho, float(lo), float(hi), n)


def top_quartile(
    score: Sequence[float | None], by: Sequence[float | None], *, n_boot: int = 1000, seed: int = 0
) -> Estimate:
    """Mean ``score`` of the top quartile by ``by`` minus the rest's, with a bootstrap CI."""
    s, b = _pairs(score, by)
    n = len(s)
    if n < MIN_PAIRS:
        return Estimate(None, n=n, reason=f"{n} features with both scores (needs {MIN_PAIRS})")
    top = b >= np.percentile(b, 75)
    if top.all() or not top.any():
        return Estimate(None, n=n, reason="no split into a top quartile and the rest (ties)")
    t, r = s[top], s[~top]
    d = float(t.mean() - r.mean())
    rng = np.random.default_rng(seed)
    boots = [rng.choice(t, len(t)).mean() - rng.choice(r, len(r)).mean() for _ in range(n_boot)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return Estimate(d, float(lo), float(hi), n)

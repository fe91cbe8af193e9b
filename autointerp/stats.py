"""Statistics for the leaderboard: bootstrap CIs, lifts over null rows, tests, density bins.

Conventions shared by every function here:

* Missing values (``None`` or NaN) are dropped before anything is computed, and the number
  dropped is reported (``n_excluded``) so that failed / undefined scores are visible, never
  averaged in as 0.
* Bootstrap CIs are **percentile** intervals: draw ``n_boot`` resamples with replacement of the
  same size as the data from ``numpy.random.default_rng(seed)``, compute the statistic on each,
  and take the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the resampled statistics
  (``numpy.quantile``, default linear interpolation). The resample indices are drawn as one
  ``rng.integers(0, n, size=(n_boot, n))`` matrix, so a result can be recomputed by hand.
* With fewer than two usable values (or constant data) the CI is degenerate: ``low == high ==
  mean`` (or NaN when there is no data at all).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DEFAULT_N_BOOT = 1000
DEFAULT_LEVEL = 0.95
#: Interior edges of the default firing-density bins: ``<1e-4, [1e-4, 1e-3), [1e-3, 1e-2),
#: [1e-2, 1e-1), >=1e-1`` (dead features, density 0, fall in the first bin).
DEFAULT_DENSITY_EDGES: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)


@dataclass(frozen=True)
class MeanCI:
    """A mean with its bootstrap CI. ``n`` values used, ``n_excluded`` dropped (None/NaN)."""

    mean: float
    low: float
    high: float
    n: int
    n_excluded: int = 0
    level: float = DEFAULT_LEVEL
    n_boot: int = DEFAULT_N_BOOT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TestResult:
    """A two-sided hypothesis test. ``pvalue`` is NaN when the test is undefined (see ``note``)."""

    test: str
    statistic: float
    pvalue: float
    n_a: int
    n_b: int
    effect: float = math.nan  # test-specific effect size, documented on each function
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DensityBin:
    """Mean score + CI of the features whose firing density lies in ``[lo, hi)``."""

    label: str
    lo: float
    hi: float
    ci: MeanCI

    def to_dict(self) -> dict[str, Any]:
        d = {"bin": self.label, "lo": self.lo, "hi": self.hi}
        d.update({k: v for k, v in self.ci.to_dict().items() if k not in ("level", "n_boot")})
        return d


def clean(values: Iterable[float | None]) -> tuple[np.ndarray, int]:
    """Float array without None/NaN, and how many were dropped."""
    arr = np.asarray([math.nan if v is None else float(v) for v in values], dtype=float)
    keep = ~np.isnan(arr)
    return arr[keep], int((~keep).sum())


def _check(n_boot: int, level: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def percentile_ci(stats: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """The two-sided percentile interval of bootstrap draws ``stats`` at ``level``."""
    lo, hi = np.quantile(stats, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi)


def _boot_means(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_boot`` resamples: indices ``rng.integers(0, n, size=(n_boot, n))``."""
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    return x[idx].mean(axis=1)


def _degenerate(x: np.ndarray) -> bool:
    return len(x) < 2 or bool(np.all(x == x[0]))


def bootstrap_mean_ci(
    values: Iterable[float | None],
    *,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> MeanCI:
    """Mean of ``values`` with a seeded percentile bootstrap CI (see module docstring).

    None/NaN are excluded and counted in ``n_excluded``. No data -> mean/low/high NaN; one value
    or constant data -> ``low == high == mean``.
    """
    _check(n_boot, level)
    x, n_excl = clean(values)
    if len(x) == 0:
        return MeanCI(math.nan, math.nan, math.nan, 0, n_excl, level, n_boot)
    m = float(x.mean())
    if _degenerate(x):
        return MeanCI(m, m, m, len(x), n_excl, level, n_boot)
    lo, hi = percentile_ci(_boot_means(x, n_boot, np.random.default_rng(seed)), level)
    return MeanCI(m, lo, hi, len(x), n_excl, level, n_boot)


@dataclass(frozen=True)
class LiftCI:
    """``diff = mean(a) - mean(null)`` with a bootstrap CI.

    Paired: ``n_a == n_null`` = number of complete pairs, ``n_excluded`` pairs with a missing
    side. Unpaired: ``n_excluded`` = values dropped from both groups together.
    """

    diff: float
    low: float
    high: float
    mean_a: float
    mean_null: float
    n_a: int
    n_null: int
    n_excluded: int
    paired: bool
    level: float = DEFAULT_LEVEL
    n_boot: int = DEFAULT_N_BOOT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def align_pairs(
    a: Mapping[Any, float | None], b: Mapping[Any, float | None]
) -> tuple[list[float | None], list[float | None]]:
    """Values of ``a`` and ``b`` for the keys (e.g. feature ids) both hold, in sorted key order.

    Keys held by only one side are left out (they cannot form a pair).
    """
    keys = sorted(set(a) & set(b))
    return [a[k] for k in keys], [b[k] for k in keys]


def lift(
    scores_a: Sequence[float | None],
    scores_null: Sequence[float | None],
    *,
    paired: bool,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> LiftCI:
    """Lift of a score over a null: ``mean(a) - mean(null)`` with a percentile bootstrap CI.

    * ``paired=True`` (null = shuffled explanations of the *same* features): ``scores_a[i]`` and
      ``scores_null[i]`` belong to one feature; pairs with a missing side are dropped; the
      statistic is the mean of the per-feature differences ``d_i = a_i - null_i``, and its CI
      resamples features (``rng.integers(0, n, (n_boot, n))`` over the pairs).
    * ``paired=False`` (null = another basis, e.g. random directions): the two groups are
      resampled independently, first ``a`` then ``null``, from one generator, and the
      statistic is the difference of the resampled means.
    """
    _check(n_boot, level)
    rng = np.random.default_rng(seed)
    if paired:
        if len(scores_a) != len(scores_null):
            raise ValueError(
                f"paired lift needs equal lengths, got {len(scores_a)} and {len(scores_null)}; "
                "align by feature id with align_pairs()"
            )
        a = np.asarray([math.nan if v is None else float(v) for v in scores_a], dtype=float)
        b = np.asarray([math.nan if v is None else float(v) for v in scores_null], dtype=float)
        keep = ~(np.isnan(a) | np.isnan(b))
        a, b, n_excl = a[keep], b[keep], int((~keep).sum())
        n = len(a)
        if n == 0:
            nan = math.nan
            return LiftCI(nan, nan, nan, nan, nan, 0, 0, n_excl, True, level, n_boot)
        d = a - b
        diff = float(d.mean())
        if _degenerate(d):
            lo = hi = diff
        else:
            lo, hi = percentile_ci(_boot_means(d, n_boot, rng), level)
        return LiftCI(
            diff, lo, hi, float(a.mean()), float(b.mean()), n, n, n_excl, True, level, n_boot
        )
    a, ea = clean(scores_a)
    b, eb = clean(scores_null)
    if len(a) == 0 or len(b) == 0:
        ma = float(a.mean()) if len(a) else math.nan
        mb = float(b.mean()) if len(b) else math.nan
        nan = math.nan
        return LiftCI(nan, nan, nan, ma, mb, len(a), len(b), ea + eb, False, level, n_boot)
    diff = float(a.mean() - b.mean())
    if _degenerate(a) and _degenerate(b):
        lo = hi = diff
    else:
        boot = _boot_means(a, n_boot, rng) - _boot_means(b, n_boot, rng)
        lo, hi = percentile_ci(boot, level)
    ma, mb = float(a.mean()), float(b.mean())
    return LiftCI(diff, lo, hi, ma, mb, len(a), len(b), ea + eb, False, level, n_boot)


def paired_test(a: Sequence[float | None], b: Sequence[float | None]) -> TestResult:
    """Wilcoxon signed-rank test (two-sided, ``scipy.stats.wilcoxon``) of ``a_i - b_i``.

    For the *same* features scored two ways (real vs shuffled explanation). Pairs with a
    missing side are dropped; zero differences are dropped (``zero_method="wilcox"``).
    ``effect`` is the median of the differences. Undefined (p = NaN) when no non-zero
    difference is left.
    """
    from scipy import stats as sps

    if len(a) != len(b):
        raise ValueError(f"paired_test needs equal lengths, got {len(a)} and {len(b)}")
    x = np.asarray([math.nan if v is None else float(v) for v in a], dtype=float)
    y = np.asarray([math.nan if v is None else float(v) for v in b], dtype=float)
    keep = ~(np.isnan(x) | np.isnan(y))
    d = x[keep] - y[keep]
    n = len(d)
    med = float(np.median(d)) if n else math.nan
    if np.count_nonzero(d) == 0:
        return TestResult("wilcoxon", math.nan, math.nan, n, n, med, "no non-zero difference")
    r = sps.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    return TestResult("wilcoxon", float(r.statistic), float(r.pvalue), n, n, med)


def compare_bases(a: Iterable[float | None], b: Iterable[float | None]) -> TestResult:
    """Mann-Whitney U test (two-sided, ``scipy.stats.mannwhitneyu``) of two score samples.

    For two *different* bases (different features, so no pairing). ``statistic`` is U of ``a``;
    ``effect`` is the common-language effect size ``U / (n_a * n_b)`` = P(A > B) + P(A = B) / 2.
    Undefined (p = NaN) when either sample is empty.
    """
    from scipy import stats as sps

    x, _ = clean(a)
    y, _ = clean(b)
    if len(x) == 0 or len(y) == 0:
        return TestResult("mannwhitneyu", math.nan, math.nan, len(x), len(y), note="empty sample")
    r = sps.mannwhitneyu(x, y, alternative="two-sided")
    u = float(r.statistic)
    return TestResult("mannwhitneyu", u, float(r.pvalue), len(x), len(y), u / (len(x) * len(y)))


def bin_label(lo: float, hi: float) -> str:
    if lo == -math.inf:
        return f"<{hi:.0e}"
    if hi == math.inf:
        return f">={lo:.0e}"
    return f"{lo:.0e}..{hi:.0e}"


def density_bins(
    density: Sequence[float | None],
    scores: Sequence[float | None],
    *,
    edges: Sequence[float] = DEFAULT_DENSITY_EDGES,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> list[DensityBin]:
    """Mean score + bootstrap CI per firing-density bin.

    ``edges`` are the increasing positive interior edges (at least 3, i.e. >= 4 bins); bins are
    ``(-inf, e0), [e0, e1), ..., [e_last, inf)``, so with the default decades:
    ``<1e-4, 1e-4..1e-3, 1e-3..1e-2, 1e-2..1e-1, >=1e-1``. Every bin is returned, empty ones
    with ``n = 0``. Features whose density is missing are dropped; missing scores are counted
    in each bin's ``n_excluded``.
    """
    e = [float(v) for v in edges]
    if len(e) < 3 or any(v <= 0 for v in e) or any(b <= a for a, b in zip(e, e[1:])):
        raise ValueError(
            f"edges must be >= 3 increasing positive numbers (>= 4 bins), got {list(edges)}"
        )
    if len(density) != len(scores):
        raise ValueError(f"density and scores differ in length: {len(density)} vs {len(scores)}")
    d = np.asarray([math.nan if v is None else float(v) for v in density], dtype=float)
    s = [None if v is None else float(v) for v in scores]
    bounds = [-math.inf, *e, math.inf]
    out = []
    for lo, hi in zip(bounds, bounds[1:]):
        sel = np.nonzero((d >= lo) & (d < hi))[0]
        ci = bootstrap_mean_ci([s[i] for i in sel], n_boot=n_boot, level=level, seed=seed)
        out.append(DensityBin(bin_label(lo, hi), lo, hi, ci))
    return out


def log_edges(lo: float = 1e-4, hi: float = 1e-1, n_bins: int = 5) -> tuple[float, ...]:
    """``n_bins - 1`` log-spaced interior edges from ``lo`` to ``hi`` (``n_bins >= 4``)."""
    if n_bins < 4:
        raise ValueError(f"n_bins must be >= 4, got {n_bins}")
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < lo < hi, got lo={lo}, hi={hi}")
    return tuple(float(v) for v in np.logspace(math.log10(lo), math.log10(hi), n_bins - 1))


#: fewest null features a density bin must hold to enter the stratified lift on its own;
#: a bin with fewer is merged with its neighbours (:func:`merge_bins`)
MIN_NULL_PER_BIN = 5
#: the stratified permutation test enumerates every relabelling when there are at most this
#: many, else it draws ``n_boot`` of them
MAX_EXACT_PERMUTATIONS = 20000


@dataclass(frozen=True)
class StratifiedLift:
    """Density-stratified lift over a null basis (``docs/statistics.md``).

    ``diff = mean(a) - Σ_k w_k mean(null_k)`` with ``w_k`` the share of ``a``'s features in
    stratum ``k``. A stratum is a density bin holding at least ``MIN_NULL_PER_BIN`` null
    features, or a run of adjacent bins merged until it does (``strata``: their labels).
    ``low``/``high``: percentile CI of a bootstrap that resamples each group within each
    stratum; ``pvalue``: two-sided permutation test that relabels within strata (exact when
    ``exact``). ``n_null`` counts only the null features of strata that hold a basis feature;
    ``n_unsupported`` the basis features left out (only when the whole null has fewer than
    ``MIN_NULL_PER_BIN`` features: then the lift is undefined, ``reason`` says why)."""

    diff: float
    low: float
    high: float
    pvalue: float
    mean_a: float
    mean_null: float
    n_a: int
    n_null: int
    n_unsupported: int
    n_excluded: int  # scores or densities missing (None/NaN), both groups
    strata: tuple[str, ...] = ()
    n_merged: int = 0  # bins merged into a neighbour for want of null features
    exact: bool = False
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bin_of(density: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Bin index per density, bins as in :func:`density_bins` (``[e_{k-1}, e_k)``: a density
    on an edge belongs to the bin above it)."""
    return np.searchsorted(np.asarray(edges, dtype=float), density, side="right")


def merge_bins(null_counts: Sequence[int], min_null: int = MIN_NULL_PER_BIN) -> list[list[int]]:
    """Adjacent bins grouped into strata of at least ``min_null`` null features: walk the bins
    from the lowest density up, closing a stratum once it holds ``min_null``; a last stratum
    short of it joins the one before. ``[]`` when all bins together hold fewer."""
    if sum(null_counts) < min_null:
        return []
    out: list[list[int]] = []
    cur: list[int] = []
    n = 0
    for k, c in enumerate(null_counts):
        cur.append(k)
        n += c
        if n >= min_null:
            out.append(cur)
            cur, n = [], 0
    if cur:
        out[-1].extend(cur)
    return out


def _perm_stat(groups: list[tuple[np.ndarray, np.ndarray, float]], sel: list[np.ndarray]) -> float:
    """Σ_k w_k (mean of the pooled values ``sel[k]`` picks - mean of the rest)."""
    tot = 0.0
    for (ak, bk, wk), s in zip(groups, sel, strict=True):
        pool = np.concatenate([ak, bk])
        m = np.zeros(len(pool), dtype=bool)
        m[list(s)] = True
        tot += wk * (pool[m].mean() - pool[~m].mean())
    return tot


def _exact_p(groups: list[tuple[np.ndarray, np.ndarray, float]], diff: float) -> float:
    """Share of every within-stratum relabelling whose |statistic| >= |diff|."""
    import itertools

    per = [list(itertools.combinations(range(len(a) + len(b)), len(a))) for a, b, _ in groups]
    hits = total = 0
    for sel in itertools.product(*per):
        total += 1
        hits += abs(_perm_stat(groups, [np.asarray(s) for s in sel])) >= abs(diff) - 1e-12
    return hits / total


def stratified_lift_draws(
    scores_a: Sequence[float | None],
    density_a: Sequence[float | None],
    scores_null: Sequence[float | None],
    density_null: Sequence[float | None],
    *,
    edges: Sequence[float] = DEFAULT_DENSITY_EDGES,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
    min_null: int = MIN_NULL_PER_BIN,
) -> tuple[StratifiedLift, np.ndarray]:
    """Lift of ``a`` over a null re-weighted to ``a``'s firing-density distribution, and its
    ``n_boot`` bootstrap draws (empty where the lift is undefined).

    Both groups are binned by density (``edges``, default decades) and bins holding fewer than
    ``min_null`` null features are merged with their neighbours (:func:`merge_bins`). The
    null's mean in each stratum is weighted by the share of ``a``'s features in it, so a basis
    is compared with null features of its own densities. The bootstrap draws, per stratum
    holding ``a`` features, ``rng.integers(0, n_k, (n_boot, n_k))`` for ``a`` then for the
    null (strata in increasing order, one generator); the permutation test enumerates every
    within-stratum relabelling when there are at most ``MAX_EXACT_PERMUTATIONS`` (p = share
    with ``|stat| >= |diff|``), else draws ``n_boot`` per stratum from a generator seeded
    ``seed + 1`` (p = (1 + hits) / (1 + n_boot)).
    """
    _check(n_boot, level)
    if min_null < 1:
        raise ValueError(f"min_null must be >= 1, got {min_null}")

    def pairs(s: Sequence[float | None], d: Sequence[float | None]) -> tuple[np.ndarray, ...]:
        if len(s) != len(d):
            raise ValueError(f"scores and densities differ in length: {len(s)} vs {len(d)}")
        x = np.asarray([math.nan if v is None else float(v) for v in s], dtype=float)
        y = np.asarray([math.nan if v is None else float(v) for v in d], dtype=float)
        keep = ~(np.isnan(x) | np.isnan(y))
        return x[keep], _bin_of(y[keep], edges), int((~keep).sum())

    a, ba, ea = pairs(scores_a, density_a)
    b, bb, eb = pairs(scores_null, density_null)
    n_bins = len(edges) + 1
    cnt = np.bincount(bb, minlength=n_bins)
    # bins holding no feature of either group play no part (and are not counted as merged)
    held = [k for k in range(n_bins) if cnt[k] or np.any(ba == k)]
    strata = [[held[i] for i in ks] for ks in merge_bins([int(cnt[k]) for k in held], min_null)]
    bounds = [-math.inf, *[float(e) for e in edges], math.inf]
    nan = math.nan
    if not strata:
        why = f"the null has {len(b)} scored features with a density, fewer than {min_null}"
        undefined = StratifiedLift(nan, nan, nan, nan, nan, nan, 0, 0, len(a), ea + eb, reason=why)
        return undefined, np.zeros(0)
    of = np.full(n_bins, -1, dtype=int)
    for i, ks in enumerate(strata):
        of[ks] = i
    sa, sb = of[ba], of[bb]
    labels = tuple(bin_label(bounds[ks[0]], bounds[ks[-1] + 1]) for ks in strata)
    n_merged = sum(len(ks) - 1 for ks in strata)
    if len(a) == 0:
        return StratifiedLift(
            nan, nan, nan, nan, nan, nan, 0, 0, 0, ea + eb, labels, n_merged,
            reason="no basis feature with a score and a density",
        ), np.zeros(0)  # fmt: skip
    used = sorted(set(sa.tolist()))
    groups = [(a[sa == k], b[sb == k], float((sa == k).mean())) for k in used]
    mean_null = sum(wk * float(bk.mean()) for _, bk, wk in groups)
    diff = float(a.mean()) - mean_null
    rng = np.random.default_rng(seed)
    boot = np.zeros(n_boot)
    for ak, bk, wk in groups:
        boot += wk * (_boot_means(ak, n_boot, rng) - _boot_means(bk, n_boot, rng))
    lo, hi = percentile_ci(boot, level)
    n_perm = math.prod(math.comb(len(ak) + len(bk), len(ak)) for ak, bk, _ in groups)
    exact = n_perm <= MAX_EXACT_PERMUTATIONS
    if exact:
        p = _exact_p(groups, diff)
    else:
        prng = np.random.default_rng(seed + 1)
        perm = np.zeros(n_boot)
        for ak, bk, wk in groups:
            pool = np.concatenate([ak, bk])
            keys = prng.random((n_boot, len(pool))).argsort(axis=1)
            shuffled = pool[keys]
            perm += wk * (shuffled[:, : len(ak)].mean(1) - shuffled[:, len(ak) :].mean(1))
        p = float((1 + np.sum(np.abs(perm) >= abs(diff) - 1e-12)) / (1 + n_boot))
    n_null = sum(len(bk) for _, bk, _ in groups)
    return StratifiedLift(
        diff, lo, hi, min(1.0, p), float(a.mean()), mean_null, len(a), n_null, 0, ea + eb,
        labels, n_merged, exact,
    ), boot  # fmt: skip


def stratified_lift(
    scores_a: Sequence[float | None],
    density_a: Sequence[float | None],
    scores_null: Sequence[float | None],
    density_null: Sequence[float | None],
    **kw: Any,
) -> StratifiedLift:
    """:func:`stratified_lift_draws` without the draws (the same arguments)."""
    return stratified_lift_draws(scores_a, density_a, scores_null, density_null, **kw)[0]

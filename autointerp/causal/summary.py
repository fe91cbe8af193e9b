"""Curves and attributions -> leaderboard columns (:class:`autointerp.columns.StageColumns`)
with percentile bootstrap CIs over the IOI pairs (or the corpus rows), the random-directions
basis as the null. Formulas: docs/causal.md."""

from __future__ import annotations

import numpy as np

from autointerp.causal.patching import Curve, IOIData
from autointerp.columns import Cell, ColumnDoc, StageColumns

N_BOOT = 1000
LEVEL = 0.95
KL_KS = (1, 4, 16)
NEVER = "never reaches half the unpatched KL within k = all"

IOI_COLUMNS = [
    ColumnDoc(
        "ioi_logit_diff",
        "the subject model's own IOI logit difference logit(IO) - logit(S) at the last position "
        "of the clean prompts, mean over pairs (the same in every row; the share right is in "
        "the notes)",
        "higher",
        fmt=".2f",
    ),
    *[
        ColumnDoc(
            f"ioi_kl_k{k}",
            f"KL(P_cf || P_patched) at the last position (nats) with the top-{k} features by "
            "|attribution| patched from the counterfactual (error term kept), mean over pairs",
            "lower",
        )
        for k in KL_KS
    ],
    ColumnDoc(
        "ioi_kl_k16_lift",
        "random directions' ioi_kl_k16 minus this basis's (paired over prompts): how much "
        "closer to the counterfactual 16 of its features move the model than 16 random ones",
        "higher",
    ),
    ColumnDoc(
        "ioi_half_kl_features",
        "features needed for half the unpatched KL: the smallest k of the grid (ks, then all) "
        "with mean KL(P_cf || P_patched) <= KL(P_cf || P_clean) / 2",
        "lower",
        fmt=".0f",
    ),
    ColumnDoc(
        "ioi_edit_half_kl",
        "edit size at k = ioi_half_kl_features: ||X_clean - X_patched||_F / ||X_clean - X_cf||_F "
        "over the prompt's positions, mean over pairs",
        "lower",
    ),
]


def _ci(boot: np.ndarray) -> tuple[float | None, float | None]:
    b = boot[np.isfinite(boot)]
    if len(b) < len(boot) or not len(b):  # some resamples undefined: the bound is unbounded
        lo = float(np.percentile(b, 100 * (1 - LEVEL) / 2)) if len(b) else None
        return lo, None
    return (
        float(np.percentile(b, 100 * (1 - LEVEL) / 2)),
        float(np.percentile(b, 100 * (1 + LEVEL) / 2)),
    )


def boot_idx(n: int, seed: int) -> np.ndarray:
    """``[N_BOOT, n]`` resample indices (one matrix shared by every basis: paired lifts)."""
    return np.random.default_rng(seed).integers(0, n, size=(N_BOOT, n))


def mean_cell(x: np.ndarray, idx: np.ndarray) -> Cell:
    lo, hi = _ci(x[idx].mean(1))
    return Cell(float(x.mean()), lo, hi, len(x))


def half_kl_k(kl: np.ndarray, kl_clean: np.ndarray, ks: list[int]) -> int | None:
    """Smallest k (index into ``ks``) with mean_p kl[k, p] <= mean_p kl_clean[p] / 2, or None."""
    hit = np.nonzero(kl.mean(1) <= kl_clean.mean() / 2)[0]
    return int(hit[0]) if len(hit) else None


def ioi_columns(data: IOIData, curves: list[Curve], kinds: dict[str, str], seed: int):
    """The ``ioi`` stage's columns, and its curve points for the plot (``extra``)."""
    cols = StageColumns("ioi", list(IOI_COLUMNS))
    n = len(data.pairs)
    idx = boot_idx(n, seed)
    ld = mean_cell(data.logit_diff, idx)
    rnd = next((c for c in curves if kinds.get(c.basis) == "random"), None)
    for c in curves:
        cols.set(c.basis, "ioi_logit_diff", ld)
        for k in KL_KS:
            if c.info.get("mode") == "greedy":  # the greedy set whose size is nearest to k
                j = int(np.argmin([abs(x - k) for x in c.ks]))
                cols.set(c.basis, f"ioi_kl_k{k}", mean_cell(c.kl[j], idx))
            elif k in c.ks[:-1] or k == c.n_features:
                cols.set(c.basis, f"ioi_kl_k{k}", mean_cell(c.kl[c.ks.index(k)], idx))
            else:
                why = f"k = {k} is not in causal.ioi.ks or not below the basis's feature count"
                cols.set(c.basis, f"ioi_kl_k{k}", Cell.undefined(why, n))
        if rnd is None or c is rnd:
            why = "no random-directions basis in the run" if rnd is None else "the null itself"
            cols.set(c.basis, "ioi_kl_k16_lift", Cell.undefined(why, n))
        elif 16 in c.ks and 16 in rnd.ks and "mode" not in c.info:
            d = rnd.kl[rnd.ks.index(16)] - c.kl[c.ks.index(16)]
            cols.set(c.basis, "ioi_kl_k16_lift", mean_cell(d, idx))
        else:
            cols.set(c.basis, "ioi_kl_k16_lift", Cell.undefined("k = 16 not on both grids", n))
        j = half_kl_k(c.kl, data.kl_clean, c.ks)
        boot = np.array(
            [
                np.inf if (b := half_kl_k(c.kl[:, i], data.kl_clean[i], c.ks)) is None
                else c.ks[b]
                for i in idx
            ],
            dtype=float,
        )  # fmt: skip
        if j is None:
            cols.set(c.basis, "ioi_half_kl_features", Cell.undefined(NEVER, n))
            cols.set(c.basis, "ioi_edit_half_kl", Cell.undefined(NEVER, n))
        else:
            lo, hi = _ci(boot)
            cols.set(c.basis, "ioi_half_kl_features", Cell(float(c.ks[j]), lo, hi, n))
            cols.set(c.basis, "ioi_edit_half_kl", mean_cell(c.edit[j], idx))
    right = int((data.logit_diff > 0).sum())
    cols.extra = {
        "notes": [
            f"IOI: {n} prompt pairs; the subject model's logit(IO) - logit(S) is "
            f"{data.logit_diff.mean():.2f} (sd {data.logit_diff.std(ddof=1):.2f}), {right} of "
            f"{n} right; the unpatched KL(P_cf || P_clean) is {data.kl_clean.mean():.3f} nats"
        ],
        "kl_clean": float(data.kl_clean.mean()),
        "curves": {
            c.basis: {
                "k": c.ks,
                "kl": c.kl.mean(1).tolist(),
                "kl_ci_low": [_ci(c.kl[i][idx].mean(1))[0] for i in range(len(c.ks))],
                "kl_ci_high": [_ci(c.kl[i][idx].mean(1))[1] for i in range(len(c.ks))],
                "edit": c.edit.mean(1).tolist(),
                **c.info,
            }
            for c in curves
        },
    }
    return cols

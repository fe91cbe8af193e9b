"""IOI curves -> leaderboard columns (:class:`autointerp.columns.StageColumns`) with percentile
bootstrap CIs over the IOI pairs, the random-directions basis as the null. Formulas:
docs/causal.md; the matched-quantity readings: :mod:`autointerp.causal.matched`."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from autointerp.causal import matched
from autointerp.causal.patching import Curve, IOIData
from autointerp.columns import Cell, ColumnDoc, StageColumns

if TYPE_CHECKING:
    from autointerp.causal.rerank import Reranked

N_BOOT = 1000
LEVEL = 0.95
KL_KS = (1, 4, 16)
#: the common edit size (relative to the full counterfactual edit) of ioi_kl_at_edit
COMMON_EDIT = 0.25
#: columns in nats of KL: ``leaderboard --minus`` divides them by each run's unpatched KL
SHARE_COLUMNS = (
    *[f"ioi_kl_k{k}" for k in KL_KS], "ioi_kl_k16_lift", "ioi_kl_at_edit",
    "ioi_kl_at_edit_heldout", "ioi_kl_at_edit_lift",
)  # fmt: skip
RANK = "features ranked by signed first-order attribution (patches that lower the KL first)"


def _col(name: str, doc: str, better: str, fmt: str = ".3f") -> ColumnDoc:
    return ColumnDoc(name, doc, better, fmt=fmt)  # type: ignore[arg-type]


_HALF = "features for half the unpatched KL, interpolated in log k between grid points"
_EDIT = (
    "edit size where the curve reaches half the unpatched KL (mean per-position "
    "||x_patched - x_clean||_2 over the patched positions), interpolated along the basis's own "
    "KL-vs-edit curve"
)
_AT = f"KL(P_cf || P_patched) at relative edit {COMMON_EDIT} (of the full counterfactual edit)"
_AUC = "area under KL / unpatched KL against relative edit over [0, 1]"
_HO = "held-out ranking (fitted on the other half of the pairs, split by template and names)"
IOI_COLUMNS = [
    _col(
        "ioi_logit_diff",
        "the subject model's own IOI logit difference logit(IO) - logit(S) at the last position "
        "of the clean prompts, mean over pairs (the same in every row; the share right is in "
        "the notes)",
        "higher",
        ".2f",
    ),
    *[
        _col(
            f"ioi_kl_k{k}",
            f"KL(P_cf || P_patched) at the last position (nats), top-{k} {RANK} (in-sample), "
            "patched from the counterfactual (error term kept), mean over pairs",
            "lower",
        )
        for k in KL_KS
    ],
    _col("ioi_kl_k16_lift", "random directions' ioi_kl_k16 minus this basis's", "higher"),
    _col("ioi_half_kl_features", f"{_HALF}; in-sample ranking", "lower", ".1f"),
    _col("ioi_half_kl_features_heldout", f"{_HALF}; {_HO}", "lower", ".1f"),
    _col("ioi_half_kl_features_per_pair", f"{_HALF}; each pair ranked on itself", "lower", ".1f"),
    _col(
        "ioi_half_kl_features_lift",
        "log2(random directions' ioi_half_kl_features / this basis's)",
        "higher",
        ".2f",
    ),
    _col("ioi_edit_half_kl", f"{_EDIT}; in-sample ranking", "lower"),
    _col("ioi_edit_half_kl_heldout", f"{_EDIT}; {_HO}", "lower"),
    _col(
        "ioi_edit_half_kl_rel",
        "as ioi_edit_half_kl, the edit relative to the full counterfactual edit "
        "(||X_patched - X_clean||_F / ||X_cf - X_clean||_F)",
        "lower",
    ),
    _col(
        "ioi_edit_half_kl_lift", "random directions' ioi_edit_half_kl minus this basis's", "higher"
    ),
    _col("ioi_kl_at_edit", f"{_AT}; in-sample ranking", "lower"),
    _col("ioi_kl_at_edit_heldout", f"{_AT}; {_HO}", "lower"),
    _col("ioi_kl_at_edit_lift", "random directions' ioi_kl_at_edit minus this basis's", "higher"),
    _col("ioi_auc_edit", f"{_AUC}; in-sample ranking", "lower"),
    _col("ioi_auc_edit_heldout", f"{_AUC}; {_HO}", "lower"),
    _col("ioi_auc_edit_lift", "random directions' ioi_auc_edit minus this basis's", "higher"),
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
    """Smallest grid index with mean_p kl[k, p] <= mean_p kl_clean[p] / 2, or None."""
    hit = np.nonzero(kl.mean(1) <= kl_clean.mean() / 2)[0]
    return int(hit[0]) if len(hit) else None


def _nan(v: float | None) -> float:
    return math.nan if v is None else v


def curve_readings(
    ks: list[int], kl: np.ndarray, ea: np.ndarray, er: np.ndarray, k0: float
) -> np.ndarray:
    """The four matched readings of one mean curve (KL, paper's edit ``ea`` and relative edit
    ``er`` per grid k; unpatched KL ``k0``): ``[half_k, edit_at_half (paper's edit),
    edit_at_half (relative), kl_at_edit, auc]`` (NaN where undefined)."""
    return np.array(
        [
            _nan(matched.half_k(ks, kl, k0)),
            _nan(matched.edit_at_half(ea, kl, k0)),
            _nan(matched.edit_at_half(er, kl, k0)),
            _nan(matched.kl_at_edit(er, kl, k0, COMMON_EDIT)),
            matched.auc_edit(er, kl, k0),
        ]
    )


def readings(c: Curve, kl0: np.ndarray, sel: np.ndarray | None = None) -> np.ndarray:
    """:func:`curve_readings` of curve ``c`` on the pairs ``sel`` (all when None)."""
    s = slice(None) if sel is None else sel
    ea = (c.edit_abs if c.edit_abs is not None else c.edit)[:, s].mean(1)
    return curve_readings(c.ks, c.kl[:, s].mean(1), ea, c.edit[:, s].mean(1), float(kl0[s].mean()))


def _boot(c: Curve, kl0: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.stack([readings(c, kl0, i) for i in idx])  # [N_BOOT, 5]


def _cell(v: float, boot: np.ndarray, n: int, why: str) -> Cell:
    if not math.isfinite(v):
        return Cell.undefined(why, n)
    lo, hi = _ci(boot)
    return Cell(float(v), lo, hi, n)


def ioi_columns(
    data: IOIData,
    curves: dict[str, dict[str, Curve]],
    kinds: dict[str, str],
    seed: int,
    greedy: dict[str, Curve] | None = None,
    reranked: dict[str, dict[str, Reranked]] | None = None,
) -> StageColumns:
    """The ``ioi`` stage's columns, and its curve points for the plots (``extra``).
    ``curves[basis][ranking]``, rankings ``in_sample``, ``held_out``, ``per_pair``.
    ``reranked[basis][ranking]`` (every basis, or None): the replicates of the bootstrap that
    re-fits the ranking (:mod:`autointerp.causal.rerank`), the CIs of the in-sample and
    held-out columns; without it those CIs hold the ranking fixed."""
    rr = reranked or {}
    n_rep = next((len(x.readings) for by_r in rr.values() for x in by_r.values()), 0)
    cols = StageColumns("ioi", ci_noted(n_rep))
    n = len(data.pairs)
    idx = boot_idx(n, seed)
    kl0 = data.kl_clean
    ld = mean_cell(data.logit_diff, idx)
    rnd = next((b for b in curves if kinds.get(b) == "random"), None)
    val: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for b, by_r in curves.items():
        for r, c in by_r.items():
            got = rr.get(b, {}).get(r)
            val[b, r] = readings(c, kl0), (got.readings if got else _boot(c, kl0, idx))
    for b, by_r in curves.items():
        c = by_r["in_sample"]
        cols.set(b, "ioi_logit_diff", ld)
        for k in KL_KS:
            if k in c.ks:
                j = c.ks.index(k)
                got = rr.get(b, {}).get("in_sample")
                cell = mean_cell(c.kl[j], idx) if got is None else _mean_rr(c.kl[j], got.kl[:, j])
                cols.set(b, f"ioi_kl_k{k}", cell)
            else:
                cols.set(b, f"ioi_kl_k{k}", Cell.undefined(f"k = {k} is not on the grid", n))
        never = (
            f"> {c.ks[-1]}: never reaches half the unpatched KL, not even with all "
            f"{c.ks[-1]} features patched"
        )
        names = {
            "in_sample": "",
            "held_out": "_heldout",
            "per_pair": "_per_pair",
        }
        for r, suf in names.items():
            if r not in by_r:
                continue
            v, bt = val[b, r]
            cols.set(b, f"ioi_half_kl_features{suf}", _cell(v[0], bt[:, 0], n, never))
            if r == "per_pair":
                continue
            cols.set(b, f"ioi_edit_half_kl{suf}", _cell(v[1], bt[:, 1], n, never))
            if r == "in_sample":
                cols.set(b, "ioi_edit_half_kl_rel", _cell(v[2], bt[:, 2], n, never))
            far = f"the curve's largest relative edit is below {COMMON_EDIT}"
            cols.set(b, f"ioi_kl_at_edit{suf}", _cell(v[3], bt[:, 3], n, far))
            cols.set(b, f"ioi_auc_edit{suf}", _cell(v[4], bt[:, 4], n, "undefined"))
        _lifts(cols, b, c, rnd, curves, val, idx, n, rr)
    cols.extra = _extra(data, curves, idx, greedy)
    cols.extra["notes"].append(f"IOI {ci_note(n_rep)}")
    cols.extra["ranking_bootstrap"] = n_rep
    return cols


def ci_note(n_rep: int) -> str:
    """What the CIs of the in-sample and held-out IOI columns resample."""
    if n_rep > 0:
        return (
            f"CI: {n_rep} bootstrap replicates over pairs, each re-fitting the ranking on its "
            "draw (held-out: the halves drawn separately)"
        )
    return (
        "CI: bootstrap over pairs with the ranking FIXED (ranking_bootstrap = 0): it leaves "
        "out the ranking's own variance"
    )


#: the columns whose CI depends on the in-sample or held-out ranking
RANKED = tuple(
    c.name for c in IOI_COLUMNS if c.name != "ioi_logit_diff" and not c.name.endswith("per_pair")
)


def ci_noted(n_rep: int) -> list[ColumnDoc]:
    """:data:`IOI_COLUMNS` with what each column's CI resamples appended to its doc."""
    pp = "CI: resampling pairs re-ranks them (each pair's own order)"
    return [
        replace(c, doc=f"{c.doc}; {ci_note(n_rep)}") if c.name in RANKED
        else replace(c, doc=f"{c.doc}; {pp}") if c.name.endswith("per_pair") else c
        for c in IOI_COLUMNS
    ]  # fmt: skip


def _mean_rr(x: np.ndarray, reps: np.ndarray) -> Cell:
    """The mean of ``x`` over pairs with the CI of its re-ranked replicates ``reps``."""
    lo, hi = _ci(reps)
    return Cell(float(x.mean()), lo, hi, len(x))


def _lifts(cols, b, c, rnd, curves, val, idx, n, rr) -> None:
    names = ("ioi_kl_k16_lift", "ioi_half_kl_features_lift", "ioi_edit_half_kl_lift",
             "ioi_kl_at_edit_lift", "ioi_auc_edit_lift")  # fmt: skip
    if rnd is None or b == rnd:
        why = "no random-directions basis in the run" if rnd is None else "the null itself"
        for name in names:
            cols.set(b, name, Cell.undefined(why, n))
        return
    cr = curves[rnd]["in_sample"]
    if 16 in c.ks and 16 in cr.ks:
        jr, jb = cr.ks.index(16), c.ks.index(16)
        d = cr.kl[jr] - c.kl[jb]
        if rr:
            reps = rr[rnd]["in_sample"].kl[:, jr] - rr[b]["in_sample"].kl[:, jb]
            cols.set(b, "ioi_kl_k16_lift", _mean_rr(d, reps))
        else:
            cols.set(b, "ioi_kl_k16_lift", mean_cell(d, idx))
    else:
        cols.set(b, "ioi_kl_k16_lift", Cell.undefined("k = 16 not on both grids", n))
    (v, bt), (vr, btr) = val[b, "in_sample"], val[rnd, "in_sample"]
    with np.errstate(divide="ignore", invalid="ignore"):
        lk, lkb = np.log2(vr[0] / v[0]), np.log2(btr[:, 0] / bt[:, 0])
    why_r = "random directions never reach half the unpatched KL: no ratio"
    why_b = "this basis never reaches half the unpatched KL"
    why = why_b if not math.isfinite(v[0]) else why_r
    cols.set(b, "ioi_half_kl_features_lift", _cell(lk, lkb, n, why))
    cols.set(b, "ioi_edit_half_kl_lift", _cell(vr[1] - v[1], btr[:, 1] - bt[:, 1], n, why))
    far = f"a curve's largest relative edit is below {COMMON_EDIT}"
    cols.set(b, "ioi_kl_at_edit_lift", _cell(vr[3] - v[3], btr[:, 3] - bt[:, 3], n, far))
    cols.set(b, "ioi_auc_edit_lift", _cell(vr[4] - v[4], btr[:, 4] - bt[:, 4], n, "undefined"))


def _points(c: Curve, idx: np.ndarray) -> dict:
    ea = c.edit_abs if c.edit_abs is not None else c.edit
    ci = [_ci(c.kl[i][idx].mean(1)) for i in range(len(c.ks))]
    return {
        "k": c.ks,
        "kl": c.kl.mean(1).tolist(),
        "kl_ci_low": [x[0] for x in ci],
        "kl_ci_high": [x[1] for x in ci],
        "edit": c.edit.mean(1).tolist(),
        "edit_abs": ea.mean(1).tolist(),
        **{k: v for k, v in c.info.items() if k != "sets"},
    }


def _extra(data: IOIData, curves, idx, greedy) -> dict:
    n = len(data.pairs)
    right = int((data.logit_diff > 0).sum())
    extra: dict = {
        "notes": [
            f"IOI: {n} prompt pairs; the subject model's logit(IO) - logit(S) is "
            f"{data.logit_diff.mean():.2f} (sd {data.logit_diff.std(ddof=1):.2f}), {right} of "
            f"{n} right; the unpatched KL(P_cf || P_clean) is {data.kl_clean.mean():.3f} nats"
        ],
        "kl_clean": float(data.kl_clean.mean()),
        "curves": {b: {r: _points(c, idx) for r, c in by_r.items()} for b, by_r in curves.items()},
    }
    if greedy:
        extra["greedy"] = {
            b: {**_points(c, idx), "sets": c.info.get("sets", {})} for b, c in greedy.items()
        }
    return extra

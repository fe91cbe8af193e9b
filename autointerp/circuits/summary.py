"""A basis pair's circuits summarised over downstream features: the leaderboard columns
``circ_*`` (mean with a bootstrap CI over features; ``circ_n80`` the median) and the curve of
the faithfulness figure. The random-directions basis is the null row of the same table."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from autointerp.circuits import ioi_summary
from autointerp.circuits.config import COLUMN_KS
from autointerp.columns import Cell, ColumnDoc, StageColumns
from autointerp.stats import bootstrap_mean_ci

STAGE = "circuits"


def column_docs(up: str) -> list[ColumnDoc]:
    """The columns of a downstream run whose upstream hookpoint is ``up``."""
    src = f"the basis's features at {up} (mean-ablated, error term kept)"
    docs = [
        ColumnDoc(
            f"circ_f{k}",
            f"faithfulness of the top-{k} edge circuit into a downstream feature: the share of "
            f"the feature's change from mean-ablating {src} that keeping only its {k} largest "
            "|grad x delta| upstream features restores (mean over features; docs/circuits.md)",
            "higher",
        )
        for k in COLUMN_KS
    ]
    docs += [
        ColumnDoc(
            "circ_n80",
            f"upstream features needed for 80% of the change (median over downstream features; "
            f"the smallest kept-set size of the grid with f >= 0.8; from {src})",
            "lower",
            fmt=".0f",
        ),
        ColumnDoc(
            "circ_lin_r",
            "correlation over a feature's top edges of the edge (linear prediction) with the "
            "actual change when that one upstream feature is mean-ablated (mean over features)",
            "higher",
        ),
        ColumnDoc(
            "circ_ig_gap",
            "sum|IG - grad x delta| / sum|IG| over a feature's edges (mean over features)",
            "lower",
        ),
    ]
    return docs


def _mean_cell(values: list[float | None], n_boot: int, seed: int, what: str) -> Cell:
    got = [v for v in values if v is not None and math.isfinite(v)]
    if not got:
        return Cell.undefined(f"no downstream feature with a defined {what}", len(values))
    ci = bootstrap_mean_ci(got, n_boot=n_boot, seed=seed)
    return Cell(ci.mean, ci.low, ci.high, ci.n)


def _median_cell(values: list[float | None], n_boot: int, seed: int) -> Cell:
    x = np.array([v for v in values if v is not None], dtype=float)
    if len(x) == 0:
        return Cell.undefined("no downstream feature with a defined faithfulness", len(values))
    idx = np.random.default_rng(seed).integers(0, len(x), size=(n_boot, len(x)))
    lo, hi = np.quantile(np.median(x[idx], axis=1), [0.025, 0.975])
    return Cell(float(np.median(x)), float(lo), float(hi), len(x))


def f_at(feat: dict[str, Any], k: int) -> float | None:
    """A feature's faithfulness at kept-set size ``k`` (None: undefined or not on its grid)."""
    return dict(zip(feat["ks"], feat["f"], strict=True)).get(k)


def basis_cells(feats: list[dict[str, Any]], n_boot: int, seed: int, ig: bool) -> dict[str, Cell]:
    """The ``circ_*`` cells of one basis from its downstream features' records."""
    out = {
        f"circ_f{k}": _mean_cell([f_at(f, k) for f in feats], n_boot, seed, f"f({k})")
        for k in COLUMN_KS
    }
    out["circ_n80"] = _median_cell([f["n80"] for f in feats], n_boot, seed)
    out["circ_lin_r"] = _mean_cell([f["lin_r"] for f in feats], n_boot, seed, "lin_r")
    if ig:
        out["circ_ig_gap"] = _mean_cell([f["ig_gap"] for f in feats], n_boot, seed, "IG gap")
    return out


def curve(feats: list[dict[str, Any]], ks: list[int], n_boot: int, seed: int) -> dict[str, Any]:
    """Mean faithfulness with its CI at each configured ``k`` and at "all" (the figure)."""
    pts: dict[str, list[float | None]] = {"mean": [], "low": [], "high": [], "n": []}
    for k in [*ks, None]:
        vals = [(f["f"][-1] if k is None else f_at(f, k)) for f in feats]
        got = [v for v in vals if v is not None]
        if not got:
            for key in pts:
                pts[key].append(None)
            continue
        ci = bootstrap_mean_ci(got, n_boot=n_boot, seed=seed)
        pts["mean"].append(ci.mean)
        pts["low"].append(ci.low)
        pts["high"].append(ci.high)
        pts["n"].append(ci.n)
    return {"ks": [*ks, "all"], **pts}


def pair_cells(
    pair: dict[str, Any], n_boot: int, seed: int, ig: bool
) -> tuple[list[ColumnDoc], dict[str, dict[str, Cell]]]:
    """The columns of one pair (the IOI ones when its records have them) and each basis's
    cells."""
    docs = [d for d in column_docs(pair["up"]) if ig or d.name != "circ_ig_gap"]
    ioi = any("ioi" in r for r in pair["bases"].values())
    if ioi:
        docs += ioi_summary.column_docs(pair["up"])
    rows = {}
    for name, rec in pair["bases"].items():
        cells = basis_cells(rec["features"], n_boot, seed, ig)
        if ioi:
            cells.update(ioi_summary.ioi_cells(rec.get("ioi"), n_boot, seed))
        rows[name] = cells
    return docs, rows


def stage_columns(pair: dict[str, Any], n_boot: int, seed: int, ig: bool) -> StageColumns:
    """The ``circuits`` columns of the downstream run of one pair (``pair["bases"]``: basis ->
    its ``pair_circuits`` record)."""
    docs, rows = pair_cells(pair, n_boot, seed, ig)
    ioi = any("ioi" in r for r in pair["bases"].values())
    cols = StageColumns(STAGE, docs)
    for name, cells in rows.items():
        for col, cell in cells.items():
            cols.set(name, col, cell)
    n = {b: len(r["features"]) for b, r in pair["bases"].items()}
    cols.extra = {
        "notes": [
            f"circuits: edges from {pair['up']} into {pair['down']}, per basis over its "
            f"downstream features with contexts ({', '.join(f'{b} {k}' for b, k in n.items())}); "
            "the random-directions row is the null; circuits.json / circuits.html at the sweep's "
            "root hold every feature's edges"
        ]
    }
    if ioi:
        n_p = {r.get("ioi", {}).get("n_prompts") for r in pair["bases"].values()} - {None}
        cols.extra["notes"].append(
            f"circ_ioi_*: the IOI logit difference of {', '.join(map(str, sorted(n_p))) or 'no'} "
            f"clean prompts attributed to each basis's features at {pair['up']} (one circuit "
            "per basis, ranked by the pooled edges; CIs: bootstrap over prompts)"
        )
    return cols

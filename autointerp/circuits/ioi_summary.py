"""The IOI circuit of one basis summarised over prompts (records of
:func:`autointerp.circuits.ioi.ioi_circuit`): the columns ``circ_ioi_*`` with percentile
bootstrap CIs over prompts (the ranking held fixed) and the curve of the figure's IOI row.

With ``M(K)`` the mean over prompts of the logit difference when only the kept set ``K`` is
at its actual codes, ``f(K) = (M(K) - M(none)) / (M(all) - M(none))`` (Marks et al. 2024);
``n80`` the smallest grid ``k`` with ``f >= 0.8``; ``lin_r`` the Pearson correlation, over
the top pooled edges, of the pooled edge with the pooled actual change when that one feature
is mean-ablated."""

from __future__ import annotations

from typing import Any

import numpy as np

from autointerp.circuits.config import COLUMN_KS
from autointerp.circuits.faithfulness import pearson
from autointerp.columns import Cell, ColumnDoc

LEVEL = 0.95


def column_docs(up: str) -> list[ColumnDoc]:
    """The IOI columns of the run whose circuits start at hookpoint ``up``."""
    src = f"the basis's features at {up} (mean-ablated, error term kept)"
    docs = [
        ColumnDoc(
            f"circ_ioi_f{k}",
            f"share of the IOI logit difference (logit(IO) - logit(S), mean over prompts) "
            f"lost by mean-ablating {src} that keeping only the {k} features of largest pooled "
            "|grad x delta| restores (CI: bootstrap over prompts; docs/circuits.md)",
            "higher",
        )
        for k in COLUMN_KS
    ]
    docs += [
        ColumnDoc(
            "circ_ioi_n80",
            f"features of {src} needed to restore 80% of the IOI logit difference (the "
            "smallest kept-set size of the grid with f >= 0.8; all of them if none below)",
            "lower",
            fmt=".0f",
        ),
        ColumnDoc(
            "circ_ioi_lin_r",
            "correlation over the top pooled edges of the IOI logit difference of the edge "
            "(linear prediction) with the actual change when that one feature is mean-ablated",
            "higher",
        ),
    ]
    return docs


def _ratio(rec: dict[str, Any], idx: np.ndarray) -> np.ndarray:
    """``[B, K]`` f at each grid k for the prompt resamples ``idx [B, P]`` (NaN where the
    denominator is ~0)."""
    act, base = np.asarray(rec["act"])[idx].mean(-1), np.asarray(rec["base"])[idx].mean(-1)
    mk = np.asarray(rec["m_k"])[:, idx].mean(-1).T  # [B, K]
    den = act - base
    ok = np.abs(den) > 1e-6 * np.maximum(1.0, np.maximum(np.abs(act), np.abs(base)))
    with np.errstate(divide="ignore", invalid="ignore"):
        f = (mk - base[:, None]) / den[:, None]
    f[~ok] = np.nan
    return f


def _resamples(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _n80(f: np.ndarray, ks: list[int]) -> np.ndarray:
    """``[B]``: the smallest k with f >= 0.8 (the last k where none is; NaN when f is)."""
    hit = f >= 0.8
    out = np.asarray(ks, dtype=float)[np.where(hit.any(1), hit.argmax(1), len(ks) - 1)]
    out[np.isnan(f).any(1)] = np.nan
    return out


def _cell(value: float, boots: np.ndarray, n: int, what: str) -> Cell:
    if not np.isfinite(value):
        return Cell.undefined(f"{what} undefined: mean-ablating every feature leaves the IOI "
                              "logit difference unchanged", n)  # fmt: skip
    b = boots[np.isfinite(boots)]
    if len(b) == 0:
        return Cell(float(value), None, None, n)
    lo, hi = np.quantile(b, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return Cell(float(value), float(lo), float(hi), n)


def ioi_cells(rec: dict[str, Any] | None, n_boot: int, seed: int) -> dict[str, Cell]:
    """The ``circ_ioi_*`` cells of one basis from its IOI record."""
    names = [d.name for d in column_docs("")]
    if not rec or rec.get("reason"):
        why = (rec or {}).get("reason") or "no IOI record (ioi_prompts = 0)"
        return {c: Cell.undefined(why) for c in names}
    n, ks = rec["n_prompts"], list(rec["ks"])
    full = _ratio(rec, np.arange(n)[None, :])[0]
    boot = _ratio(rec, _resamples(n, n_boot, seed))
    out: dict[str, Cell] = {}
    for k in COLUMN_KS:
        if k not in ks:
            out[f"circ_ioi_f{k}"] = Cell.undefined(f"k = {k} is not on the grid {ks}", n)
            continue
        j = ks.index(k)
        out[f"circ_ioi_f{k}"] = _cell(full[j], boot[:, j], n, f"f({k})")
    out["circ_ioi_n80"] = _cell(_n80(full[None], ks)[0], _n80(boot, ks), n, "n80")
    x, y = np.asarray(rec["lin_edges"]), np.asarray(rec["lin_actual"])
    r = pearson(x.sum(1), y.sum(1)) if len(x) >= 3 else None
    if r is None:
        why = "fewer than 3 non-zero edges or a constant side"
        out["circ_ioi_lin_r"] = Cell.undefined(why, n)
    else:
        rb = []
        for idx in _resamples(n, n_boot, seed):
            v = pearson(x[:, idx].sum(1), y[:, idx].sum(1))
            rb.append(np.nan if v is None else v)
        out["circ_ioi_lin_r"] = _cell(r, np.asarray(rb), n, "lin_r")
    return out


def ioi_curve(rec: dict[str, Any] | None, ks: list[int], n_boot: int, seed: int) -> dict:
    """f with its CI over prompts at each configured ``k`` and at "all" (the figure)."""
    pts: dict[str, list] = {"mean": [], "low": [], "high": [], "n": []}
    grid = [] if not rec or rec.get("reason") else list(rec["ks"])
    if grid:
        n = rec["n_prompts"]
        full = _ratio(rec, np.arange(n)[None, :])[0]
        boot = _ratio(rec, _resamples(n, n_boot, seed))
    for k in [*ks, None]:
        j = None
        if grid and (k is None or k in grid):
            j = len(grid) - 1 if k is None else grid.index(k)
        c = None if j is None else _cell(full[j], boot[:, j], n, "f")
        if c is None or c.value is None:
            for v in pts.values():
                v.append(None)
            continue
        pts["mean"].append(c.value)
        pts["low"].append(c.ci_low)
        pts["high"].append(c.ci_high)
        pts["n"].append(c.n)
    return {"ks": [*ks, "all"], **pts}

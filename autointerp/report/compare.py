"""Trained minus random model (``autointerp leaderboard TRAINED --minus RANDOM``): per basis,
every numeric leaderboard column both runs have, with the trained value, the random-model
value and their difference (docs/random-model.md).

CIs of the difference: where the column is a mean of per-feature values (sim score, sim top /
random, lift vs shuffled, detection, fuzzing, intruder, plug-in scorers, and the ablation and
output stages' columns, whose per-feature values ``columns/<stage>.json`` keeps in
``extra.features``), a bootstrap of the difference of means resampling each run's features
independently (they are different features of different models); ``lift_vs_random_dirs``
(density-stratified), each run's own stratified bootstrap draws subtracted draw by draw;
otherwise there are no per-feature values to resample and the note says so.

IOI columns in nats of KL (``autointerp.causal.summary.SHARE_COLUMNS``) are divided by each
run's own unpatched KL before the difference: the two models start from different KLs, so the
compared quantity is the share of the unpatched KL left (``col (share of unpatched KL)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from autointerp import stats
from autointerp.causal.summary import SHARE_COLUMNS
from autointerp.errors import AutointerpError
from autointerp.report.columns import SCORER_COLUMNS, SIM_VARIANT
from autointerp.report.rows import (
    _BasisScores,
    _feature_density,
    _score_rows,
    _split_by_method,
    stratified_inputs,
)
from autointerp.report.runs import Run
from autointerp.report.table import leaderboard_table

#: columns that are a CI bound, a p-value, a count of nulls, metadata or usage: not compared
_SKIP_SUFFIXES = ("_ci_low", "_ci_high", "_p")
_SKIP = {
    *"llm_calls prompt_tokens completion_tokens cost_usd wall_time_s".split(),
    *"lift_vs_random_dirs_n lift_vs_random_dirs_n_null lift_vs_random_dirs_n_unsupported".split(),
}
NO_FEATURE_CI = "no per-feature values: no CI"
#: stage column -> (stage, key of its per-feature value in ``extra.features[basis]``)
STAGE_FEATURE_VALUES: dict[str, tuple[str, str]] = {
    "ablation_kl": ("ablation", "kl"),
    "ablation_ce_delta": ("ablation", "ce_delta"),
    "output_score": ("output", "score"),
    "output_score_lift": ("output", "lift"),
    "output_score_llm": ("output", "llm_score"),
    "output_tc_score": ("output", "tc_score"),
    "output_tc_lift": ("output", "tc_lift"),
    "output_arad": ("output", "arad"),
    "output_arad_lift": ("output", "arad_lift"),
}


def stage_feature_values(run: Run, basis: str, column: str) -> list[float] | None:
    """The per-feature values behind a stage column's mean (None when the run keeps none)."""
    stage, key = STAGE_FEATURE_VALUES[column]
    for sc in run.columns:
        feats = (sc.extra.get("features") or {}).get(basis) if sc.stage == stage else None
        if feats is not None:
            return [float(v) for d in feats if (v := _number(d.get(key))) is not None]
    return None


def stratified_draws(
    run: Run,
    basis: str,
    method: str,
    *,
    n_boot: int,
    seed: int,
    rows: dict[str, list[tuple]] | None = None,
) -> np.ndarray:
    """The bootstrap draws of ``basis``'s ``lift_vs_random_dirs`` in ``run``, from the same
    inputs as the leaderboard's cell (real simulation scores and firing densities of the basis
    and of the run's random-directions null); empty where the lift is undefined. ``rows``: the
    run's score rows (:func:`_score_rows`) when the caller has them."""
    rnd = [b for b, k in run.bases if k == "random"]
    if not rnd:
        return np.zeros(0)
    rows = _score_rows(run) if rows is None else rows

    def sim(b: str) -> dict[int, float | None]:
        by = dict(_split_by_method(rows.get(b, [])))
        return _BasisScores(by[method]).get("simulation", SIM_VARIANT) if method in by else {}

    real, ref = sim(basis), sim(rnd[0])
    dens, ref_dens = _feature_density(run, basis), _feature_density(run, rnd[0])
    if not (real and ref and dens and ref_dens):
        return np.zeros(0)
    args = stratified_inputs(real, dens, ref, ref_dens)
    return stats.stratified_lift_draws(*args, n_boot=n_boot, seed=seed)[1]


def _stratified_diff_ci(
    trained: Run, random: Run, rows: tuple[dict, dict], key: tuple[str, str], n_boot: int, seed: int
) -> tuple[float, float, str] | None:
    """95% CI of trained − random ``lift_vs_random_dirs`` of ``key`` (basis, method): the two
    runs' stratified bootstrap draws (each run's basis and null features resampled within
    their density strata, the runs with different seeds so their draws are independent)
    subtracted draw by draw. ``rows``: the two runs' score rows."""
    basis, method = key
    a = stratified_draws(trained, basis, method, n_boot=n_boot, seed=seed, rows=rows[0])
    b = stratified_draws(random, basis, method, n_boot=n_boot, seed=seed + 7919, rows=rows[1])
    if not (len(a) and len(b)):
        return None
    lo, hi = stats.percentile_ci(a - b)
    return lo, hi, "bootstrap within density strata, each run resampled"


COLUMNS = ("column", "trained", "random", "difference", "ci_low", "ci_high", "note")


@dataclass
class BasisDiff:
    """One basis (and method): a frame with :data:`COLUMNS`, one row per compared column."""

    basis: str
    method: str
    table: pl.DataFrame
    notes: list[str] = field(default_factory=list)


def _per_feature_columns(extra: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    cols = {
        "sim_score": ("simulation", SIM_VARIANT),
        "sim_top": ("simulation", "top"),
        "sim_random": ("simulation", "random"),
        "lift_vs_shuffled": ("lift_vs_shuffled", SIM_VARIANT),  # per feature: real - shuffled
    }
    cols.update({c: sv for sv, c in SCORER_COLUMNS.items()})
    cols.update(extra)
    return cols


def _by_feature(
    score_rows: dict[str, list[tuple]],
    basis: str,
    method: str,
    scorer: str,
    variant: str,
    null: str = "",
) -> dict[int, float]:
    """ok values of one (basis, method, scorer, variant, null) by feature, from a run's score
    rows (:func:`_score_rows`)."""
    rows = score_rows.get(basis, [])
    methods = {r[7] for r in rows}
    return {
        int(f): float(v)
        for f, sc, var, v, status, nl, _x, m in rows
        if sc == scorer and var == variant and (nl or "") == null and status == "ok"
        if v is not None and (m == method or len(methods) <= 1)
    }


def _feature_values(
    rows: dict[str, list[tuple]], basis: str, method: str, scorer: str, variant: str
) -> list[float]:
    """Real (non-null) ok values of one (basis, method, scorer, variant), one per feature;
    ``lift_vs_shuffled``: real minus shuffled-explanation score per feature (complete pairs)."""
    if scorer == "lift_vs_shuffled":
        real = _by_feature(rows, basis, method, "simulation", SIM_VARIANT)
        shuf = _by_feature(rows, basis, method, "simulation", SIM_VARIANT, "shuffled")
        return [real[f] - shuf[f] for f in sorted(real) if f in shuf]
    return list(_by_feature(rows, basis, method, scorer, variant).values())


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return None if math.isnan(float(v)) else float(v)


def compare_runs(
    trained: Run, random: Run, *, n_boot: int = 1000, seed: int = 0
) -> list[BasisDiff]:
    """Per (basis, method) both runs have: trained, random and trained - random per column."""
    tb = leaderboard_table([trained], n_boot=n_boot, seed=seed)
    rb = leaderboard_table([random], n_boot=n_boot, seed=seed)
    t_rows = {(r["basis"], r["method"]): r for df in tb.groups.values() for r in df.to_dicts()}
    r_rows = {(r["basis"], r["method"]): r for df in rb.groups.values() for r in df.to_dicts()}
    per_feature = _per_feature_columns({**tb.scorer_columns, **rb.scorer_columns})
    k0t, k0r = _kl_clean(trained), _kl_clean(random)
    score_rows = (_score_rows(trained), _score_rows(random))  # once per run, not per cell
    out = []
    for key, tr in t_rows.items():
        rr = r_rows.get(key)
        if rr is None:
            continue
        basis, method = key
        rows = []
        for col in tr:
            if col in _SKIP or col.endswith(_SKIP_SUFFIXES) or col not in rr:
                continue
            tv, rv = _number(tr[col]), _number(rr[col])
            if (tv is None and rv is None) or not (_is_num(tr[col]) or _is_num(rr[col])):
                continue
            if col in SHARE_COLUMNS:
                if not (k0t and k0r):
                    continue  # no unpatched KL to divide by: not comparable across models
                tv = None if tv is None else tv / k0t
                rv = None if rv is None else rv / k0r
                col = f"{col} (share of unpatched KL)"
            lo = hi = None
            if tv is None or rv is None:
                diff = None
                note = f"undefined in the {'trained' if tv is None else 'random'} run"
            else:
                diff = tv - rv
                note = NO_FEATURE_CI
                a = b = None
                if col in STAGE_FEATURE_VALUES:
                    a = stage_feature_values(trained, basis, col)
                    b = stage_feature_values(random, basis, col)
                elif col in per_feature:
                    sc, var = per_feature[col]
                    a = _feature_values(score_rows[0], basis, method, sc, var)
                    b = _feature_values(score_rows[1], basis, method, sc, var)
                if col == "lift_vs_random_dirs":
                    got = _stratified_diff_ci(trained, random, score_rows, key, n_boot, seed)
                    if got is not None:
                        lo, hi, note = got
                elif col in STAGE_FEATURE_VALUES or col in per_feature:
                    if a and b:
                        ci = stats.lift(a, b, paired=False, n_boot=n_boot, seed=seed)
                        lo, hi = ci.low, ci.high
                        note = f"bootstrap, {len(a)} vs {len(b)} features"
                    else:
                        note = "no per-feature scores in one run: no CI"
            rows.append((col, tv, rv, diff, lo, hi, note))
        schema = dict(zip(COLUMNS, (pl.Utf8, *[pl.Float64] * 5, pl.Utf8), strict=True))
        out.append(BasisDiff(basis, method, pl.DataFrame(rows, schema=schema, orient="row")))
    if not out:
        raise AutointerpError(
            f"{trained.label} and {random.label} have no basis in common: compare a run with the "
            "random-model run of the same suite (evals/random-model.toml)"
        )
    return out


def _kl_clean(run: Run) -> float | None:
    """The run's unpatched IOI KL (nats), or None without an IOI stage."""
    for sc in getattr(run, "columns", []):
        if sc.stage == "ioi" and sc.extra.get("kl_clean"):
            return float(sc.extra["kl_clean"])
    return None


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _fmt(v: float | None) -> str:
    if v is None:
        return "undefined"
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e9 else f"{v:.4g}"


def render_diff_markdown(trained: Run, random: Run, diffs: list[BasisDiff]) -> str:
    """One table per basis: column | trained | random | difference [CI] | note."""
    lines = [
        f"# Trained minus random model: {trained.label} - {random.label}",
        "",
        "difference = trained - random; CI: bootstrap of the difference of feature means "
        "(each run's features resampled independently) where per-feature scores exist.",
        "",
    ]
    for d in diffs:
        head = f"## {d.basis}" + (f" ({d.method})" if d.method else "")
        lines += [
            head,
            "",
            "| column | trained | random | difference | note |",
            "|---|---|---|---|---|",
        ]
        for r in d.table.iter_rows(named=True):
            diff = _fmt(r["difference"])
            if r["ci_low"] is not None and r["ci_high"] is not None:
                diff += f" [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"
            t, rv = _fmt(r["trained"]), _fmt(r["random"])
            lines.append(f"| {r['column']} | {t} | {rv} | {diff} | {r['note']} |")
        lines.append("")
    return "\n".join(lines)


def diffs_frame(diffs: list[BasisDiff]) -> pl.DataFrame:
    """All bases' rows in one frame (basis, method first) for csv / json."""
    frames = [
        d.table.with_columns(pl.lit(d.basis).alias("basis"), pl.lit(d.method).alias("method"))
        for d in diffs
    ]
    return pl.concat(frames).select("basis", "method", *COLUMNS)

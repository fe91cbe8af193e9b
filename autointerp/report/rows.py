"""Leaderboard rows of one run: per (basis, method) the sim score and its CI, lifts over the
null rows (random directions, shuffled explanations), counts, sanity flags, scorer means, metrics
and LLM usage; and the sim score per firing-density bin."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import polars as pl

from autointerp import stats
from autointerp.report import stage_columns
from autointerp.report.columns import (
    BASE_SCHEMA,
    FLAG_TEXT,
    SCORER_COLUMNS,
    SIM_VARIANT,
    scorer_column,
)
from autointerp.report.runs import Run


def _nan_to_none(v: float | None) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


class _BasisScores:
    """Score rows of one basis indexed as {(scorer, variant, null): {feature: value|None}}."""

    def __init__(self, rows: list[tuple]):
        self.values: dict[tuple[str, str, str], dict[int, float | None]] = {}
        self.status = Counter()
        self.by_variant: Counter = Counter()  # (scorer, variant, null, status) -> count
        self.counts: Counter = Counter()  # EXTRA_COUNTS summed over real top_and_random rows
        for feat, scorer, variant, value, status, null, extra in rows:
            self.status[status] += 1
            if status != "ok":
                self.by_variant[(scorer, variant, null or "real", status)] += 1
            elif extra.get("constant_prediction"):
                self.by_variant[(scorer, variant, null or "real", "constant prediction (0)")] += 1
            if scorer == "simulation" and variant == SIM_VARIANT and not null:
                self.counts.update(extra)
            v = None if status != "ok" or value is None else float(value)
            self.values.setdefault((scorer, variant, null or ""), {})[int(feat)] = v

    def get(self, scorer: str, variant: str, null: str = "") -> dict[int, float | None]:
        return self.values.get((scorer, variant, null), {})


def _split_by_method(rows: list[tuple]) -> list[tuple[str, list[tuple]]]:
    """[(method, rows)]: one entry (the simulation method) when no scorer has several methods,
    else one entry per method holding only that method's rows."""
    by_scorer: dict[str, set[str]] = {}
    for r in rows:
        by_scorer.setdefault(r[1], set()).add(r[7])
    if all(len(m) <= 1 for m in by_scorer.values()):
        sim = by_scorer.get("simulation", set())
        return [(next(iter(sim)) if sim else "", [r[:7] for r in rows])]
    methods = sorted({r[7] for r in rows})
    return [(m, [r[:7] for r in rows if r[7] == m]) for m in methods]


def _score_rows(run: Run) -> dict[str, list[tuple]]:
    """Per basis: (feature, scorer, variant, value, status, null, extra, method) tuples, where
    ``extra`` keeps only the counts the table shows (:data:`EXTRA_COUNTS`)."""
    s = run.scores
    cols = [s[c].to_list() for c in ("basis", "feature", "scorer", "variant", "value", "status")]
    cols.append(s["null"].fill_null("").to_list())
    extras = s["extra"].to_list() if "extra" in s.columns else [None] * len(s)
    cols.append([_extra_counts(x) for x in extras])
    cols.append(s["method"].fill_null("").to_list())
    out: dict[str, list[tuple]] = {}
    for b, *rest in zip(*cols):
        out.setdefault(b, []).append(tuple(rest))
    return out


#: per-score ``extra`` fields summed into the table (real top_and_random simulation scores)
EXTRA_COUNTS = ("constant_prediction", "n_missing", "n_unaligned", "n_tokens")


def _extra_counts(extra: str | None) -> dict[str, int]:
    if not extra or not any(k in extra for k in EXTRA_COUNTS):
        return {}
    d = json.loads(extra)
    return {k: int(d[k]) for k in EXTRA_COUNTS if isinstance(d.get(k), (int, float, bool))}


def _mean(values: dict[int, float | None]) -> float | None:
    xs = [v for v in values.values() if v is not None and not math.isnan(v)]
    return sum(xs) / len(xs) if xs else None


def _feature_density(run: Run, basis: str) -> dict[int, float]:
    for df in (run.features, run.density):
        if df is not None and {"basis", "feature", "density"} <= set(df.columns):
            sub = df.filter(pl.col("basis") == basis)
            if len(sub):
                return dict(zip(sub["feature"].to_list(), sub["density"].to_list()))
    return {}


def plugin_scorers(run: Run) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """The run's scorers without a known column: {``<scorer>_<variant>``: (scorer, variant)}
    for every (scorer, variant) of its scores that is neither simulation nor in
    ``SCORER_COLUMNS`` (sorted), and the names left out because they would overwrite a column."""
    s = run.scores
    if not len(s):
        return {}, []
    pairs = s.select("scorer", "variant").unique().drop_nulls().rows()
    taken = set(BASE_SCHEMA) | set(run.metrics.columns)
    out: dict[str, tuple[str, str]] = {}
    clash = []
    for scorer, variant in sorted(pairs):
        if scorer == "simulation" or (scorer, variant) in SCORER_COLUMNS:
            continue
        col = scorer_column(scorer, variant)
        if col in taken or col in out:
            clash.append(f"{scorer}/{variant}")
        else:
            out[col] = (scorer, variant)
    return out, clash


def _run_rows(
    run: Run, n_boot: int, level: float, seed: int, notes: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Leaderboard rows and density-bin rows of one run."""
    score_rows = _score_rows(run)
    metrics: dict[str, dict[str, Any]] = {}
    if "basis" in run.metrics.columns:
        metrics = {r["basis"]: r for r in run.metrics.iter_rows(named=True)}
    usage = (run.manifest.get("llm_usage") or {}).get("by_basis") or {}
    n_feat_manifest = {str(b["name"]): b.get("n_features") for b in run.manifest.get("bases") or []}
    kinds = dict(run.bases)
    random_bases = [b for b, k in run.bases if k == "random"]
    if len(random_bases) > 1:
        notes.append(
            f"{run.label}: several random bases {random_bases}; lift uses {random_bases[0]}"
        )
    if "protocol_id" in run.scores.columns:
        other = set(run.scores["protocol_id"].drop_nulls().unique().to_list())
        other -= {"", run.protocol_id}
        if other:
            notes.append(
                f"{run.label}: some scores carry protocol id(s) {sorted(other)} that differ "
                f"from the manifest's {run.protocol_id!r}; the run is filed under the manifest's"
            )
    notes.extend(f"{run.label}: {n}" for n in stage_columns.notes(run.columns))
    plugins, clash = plugin_scorers(run)
    if clash:
        notes.append(
            f"{run.label}: scores of {', '.join(clash)} have no column: their name is taken by "
            "another column"
        )
    split = {b: _split_by_method(score_rows.get(b, [])) for b, _ in run.bases}
    random_sim: dict[str, dict[int, float | None]] = {}
    random_dens: dict[int, float] = {}
    if random_bases:
        random_dens = _feature_density(run, random_bases[0])
        for method, rows in split[random_bases[0]]:
            random_sim[method] = _BasisScores(rows).get("simulation", SIM_VARIANT)
    base_info = {str(b["name"]): b.get("info") or {} for b in run.manifest.get("bases") or []}
    ci_kw = {"n_boot": n_boot, "level": level, "seed": seed}
    ref_l0 = _reference_l0(metrics, kinds)
    out, dens_rows = [], []
    for basis, kind in run.bases:
        if len(split[basis]) > 1:
            notes.append(
                f"{run.label}: basis {basis} has scores from several methods "
                f"({', '.join(m for m, _ in split[basis])}): one row per method"
            )
        m = metrics.get(basis, {})
        u = usage.get(basis) or {}
        for method, rows in split[basis]:
            sc = _BasisScores(rows)
            real = sc.get("simulation", SIM_VARIANT)
            sim = stats.bootstrap_mean_ci(list(real.values()), **ci_kw)
            row: dict[str, Any] = {
                "suite": run.suite,
                "run": run.name,
                "protocol_id": run.protocol_id,
                "basis": basis,
                "kind": kind or m.get("kind", ""),
                "model": run.model,
                "hookpoint": run.hookpoint,
                "method": method,
                "n_features": m.get("n_features", n_feat_manifest.get(basis)),
                "features_scored": sim.n,
                "sim_score": _nan_to_none(sim.mean),
                "sim_ci_low": _nan_to_none(sim.low),
                "sim_ci_high": _nan_to_none(sim.high),
                "sim_top": _mean(sc.get("simulation", "top")),
                "sim_top_n": _count(sc.get("simulation", "top")),
                "sim_random": _mean(sc.get("simulation", "random")),
                "sim_random_n": _count(sc.get("simulation", "random")),
                "n_const_pred": sc.by_variant.get(
                    ("simulation", SIM_VARIANT, "real", "constant prediction (0)"), 0
                ),
                "n_undefined": sc.status.get("undefined", 0),
                "n_failed": sc.status.get("failed", 0),
                "undefined_by_variant": "; ".join(
                    f"{sc_}/{var}/{null} {st}: {n}"
                    for (sc_, var, null, st), n in sorted(sc.by_variant.items())
                ),
                "llm_calls": u.get("calls"),
                "prompt_tokens": u.get("prompt_tokens"),
                "completion_tokens": u.get("completion_tokens"),
                "work_tokens": u.get("work_tokens"),
                "cost_usd": u.get("cost_usd"),
                "wall_time_s": run.manifest.get("wall_time_s"),
            }
            for (scorer, variant), col in SCORER_COLUMNS.items():
                row[col] = _mean(sc.get(scorer, variant))
            for col, (scorer, variant) in plugins.items():
                row[col] = _mean(sc.get(scorer, variant))
            for k, v in m.items():
                if k not in ("basis", "kind", "n_features"):
                    row[k] = v
            row.update(_corpus_dead(run, basis))
            if kinds.get(basis) == "random":
                why = null_recon_reason(row.get("l0"), ref_l0)
                if why:
                    row.update({c: None for c in RECON_COLUMNS if c in row}, recon_na=why)
                    notes.append(f"{run.label}: {basis}: reconstruction columns n/a: {why}")
            dens = _feature_density(run, basis)
            ref = random_sim.get(method)
            if kinds.get(basis) != "random" and ref is not None and real:
                row.update(_random_lifts(real, dens, ref, random_dens, ci_kw))
                if row.get("lift_vs_random_dirs") is None and dens and random_dens:
                    notes.append(
                        f"{run.label}: {basis} ({method}): lift vs random dirs undefined: "
                        f"{row.pop('_strat_reason', '')}"
                    )
                row.pop("_strat_reason", None)
                if not dens or not random_dens:
                    notes.append(
                        f"{run.label}: {basis} ({method}): lift vs random dirs undefined: no "
                        "firing densities in the run to match the null to (see "
                        "lift_vs_random_dirs_unmatched)"
                    )
            shuf = sc.get("simulation", SIM_VARIANT, "shuffled")
            if real and shuf:
                a, b = stats.align_pairs(real, shuf)
                row["lift_vs_shuffled_n"] = sum(
                    x is not None and y is not None for x, y in zip(a, b, strict=True)
                )
                if a:
                    lf = stats.lift(a, b, paired=True, **ci_kw)
                    t = stats.paired_test(a, b)
                    row.update(_lift_cols("lift_vs_shuffled", lf, t))
            row.update(_pmi_counts(method, sc.counts))
            row.update(stage_columns.basis_cells(run.columns, basis))
            row.update(_diagnostic_cols(run.diagnostics.get(basis), real))
            row["flag"] = "; ".join(
                f
                for f in (
                    sanity_flag(row),
                    _fit_flag(kind, base_info.get(basis, {})),
                    _mode_flag(run.diagnostics.get(basis)),
                )
                if f
            )
            out.append(row)
            if real and dens:
                feats = sorted(real)
                for db in stats.density_bins(
                    [dens.get(f) for f in feats], [real[f] for f in feats], **ci_kw
                ):
                    dens_rows.append(
                        {
                            "suite": run.suite,
                            "run": run.name,
                            "basis": basis,
                            "kind": kind,
                            "method": method,
                            "bin": db.label,
                            "lo": db.lo,
                            "hi": db.hi,
                            "n": db.ci.n,
                            "mean": _nan_to_none(db.ci.mean),
                            "ci_low": _nan_to_none(db.ci.low),
                            "ci_high": _nan_to_none(db.ci.high),
                            "n_excluded": db.ci.n_excluded,
                        }
                    )
    out += _causal_only_rows(run, {b for b, _ in run.bases})
    return out, dens_rows


#: reconstruction / downstream columns that compare a basis with its L0: not applicable to a
#: random-directions null that fires at another L0 (shown "n/a", the reason in ``recon_na``)
RECON_COLUMNS = tuple(
    """fvu explained_variance explained_variance_legacy mse cossim l2_ratio
    relative_reconstruction_bias ce_loss_score kl_div_score ce_recon kl_recon
    ce_loss_score_mean_abl kl_div_score_mean_abl""".split()
)
#: relative L0 difference beyond which the null's reconstruction columns are n/a
L0_MATCH_TOL = 0.1


def _reference_l0(metrics: dict[str, dict[str, Any]], kinds: dict[str, str]) -> float | None:
    """The L0 the null is compared at: the first SAE's, else the median of the non-random
    bases' (None when no basis has one)."""
    l0s = [(kinds.get(b) or r.get("kind"), r.get("l0")) for b, r in metrics.items()]
    l0s = [(k, v) for k, v in l0s if k != "random" and isinstance(v, int | float)]
    sae = [v for k, v in l0s if k == "sae"]
    if sae:
        return float(sae[0])
    vals = sorted(float(v) for _, v in l0s)
    return vals[len(vals) // 2] if vals else None


def null_recon_reason(l0: Any, ref_l0: float | None) -> str:
    """Why the random null's reconstruction columns are not applicable ("" when they are:
    its L0 within ``L0_MATCH_TOL`` of the reference L0)."""
    if not isinstance(l0, int | float) or ref_l0 is None or ref_l0 <= 0:
        return ""
    if abs(float(l0) / ref_l0 - 1.0) <= L0_MATCH_TOL:
        return ""
    return (
        f"the random-directions null fires at L0 {float(l0):.3g}, not the bases' {ref_l0:.3g} "
        "(its firing densities are matched, not its L0), so its reconstruction and CE / KL "
        "columns are not an L0-matched null; its values are kept in metrics.parquet"
    )


def _corpus_dead(run: Run, basis: str) -> dict[str, float]:
    """``dead_frac_corpus``: share of the basis's features that never fire over the whole
    corpus (``density.parquet``, every feature), next to ``dead_frac`` on the held-out tokens."""
    df = run.density
    if df is None or not {"basis", "feature", "density"} <= set(df.columns):
        return {}
    d = df.filter(pl.col("basis") == basis)["density"]
    if not len(d):
        return {}
    return {"dead_frac_corpus": float((d == 0).sum()) / len(d)}


def _causal_only_rows(run: Run, known: set[str]) -> list[dict[str, Any]]:
    """Rows of bases only the causal stages have (the IOI stage's full PCA rotation,
    ``<pca>-full``): their stage cells, method ``causal only``."""
    names = dict.fromkeys(b for sc in run.columns for b in sc.rows if b not in known)
    out = []
    for basis in names:
        row: dict[str, Any] = {
            "suite": run.suite, "run": run.name, "protocol_id": run.protocol_id,
            "basis": basis, "kind": "pca" if basis.endswith("-full") else "",
            "model": run.model, "hookpoint": run.hookpoint, "method": "causal only",
        }  # fmt: skip
        row.update(stage_columns.basis_cells(run.columns, basis))
        row["flag"] = ""
        out.append(row)
    return out


def sanity_flag(row: dict[str, Any]) -> str:
    """``FLAG_TEXT`` when the row's lift vs shuffled explanations is <= 0 or its CI includes 0
    (or was not measured while the row has scores), else ""."""
    if not row.get("features_scored"):
        return ""
    d, lo, hi = (row.get(f"lift_vs_shuffled{s}") for s in ("", "_ci_low", "_ci_high"))
    if d is None or lo is None or hi is None:
        return FLAG_TEXT + " (no shuffled null)"
    return FLAG_TEXT if d <= 0 or lo <= 0 <= hi else ""


def _count(values: dict[int, float | None]) -> int:
    return sum(v is not None and not math.isnan(v) for v in values.values())


def stratified_inputs(
    real: dict[int, float | None],
    dens: dict[int, float],
    ref: dict[int, float | None],
    ref_dens: dict[int, float],
) -> tuple[list, list, list, list]:
    """The arguments of :func:`stats.stratified_lift` from per-feature scores and firing
    densities of a basis (``real``, ``dens``) and of the random null (``ref``, ``ref_dens``),
    each in feature order."""
    fa, fr = sorted(real), sorted(ref)
    return (
        [real[f] for f in fa], [dens.get(f) for f in fa],
        [ref[f] for f in fr], [ref_dens.get(f) for f in fr],
    )  # fmt: skip


def _random_lifts(
    real: dict[int, float | None],
    dens: dict[int, float],
    ref: dict[int, float | None],
    ref_dens: dict[int, float],
    ci_kw: dict[str, Any],
) -> dict[str, float | int | None]:
    """``lift_vs_random_dirs``: density-stratified (the null re-weighted to this basis's
    firing densities); ``lift_vs_random_dirs_unmatched``: the plain difference of means."""
    st = stats.stratified_lift(*stratified_inputs(real, dens, ref, ref_dens), **ci_kw)
    out: dict[str, float | int | None] = {
        "lift_vs_random_dirs": _nan_to_none(st.diff),
        "lift_vs_random_dirs_ci_low": _nan_to_none(st.low),
        "lift_vs_random_dirs_ci_high": _nan_to_none(st.high),
        "lift_vs_random_dirs_p": _nan_to_none(st.pvalue),
        "lift_vs_random_dirs_n": st.n_a,
        "lift_vs_random_dirs_n_null": st.n_null,
        "lift_vs_random_dirs_n_unsupported": st.n_unsupported,
        "lift_vs_random_dirs_strata": ", ".join(st.strata) if st.n_merged else None,
        "_strat_reason": st.reason,
    }
    lf = stats.lift(list(real.values()), list(ref.values()), paired=False, **ci_kw)
    t = stats.compare_bases(real.values(), ref.values())
    out.update(_lift_cols("lift_vs_random_dirs_unmatched", lf, t))
    return out


def _pmi_counts(method: str, counts: Counter) -> dict[str, int | None]:
    if method != "pmi" or not counts.get("n_tokens"):
        return {}
    return {
        "pmi_tokens": counts["n_tokens"],
        "pmi_missing": counts.get("n_missing", 0),
        "pmi_unaligned": counts.get("n_unaligned", 0),
    }


def _diagnostic_cols(d: dict[str, Any] | None, real: dict[int, float | None]) -> dict[str, Any]:
    """Diagnostics columns; ``distinct`` counts the groups among the SCORED features (those
    with an ok sim score) when the diagnostics keep their duplicate pairs, else it is left
    undefined (an older diagnostics file counted every record feature)."""
    if not d:
        return {}
    from autointerp.diagnostics import distinct_among

    scored = [f for f, v in real.items() if v is not None and not math.isnan(v)]
    if "edges" in d and scored:
        examined = set(d.get("features") or [])
        scored = [f for f in scored if not examined or f in examined]
        distinct, n = distinct_among(scored, d["edges"]), len(scored)
    else:
        distinct = n = None
    return {
        "distinct_features": distinct,
        "diag_features": n,
        "mean_abs_r": d.get("mean_abs_r"),
        "mode_share": d.get("mode_share"),
        "mode_token": d.get("mode_token"),
    }


def _fit_flag(kind: str, info: dict[str, Any]) -> str:
    if kind == "ica" and info.get("converged") is False:
        return f"ICA did not converge ({info.get('n_iter', '?')} iterations)"
    return ""


def _mode_flag(d: dict[str, Any] | None) -> str:
    if not d:
        return ""
    from autointerp.diagnostics import BasisDiagnostics

    keep = {k: d[k] for k in BasisDiagnostics.__dataclass_fields__ if k in d}
    try:
        return BasisDiagnostics(**keep).flag()
    except TypeError:  # an older diagnostics file
        return ""


def _lift_cols(name: str, lf: stats.LiftCI, t: stats.TestResult) -> dict[str, float | None]:
    return {
        name: _nan_to_none(lf.diff),
        f"{name}_ci_low": _nan_to_none(lf.low),
        f"{name}_ci_high": _nan_to_none(lf.high),
        f"{name}_p": _nan_to_none(t.pvalue),
    }

"""Leaderboards: read run directories, build one table per protocol, render md/csv/json/html.

Only runs with the same ``protocol_id`` are put side by side; the others are set apart with the
protocol fields that differ. Each table has one row per (run, basis) — model and hookpoint come
from the run — and, when one basis holds scores from several methods, one row per method
(methods are never mixed in one number). The headline of each row is its lift over the null
rows: random directions (a basis of kind ``random`` in the same run) and shuffled explanations
(``null == "shuffled"`` scores of the same features). See ``LEGEND`` for every column.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import polars as pl

from autointerp import stats
from autointerp.errors import AutointerpError
from autointerp.results import atomic_write_text
from autointerp.types import FeatureRecord

log = logging.getLogger(__name__)

SIM_VARIANT = "top_and_random"
FLAG_TEXT = "judge cannot separate explanations from nulls"
_FEATURE_RE = re.compile(r'"feature":\s*(-?\d+)')
SCORE_COLUMNS = ("basis", "feature", "scorer", "variant", "value", "status", "null", "method")

#: metric columns in the order the table shows them (SAEBench names); unknown ones follow.
HEAD_METRICS = tuple("l0 fvu explained_variance ce_loss_score kl_div_score dead_frac".split())
OTHER_METRICS = tuple(
    """l1 mse explained_variance_legacy cossim l2_ratio relative_reconstruction_bias frac_alive
    freq_over_1_percent freq_over_10_percent ce_clean ce_zero_abl ce_mean_abl ce_recon
    ce_loss_score_mean_abl kl_zero_abl kl_mean_abl kl_recon kl_div_score_mean_abl
    n_tokens_metrics""".split()
)
_LIFTS = [
    f"{n}{s}"
    for n in ("lift_vs_random_dirs", "lift_vs_shuffled")
    for s in ("", "_ci_low", "_ci_high", "_p")
]
#: columns left out of md/html when they are empty in every row
OPTIONAL_COLUMNS = {
    *"detection_bal_acc fuzzing_bal_acc intruder_acc detection_auroc fuzzing_auroc".split(),
    *"n_const_pred distinct_features mode_share".split(),
    *OTHER_METRICS,
}
_STR, _F, _I = pl.Utf8, pl.Float64, pl.Int64


def _cols(names: str, dtype: Any) -> dict[str, Any]:
    return dict.fromkeys(names.split(), dtype)


#: every table's columns, in order (extra metric columns of a run are appended as Float64)
BASE_SCHEMA: dict[str, Any] = {
    **_cols("basis kind model hookpoint method flag", _STR),
    **dict.fromkeys(_LIFTS, _F),
    **_cols("lift_vs_random_dirs_n lift_vs_random_dirs_n_null", _I),
    **_cols("lift_vs_random_dirs_n_unsupported lift_vs_shuffled_n", _I),
    **_cols("n_features features_scored", _I),
    **_cols("sim_score sim_ci_low sim_ci_high sim_top sim_random", _F),
    **_cols("sim_top_n sim_random_n", _I),
    **_cols("n_undefined n_failed n_const_pred", _I),
    **_cols("distinct_features diag_features", _I),
    **_cols("mean_abs_r mode_share", _F),
    **_cols("mode_token", _STR),
    **_cols("pmi_tokens pmi_missing pmi_unaligned", _I),
    **dict.fromkeys(
        [f"lift_vs_random_dirs_unmatched{s}" for s in ("", "_ci_low", "_ci_high", "_p")], _F
    ),
    **_cols("undefined_by_variant", _STR),
    **_cols("detection_bal_acc fuzzing_bal_acc intruder_acc detection_auroc fuzzing_auroc", _F),
    **dict.fromkeys(HEAD_METRICS + OTHER_METRICS, _F),
    **_cols("llm_calls prompt_tokens completion_tokens", _I),
    **_cols("cost_usd wall_time_s", _F),
    **_cols("suite run protocol_id", _STR),
}
#: (scorer, variant) -> column holding its mean over features (real scores, status ok)
SCORER_COLUMNS = {
    ("detection", "balanced_accuracy"): "detection_bal_acc",
    ("fuzzing", "balanced_accuracy"): "fuzzing_bal_acc",
    ("intruder", "accuracy"): "intruder_acc",
    ("detection", "auroc"): "detection_auroc",
    ("fuzzing", "auroc"): "fuzzing_auroc",
}

LEGEND: dict[str, str] = {
    "basis / kind": "the feature basis and its kind (sae, pca, ica, neurons, random, ...)",
    "method": "how simulation scores were obtained: pmi (explanation-PMI), all_at_once (digit "
    "slots), token_match (the no-LLM floor: top_tokens explanations), top_logprobs, json; rows "
    "never mix methods",
    "lift vs random dirs (density-matched)": "sim score minus the mean sim score of the "
    "kind=random basis (random directions) re-weighted to this basis's firing densities: per "
    "density decade, the null's mean weighted by this basis's share of features there; features "
    "in decades where the null has no score are left out (lift_vs_random_dirs_n_unsupported in "
    "csv/json); stratified bootstrap CI; p: stratified permutation test; n = this basis's "
    "features vs the null's. The plain difference of means is lift_vs_random_dirs_unmatched "
    "(csv/json/html)",
    "lift vs shuffled": "mean over features of (real - shuffled-explanation) sim score on the "
    "same features, paired bootstrap CI; p: Wilcoxon signed-rank; n = complete pairs (a "
    "feature whose own or shuffled score is undefined or failed is not a pair)",
    "sim score": "mean simulation correlation (top_and_random test set) over features whose "
    "score is ok, with its CI",
    "scored / features": "features with an ok sim score / features in the basis",
    "undef / failed": "scores (all scorers, real and null) whose status is undefined (the true "
    "activations are constant: nothing to predict; or no valid shuffled null) / failed "
    "(explanation or LLM answer unusable); both are left out of every mean",
    "const pred (0)": "real top_and_random scores whose prediction was constant against "
    "varying truth: the explanation predicted nothing, scored r = 0 and kept in every mean",
    "distinct": "groups of near-duplicate features among the scored ones (activations "
    "correlated at r >= 0.5 on 512 rows spread over the corpus, chained) of the features examined",
    "top-token mode share": "share of scored features whose most common max-activating token "
    "(over their top windows) is the basis's most common one; flagged at >= 25%",
    "l0 corpus": "L0 over the whole corpus (from firing densities), next to l0 on the held-out "
    "metric tokens",
    "sim top / sim random": "the same mean on top-only / random-only test examples, n features",
    "detection / fuzzing / intruder": "mean balanced accuracy (detection, fuzzing) and "
    "accuracy (intruder) over features",
    "l0 ... dead_frac": "SAEBench reconstruction / sparsity / downstream metrics; the others "
    "(l1, mse, cossim, ...) are in the csv/json/html outputs",
    "llm calls / tokens / cost": "LLM usage of this basis (manifest llm_usage.by_basis)",
    "wall s": "wall time of the whole run, summed over the invocations that computed something",
    "flag": f"'{FLAG_TEXT}' when lift vs shuffled is <= 0 or its CI includes 0 (the scores "
    "then say nothing about the explanations)",
}


# ---------------------------------------------------------------------------------------------
# Loading


def _read_parquet(path: Path, required: bool = False) -> pl.DataFrame | None:
    if not path.exists():
        if required:
            raise AutointerpError(f"{path} is missing; re-run the pipeline for this run")
        return None
    try:
        return pl.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - any decode error becomes one clear message
        raise AutointerpError(
            f"cannot read {path}: {e}; the file is damaged — re-run the pipeline for this run "
            "or delete the run directory"
        ) from e


@dataclass
class Run:
    """One run directory (see the results layout in ``autointerp.results``)."""

    path: Path
    manifest: dict[str, Any]
    metrics: pl.DataFrame
    scores: pl.DataFrame
    features: pl.DataFrame | None = None
    density: pl.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    diagnostics: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def suite(self) -> str:
        return str(self.manifest.get("suite", self.path.parent.name))

    @property
    def name(self) -> str:
        return str(self.manifest.get("run", self.path.name))

    @property
    def label(self) -> str:
        return f"{self.suite}/{self.name}"

    @property
    def protocol_id(self) -> str:
        return str(self.manifest.get("protocol_id") or "")

    @property
    def protocol(self) -> dict[str, Any]:
        return dict(self.manifest.get("protocol") or {})

    @property
    def model(self) -> str:
        return str(self.manifest.get("model", ""))

    @property
    def hookpoint(self) -> str:
        return str(self.manifest.get("hookpoint", ""))

    @cached_property
    def bases(self) -> list[tuple[str, str]]:
        """(name, kind) of every basis, manifest order first, then any only found in files."""
        out: dict[str, str] = {}
        for b in self.manifest.get("bases") or []:
            out[str(b["name"])] = str(b.get("kind", ""))
        for df in (self.metrics, self.scores):
            if "basis" in df.columns:
                kinds = df["kind"].to_list() if "kind" in df.columns else [""] * len(df)
                for name, kind in zip(df["basis"].to_list(), kinds):
                    if name not in out or not out[name]:
                        out[name] = kind or ""
        return list(out.items())

    @cached_property
    def simulations(self) -> pl.DataFrame | None:
        """``simulations.parquet`` (per-token true vs simulated activations) or None."""
        return _read_parquet(self.path / "simulations.parquet")

    def records(self, basis: str, features: set[int] | None = None) -> dict[int, FeatureRecord]:
        """FeatureRecords of ``records/<basis>.jsonl`` (only ``features`` if given); {} if none."""
        p = self.path / "records" / f"{basis}.jsonl"
        if not p.exists():
            return {}
        out: dict[int, FeatureRecord] = {}
        with p.open() as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                if features is not None:  # skip unwanted lines without parsing them
                    m = _FEATURE_RE.search(line, 0, 400)
                    if m is not None and int(m.group(1)) not in features:
                        continue
                try:
                    d = json.loads(line)
                except json.JSONDecodeError as e:
                    raise AutointerpError(f"{p} line {i} is not JSON ({e}); re-run records") from e
                if features is None or int(d["feature"]) in features:
                    out[int(d["feature"])] = FeatureRecord.from_dict(d)
        return out


def load_run(run_dir: str | Path) -> Run:
    """Read a run directory. ``manifest.json`` is required; metrics/scores/features parquet
    files are read when present (a missing one is noted in ``Run.notes``); density, simulations
    and records are optional."""
    path = Path(run_dir)
    mpath = path / "manifest.json"
    if not mpath.is_file():
        raise AutointerpError(
            f"{path} is not a run directory (no manifest.json); pass a run directory or a "
            "folder that contains run directories"
        )
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        raise AutointerpError(f"{mpath} is not valid JSON ({e}); re-run the pipeline") from e
    if not isinstance(manifest, dict):
        raise AutointerpError(f"{mpath} must hold a JSON object, found {type(manifest).__name__}")
    notes = []
    metrics = _read_parquet(path / "metrics.parquet")
    if metrics is None:
        notes.append("metrics.parquet missing: no reconstruction metrics")
        metrics = pl.DataFrame({"basis": [], "kind": []}, schema={"basis": _STR, "kind": _STR})
    scores = _read_parquet(path / "scores.parquet")
    if scores is None:
        notes.append("scores.parquet missing: no scores")
        scores = pl.DataFrame(
            schema={
                "basis": _STR,
                "feature": _I,
                "scorer": _STR,
                "variant": _STR,
                "value": _F,
                "status": _STR,
                "null": _STR,
                "method": _STR,
            }
        )
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise AutointerpError(
            f"{path / 'scores.parquet'} lacks columns {missing}; it must hold the fields of "
            "autointerp.types.Score — re-run scoring"
        )
    features = _read_parquet(path / "features.parquet")
    density = _read_parquet(path / "density.parquet")
    diag = {}
    if (path / "diagnostics.json").is_file():
        diag = {d["basis"]: d for d in json.loads((path / "diagnostics.json").read_text())}
    return Run(path, manifest, metrics, scores, features, density, notes, diag)


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Run directories under ``paths``: each is a run dir or a folder searched recursively for
    ``manifest.json``. Sorted, without duplicates."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise AutointerpError(f"{p} does not exist; pass a run directory or a results folder")
        if (p / "manifest.json").is_file():
            found.append(p)
            continue
        sub = sorted(m.parent for m in p.rglob("manifest.json"))
        if not sub:
            raise AutointerpError(f"no run found under {p} (no manifest.json); run the pipeline")
        found.extend(sub)
    return sorted(dict.fromkeys(x.resolve() for x in found))


# ---------------------------------------------------------------------------------------------
# Protocol grouping


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a.b.c": value}; lists and scalars are leaves."""
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def protocol_diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Human-readable differences ``field: a_value vs b_value`` between two protocols."""
    fa, fb = flatten(a), flatten(b)
    out = []
    for k in sorted(set(fa) | set(fb)):
        va, vb = fa.get(k, "(absent)"), fb.get(k, "(absent)")
        if va != vb:
            out.append(f"{k}: {json.dumps(va, default=str)} vs {json.dumps(vb, default=str)}")
    return out


@dataclass
class SetApart:
    """A run kept out of the reference table, and why."""

    run: str
    path: str
    protocol_id: str
    reason: str
    differences: list[str]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Leaderboard:
    """Tables by protocol id (reference protocol first), runs set apart, density bins, notes."""

    groups: dict[str, pl.DataFrame]
    reference: str | None
    set_apart: list[SetApart]
    protocols: dict[str, dict[str, Any]]
    runs_by_group: dict[str, list[str]]
    density: dict[str, pl.DataFrame]
    notes: list[str]
    n_boot: int
    seed: int
    level: float

    @property
    def table(self) -> pl.DataFrame:
        """The reference group's table (empty frame when there are no runs)."""
        if self.reference is None:
            return pl.DataFrame(schema=BASE_SCHEMA)
        return self.groups[self.reference]

    def all_rows(self) -> pl.DataFrame:
        """Every group's rows stacked (each row keeps its ``protocol_id``)."""
        frames = list(self.groups.values())
        return pl.concat(frames, how="diagonal_relaxed") if frames else self.table

    @property
    def ci_method(self) -> str:
        return (
            f"{round(self.level * 100)}% percentile bootstrap over features "
            f"(n_boot={self.n_boot}, seed={self.seed})"
        )


# ---------------------------------------------------------------------------------------------
# Rows


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
    split = {b: _split_by_method(score_rows.get(b, [])) for b, _ in run.bases}
    random_sim: dict[str, dict[int, float | None]] = {}
    random_dens: dict[int, float] = {}
    if random_bases:
        random_dens = _feature_density(run, random_bases[0])
        for method, rows in split[random_bases[0]]:
            random_sim[method] = _BasisScores(rows).get("simulation", SIM_VARIANT)
    base_info = {str(b["name"]): b.get("info") or {} for b in run.manifest.get("bases") or []}
    ci_kw = {"n_boot": n_boot, "level": level, "seed": seed}
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
                "cost_usd": u.get("cost_usd"),
                "wall_time_s": run.manifest.get("wall_time_s"),
            }
            for (scorer, variant), col in SCORER_COLUMNS.items():
                row[col] = _mean(sc.get(scorer, variant))
            for k, v in m.items():
                if k not in ("basis", "kind", "n_features"):
                    row[k] = v
            dens = _feature_density(run, basis)
            ref = random_sim.get(method)
            if kinds.get(basis) != "random" and ref is not None and real:
                row.update(_random_lifts(real, dens, ref, random_dens, ci_kw))
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
            row.update(_diagnostic_cols(run.diagnostics.get(basis)))
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
    return out, dens_rows


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


def _random_lifts(
    real: dict[int, float | None],
    dens: dict[int, float],
    ref: dict[int, float | None],
    ref_dens: dict[int, float],
    ci_kw: dict[str, Any],
) -> dict[str, float | int | None]:
    """``lift_vs_random_dirs``: density-stratified (the null re-weighted to this basis's
    firing densities); ``lift_vs_random_dirs_unmatched``: the plain difference of means."""
    fa, fr = sorted(real), sorted(ref)
    st = stats.stratified_lift(
        [real[f] for f in fa],
        [dens.get(f) for f in fa],
        [ref[f] for f in fr],
        [ref_dens.get(f) for f in fr],
        **ci_kw,
    )
    out: dict[str, float | int | None] = {
        "lift_vs_random_dirs": _nan_to_none(st.diff),
        "lift_vs_random_dirs_ci_low": _nan_to_none(st.low),
        "lift_vs_random_dirs_ci_high": _nan_to_none(st.high),
        "lift_vs_random_dirs_p": _nan_to_none(st.pvalue),
        "lift_vs_random_dirs_n": st.n_a,
        "lift_vs_random_dirs_n_null": st.n_null,
        "lift_vs_random_dirs_n_unsupported": st.n_unsupported,
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


def _diagnostic_cols(d: dict[str, Any] | None) -> dict[str, Any]:
    if not d:
        return {}
    return {
        "distinct_features": d.get("distinct"),
        "diag_features": d.get("n_features"),
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


def _frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    extra = []
    for r in rows:
        for k in r:
            if k not in BASE_SCHEMA and k not in extra:
                extra.append(k)
    schema = {**BASE_SCHEMA, **{k: _F for k in extra}}
    norm = []
    for r in rows:
        d = {}
        for k, dt in schema.items():
            v = r.get(k)
            if dt == _F:
                v = None if v is None else float(v)
                v = _nan_to_none(v)
            elif dt == _I:
                v = None if v is None else int(v)
            elif v is not None:
                v = str(v)
            d[k] = v
        norm.append(d)
    return pl.from_dicts(norm, schema=schema) if norm else pl.DataFrame(schema=schema)


def sort_table(df: pl.DataFrame, sort_by: str | None, descending: bool = True) -> pl.DataFrame:
    """Sort by a column (nulls last). Default: lift vs random dirs, then lift vs shuffled,
    then sim score, all descending."""
    if sort_by is None:
        keys = ["lift_vs_random_dirs", "lift_vs_shuffled", "sim_score"]
        return df.sort(keys, descending=True, nulls_last=True, maintain_order=True)
    if sort_by not in df.columns:
        raise AutointerpError(
            f"cannot sort by {sort_by!r}: no such column; choose one of {', '.join(df.columns)}"
        )
    return df.sort(sort_by, descending=descending, nulls_last=True, maintain_order=True)


def _n_boot_from(runs: list[Run]) -> int:
    for r in runs:
        cfg = (r.manifest.get("config") or {}).get("scoring") or {}
        proto = (r.manifest.get("protocol") or {}).get("scoring") or {}
        for src in (proto, cfg):
            if isinstance(src, dict) and src.get("n_bootstrap"):
                return int(src["n_bootstrap"])
    return stats.DEFAULT_N_BOOT


def leaderboard_table(
    runs: list[Run],
    *,
    sort_by: str | None = None,
    descending: bool = True,
    n_boot: int | None = None,
    level: float = stats.DEFAULT_LEVEL,
    seed: int = 0,
) -> Leaderboard:
    """Build the leaderboard of ``runs``.

    Runs are grouped by ``protocol_id``; the reference group is the protocol shared by most runs
    (ties: the first run's). Every run outside it is listed in ``set_apart`` with the protocol
    fields that differ. ``n_boot`` defaults to the protocol's ``scoring.n_bootstrap`` (else 1000).
    Each group's table is sorted by ``sort_by`` (default: lift vs random dirs, descending).
    """
    if n_boot is None:
        n_boot = _n_boot_from(runs)
    notes: list[str] = []
    by_pid: dict[str, list[Run]] = {}
    for r in runs:
        by_pid.setdefault(r.protocol_id, []).append(r)
        notes.extend(f"{r.label}: {n}" for n in r.notes)
    reference = None
    if by_pid:
        first = runs[0].protocol_id
        reference = max(by_pid, key=lambda p: (len(by_pid[p]), p == first))
    order = ([reference] if reference is not None else []) + [p for p in by_pid if p != reference]
    groups, density, protocols, set_apart, runs_by_group = {}, {}, {}, [], {}
    ref_proto = by_pid[reference][0].protocol if reference is not None else {}
    for pid in order:
        rows, drows = [], []
        for r in by_pid[pid]:
            rr, dr = _run_rows(r, n_boot, level, seed, notes)
            rows.extend(rr)
            drows.extend(dr)
            if pid != reference:
                if not pid:
                    reason = "manifest has no protocol_id"
                else:
                    reason = f"protocol_id {pid} differs from the reference {reference}"
                set_apart.append(
                    SetApart(
                        r.label, str(r.path), pid, reason, protocol_diff(ref_proto, r.protocol)
                    )
                )
        protocols[pid] = by_pid[pid][0].protocol
        runs_by_group[pid] = [r.label for r in by_pid[pid]]
        groups[pid] = sort_table(_frame(rows), sort_by, descending)
        density[pid] = pl.from_dicts(drows) if drows else pl.DataFrame()
    return Leaderboard(
        groups,
        reference,
        set_apart,
        protocols,
        runs_by_group,
        density,
        notes,
        n_boot,
        seed,
        level,
    )


# ---------------------------------------------------------------------------------------------
# Rendering

#: (header, column, ci_low, ci_high) shown in markdown/html; optional ones dropped when empty
DISPLAY: list[tuple[str, str, str | None, str | None]] = [
    ("basis", "basis", None, None),
    ("kind", "kind", None, None),
    ("model", "model", None, None),
    ("hookpoint", "hookpoint", None, None),
    ("run", "run", None, None),
    ("method", "method", None, None),
    ("flag", "flag", None, None),
    (
        "lift vs random dirs (density-matched)",
        "lift_vs_random_dirs",
        "lift_vs_random_dirs_ci_low",
        "lift_vs_random_dirs_ci_high",
    ),
    ("lift vs shuffled", "lift_vs_shuffled", "lift_vs_shuffled_ci_low", "lift_vs_shuffled_ci_high"),
    ("sim score", "sim_score", "sim_ci_low", "sim_ci_high"),
    ("sim top", "sim_top", None, None),
    ("sim random", "sim_random", None, None),
    ("scored", "features_scored", None, None),
    ("features", "n_features", None, None),
    ("undef", "n_undefined", None, None),
    ("failed", "n_failed", None, None),
    ("const pred (0)", "n_const_pred", None, None),
    ("distinct", "distinct_features", None, None),
    ("top-token mode share", "mode_share", None, None),
    ("detection", "detection_bal_acc", None, None),
    ("fuzzing", "fuzzing_bal_acc", None, None),
    ("intruder", "intruder_acc", None, None),
    ("detection auroc", "detection_auroc", None, None),
    ("fuzzing auroc", "fuzzing_auroc", None, None),
    *[(m, m, None, None) for m in HEAD_METRICS[:1]],
    ("l0 corpus", "l0_corpus", None, None),
    *[(m, m, None, None) for m in HEAD_METRICS[1:]],
    ("llm calls", "llm_calls", None, None),
    ("prompt tok", "prompt_tokens", None, None),
    ("compl tok", "completion_tokens", None, None),
    ("cost $", "cost_usd", None, None),
    ("wall s", "wall_time_s", None, None),
]


def fmt_value(v: Any, col: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        if col == "cost_usd":
            return f"{v:.4f}"
        if col.endswith("_p"):
            return f"{v:.2g}"
        if col == "wall_time_s":
            return f"{v:.1f}"
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.4g}"
    return str(v)


#: column -> (its n, the null's n): shown after the value as ``n=A`` or ``n=A vs B``
N_COLUMNS: dict[str, tuple[str, str | None]] = {
    "lift_vs_random_dirs": ("lift_vs_random_dirs_n", "lift_vs_random_dirs_n_null"),
    "lift_vs_shuffled": ("lift_vs_shuffled_n", None),
    "sim_top": ("sim_top_n", None),
    "sim_random": ("sim_random_n", None),
    "distinct_features": ("diag_features", None),
}


def fmt_ci(row: dict[str, Any], col: str, lo: str | None, hi: str | None) -> str:
    s = fmt_value(row.get(col), col)
    if s and lo and hi and row.get(lo) is not None and row.get(hi) is not None:
        s += f" [{fmt_value(row[lo], lo)}, {fmt_value(row[hi], hi)}]"
    n_col, null_col = N_COLUMNS.get(col, (None, None))
    if s and n_col and row.get(n_col) is not None:
        if col == "distinct_features":
            return f"{s} of {row[n_col]}"
        s += f" n={row[n_col]}"
        if null_col and row.get(null_col) is not None:
            s += f" vs {row[null_col]}"
    return s


def display_columns(df: pl.DataFrame) -> list[tuple[str, str, str | None, str | None]]:
    """DISPLAY minus optional columns empty in every row, and ``run`` when only one run."""
    cols = []
    for spec in DISPLAY:
        c = spec[1]
        if c not in df.columns:
            continue
        if c in OPTIONAL_COLUMNS and df[c].null_count() == len(df):
            continue
        if c == "run" and df["run"].n_unique() <= 1 and df["suite"].n_unique() <= 1:
            continue
        cols.append(spec)
    return cols


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _md_table(df: pl.DataFrame, specs: list[tuple[str, str, str | None, str | None]]) -> str:
    lines = [
        "| " + " | ".join(h for h, *_ in specs) + " |",
        "|" + "|".join("---" for _ in specs) + "|",
    ]
    for row in df.iter_rows(named=True):
        cells = [_md_escape(fmt_ci(row, c, lo, hi)) for _, c, lo, hi in specs]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _density_md(dens: pl.DataFrame) -> str:
    if dens.is_empty():
        return ""
    bins = list(dict.fromkeys(dens["bin"].to_list()))
    multi = dens["run"].n_unique() > 1
    head = ["basis", "method", *bins]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    keys = dens.select("suite", "run", "basis", "method").unique(maintain_order=True)
    for k in keys.iter_rows(named=True):
        sub = dens.filter(
            (pl.col("suite") == k["suite"])
            & (pl.col("run") == k["run"])
            & (pl.col("basis") == k["basis"])
            & (pl.col("method") == k["method"])
        )
        cell = {
            r["bin"]: (f"{fmt_value(r['mean'])} (n={r['n']})" if r["n"] else "n=0")
            for r in sub.iter_rows(named=True)
        }
        name = f"{k['run']}/{k['basis']}" if multi else k["basis"]
        lines.append(
            "| "
            + " | ".join(
                _md_escape(x) for x in [name, k["method"], *[cell.get(b, "") for b in bins]]
            )
            + " |"
        )
    return "\n".join(lines)


def render_markdown(board: Leaderboard) -> str:
    """Markdown: one table per protocol (reference first), density bins, set-apart runs, notes,
    and a legend."""
    out = ["# autointerp leaderboard", ""]
    if board.reference is None:
        return "# autointerp leaderboard\n\nNo runs.\n"
    for pid, df in board.groups.items():
        title = "Reference protocol" if pid == board.reference else "Set apart: protocol"
        out += [
            f"## {title} `{pid or '(none)'}`",
            "",
            f"Runs: {', '.join(board.runs_by_group[pid])}",
            "",
            _md_table(df, display_columns(df)),
            "",
        ]
        flagged = [r for r in df.iter_rows(named=True) if r.get("flag")]
        if flagged:
            out += ["Sanity flags:", ""]
            out += [f"- **{r['basis']}** ({r['method']}): {r['flag']}" for r in flagged]
            out.append("")
        undef = [r for r in df.iter_rows(named=True) if r.get("undefined_by_variant")]
        if undef:
            out += ["Undefined / failed scores by scorer / variant / real-or-null:", ""]
            out += [f"- {r['basis']} ({r['method']}): {r['undefined_by_variant']}" for r in undef]
            out.append("")
        dens = board.density.get(pid)
        if dens is not None and not dens.is_empty():
            out += [
                "Simulation score by firing density (mean, n features):",
                "",
                _density_md(dens),
                "",
            ]
    if board.set_apart:
        out += ["## Runs set apart (not comparable with the reference table)", ""]
        for s in board.set_apart:
            diff = "; ".join(s.differences) if s.differences else "no field differs"
            out.append(f"- `{s.run}`: {s.reason}. Differing protocol fields: {diff}")
        out.append("")
    if board.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in board.notes] + [""]
    out += ["## Legend", ""]
    out.append(
        f"- Protocol id: `{board.reference}`; only runs with equal protocol id share a table."
    )
    out.append(f"- CIs: {board.ci_method}; shown as `value [low, high]`.")
    out.append(
        "- random = null row: the kind=random basis is random directions (drawn in the whitened "
        "space unless its info says raw; firing densities matched to the other bases), the "
        "baseline every lift vs random dirs is measured against (its own lift is empty)."
    )
    out.append("- n after a value: the features behind it (lifts: this basis vs the null).")
    out.append(
        "- shuffled = null scores: each feature's examples simulated with another feature's "
        "explanation."
    )
    out.append(
        "- Headline: the lift columns. Failed or undefined scores are never averaged in (counted "
        "in undef / failed)."
    )
    out += [f"- **{k}**: {v}" for k, v in LEGEND.items()]
    return "\n".join(out) + "\n"


def render_csv(board: Leaderboard) -> str:
    """All groups' rows (every column, protocol_id included) as CSV."""
    df = board.all_rows()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(df.columns)
    for row in df.iter_rows():
        w.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def _clean_json(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, dict):
        return {k: _clean_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean_json(x) for x in v]
    return v


def board_to_dict(board: Leaderboard) -> dict[str, Any]:
    return _clean_json(
        {
            "reference": board.reference,
            "ci": {
                "method": board.ci_method,
                "n_boot": board.n_boot,
                "seed": board.seed,
                "level": board.level,
            },
            "groups": {
                pid: {
                    "protocol": board.protocols.get(pid, {}),
                    "runs": board.runs_by_group[pid],
                    "rows": df.to_dicts(),
                    "density_bins": board.density[pid].to_dicts(),
                }
                for pid, df in board.groups.items()
            },
            "set_apart": [s.to_dict() for s in board.set_apart],
            "notes": board.notes,
            "legend": LEGEND,
        }
    )


def render_json(board: Leaderboard) -> str:
    return json.dumps(board_to_dict(board), indent=2, default=str) + "\n"


def render_html(board: Leaderboard, runs: list[Run], **kw: Any) -> str:
    """Self-contained HTML page (see ``autointerp.report_html.render_html``)."""
    from autointerp.report_html import render_html as _render

    return _render(board, runs, **kw)


def write_run_leaderboard(run_dir: str | Path, *, html: bool = True) -> list[Path]:
    """Write ``leaderboard.md`` (and ``leaderboard.html``) inside a run directory."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    board = leaderboard_table([run])
    written = [run_dir / "leaderboard.md"]
    atomic_write_text(written[0], render_markdown(board))
    if html:
        written.append(run_dir / "leaderboard.html")
        atomic_write_text(written[1], render_html(board, [run]))
    return written


# ---------------------------------------------------------------------------------------------
# CLI

FORMATS = ("md", "html", "csv", "json")


def build(
    paths: list[str | Path],
    fmt: str = "md",
    *,
    sort_by: str | None = None,
    descending: bool = True,
    n_boot: int | None = None,
    seed: int = 0,
) -> str:
    """Find runs under ``paths`` and render their leaderboard in ``fmt``."""
    if fmt not in FORMATS:
        raise AutointerpError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    runs = [load_run(p) for p in find_runs(list(paths))]
    board = leaderboard_table(
        runs, sort_by=sort_by, descending=descending, n_boot=n_boot, seed=seed
    )
    if fmt == "md":
        return render_markdown(board)
    if fmt == "csv":
        return render_csv(board)
    if fmt == "json":
        return render_json(board)
    return render_html(board, runs)


def _cmd(args: argparse.Namespace) -> int:
    text = build(
        args.results_dirs,
        args.format,
        sort_by=args.sort,
        descending=not args.asc,
        n_boot=args.n_boot,
        seed=args.seed,
    )
    if args.out:
        atomic_write_text(args.out, text)
        log.info("wrote %s", args.out)
    else:
        sys.stdout.write(text)
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "leaderboard",
        help="tables of many runs (md, html, csv, json)",
        description="Leaderboard of run directories; only runs with equal protocol id are put "
        "side by side, the others are set apart with the reason.",
    )
    p.add_argument(
        "results_dirs",
        nargs="+",
        metavar="RESULTS_DIR",
        help="a run directory or a folder searched recursively for runs (manifest.json)",
    )
    p.add_argument("--format", choices=FORMATS, default="md")
    p.add_argument("--sort", metavar="COLUMN", default=None, help="column to sort by")
    p.add_argument("--asc", action="store_true", help="sort ascending (default descending)")
    p.add_argument("--out", metavar="FILE", default=None, help="write here instead of stdout")
    p.add_argument("--n-boot", type=int, default=None, help="bootstrap resamples for CIs")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.set_defaults(func=_cmd)

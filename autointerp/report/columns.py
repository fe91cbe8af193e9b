"""The leaderboard's columns: table schema, the columns markdown / HTML show, the legend, and
how a cell is formatted."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import polars as pl

SIM_VARIANT = "top_and_random"
FLAG_TEXT = "judge cannot separate explanations from nulls"

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
    *"n_const_pred distinct_features mode_share dead_frac_corpus".split(),
    *OTHER_METRICS,
}
_STR, _F, _I = pl.Utf8, pl.Float64, pl.Int64


def _cols(names: str, dtype: Any) -> dict[str, Any]:
    return dict.fromkeys(names.split(), dtype)


#: every table's columns, in order (extra metric and scorer columns of a run are appended as
#: Float64)
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
    **_cols("undefined_by_variant lift_vs_random_dirs_strata recon_na", _STR),
    **_cols("dead_frac_corpus", _F),
    **_cols("detection_bal_acc fuzzing_bal_acc intruder_acc detection_auroc fuzzing_auroc", _F),
    **dict.fromkeys(HEAD_METRICS + OTHER_METRICS, _F),
    **_cols("llm_calls prompt_tokens completion_tokens work_tokens", _I),
    **_cols("cost_usd wall_time_s", _F),
    **_cols("suite run protocol_id", _STR),
}
#: (scorer, variant) -> column holding its mean over features (real scores, status ok). Any
#: other (scorer, variant) but simulation's gets the column ``scorer_column(scorer, variant)``.
SCORER_COLUMNS = {
    ("detection", "balanced_accuracy"): "detection_bal_acc",
    ("fuzzing", "balanced_accuracy"): "fuzzing_bal_acc",
    ("intruder", "accuracy"): "intruder_acc",
    ("detection", "auroc"): "detection_auroc",
    ("fuzzing", "auroc"): "fuzzing_auroc",
}


def scorer_column(scorer: str, variant: str) -> str:
    """Column of a (scorer, variant) pair: a known one's (``SCORER_COLUMNS``), else
    ``<scorer>_<variant>``."""
    return SCORER_COLUMNS.get((scorer, variant), f"{scorer}_{variant}")


LEGEND: dict[str, str] = {
    "basis / kind": "the feature basis and its kind (sae, pca, ica, neurons, random, ...)",
    "method": "how simulation scores were obtained: pmi (explanation-PMI), all_at_once (digit "
    "slots), token_match (the no-LLM floor: top_tokens explanations), top_logprobs, json; rows "
    "never mix methods",
    "lift vs random dirs (density-matched)": "sim score minus the mean sim score of the "
    "kind=random basis (random directions) re-weighted to this basis's firing densities: per "
    "density decade, the null's mean weighted by this basis's share of features there. A decade "
    "holding fewer than 5 null features is merged with its neighbours (lowest density first; a "
    "short last one joins the one below) so that every stratum's null mean has a spread; the "
    "strata used when any were merged are in lift_vs_random_dirs_strata (csv/json); with fewer "
    "than 5 null features in all the lift is undefined. Stratified bootstrap CI; p: stratified "
    "permutation test (exact when there are at most 20,000 relabellings); n = this basis's "
    "features vs the null features in the strata this basis uses. The plain difference of means "
    "is lift_vs_random_dirs_unmatched (csv/json/html)",
    "lift vs shuffled": "mean over features of (real - shuffled-explanation) sim score on the "
    "same features, paired bootstrap CI; p (after the CI): Wilcoxon signed-rank; n = complete "
    "pairs (a "
    "feature whose own or shuffled score is undefined or failed is not a pair)",
    "sim score": "mean simulation correlation (top_and_random test set) over features whose "
    "score is ok, with its CI",
    "scored / features": "features with an ok sim score / features in the basis",
    "undef / failed": "scores (all scorers, real and null) whose status is undefined (the true "
    "activations are constant: nothing to predict; or no valid shuffled null) / failed "
    "(explanation or LLM answer unusable); both are left out of every mean",
    "const pred (0)": "real top_and_random scores whose prediction was constant against "
    "varying truth: the explanation predicted nothing, scored r = 0 and kept in every mean",
    "distinct": "groups of near-duplicate features among the scored ones (those with an ok sim "
    "score; activations correlated at r >= 0.5 on 512 rows spread over the corpus, chained "
    "through scored features only), 'of' the number scored",
    "top-token mode share": "share of scored features whose most common max-activating token "
    "(over their top windows) is the basis's most common one; flagged at >= 25%",
    "l0 corpus": "L0 over the whole corpus (from firing densities), next to l0 on the held-out "
    "metric tokens",
    "sim top / sim random": "the same mean on top-only / random-only test examples, n features",
    "detection / fuzzing / intruder": "mean balanced accuracy (detection, fuzzing) and "
    "accuracy (intruder) over features",
    "l0 ... dead_frac": "SAEBench reconstruction / sparsity / downstream metrics on the held-out "
    "metric tokens; the others (l1, mse, cossim, ...) are in the csv/json/html outputs. "
    "'dead held-out' (dead_frac) is the share of features that never fire on those few held-out "
    "tokens; 'dead corpus' (dead_frac_corpus) the share that never fire anywhere in the corpus "
    "(the firing densities). n/a in the random-directions row: its L0 is not the bases' "
    "(its densities are matched, not its L0), so its reconstruction and CE / KL columns are not "
    "an L0-matched null (recon_na in csv/json says why; metrics.parquet keeps the values)",
    "llm calls / tokens / cost": "LLM usage of this basis (manifest llm_usage.by_basis)",
    "wall s": "wall time of the whole run, summed over the invocations that computed something",
    "flag": f"'{FLAG_TEXT}' when lift vs shuffled is <= 0 or its CI includes 0 (the scores "
    "then say nothing about the explanations)",
}


def scorer_legend(scorer_columns: Mapping[str, tuple[str, str]]) -> dict[str, str]:
    """Legend entries of the plug-in scorer columns (``Leaderboard.scorer_columns``)."""
    return {
        f"{s} {v}": f"mean of scorer {s}, variant {v} over features (real scores, status ok); "
        f"column {col} in csv/json"
        for col, (s, v) in scorer_columns.items()
    }


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
    *[(m, m, None, None) for m in HEAD_METRICS[1:-1]],
    ("dead held-out", "dead_frac", None, None),
    ("dead corpus", "dead_frac_corpus", None, None),
    ("llm calls", "llm_calls", None, None),
    ("prompt tok", "prompt_tokens", None, None),
    ("compl tok", "completion_tokens", None, None),
    ("cost $", "cost_usd", None, None),
    ("wall s", "wall_time_s", None, None),
]
#: plug-in scorer columns are shown right after this one
_LAST_SCORER_COLUMN = "fuzzing_auroc"


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


#: columns shown with their p-value after the CI (``p=...``)
P_COLUMNS = ("lift_vs_random_dirs", "lift_vs_shuffled")
#: shown "n/a" when the row's ``recon_na`` holds a reason (the random null at another L0)
NA_COLUMNS = frozenset("fvu explained_variance ce_loss_score kl_div_score".split())


def fmt_ci(row: dict[str, Any], col: str, lo: str | None, hi: str | None) -> str:
    if col in NA_COLUMNS and row.get("recon_na") and row.get(col) is None:
        return "n/a"
    s = fmt_value(row.get(col), col)
    if s and lo and hi and row.get(lo) is not None and row.get(hi) is not None:
        s += f" [{fmt_value(row[lo], lo)}, {fmt_value(row[hi], hi)}]"
    if s and col in P_COLUMNS and row.get(f"{col}_p") is not None:
        s += f" p={fmt_value(row[f'{col}_p'], f'{col}_p')}"
    n_col, null_col = N_COLUMNS.get(col, (None, None))
    if s and n_col and row.get(n_col) is not None:
        if col == "distinct_features":
            return f"{s} of {row[n_col]}"
        s += f" n={row[n_col]}"
        if null_col and row.get(null_col) is not None:
            s += f" vs {row[null_col]}"
    return s


def display_columns(
    df: pl.DataFrame, scorer_columns: Mapping[str, tuple[str, str]] | None = None
) -> list[tuple[str, str, str | None, str | None]]:
    """DISPLAY minus optional columns empty in every row, and ``run`` when only one run.

    ``scorer_columns`` (column -> (scorer, variant), see ``Leaderboard.scorer_columns``): the
    plug-in scorer columns, shown after the known scorer columns when not empty."""
    plugins = [(f"{s} {v}", c, None, None) for c, (s, v) in (scorer_columns or {}).items()]
    specs: list[tuple[str, str, str | None, str | None]] = []
    for spec in DISPLAY:
        specs.append(spec)
        if spec[1] == _LAST_SCORER_COLUMN:
            specs += plugins
    cols = []
    for spec in specs:
        c = spec[1]
        if c not in df.columns:
            continue
        optional = c in OPTIONAL_COLUMNS or c in (scorer_columns or {})
        if optional and df[c].null_count() == len(df):
            continue
        if c == "run" and df["run"].n_unique() <= 1 and df["suite"].n_unique() <= 1:
            continue
        cols.append(spec)
    return cols

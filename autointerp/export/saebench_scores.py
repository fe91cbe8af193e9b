"""SAEBench's ``autointerp`` and ``absorption_first_letter`` results from this harness's
scores and absorption stage (docs/publishing.md)."""

from __future__ import annotations

import math
import statistics
from typing import Any

import polars as pl

from autointerp.export.common import METHODS, number
from autointerp.export.saebench_envelope import envelope, finish, run_config
from autointerp.report.runs import Run

ABSORPTION_MEAN = (
    "mean_absorption_fraction_score",
    "mean_full_absorption_score",
    "mean_num_split_features",
    "std_dev_absorption_fraction_score",
    "std_dev_full_absorption_score",
    "std_dev_num_split_features",
)


# --------------------------------------------------------------------------- autointerp


def score_choice(run: Run, basis: str) -> tuple[str, str, str] | None:
    """(scorer, variant, method) whose per-feature scores stand in for SAEBench's autointerp
    score: detection (what SAEBench scores) when the run has it, else simulation on top and
    random windows, by the method order of :data:`METHODS`."""
    s = run.scores.filter(
        (pl.col("basis") == basis) & (pl.col("null") == "") & (pl.col("status") == "ok")
    )
    for scorer, variant in (("detection", None), ("simulation", "top_and_random")):
        t = s.filter(pl.col("scorer") == scorer)
        if variant:
            t = t.filter(pl.col("variant") == variant)
        if len(t):
            methods = sorted(
                set(t["method"].to_list()),
                key=lambda m: (METHODS.index(m) if m in METHODS else len(METHODS), m),
            )
            first = t.filter(pl.col("method") == methods[0]).row(0, named=True)
            return scorer, str(first["variant"]), str(first["method"])
    return None


def autointerp_dict(run: Run, basis: str) -> dict[str, Any] | None:
    """The SAEBench ``autointerp`` result of ``basis``, or None when it has no scores."""
    choice = score_choice(run, basis)
    if choice is None:
        return None
    scorer, variant, method = choice
    sel = run.scores.filter(
        (pl.col("basis") == basis)
        & (pl.col("scorer") == scorer)
        & (pl.col("variant") == variant)
        & (pl.col("method") == method)
    )
    real = sel.filter(pl.col("null") == "")
    ok = real.filter(pl.col("status") == "ok")
    vals = [float(v) for v in ok["value"].to_list()]
    shuffled = sel.filter((pl.col("null") == "shuffled") & (pl.col("status") == "ok"))
    proto = run.protocol
    rec, expl = proto.get("records") or {}, proto.get("explain") or {}
    corpus = run_config(run).get("corpus") or {}
    feats = sorted(int(f) for f in real["feature"].unique().to_list())
    eval_config = {
        "model_name": run.model,
        "n_latents": None,
        "override_latents": feats,
        "dead_latent_threshold": 0,
        "random_seed": int(run.manifest.get("seed") or 0),
        "dataset_name": str(corpus.get("source") or ""),
        "llm_context_size": int(corpus.get("context") or 128),
        "llm_batch_size": int((run_config(run).get("model") or {}).get("batch_size") or 1),
        "llm_dtype": str((run_config(run).get("model") or {}).get("dtype") or ""),
        "buffer": int(rec.get("window") or 0) // 2,
        "no_overlap": True,
        "act_threshold_frac": 0.0,
        "total_tokens": int(corpus.get("n_tokens") or 0),
        "scoring": True,
        "max_tokens_in_explanation": int(expl.get("max_tokens") or 0),
        "use_demos_in_explanation": False,
        "n_top_ex_for_generation": int(rec.get("n_explain_top") or 0),
        "n_iw_sampled_ex_for_generation": int(rec.get("n_explain_quantile") or 0),
        "n_top_ex_for_scoring": int(rec.get("n_test_top") or 0),
        "n_random_ex_for_scoring": int(rec.get("n_test_random") or 0),
        "n_iw_sampled_ex_for_scoring": int(rec.get("n_test_quantile") or 0),
    }
    out = envelope(run, basis, "autointerp", eval_config)
    out["eval_result_metrics"] = {
        "autointerp": {
            "autointerp_score": statistics.fmean(vals) if vals else math.nan,
            "autointerp_std_dev": statistics.stdev(vals) if len(vals) > 1 else math.nan,
        }
    }
    out["eval_result_details"] = []
    llm = run.manifest.get("llm") or {}
    return finish(
        out,
        {
            "basis": basis,
            "run": run.label,
            "protocol_id": run.protocol_id,
            "score": {"scorer": scorer, "variant": variant, "method": method},
            "protocol_difference": (
                "SAEBench's autointerp score is detection accuracy: a judge LLM sees 2 top, "
                "10 random and 2 importance-sampled sequences and picks the ones the feature "
                "fires on. This file's score is this harness's "
                + (
                    "detection balanced accuracy"
                    if scorer == "detection"
                    else "simulation score (correlation between the feature's activations and "
                    "those an LLM simulates from the explanation)"
                )
                + f" ({variant}, method {method}), mean over the ok features; the explainer "
                "and judge are named under 'llm'. Its iw_sampled counts are this harness's "
                "activation-quantile windows. Compare it with SAEBench's numbers only as a "
                "ranking of bases, not as the same quantity."
            ),
            "llm": llm,
            "n_features": len(feats),
            "n_ok": len(vals),
            "n_undefined": int((real["status"] == "undefined").sum()),
            "n_failed": int((real["status"] == "failed").sum()),
            "shuffled_null_mean": statistics.fmean(shuffled["value"].to_list())
            if len(shuffled)
            else math.nan,
            "per_feature": {str(int(f)): float(v) for f, v in zip(ok["feature"], ok["value"])},
        },
    )


# --------------------------------------------------------------------------- absorption


def absorption_dict(run: Run, basis: str) -> dict[str, Any] | None:
    """The SAEBench ``absorption_first_letter`` result of ``basis`` from the run's absorption
    stage columns (any stage whose columns include ``mean_absorption_fraction_score``), or
    None when the run has no such stage."""
    from autointerp.export.harness_evals import find_absorption

    cols = find_absorption(run)
    if cols is None:
        return None
    cells = cols.rows.get(basis)
    if not cells:
        return None
    mean = {k: number(cells[k].value) if k in cells else math.nan for k in ABSORPTION_MEAN}
    letters = [
        d
        for d in (cols.extra.get("letters") or {}).get(basis, [])
        if isinstance(d, dict) and len(str(d.get("first_letter", ""))) == 1
    ]
    out = envelope(run, basis, "absorption_first_letter", {"model_name": run.model})
    out["eval_result_metrics"] = {"mean": mean}
    out["eval_result_details"] = [
        {
            "first_letter": str(d["first_letter"]),
            "mean_absorption_fraction": number(d.get("mean_absorption_fraction")),
            "full_absorption_rate": number(d.get("full_absorption_rate")),
            "num_full_absorption": int(d.get("num_full_absorption") or 0),
            "num_probe_true_positives": int(d.get("num_probe_true_positives") or 0),
            "num_split_features": int(d.get("num_split_features") or 0),
        }
        for d in letters
    ]
    return finish(
        out,
        {
            "basis": basis,
            "run": run.label,
            "stage": cols.stage,
            "reasons": {k: c.reason for k, c in cells.items() if c.reason},
            "ci": {k: [c.ci_low, c.ci_high] for k, c in cells.items() if c.ci_low is not None},
        },
    )

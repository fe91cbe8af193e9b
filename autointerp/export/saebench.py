"""A run as SAEBench 0.6.0 eval results: one JSON per basis and eval type, named
``<eval_type_id>/<release>_<sae_id>_eval_results.json`` as SAEBench's
``get_results_filepath`` names them ("/" -> "_"), in the schema of its
``eval_output_schema_<type>.json`` (copies in ``autointerp/export/schemas/``).

* ``core``: ``metrics.parquet`` + ``density.parquet`` + ``weights/<basis>.parquet``;
* ``autointerp``: this harness's per-feature scores (``scores.parquet``), the protocol
  difference in ``eval_result_unstructured``;
* ``absorption_first_letter``: when the run has a stage whose columns include
  ``mean_absorption_fraction_score``;
* this harness's own stages (IOI patching, output side, ablation, attribution, ...):
  :mod:`autointerp.export.harness_evals`.

Release id ``autointerp-<suite>-<run>``; SAE id the basis name. NaN is written as -1, as
SAEBench does, and every such field is listed in ``eval_result_unstructured.nan_fields``.
Formulas and differences: docs/publishing.md.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import polars as pl

from autointerp.export.common import basis_info, basis_names, density, number, weights, write_json
from autointerp.export.saebench_envelope import (
    envelope,
    finish,
    release_id,
    results_path,
    run_config,
)
from autointerp.report.runs import Run

# metrics.parquet column -> (SAEBench category, SAEBench field)
CORE_FIELDS: dict[str, tuple[str, str]] = {
    "kl_div_score": ("model_behavior_preservation", "kl_div_score"),
    "kl_zero_abl": ("model_behavior_preservation", "kl_div_with_ablation"),
    "kl_recon": ("model_behavior_preservation", "kl_div_with_sae"),
    "ce_loss_score": ("model_performance_preservation", "ce_loss_score"),
    "ce_zero_abl": ("model_performance_preservation", "ce_loss_with_ablation"),
    "ce_recon": ("model_performance_preservation", "ce_loss_with_sae"),
    "ce_clean": ("model_performance_preservation", "ce_loss_without_sae"),
    "explained_variance": ("reconstruction_quality", "explained_variance"),
    "explained_variance_legacy": ("reconstruction_quality", "explained_variance_legacy"),
    "mse": ("reconstruction_quality", "mse"),
    "cossim": ("reconstruction_quality", "cossim"),
    "l2_norm_in": ("shrinkage", "l2_norm_in"),
    "l2_norm_out": ("shrinkage", "l2_norm_out"),
    "l2_ratio": ("shrinkage", "l2_ratio"),
    "relative_reconstruction_bias": ("shrinkage", "relative_reconstruction_bias"),
    "l0": ("sparsity", "l0"),
    "l1": ("sparsity", "l1"),
    "n_tokens_metrics": ("token_stats", "total_tokens_eval_reconstruction"),
    "n_tokens": ("token_stats", "total_tokens_eval_sparsity_variance"),
}
WEIGHT_FIELDS = (
    "encoder_bias",
    "encoder_norm",
    "encoder_decoder_cosine_sim",
    "max_decoder_cosine_sim",
    "max_encoder_cosine_sim",
)
#: core files with more features than this are written without indentation
COMPACT_OVER = 1000
EXTRA_METRICS = ("fvu", "dead_frac", "ce_mean_abl", "kl_mean_abl", "l0_corpus")

# --------------------------------------------------------------------------- core


def density_metrics(dens: list[float]) -> dict[str, float]:
    """SAEBench's density-based misc metrics (``calculate_misc_metrics``)."""
    n, total = len(dens), sum(dens)
    if not n:
        return {
            k: math.nan
            for k in (
                "frac_alive",
                "freq_over_1_percent",
                "freq_over_10_percent",
                "normalized_freq_over_1_percent",
                "normalized_freq_over_10_percent",
            )
        }
    out = {"frac_alive": sum(d > 0 for d in dens) / n}
    for thr, tag in ((0.01, "1"), (0.1, "10")):
        out[f"freq_over_{tag}_percent"] = sum(d > thr for d in dens) / n
        above = sum(d for d in dens if d > thr)
        out[f"normalized_freq_over_{tag}_percent"] = above / total if total > 0 else 0.0
    return out


def core_dict(run: Run, basis: str) -> dict[str, Any]:
    """The SAEBench ``core`` result of ``basis`` (module docstring; docs/publishing.md)."""
    rows = run.metrics.filter(pl.col("basis") == basis).to_dicts() if len(run.metrics) else []
    row = rows[0] if rows else {}
    cats = {
        c: {}
        for c in (
            "model_behavior_preservation",
            "model_performance_preservation",
            "reconstruction_quality",
            "shrinkage",
            "sparsity",
            "token_stats",
            "misc_metrics",
        )
    }
    missing = []
    for col, (cat, field) in CORE_FIELDS.items():
        v = number(row.get(col))
        if cat == "token_stats" and math.isfinite(v):
            v = int(v)
        cats[cat][field] = v
        if not math.isfinite(v):
            missing.append(f"{cat}.{field} (metrics.parquet column {col!r})")
    dens = density(run, basis)
    cats["misc_metrics"].update(density_metrics(dens))
    w = weights(run, basis)
    n = len(dens)
    if w is not None and len(w) == n:
        w = w.sort("index")
        per = {f: [number(x) for x in w[f].to_list()] for f in WEIGHT_FIELDS}
        d_in = next((len(v) for v in w["decoder"].to_list() if v is not None), None)
        not_computed = [
            "consistent_activation_heuristic: needs each feature's count of "
            "prompts with a firing, which the density stage does not keep"
        ]
        if not any(math.isfinite(v) for v in per["encoder_norm"]):
            not_computed.append(
                "encoder_bias / encoder_norm / encoder_decoder_cosine_sim / "
                "max_encoder_cosine_sim: this basis kind exposes no encoder matrix"
            )
    else:
        per = {f: [math.nan] * n for f in WEIGHT_FIELDS}
        d_in = None
        not_computed = [
            "consistent_activation_heuristic: needs each feature's count of prompts with a "
            "firing, which the density stage does not keep",
            "encoder_* / *_cosine_sim fields and average_max_*_cosine_sim: this run has no "
            f"weights/{basis}.parquet (written by the weights stage, added after it ran); "
            "re-run the suite to add it",
        ]
    for kind in ("encoder", "decoder"):
        vals = [v for v in per[f"max_{kind}_cosine_sim"] if math.isfinite(v)]
        cats["misc_metrics"][f"average_max_{kind}_cosine_sim"] = (
            statistics.fmean(vals) if vals else math.nan
        )
    details = [
        {
            "index": i,
            "feature_density": dens[i],
            "consistent_activation_heuristic": math.nan,
            **{f: per[f][i] for f in WEIGHT_FIELDS},
        }
        for i in range(n)
    ]
    cfg = run_config(run)
    corpus, mcfg = cfg.get("corpus") or {}, cfg.get("metrics") or {}
    model_cfg = cfg.get("model") or {}
    batch = int(mcfg.get("batch_size") or 8)
    ctx_len = int(corpus.get("context") or 128)
    eval_config = {
        "model_name": run.model,
        "llm_dtype": str(model_cfg.get("dtype") or "float32"),
        "batch_size_prompts": batch,
        "n_eval_reconstruction_batches": max(
            1, -(-int(mcfg.get("n_tokens") or 0) // (batch * ctx_len))
        ),
        "n_eval_sparsity_variance_batches": max(
            1, -(-int(mcfg.get("n_tokens") or 0) // (batch * ctx_len))
        ),
        "dataset": str(corpus.get("source") or ""),
        "context_size": ctx_len,
        "compute_kl": "kl_recon" in row,
        "compute_ce_loss": "ce_recon" in row,
        "compute_l2_norms": "l2_ratio" in row,
        "compute_sparsity_metrics": "l0" in row,
        "compute_variance_metrics": "explained_variance" in row,
        "compute_featurewise_density_statistics": True,
        "compute_featurewise_weight_based_metrics": w is not None,
        "exclude_special_tokens_from_reconstruction": True,
        "verbose": False,
    }
    out = envelope(run, basis, "core", eval_config, d_in)
    out["eval_result_metrics"] = cats
    out["eval_result_details"] = details
    return finish(
        out,
        {
            "basis": basis,
            "basis_kind": basis_info(run, basis).get("kind"),
            "run": run.label,
            "protocol_id": run.protocol_id,
            "ablation": "zero ablation at non-excluded positions; BOS/special tokens keep "
            "their activation",
            "mse": "mean over tokens of ||x - x_hat||^2 / d",
            "feature_density": "firing fraction over every non-special token of the corpus "
            "(density.parquet); misc_metrics' density fields are computed from it",
            "not_computed": not_computed,
            "missing_metrics": missing,
            "extra_metrics": {k: number(row[k]) for k in EXTRA_METRICS if k in row},
        },
    )


# --------------------------------------------------------------------------- export


def export_saebench(run: Run, out: str | Path) -> tuple[list[Path], list[str]]:
    """Write every basis's SAEBench files under ``out``; returns (paths, notes on what was
    skipped and why)."""
    from autointerp.export.harness_evals import (
        find_absorption,
        harness_dicts,
        write_harness_schemas,
    )
    from autointerp.export.saebench_scores import absorption_dict, autointerp_dict

    out = Path(out)
    rel = release_id(run)
    paths: list[Path] = []
    notes: list[str] = []
    for basis in basis_names(run):
        sid = str(dict(basis_info(run, basis).get("info") or {}).get("sae_lens_id") or basis)
        core = core_dict(run, basis)
        big = len(core["eval_result_details"]) > COMPACT_OVER  # one line: a third smaller
        paths.append(write_json(results_path(out, "core", rel, sid), core, compact=big))
        a = autointerp_dict(run, basis)
        if a is None:
            notes.append(f"autointerp: {basis} has no ok detection or simulation score; skipped")
        else:
            paths.append(write_json(results_path(out, "autointerp", rel, sid), a))
        ab = absorption_dict(run, basis)
        if ab is not None:
            paths.append(write_json(results_path(out, "absorption_first_letter", rel, sid), ab))
        for eval_type, d in harness_dicts(run, basis).items():
            paths.append(write_json(results_path(out, eval_type, rel, sid), finish(*d)))
    if find_absorption(run) is None:
        notes.append(
            "absorption_first_letter: the run has no absorption stage (no column "
            "mean_absorption_fraction_score); skipped"
        )
    paths += write_harness_schemas(run, out)
    return paths, notes

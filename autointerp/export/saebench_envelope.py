"""The envelope every SAEBench eval result shares (``base_eval_output.py`` in SAEBench
0.6.0): ids, config of the SAE, NaN written as -1 with the paths listed."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

from autointerp import __version__
from autointerp.export.common import basis_info, layer_of, nan_to_neg_one, slug
from autointerp.report.runs import Run

PRODUCER = f"autointerp {__version__}"


def release_id(run: Run) -> str:
    return f"autointerp-{slug(run.suite)}-{slug(run.name)}"


def results_path(out: Path, eval_type: str, release: str, sae_id: str) -> Path:
    """SAEBench's file name: ``<out>/<type>/<release>_<sae_id>_eval_results.json``."""
    return Path(out) / eval_type / f"{release}_{sae_id}_eval_results.json".replace("/", "_")


def run_config(run: Run) -> dict[str, Any]:
    return dict(run.manifest.get("config") or {})


def sae_cfg(run: Run, basis: str, d_in: int | None) -> dict[str, Any]:
    """A SAELens-style config of ``basis`` (the keys SAELens's ``SAEConfig`` uses)."""
    b = basis_info(run, basis)
    info = dict(b.get("info") or {})
    corpus = run_config(run).get("corpus") or {}
    return {
        "architecture": info.get("architecture", b.get("kind")),
        "d_in": d_in if d_in is not None else info.get("d_in"),
        "d_sae": b.get("n_features"),
        "model_name": run.model,
        "hook_name": run.hookpoint,
        "hook_layer": layer_of(run.hookpoint),
        "context_size": corpus.get("context"),
        "dataset_path": corpus.get("source"),
        "prepend_bos": corpus.get("prepend_bos"),
        "k": info.get("k"),
        "autointerp_kind": b.get("kind"),
        "autointerp_format": info.get("format"),
    }


def envelope(
    run: Run, basis: str, eval_type: str, config: dict[str, Any], d_in: int | None = None
) -> dict[str, Any]:
    info = dict(basis_info(run, basis).get("info") or {})
    return {
        "eval_type_id": eval_type,
        "eval_config": config,
        "eval_id": str(uuid.uuid4()),
        "datetime_epoch_millis": int(time.time() * 1000),
        "sae_bench_commit_hash": f"autointerp-{__version__}",
        "sae_lens_id": str(info.get("sae_lens_id") or basis),
        "sae_lens_release_id": str(info.get("sae_lens_release_id") or release_id(run)),
        "sae_lens_version": None,
        "sae_cfg_dict": sae_cfg(run, basis, d_in),
    }


def finish(out: dict[str, Any], unstructured: dict[str, Any]) -> dict[str, Any]:
    """NaN -> -1 everywhere, the replaced paths listed in ``eval_result_unstructured``
    (``nan_fields``; per-feature fields once, with how many features: ``eval_result_details[]
    .encoder_norm (4608 of 4608)``)."""
    nan_paths: list[str] = []
    for k in ("eval_result_metrics", "eval_result_details"):
        out[k] = nan_to_neg_one(out[k], k, nan_paths)
    unstructured = nan_to_neg_one(unstructured, "eval_result_unstructured", nan_paths)
    counts: dict[str, int] = {}
    for p in nan_paths:
        key = re.sub(r"\[\d+\]", "[]", p)
        counts[key] = counts.get(key, 0) + 1
    n = len(out.get("eval_result_details") or [])
    fields = [k if "[]" not in k else f"{k} ({c} of {n})" for k, c in counts.items()]
    out["eval_result_unstructured"] = {"producer": PRODUCER, **unstructured, "nan_fields": fields}
    return out

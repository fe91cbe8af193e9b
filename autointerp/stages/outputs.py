"""Stage ``report``: the run's published tables (``metrics.parquet``, ``density.parquet``,
``features.parquet``, ``scores.parquet``, ``simulations.parquet``, ``diagnostics.json``,
``weights/<basis>.parquet``), and the manifest + leaderboard written after every stage. The
SAEBench and Neuronpedia files are written from these by ``autointerp export``
(:mod:`autointerp.export`)."""

from __future__ import annotations

import platform
from typing import Any

import numpy as np
import polars as pl

from autointerp.results import score_schema
from autointerp.run.placement import weights_of
from autointerp.run.stage import Stage, StageContext

SIM_SCHEMA = {
    "basis": pl.Utf8,
    "feature": pl.Int64,
    "example": pl.Int64,
    "kind": pl.Utf8,
    "tokens": pl.List(pl.Utf8),
    "true": pl.List(pl.Float64),
    "pred": pl.List(pl.Float64),
}


def write_outputs(ctx: StageContext, inputs: dict[str, Any]) -> None:
    env = ctx.env
    store = env.store
    suite = env.suite
    metrics, densities = inputs["metrics"], inputs["density"]
    store.write_json(store.out("diagnostics.json"), inputs["diagnostics"])
    for row in metrics:  # L0 over the whole corpus, next to the held-out tokens' L0
        row["l0_corpus"] = float(densities[row["basis"]].sum())
    store.write_parquet(pl.DataFrame(metrics), store.out("metrics.parquet"))
    for name, df in (inputs.get("weights") or {}).items():
        store.write_parquet(df, store.out("weights", f"{name}.parquet"))
    store.write_parquet(
        pl.DataFrame(
            {
                "basis": [b for b, d in densities.items() for _ in range(len(d))],
                "feature": [i for d in densities.values() for i in range(len(d))],
                "density": np.concatenate(list(densities.values())).astype(np.float64),
            }
        ),
        store.out("density.parquet"),
    )
    style = suite.explain.style
    exps = {k[:2]: v["exp"] for k, v in inputs["explain"].items() if k[2] == style}
    feats = []
    for rs in inputs["records"].records.values():
        for r in rs:
            e = exps.get((r.basis, r.feature), {})
            feats.append(
                {
                    "basis": r.basis,
                    "feature": r.feature,
                    "density": r.density,
                    "max_act": r.max_act,
                    "explanation": e.get("text", ""),
                    "explanation_status": e.get("status", "missing"),
                    "explanation_error": e.get("error", ""),
                }
            )
    store.write_parquet(pl.DataFrame(feats), store.out("features.parquet"))
    items = inputs["score"]
    scores = [r for it in items for r in it["rows"]]
    store.write_parquet(pl.DataFrame(scores, schema=score_schema()), store.out("scores.parquet"))
    sims = [s for it in items for s in it["sims"]]
    store.write_parquet(pl.DataFrame(sims, schema=SIM_SCHEMA), store.out("simulations.parquet"))
    write_stage_columns(store.run_dir, inputs)


def write_stage_columns(run_dir: Any, inputs: dict[str, Any]) -> None:
    """``columns/<stage>.json`` for every input that is a :class:`StageColumns` (the causal
    and output-side stages; a plug-in stage's value may also be its ``to_dict()``)."""
    from autointerp.columns import StageColumns, columns_path, save_columns

    for name, v in inputs.items():
        if isinstance(v, StageColumns):
            save_columns(run_dir, v)
        elif isinstance(v, dict) and {"stage", "columns", "rows"} <= v.keys():
            save_columns(run_dir, StageColumns.from_dict(v))
        elif v is None:  # a disabled stage: no columns (drop those of an earlier invocation)
            columns_path(run_dir, name).unlink(missing_ok=True)


REPORT = Stage(
    "report",
    write_outputs,
    deps=(
        *("gate", "bases", "metrics", "density", "records", "diagnostics", "explain", "score"),
        *("ioi", "attribution", "ablation", "output", "weights", "absorption", "steering"),
    ),
    doc="every stage's values -> the run's parquet tables",
)


# --------------------------------------------------------------------------- manifest


def llm_identity(suite) -> dict[str, dict[str, Any]]:
    """Per role: backend, model and, for in-process torch, the dtype ``auto`` resolves to
    here (without loading any model)."""
    out = {}
    for role in ("explainer", "simulator", "scorer"):
        c = getattr(suite.llm, role)
        out[role] = {"backend": c.backend, "model": c.model}
        if c.backend == "transformers":
            from autointerp.llm.transformers_backend import resolve_dtype
            from autointerp.model import resolve_device

            dev = resolve_device(c.device)
            out[role].update(device=str(dev), dtype=resolve_dtype(c.dtype, dev))
    return out


def write_manifest(env: Any, runner: Any, bases: list, config_hash: str, wall: float) -> None:
    """``manifest.json`` (config, versions, protocol, timings, LLM usage, the stage summary),
    then the run's leaderboard."""
    import torch
    import transformers

    from autointerp import __version__
    from autointerp.llm.accounting import CallRecord, Ledger
    from autointerp.run.memory import peak_rss_mib

    store = env.store
    suite = env.suite
    ledger = Ledger()
    ledger.records = [CallRecord(**r) for r in store.journal("llm_calls.jsonl").read()]
    prev = store.read_manifest()
    rows = runner.summary()
    timings = {r["stage"]: r["seconds"] for r in rows if r["computed"]}
    timings.update(env.timings)
    manifest = {
        "suite": suite.name,
        "run": store.run_dir.name,
        "model": env.sm_name,
        "hookpoint": suite.model.hookpoint,
        "protocol_id": env.protocol_id,
        "protocol": env.protocol,
        "config": suite.model_dump(),
        "config_hash": config_hash,
        "seed": suite.seed,
        "versions": {
            "autointerp": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "polars": pl.__version__,
            "numpy": np.__version__,
        },
        "device": str(env.device),
        "llm": llm_identity(suite),
        "timings": timings,
        "timings_first_run": dict(prev.get("timings_first_run", {})) or dict(timings),
        # summed over the invocations that computed something (a killed-and-resumed run
        # counts both parts; a pure rerun adds nothing)
        "wall_time_s": prev.get("wall_time_s", 0.0) + (wall if runner.computed_anything() else 0.0),
        "this_invocation_s": wall,
        # this invocation's high-water marks (MiB); a resumed run shows only its own part
        "peak_rss_mib": peak_rss_mib(),
        "stages": rows,
        "llm_usage": ledger.totals(),
        "bases": [
            {"name": b.name, "kind": b.kind, "n_features": b.n_features, "info": b.info}
            for b in bases
        ],
        "weights": weights_of(bases),
        "work_dir": str(store.work_dir),
        "gate": runner.values.get("gate") or {},
    }
    store.write_manifest(manifest)
    from autointerp.report import write_run_leaderboard

    write_run_leaderboard(store.run_dir)

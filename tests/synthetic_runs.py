"""Write run directories following the results layout (for report tests and the benchmark).

``write_run`` writes exactly the given rows; ``synth_run`` makes a realistic random run
(SAE/PCA/neurons/random bases, shuffled nulls, detection, failed/undefined scores, records,
simulations) from a seed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from autointerp.results import atomic_write_json, score_schema, write_parquet

TOKENS = 'The cat sat on the mat and 1 2 3 dogs ran <b>&amp; "quoted" fast .'.split()

PROTOCOL = {
    "records": {"window": 32, "n_explain_top": 10, "n_test_top": 5, "n_test_random": 5},
    "explain": {"style": "openai", "max_examples": 10},
    "scoring": {"scorers": ["simulation"], "variants": ["top_and_random"], "n_bootstrap": 200},
    "llm": {"simulator": "smollm2-gguf"},
}

SCORE_SCHEMA = score_schema()


def score(
    basis,
    feature,
    value,
    *,
    scorer="simulation",
    variant="top_and_random",
    null="",
    method="all_at_once_logprobs",
    status=None,
    protocol_id="p1",
) -> dict[str, Any]:
    """One scores.parquet row (status defaults to ok, or undefined when value is None)."""
    if status is None:
        status = "ok" if value is not None else "undefined"
    return {
        "basis": basis,
        "feature": feature,
        "scorer": scorer,
        "variant": variant,
        "value": value,
        "method": method,
        "protocol_id": protocol_id,
        "status": status,
        "error": "" if status == "ok" else f"{status} score",
        "null": null,
        "extra": "{}",
    }


def usage(calls=10, prompt=1000, completion=100, cost=0.001) -> dict[str, Any]:
    return {
        "calls": calls,
        "cache_hits": 0,
        "prompt_tokens": prompt,
        "cached_tokens": 0,
        "completion_tokens": completion,
        "cost_usd": cost,
        "latency_s": 1.0,
    }


def write_run(
    run_dir: str | Path,
    *,
    bases: list[tuple[str, str, int]],
    scores: list[dict[str, Any]],
    metrics: list[dict[str, Any]] | None = None,
    protocol_id: str = "p1",
    protocol: dict[str, Any] | None = None,
    model: str = "smollm2-gguf",
    hookpoint: str = "blocks.6.hook_resid_post",
    suite: str = "suite",
    run: str | None = None,
    by_basis_usage: dict[str, dict[str, Any]] | None = None,
    wall_time_s: float = 12.5,
    features: list[dict[str, Any]] | None = None,
    density: list[dict[str, Any]] | None = None,
    simulations: list[dict[str, Any]] | None = None,
    records: dict[str, list[dict[str, Any]]] | None = None,
    infos: dict[str, dict[str, Any]] | None = None,
    diagnostics: list[dict[str, Any]] | None = None,
) -> Path:
    """Write manifest.json, metrics/scores parquet and the optional files given."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    by_basis_usage = by_basis_usage or {b: usage() for b, _, _ in bases}
    manifest = {
        "suite": suite,
        "run": run or run_dir.name,
        "model": model,
        "hookpoint": hookpoint,
        "protocol_id": protocol_id,
        "protocol": protocol if protocol is not None else PROTOCOL,
        "config": {"name": suite, "seed": 0},
        "versions": {"autointerp": "0.1.0"},
        "seed": 0,
        "timings": {"records": 1.0, "explain": 5.0},
        "wall_time_s": wall_time_s,
        "llm_usage": {"total": usage(), "by_basis": by_basis_usage, "by_stage": {}},
        "bases": [
            {"name": b, "kind": k, "n_features": n, "info": (infos or {}).get(b, {})}
            for b, k, n in bases
        ],
    }
    atomic_write_json(run_dir / "manifest.json", manifest)
    if diagnostics is not None:
        atomic_write_json(run_dir / "diagnostics.json", diagnostics)
    if metrics is None:
        metrics = [
            {
                "basis": b,
                "kind": k,
                "n_features": n,
                "l0": 10.0,
                "fvu": 0.3,
                "explained_variance": 0.7,
                "ce_loss_score": 0.8,
                "kl_div_score": 0.75,
                "dead_frac": 0.1,
                "l1": 5.0,
                "cossim": 0.9,
            }
            for b, k, n in bases
        ]
    write_parquet(pl.from_dicts(metrics), run_dir / "metrics.parquet")
    write_parquet(pl.from_dicts(scores, schema=SCORE_SCHEMA), run_dir / "scores.parquet")
    if features is not None:
        write_parquet(pl.from_dicts(features), run_dir / "features.parquet")
    if density is not None:
        write_parquet(pl.from_dicts(density), run_dir / "density.parquet")
    if simulations is not None:
        write_parquet(pl.from_dicts(simulations), run_dir / "simulations.parquet")
    for basis, recs in (records or {}).items():
        p = run_dir / "records" / f"{basis}.jsonl"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return run_dir


def _example(rng: np.random.Generator, kind: str, peak: float, n: int = 12) -> dict[str, Any]:
    toks = [TOKENS[i] for i in rng.integers(0, len(TOKENS), n)]
    acts = [0.0] * n
    if kind != "random" or rng.random() < 0.3:
        for i in rng.choice(n, size=2, replace=False):
            acts[int(i)] = round(float(peak * rng.uniform(0.3, 1.0)), 3)
    return {
        "tokens": toks,
        "token_ids": list(range(n)),
        "acts": acts,
        "kind": kind,
        "seq": 0,
        "start": 0,
        "quantile": -1,
    }


def synth_run(
    run_dir: str | Path,
    *,
    seed: int = 0,
    n_scored: int = 40,
    protocol_id: str = "p1",
    protocol: dict[str, Any] | None = None,
    hookpoint: str = "blocks.6.hook_resid_post",
    detection: bool = True,
    extras: bool = True,
) -> Path:
    """A realistic random run: bases sae (best), pca, neurons, random (null); shuffled nulls;
    ~5% undefined and ~3% failed scores; features/density/records/simulations when ``extras``."""
    rng = np.random.default_rng(seed)
    bases = [
        ("sae", "sae", 512),
        ("pca", "pca", 64),
        ("neurons", "neurons", 64),
        ("random", "random", 512),
    ]
    centre = {"sae": 0.35, "pca": 0.2, "neurons": 0.15, "random": 0.05}
    scores, metrics, feats, dens, sims, recs = [], [], [], [], [], {}
    for b, k, n in bases:
        fids = sorted(rng.choice(n, size=min(n_scored, n), replace=False).tolist())
        d_all = 10 ** rng.uniform(-5, -0.5, n)
        dens += [{"basis": b, "feature": i, "density": float(d_all[i])} for i in range(n)]
        recs[b] = []
        for f in fids:
            v = float(np.clip(rng.normal(centre[b], 0.15), -1, 1))
            u = rng.random()
            if u < 0.05:
                scores.append(score(b, f, None, protocol_id=protocol_id))
            elif u < 0.08:
                scores.append(score(b, f, None, status="failed", protocol_id=protocol_id))
            else:
                scores.append(score(b, f, v, protocol_id=protocol_id))
            for var in ("top", "random"):
                scores.append(
                    score(b, f, v + rng.normal(0, 0.05), variant=var, protocol_id=protocol_id)
                )
            scores.append(
                score(b, f, float(rng.normal(0.03, 0.08)), null="shuffled", protocol_id=protocol_id)
            )
            if detection:
                scores.append(
                    score(
                        b,
                        f,
                        float(rng.uniform(0.5, 0.9)),
                        scorer="detection",
                        variant="balanced_accuracy",
                        method="json",
                        protocol_id=protocol_id,
                    )
                )
            peak = float(rng.uniform(1, 20))
            feats.append(
                {
                    "basis": b,
                    "feature": f,
                    "density": float(d_all[f]),
                    "max_act": peak,
                    "explanation": f"tokens like '{TOKENS[f % len(TOKENS)]}' <i>x</i>",
                    "explanation_status": "ok",
                    "explanation_error": "",
                }
            )
            if extras:
                ex = [_example(rng, "top", peak) for _ in range(3)]
                recs[b].append(
                    {
                        "basis": b,
                        "feature": f,
                        "density": float(d_all[f]),
                        "max_act": peak,
                        "explain": ex,
                        "test_top": [],
                        "test_quantile": [],
                        "test_random": [],
                    }
                )
                for j in range(4):
                    e = _example(rng, "top" if j < 2 else "random", peak)
                    pred = [
                        round(a * rng.uniform(0.2, 1.0) + rng.uniform(0, 0.5), 3) for a in e["acts"]
                    ]
                    sims.append(
                        {
                            "basis": b,
                            "feature": f,
                            "example": j,
                            "kind": e["kind"],
                            "tokens": e["tokens"],
                            "true": e["acts"],
                            "pred": pred,
                        }
                    )
        metrics.append(
            {
                "basis": b,
                "kind": k,
                "n_features": n,
                "l0": float(rng.uniform(5, 60)),
                "fvu": float(rng.uniform(0.1, 0.9)),
                "explained_variance": float(rng.uniform(0.1, 0.9)),
                "ce_loss_score": float(rng.uniform(0.2, 0.99)),
                "kl_div_score": float(rng.uniform(0.2, 0.99)),
                "dead_frac": float(rng.uniform(0, 0.3)),
                "l1": float(rng.uniform(1, 50)),
                "mse": float(rng.uniform(0, 1)),
                "cossim": float(rng.uniform(0.5, 1)),
            }
        )
    return write_run(
        run_dir,
        bases=bases,
        scores=scores,
        metrics=metrics,
        protocol_id=protocol_id,
        protocol=protocol,
        hookpoint=hookpoint,
        features=feats,
        density=dens if extras else None,
        simulations=sims if extras else None,
        records=recs if extras else None,
    )

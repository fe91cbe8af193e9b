"""The data of the HTML leaderboard's feature browser: per feature its explanation, scores,
top examples and simulated vs true activations, embedded in the page as JSON."""

from __future__ import annotations

import json
import math
from typing import Any

import polars as pl

from autointerp.report.columns import SIM_VARIANT
from autointerp.report.runs import Run


def _r(v: Any, nd: int = 3) -> Any:
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, nd)
    return v


def _pick(features: list[tuple[int, float | None]], k: int) -> list[int]:
    """Up to ``k`` features evenly spread over the score ranking (best and worst included)."""
    ranked = sorted(features, key=lambda t: (t[1] is None, -(t[1] or 0.0), t[0]))
    if len(ranked) <= k:
        return [f for f, _ in ranked]
    idx = sorted({round(i * (len(ranked) - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]
    return [ranked[i][0] for i in idx]


def browser_data(runs: list[Run], max_features: int = 400) -> list[dict[str, Any]]:
    """Per-feature entries (explanation, scores, top examples, simulated vs true activations)
    for at most ``max_features`` features, spread evenly over (run, basis)."""
    pairs = [(run, b) for run in runs for b, _ in run.bases]
    if not pairs:
        return []
    per = max(1, max_features // len(pairs))
    out = []
    by_run: dict[int, dict[str, pl.DataFrame]] = {}
    for run, basis in pairs:
        if id(run) not in by_run:
            parts = run.scores.partition_by("basis", as_dict=True) if len(run.scores) else {}
            by_run[id(run)] = {k[0]: v for k, v in parts.items()}
        s = by_run[id(run)].get(basis)
        if s is None:
            continue
        real = s.filter(
            (pl.col("scorer") == "simulation")
            & (pl.col("variant") == SIM_VARIANT)
            & (pl.col("null").fill_null("") == "")
        )
        feats = dict(zip(real["feature"].to_list(), real["value"].to_list()))
        if not feats:
            continue
        chosen = _pick(list(feats.items()), per)
        chosen_set = set(chosen)
        finfo: dict[int, dict[str, Any]] = {}
        if run.features is not None and "feature" in run.features.columns:
            fsub = run.features.filter((pl.col("basis") == basis) & pl.col("feature").is_in(chosen))
            finfo = {r["feature"]: r for r in fsub.iter_rows(named=True)}
        recs = run.records(basis, chosen_set)
        sims: dict[int, list[dict[str, Any]]] = {}
        sim_df = run.simulations
        if sim_df is not None and {"basis", "feature", "tokens"} <= set(sim_df.columns):
            ssub = sim_df.filter((pl.col("basis") == basis) & pl.col("feature").is_in(chosen))
            if "example" in ssub.columns:
                ssub = ssub.sort("feature", "example")
            for r in ssub.iter_rows(named=True):
                lst = sims.setdefault(r["feature"], [])
                if len(lst) < 10:
                    lst.append(
                        {
                            "kind": r.get("kind") or "",
                            "tokens": list(r["tokens"]),
                            "true": [_r(v) for v in r.get("true") or []],
                            "pred": [_r(v) for v in r.get("pred") or []],
                        }
                    )
        fscores = s.filter(pl.col("feature").is_in(chosen))
        for f in chosen:
            info = finfo.get(f, {})
            sc = {}
            for r in fscores.filter(pl.col("feature") == f).iter_rows(named=True):
                name = f"{r['scorer']}/{r['variant']}" + (f" ({r['null']})" if r["null"] else "")
                sc[name] = _r(r["value"]) if r["status"] == "ok" else r["status"]
            top = []
            rec = recs.get(f)
            if rec is not None:
                exs = [e for e in rec.explain if e.kind == "top"] or list(rec.explain)
                exs = sorted(exs, key=lambda e: -e.max_act)[:5]
                top = [{"tokens": e.tokens, "acts": [_r(a) for a in e.acts]} for e in exs]
            out.append(
                {
                    "key": f"{run.label}|{basis}|{f}",
                    "run": run.label,
                    "basis": basis,
                    "feature": int(f),
                    "explanation": str(info.get("explanation") or ""),
                    "explanation_status": str(info.get("explanation_status") or ""),
                    "density": _r(info.get("density"), 6),
                    "max_act": _r(info.get("max_act")),
                    "scores": sc,
                    "top": top,
                    "sims": sims.get(f, []),
                }
            )
    return out


def _json_for_script(obj: Any) -> str:
    return (
        json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )

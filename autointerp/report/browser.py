"""A static feature browser of one run: ``RUN_DIR/browser/index.html`` plus data chunks, read
from file:// with no server and fast at tens of thousands of latents.

Every feature with a record (``records/<basis>.jsonl``, every basis) gets one list row: basis,
id, explanation, top tokens, density, and per simulation method its score and lift over its
shuffled-explanation null. The rows are written in list chunks of ``LIST_CHUNK`` rows
(``browser/data/list-<n>.js``); the full detail of each feature (explanation and status, every
score with its null and method, the top / quantile / random windows with per-token activations,
the simulated-vs-true activations of its scored examples from ``simulations.parquet``, and when
the run has ``columns/output.json`` / ``columns/ablation.json``, its logit-lens tokens, output
explanation and score, and ablation effect; with ``columns/absorption.json``, its first-letter
absorption, :mod:`~autointerp.report.browser_absorption`, whose latents without a record get a
row too) in detail chunks of ``FEAT_CHUNK`` features per basis
(``browser/data/feat-<basis>-<n>.js``).
Each chunk is a script that calls ``window.AI.add({...})``: <script> tags load from file://
where fetch() of JSON is blocked. The page loads the list chunks in order and appends their
rows as they arrive, renders one page of rows at a time, and adds the <script> of a detail chunk
only when a feature is opened. The page is in ``browser_page``; its URL hash (``#q=&sort=&dir=
&m=&page=&open=basis:id``) sets search, sort and the open feature.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl

from autointerp.report.browser_absorption import absorption_panels, status_of, tags_of
from autointerp.report.browser_page import render_index
from autointerp.report.columns import SIM_VARIANT
from autointerp.report.runs import Run, load_run
from autointerp.results import atomic_write_text

log = logging.getLogger(__name__)

LIST_CHUNK = 2000  # list rows per list-<n>.js
FEAT_CHUNK = 64  # features per feat-<basis>-<n>.js
# list row fields (the page reads rows as arrays in this order)
ROW_FIELDS = [
    "basis", "feature", "explanation", "status", "top", "density", "chunk", "scores", "tags"
]  # fmt: skip
_SCORE_FIELDS = ("scorer", "variant", "method", "null", "value", "status", "error")


def _r(v: Any, nd: int = 4) -> Any:
    """A float rounded to ``nd`` significant digits (None for NaN / inf)."""
    if isinstance(v, float):
        if not math.isfinite(v):
            return None
        return float(f"{v:.{nd}g}")
    return v


def js_call(obj: Any) -> str:
    """``window.AI.add(<obj>);`` with the JSON made safe inside a <script>."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return f"window.AI.add({text});\n"


def _safe_names(bases: list[str]) -> dict[str, str]:
    """A file-name-safe, unique stem per basis name."""
    out: dict[str, str] = {}
    for i, b in enumerate(bases):
        s = re.sub(r"[^A-Za-z0-9_.-]", "_", b).strip(".") or "basis"
        out[b] = s if s not in out.values() else f"{s}_{i}"
    return out


def _score_table(run: Run) -> tuple[list[str], dict[tuple[str, int], list[list[Any]]]]:
    """(simulation methods, {(basis, feature): [score fields ...]})."""
    s = run.scores
    cols = [c for c in _SCORE_FIELDS if c in s.columns]
    s = s.with_columns(pl.col(c).fill_null("") for c in ("method", "null", "error") if c in cols)
    methods = sorted(
        set(
            s.filter((pl.col("scorer") == "simulation") & (pl.col("variant") == SIM_VARIANT))[
                "method"
            ].to_list()
        )
    )
    out: dict[tuple[str, int], list[list[Any]]] = {}
    for row in s.select(["basis", "feature", *cols]).iter_rows():
        d = dict(zip(cols, row[2:]))
        item = [d.get(k, "") for k in _SCORE_FIELDS]
        item[4] = _r(item[4])
        out.setdefault((row[0], int(row[1])), []).append(item)
    return methods, out


def _sim_lift(scores: list[list[Any]], methods: list[str]) -> list[list[Any]]:
    """Per method: [score, shuffled-null score, lift] of simulation/SIM_VARIANT (None if none)."""
    out = []
    for m in methods:
        real = null = None
        for sc, var, meth, nul, val, st, _ in scores:
            if sc != "simulation" or var != SIM_VARIANT or meth != m or st != "ok":
                continue
            if nul == "":
                real = val
            elif nul == "shuffled":
                null = val
        lift = None if real is None or null is None else _r(real - null)
        out.append([real, null, lift])
    return out


def _example(e: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": e.get("kind", ""),
        "q": e.get("quantile", -1),
        "seq": e.get("seq", -1),
        "start": e.get("start", -1),
        "tokens": list(e.get("tokens") or []),
        "acts": [_r(float(a), 3) for a in e.get("acts") or []],
    }


def _top_tokens(rec: dict[str, Any], k: int = 3) -> str:
    """The most common max-activating tokens of the top windows."""
    c: Counter[str] = Counter()
    for e in list(rec.get("explain") or []) + list(rec.get("test_top") or []):
        acts, toks = e.get("acts") or [], e.get("tokens") or []
        if e.get("kind", "top") == "top" and acts and toks and max(acts) > 0:
            c[toks[max(range(len(acts)), key=acts.__getitem__)]] += 1
    return " | ".join(repr(t)[1:-1] if t.strip() != t or not t else t for t, _ in c.most_common(k))


def _feature_info(run: Run) -> dict[tuple[str, int], dict[str, Any]]:
    f = run.features
    if f is None or "feature" not in f.columns or "basis" not in f.columns:
        return {}
    return {(r["basis"], int(r["feature"])): r for r in f.iter_rows(named=True)}


def _causal(run_dir: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """Per (basis, feature): its logit-lens tokens, output explanation and score
    (``columns/output.json``) and ablation effect (``columns/ablation.json``), when the run has
    them."""
    from autointerp.columns import load_columns

    out: dict[tuple[str, int], dict[str, Any]] = {}
    for cols in load_columns(run_dir):
        if cols.stage not in ("ablation", "output", "steering"):
            continue
        for basis, feats in (cols.extra.get("features") or {}).items():
            for f in feats:
                d = out.setdefault((basis, int(f["feature"])), {})
                if cols.stage == "steering":
                    d["steering"] = _steering(f)
                elif cols.stage == "ablation":
                    d["ablation"] = {
                        k: _r(f.get(k)) if isinstance(f.get(k), float) else f.get(k)
                        for k in ("kl", "ce_delta", "n_contexts", "n_pairs", "falls", "rises")
                    } | ({"reason": f["reason"]} if f.get("reason") else {})
                else:
                    llm = f.get("llm_explanation") or {}
                    d["output"] = {
                        "lens_top": f.get("top") or [],
                        "lens_bottom": f.get("bottom") or [],
                        "explanation": f.get("explanation", ""),
                        "score": _r(f.get("score")),
                        "null": _r(f.get("null")),
                        "lift": _r(f.get("lift")),
                        "llm_explanation": llm.get("text", ""),
                        "llm_score": _r(f.get("llm_score")),
                    }
    return out


def _steering(f: dict[str, Any]) -> dict[str, Any]:
    """A feature's steering panel: per arm the chosen factor, held-out concept / fluency
    numbers and its continuation of the first report instruction; the unsteered one."""
    keys = ("factor", "act", "pmi", "factor_pmi", "nll_rise", "repeat")
    arms = {
        a: {k: _r(v) if isinstance(v := d.get(k), float) else v for k in keys}
        | {"text": d.get("text", "")}
        for a, d in (f.get("arms") or {}).items()
    }
    u = f.get("unsteered") or {}
    out = {"arms": arms, "unsteered": u.get("text", "")}
    j = f.get("judge")
    if j:  # the LLM judge's mean ratings per arm (held-out instructions), when one ran
        aspects = ("factor", "concept", "instruction", "fluency", "hmean")
        out["judge"] = {k: {a: _r(v.get(a)) for a in aspects} for k, v in j.items()
                        if isinstance(v, dict) and "hmean" in v}  # fmt: skip
        if j.get("reason"):
            out["judge_reason"] = j["reason"]
    return out


def _iter_records(path: Path):
    with path.open() as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _simulations(run: Run) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """Per (basis, feature): its scored examples' tokens with the true activation and the
    simulator's prediction per token (the real explanation's; nulls keep none)."""
    sim = run.simulations
    need = {"basis", "feature", "tokens", "true", "pred"}
    if sim is None or not need <= set(sim.columns):
        return {}
    if "example" in sim.columns:
        sim = sim.sort("basis", "feature", "example")
    out: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in sim.iter_rows(named=True):
        out.setdefault((r["basis"], int(r["feature"])), []).append(
            {
                "kind": r.get("kind") or "",
                "tokens": list(r["tokens"] or []),
                "true": [_r(v, 3) for v in r["true"] or []],
                "pred": [_r(v, 3) for v in r["pred"] or []],
            }
        )
    return out


def write_browser(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the feature browser of a run directory into ``out`` (default ``RUN_DIR/browser``)
    and return the path of its ``index.html``."""
    t0 = time.perf_counter()
    run = load_run(run_dir)
    out = Path(out) if out is not None else run.path / "browser"
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    for old in [*data.glob("list-*.js"), *data.glob("feat-*.js")]:
        old.unlink()  # stale chunks of an earlier build (nothing else in the folder is touched)
    methods, scores = _score_table(run)
    info = _feature_info(run)
    sims = _simulations(run)
    causal = _causal(run.path)
    absorb = absorption_panels(run.path)
    dens: dict[tuple[str, int], float] = {}
    if run.density is not None and {"basis", "feature", "density"} <= set(run.density.columns):
        d = run.density
        dens = dict(zip(zip(d["basis"].to_list(), d["feature"].to_list()), d["density"].to_list()))
    rec_bases = [b for b, _ in run.bases if (run.path / "records" / f"{b}.jsonl").is_file()]
    extra = sorted(
        p.stem for p in (run.path / "records").glob("*.jsonl") if p.stem not in rec_bases
    )
    all_bases = rec_bases + extra
    stems = _safe_names(all_bases)
    kinds = dict(run.bases)
    rows: list[list[Any]] = []
    n_feat_files = 0
    for basis in all_bases:
        recs = list(_iter_records(run.path / "records" / f"{basis}.jsonl"))
        have = {int(r["feature"]) for r in recs}
        recs += [{"feature": f} for b, f in absorb if b == basis and f not in have]
        recs.sort(key=lambda r: r["feature"])
        for c0 in range(0, len(recs), FEAT_CHUNK):
            chunk_no = c0 // FEAT_CHUNK
            feats = {}
            for rec in recs[c0 : c0 + FEAT_CHUNK]:
                fid = int(rec["feature"])
                fi = info.get((basis, fid), {})
                sc = scores.get((basis, fid), [])
                density = fi.get("density", rec.get("density", dens.get((basis, fid))))
                explanation = str(fi.get("explanation") or "")
                status = str(fi.get("explanation_status") or ("" if fi else "none"))
                panel = absorb.get((basis, fid))
                if panel and "explain" not in rec and not fi:
                    status = status_of(panel)
                feats[str(fid)] = {
                    "explanation": explanation,
                    "status": status,
                    "error": str(fi.get("explanation_error") or ""),
                    "density": _r(density, 4) if density is not None else None,
                    "max_act": _r(fi.get("max_act", rec.get("max_act")), 4),
                    "scores": sc,
                    "explain": [_example(e) for e in rec.get("explain") or []],
                    "test_top": [_example(e) for e in rec.get("test_top") or []],
                    "test_quantile": [_example(e) for e in rec.get("test_quantile") or []],
                    "test_random": [_example(e) for e in rec.get("test_random") or []],
                    "sims": sims.get((basis, fid), []),
                    **({"causal": causal[(basis, fid)]} if (basis, fid) in causal else {}),
                    **({"absorption": panel} if panel else {}),
                }
                rows.append(
                    [
                        basis,
                        fid,
                        explanation,
                        status,
                        _top_tokens(rec),
                        _r(density, 4) if density is not None else None,
                        chunk_no,
                        _sim_lift(sc, methods),
                        tags_of(panel),
                    ]
                )
            name = f"feat-{stems[basis]}-{chunk_no}.js"
            payload = {"type": "feat", "basis": basis, "chunk": chunk_no, "features": feats}
            atomic_write_text(data / name, js_call(payload))
            n_feat_files += 1
    n_list = max(1, math.ceil(len(rows) / LIST_CHUNK))
    for i in range(n_list):
        payload = {"type": "list", "n": i, "rows": rows[i * LIST_CHUNK : (i + 1) * LIST_CHUNK]}
        atomic_write_text(data / f"list-{i}.js", js_call(payload))
    meta = {
        "run": run.label,
        "model": run.model,
        "hookpoint": run.hookpoint,
        "protocol_id": run.protocol_id,
        "n_rows": len(rows),
        "n_list": n_list,
        "list_chunk": LIST_CHUNK,
        "fields": ROW_FIELDS,
        "methods": methods,
        "sim_variant": SIM_VARIANT,
        "bases": [
            {
                "name": b,
                "kind": kinds.get(b, ""),
                "stem": stems[b],
                "diagnostics": run.diagnostics.get(b),
            }
            for b in all_bases
        ],
    }
    from autointerp.circuits.page import pages_of

    meta["attribute"] = pages_of(run.path)  # "why this completion?" pages of the run
    index = out / "index.html"
    atomic_write_text(index, render_index(meta))
    log.info(
        "wrote %s: %d features, %d list and %d detail chunks in %.1f s",
        index,
        len(rows),
        n_list,
        n_feat_files,
        time.perf_counter() - t0,
    )
    return index


def _cmd(args: argparse.Namespace) -> int:
    path = write_browser(args.run_dir, args.out)
    print(path)
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "browse",
        help="a static feature browser of one run (open browser/index.html, no server)",
        description="Write RUN_DIR/browser/index.html and its data chunks: a searchable, "
        "sortable list of every feature with records and a panel per feature (explanation, "
        "scores with the shuffled null, density, example windows with per-token activations). "
        "Works from file://.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (has manifest.json)")
    p.add_argument("--out", metavar="DIR", default=None, help="output folder (RUN_DIR/browser)")
    p.set_defaults(func=_cmd)

"""The graph view of a sweep's circuits (``circuits.html``, template
``report/templates/circuits.html.j2``): per hookpoint pair and basis, each downstream feature
with its top upstream features and edge weights (bars scaled to the largest |edge| of that
feature), the error node, its faithfulness curve; every feature with a record links to its
page in its run's feature browser (``<run>/browser/index.html#open=basis:id``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from autointerp.circuits.summary import pair_cells
from autointerp.report.templating import render


def _link(folder: str, basis: str, feat: int, known: bool) -> str | None:
    if not known:
        return None
    return f"{quote(folder)}/browser/index.html#open={quote(f'{basis}:{feat}')}"


def _g(v: float | None) -> str:
    return "undefined" if v is None else f"{v:+.4g}"


def _cell_text(cell: Any, fmt: str) -> str:
    if cell.value is None:
        return "undefined"
    if cell.ci_low is None or cell.ci_high is None:
        return format(cell.value, fmt)
    return f"{format(cell.value, fmt)} [{format(cell.ci_low, fmt)}, {format(cell.ci_high, fmt)}]"


def _ioi(rec: dict[str, Any] | None, b: str, folder: str, ex_up: dict) -> dict | None:
    """The IOI circuit of one basis for the page: summary line and top pooled edges."""
    if not rec:
        return None
    if rec.get("reason"):
        return {"summary": f"not measured: {rec['reason']}", "edges": []}
    n = rec["n_prompts"]
    act, base = sum(rec["act"]) / n, sum(rec["base"]) / n
    ch = act - base
    fk = ", ".join(
        f"{k}: {(sum(m) / n - base) / ch:.2f}" if ch else f"{k}: undefined"
        for k, m in zip(rec["ks"], rec["m_k"], strict=True)
    )
    top = max((abs(e) for _, e in rec["top"]), default=0.0) or 1.0
    edges = [
        {
            "name": f"{b} #{i}",
            "href": _link(folder, b, i, (b, i) in ex_up),
            "edge": _g(e / n),
            "share": f"{e / n / ch:+.2f}" if ch else "undefined",
            "width": round(100 * abs(e) / top, 1),
            "sign": "pos" if e >= 0 else "neg",
            "text": ex_up.get((b, i)) or "(no record: not among the explained features)",
        }
        for i, e in rec["top"]
    ]
    summary = (
        f"{n} prompts: mean logit difference {act:+.4g}, every feature at its mean {base:+.4g}, "
        f"error node {sum(rec['error']) / n:+.4g}; f(k): {fk}"
    )
    return {"summary": summary, "edges": edges}


def graph_context(
    value: dict[str, Any], explanations: dict[str, dict], kinds: dict[str, str]
) -> dict[str, Any]:
    """The template's data: ``pairs`` -> ``bases`` -> ``features`` -> ``edges``."""
    cfg, seed = value["config"], value.get("seed", 0)
    ig = bool(cfg.get("ig_steps"))
    pairs = []
    for p in value["pairs"]:
        ex_up, ex_down = explanations.get(p["up"], {}), explanations.get(p["down"], {})
        docs, rows = pair_cells(p, cfg["n_bootstrap"], seed, ig)
        bases = []
        for b, r in p["bases"].items():
            cells = rows[b]
            feats = []
            for f in r["features"]:
                top = max((abs(e) for _, e in f["top"] if e is not None), default=0.0) or 1.0
                change = None if f["act"] is None or f["base"] is None else f["act"] - f["base"]
                edges = [
                    {
                        "name": f"{b} #{i}",
                        "href": _link(p["up_folder"], b, i, (b, i) in ex_up),
                        "edge": _g(e),
                        "share": f"{e / change:+.2f}" if change and e is not None else "undefined",
                        "width": 0.0 if e is None else round(100 * abs(e) / top, 1),
                        "sign": "pos" if e is None or e >= 0 else "neg",
                        "text": ex_up.get((b, i))
                        or "(no record: not among the explained features)",
                    }
                    for i, e in f["top"]
                ]
                fk = [
                    (k, "undefined" if v is None else f"{v:.2f}")
                    for k, v in zip(f["ks"], f["f"], strict=True)
                ]
                feats.append(
                    {
                        "name": f"{b} #{f['feature']}",
                        "href": _link(
                            p["down_folder"], b, f["feature"], (b, f["feature"]) in ex_down
                        ),
                        "text": ex_down.get((b, f["feature"]))
                        or "(no record: not among the explained features)",
                        "change": _g(change),
                        "error": _g(f["error"]),
                        "n80": f["n80"],
                        "lin_r": "undefined" if f["lin_r"] is None else f"{f['lin_r']:.2f}",
                        "fk": fk,
                        "reason": f.get("reason") or "",
                        "edges": edges,
                    }
                )
            bases.append(
                {
                    "name": b,
                    "kind": kinds.get(b, ""),
                    "cells": [(d.name, _cell_text(cells[d.name], d.fmt)) for d in docs],
                    "features": feats,
                    "skipped": r.get("skipped") or {},
                    "n_up": r.get("n_up"),
                    "ioi": _ioi(r.get("ioi"), b, p["up_folder"], ex_up),
                }
            )
        pairs.append({"up": p["up"], "down": p["down"], "bases": bases, "docs": docs})
    return {"pairs": pairs, "config": cfg, "seconds": value.get("seconds")}


def render_graph(
    value: dict[str, Any], explanations: dict[str, dict], kinds: dict[str, str]
) -> str:
    """``circuits.html``."""
    return render("circuits.html.j2", **graph_context(value, explanations, kinds))

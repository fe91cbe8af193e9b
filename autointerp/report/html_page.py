"""The leaderboard as one self-contained HTML page (``templates/leaderboard.html.j2``): the
headline table first, then the full tables in folding column groups (input side, causal,
structure, cost; ``<details>``, no JS needed), PNG plots (matplotlib, Agg, embedded as base64
data URIs) and a per-feature browser. No network, no external JS/CSS.

All text from runs (names, LLM explanations, tokens) is escaped by the template; the feature
browser's data is embedded as JSON (``<``, ``>``, ``&`` escaped as ``\\u003c`` ...) and put into
the page with ``textContent`` only.

URL hash options (handy for links and headless tests): ``#sort=COLUMN&dir=asc|desc`` sorts every
table with that column at load; ``#feature=KEY`` opens a feature in the browser (KEY =
``run|basis|id``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl

from autointerp.columns import ColumnDoc
from autointerp.report import headline, stage_columns
from autointerp.report.columns import (
    HEAD_METRICS,
    LEGEND,
    OTHER_METRICS,
    display_columns,
    fmt_ci,
    scorer_legend,
)
from autointerp.report.html_browser import _json_for_script, browser_data
from autointerp.report.html_plots import (
    _score_values,
    plot_density,
    plot_distributions,
    plot_ioi_curves,
    plot_scatter,
)
from autointerp.report.runs import Run
from autointerp.report.table import Leaderboard
from autointerp.report.templating import render

Spec = tuple[str, str, str | None, str | None]
#: full-table columns of the "structure" and "cost" groups (the rest of the main table is the
#: input side; stage columns are causal unless their group says structure / absorption)
STRUCTURE = {"distinct_features", "mode_share", "l0_corpus", *HEAD_METRICS, *OTHER_METRICS}
COST = {"llm_calls", "prompt_tokens", "completion_tokens", "cost_usd", "wall_time_s"}
STRUCTURE_STAGE_GROUPS = ("structure", "absorption")
_KEYS = {"basis", "kind", "model", "hookpoint", "run", "method", "flag"}


def _dv(v: Any) -> str:
    return "" if v is None else (repr(v) if isinstance(v, float) else str(v))


def _cell(v: Any, text: str) -> dict[str, Any]:
    return {"v": _dv(v), "num": isinstance(v, (int, float)) and not isinstance(v, bool),
            "text": text}  # fmt: skip


def _table(
    rows: list[dict[str, Any]],
    heads: list[tuple[str, str, str]],
    fmt: Callable[[dict[str, Any], str], str],
    tid: str,
    cls: str = "lb",
) -> dict[str, Any]:
    """A table for the template: ``heads`` = (key, header, title)."""
    return {
        "id": tid,
        "cls": cls,
        "groups": None,
        "heads": [{"key": k, "text": t, "title": ti} for k, t, ti in heads],
        "rows": [
            {
                "null": r.get("kind") == "random",
                "cells": [_cell(r.get(k), fmt(r, k)) for k, _, _ in heads],
            }
            for r in rows
        ],
    }


def _one_per_basis(df: pl.DataFrame) -> list[dict[str, Any]]:
    seen, out = set(), []
    for r in df.iter_rows(named=True):
        key = (r.get("suite"), r.get("run"), r["basis"])
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def _spec_table(
    df: pl.DataFrame, specs: list[Spec], tid: str, per_basis: bool = False
) -> dict[str, Any]:
    by_col = {c: (lo, hi) for _, c, lo, hi in specs}
    rows = _one_per_basis(df) if per_basis else list(df.iter_rows(named=True))
    return _table(
        rows,
        [(c, h, c) for h, c, _, _ in specs],
        lambda r, c: fmt_ci(r, c, *by_col[c]),
        tid,
    )


def _headline_table(h: headline.Headline, gi: int) -> tuple[dict[str, Any], list[str]]:
    texts = h.texts()
    heads = [(c.key, c.header + c.arrow, c.doc or c.header) for c in h.columns]
    t = {
        "id": f"headline-{gi}",
        "cls": "lb headline",
        "groups": [],
        "heads": [{"key": k, "text": t, "title": ti} for k, t, ti in heads],
        "rows": [
            {
                "null": r.get("kind") == "random",
                "cells": [
                    _cell(r.get("llm_calls") if c.key == "cost" else r.get(c.key), text)
                    for c, text in zip(h.columns, texts, strict=True)
                ],
            }
            for r, texts in zip(h.rows, texts, strict=True)
        ],
    }
    for c in h.columns:
        label = "" if c.key == "basis" else c.group
        if t["groups"] and t["groups"][-1][0] == label:
            t["groups"][-1] = (label, t["groups"][-1][1] + 1)
        else:
            t["groups"].append((label, 1))
    return t, h.notes(numbered=False)


def _stage_table(df: pl.DataFrame, cols: list[ColumnDoc], tid: str) -> dict[str, Any]:
    multi = "run" in df.columns and df["run"].n_unique() > 1
    keys = ["basis", "kind", *(["run"] if multi else [])]
    by_name = {c.name: c for c in cols}
    heads = [(k, k, k) for k in keys] + [(c.name, c.name, c.doc) for c in cols]

    def fmt(r: dict[str, Any], k: str) -> str:
        return stage_columns.fmt_cell(r, by_name[k]) if k in by_name else str(r.get(k) or "")

    return _table(_one_per_basis(df), heads, fmt, tid)


def _sections(df: pl.DataFrame, gi: int, board: Leaderboard) -> list[dict[str, Any]]:
    specs = list(display_columns(df, board.scorer_columns))
    extra = [c for c in OTHER_METRICS if c in df.columns and df[c].null_count() < len(df)]
    specs += [(c, c, None, None) for c in extra]
    keys = [s for s in specs if s[1] in ("basis", "kind", "run")]
    inputs = [s for s in specs if s[1] not in STRUCTURE | COST]
    for name in ("lift_vs_random_dirs_p", "lift_vs_shuffled_p"):
        if name in df.columns and df[name].null_count() < len(df):
            inputs.append((name.replace("lift_vs_", "p ").replace("_p", ""), name, None, None))
    structure = keys + [s for s in specs if s[1] in STRUCTURE]
    cost = keys + [s for s in specs if s[1] in COST]
    shown = stage_columns.shown(df, board.stage_columns)
    causal = [c for c in shown if c.group not in STRUCTURE_STAGE_GROUPS]
    struct_stage = [c for c in shown if c.group in STRUCTURE_STAGE_GROUPS]
    und = list(dict.fromkeys(stage_columns.undefined_lines(df)))
    out = [
        {
            "id": f"group-input-{gi}",
            "title": "Input side",
            "note": "explain, simulate, score: lifts over the nulls, scores, counts",
            "tables": [_spec_table(df, inputs, f"table-{gi}")],
            "undefined": [],
        }
    ]
    if causal:
        out.append(
            {
                "id": f"group-causal-{gi}",
                "title": "Causal and output-side",
                "note": stage_columns.TITLE.lower() + " columns",
                "tables": [_stage_table(df, causal, f"causal-{gi}")],
                "undefined": und,
            }
        )
    out.append(
        {
            "id": f"group-structure-{gi}",
            "title": "Structure",
            "note": "reconstruction, sparsity, downstream loss, feature diagnostics",
            "tables": [_spec_table(df, structure, f"structure-{gi}", per_basis=True)]
            + ([_stage_table(df, struct_stage, f"structure-stage-{gi}")] if struct_stage else []),
            "undefined": [],
        }
    )
    if len(cost) > len(keys):
        out.append(
            {
                "id": f"group-cost-{gi}",
                "title": "Cost",
                "note": "LLM usage and wall time",
                "tables": [_spec_table(df, cost, f"cost-{gi}", per_basis=True)],
                "undefined": [],
            }
        )
    return out


def _plots(df: pl.DataFrame, by_label: dict[tuple[str, str], Run], pid: str, board: Leaderboard
           ) -> list[tuple[str, str]]:  # fmt: skip
    imgs = [
        ("L0 vs simulation score",
         plot_scatter(df, "l0", "sim_score", "L0 vs simulation score", "simulation score",
                      ci=True)),
        ("L0 vs CE loss score",
         plot_scatter(df, "l0", "ce_loss_score", "L0 vs CE loss recovered", "ce_loss_score",
                      ci=False)),
        ("score distributions", plot_distributions(df, _score_values(df, by_label))),
        ("score by density bin", plot_density(board.density.get(pid, pl.DataFrame()), df)),
        ("IOI patching: KL vs features patched and vs edit size",
         plot_ioi_curves([by_label[k] for k in by_label if k[1] in set(df["run"])])),
    ]  # fmt: skip
    return [(a, u) for a, u in imgs if u]


def render_html(
    board: Leaderboard,
    runs: list[Run],
    *,
    max_features: int = 400,
    plots: bool = True,
    preface: str = "",
) -> str:
    """The whole page. ``max_features`` caps the feature browser; ``plots=False`` skips PNGs;
    ``preface``: HTML shown first, before the tables (a sweep's layer figure)."""
    by_label = {(r.suite, r.name): r for r in runs}
    groups, legend_head = [], {}
    for gi, (pid, df) in enumerate(board.groups.items()):
        h = headline.build_headline(df, board.stage_columns)
        legend_head.update(headline.legend(h))
        head_table, reasons = _headline_table(h, gi)
        sections = _sections(df, gi, board)
        groups.append(
            {
                "title": "Reference protocol" if pid == board.reference else "Set apart: protocol",
                "pid": pid or "(none)",
                "runs": ", ".join(board.runs_by_group[pid]),
                "headline": head_table,
                "reasons": reasons,
                "sections": sections,
                "plots": _plots(df, by_label, pid, board) if plots and len(df) else [],
            }
        )
    legend = {
        **legend_head,
        **LEGEND,
        **scorer_legend(board.scorer_columns),
        **stage_columns.legend(board.stage_columns),
    }
    data = browser_data(runs, max_features)
    return render(
        "leaderboard.html.j2",
        n_runs=len(runs),
        reference=str(board.reference),
        ci_method=board.ci_method,
        preface=preface,
        groups=groups,
        set_apart=[
            {
                "run": s.run,
                "reason": s.reason,
                "diff": "; ".join(s.differences) if s.differences else "no field differs",
            }
            for s in board.set_apart
        ],
        notes=board.notes,
        legend=list(legend.items()),
        n_features=len(data),
        feature_json=_json_for_script(data),
    )

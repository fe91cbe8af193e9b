"""A sweep's report at its root: the members' leaderboard grouped by hookpoint (md, csv, json,
html) and the layer figure (``layers.png`` / ``layers.svg``), shown first in the HTML page."""

from __future__ import annotations

import base64
import html
import os
from dataclasses import replace
from pathlib import Path

import polars as pl

from autointerp.report import stage_columns
from autointerp.report.columns import display_columns, fmt_ci
from autointerp.report.html_page import render_html
from autointerp.report.markdown import _md_table
from autointerp.report.runs import load_run
from autointerp.report.table import Leaderboard, leaderboard_table
from autointerp.report.tabular import board_to_dict, render_csv
from autointerp.results import atomic_write_json, atomic_write_text
from autointerp.sweep.figure import LayerSeries, layer_series, plot_layers, x_positions

FIGURE = "layers"  # layers.png, layers.svg


def by_hookpoint(df: pl.DataFrame, hookpoints: list[str]) -> pl.DataFrame:
    """The rows in sweep order of their hookpoint (each hookpoint's rows keep their order);
    rows of other hookpoints last."""
    order = {h: i for i, h in enumerate(hookpoints)}
    idx = [order.get(h, len(order)) for h in df["hookpoint"].to_list()]
    return df.with_columns(pl.Series("_i", idx)).sort("_i", maintain_order=True).drop("_i")


def grouped_board(board: Leaderboard, hookpoints: list[str]) -> Leaderboard:
    """``board`` with every group's rows in hookpoint order."""
    groups = {p: by_hookpoint(df, hookpoints) for p, df in board.groups.items()}
    return replace(board, groups=groups)


def layer_table(series: list[LayerSeries], hookpoints: list[str], col: str) -> str:
    """Markdown: one row per hookpoint, one column per basis, ``value [lo, hi]``."""
    lo, hi = {"sim_score": ("sim_ci_low", "sim_ci_high")}.get(
        col, (f"{col}_ci_low", f"{col}_ci_high")
    )
    xs, xlabel = x_positions(hookpoints)
    head = [xlabel, "hookpoint", *(s.basis for s in series)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for i, h in enumerate(hookpoints):
        cells = []
        for s in series:
            row = {c: v[i] for c, v in s.values.items()}
            cells.append(fmt_ci(row, col, lo, hi) if col in row else "")
        x = f"{xs[i]:g}"
        lines.append("| " + " | ".join([x, h, *cells]) + " |")
    return "\n".join(lines)


def circuits_link(board: Leaderboard) -> list[str]:
    """A pointer to the circuits page when the members have circuits columns."""
    if not any(c.startswith("circ_") for c in board.stage_columns):
        return []
    return [
        "Circuits between consecutive hookpoints (edges, faithfulness per basis): "
        "[circuits.md](circuits.md), [circuits.html](circuits.html), the `circ_*` columns "
        "of each downstream hookpoint's causal table below.",
        "",
    ]


def render_sweep_markdown(
    board: Leaderboard, hookpoints: list[str], folders: dict[str, str], series: list[LayerSeries]
) -> str:
    name = board.table["suite"][0] if len(board.table) else ""
    out = [
        f"# autointerp sweep `{name}`: {len(hookpoints)} hookpoints",
        "",
        f"![layer figure]({FIGURE}.png)",
        "",
        f"Protocol id `{board.reference}`. CIs: {board.ci_method}. Each hookpoint is a whole "
        "run of the suite in its own folder (its leaderboard.md has the sanity flags, "
        "undefined counts, density bins and the legend). The figure's lines take each basis's "
        "LLM-simulation rows (the no-LLM token_match floor only where nothing else exists).",
        "",
        *circuits_link(board),
        "## Mean simulation score per layer",
        "",
        layer_table(series, hookpoints, "sim_score"),
        "",
        "## Lift vs random directions per layer",
        "",
        layer_table(series, hookpoints, "lift_vs_random_dirs"),
        "",
    ]
    for pid, df in board.groups.items():
        if pid != board.reference:
            out += [f"## Set apart: protocol `{pid}` (not comparable with the tables above)", ""]
        for h in hookpoints:
            sub = df.filter(pl.col("hookpoint") == h)
            if sub.is_empty():
                continue
            specs = [s for s in display_columns(sub, board.scorer_columns) if s[1] != "run"]
            out += [
                f"## {h}",
                "",
                f"Run: [{folders[h]}]({folders[h]}/leaderboard.md)",
                "",
                _md_table(sub, specs),
                "",
                *stage_columns.markdown(sub, board.stage_columns),
            ]
    if board.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in board.notes] + [""]
    return "\n".join(out) + "\n"


def write_sweep_report(root: Path, member_dirs: dict[str, Path]) -> list[Path]:
    """Write ``leaderboard.{md,csv,json,html}`` and ``layers.{png,svg}`` at the sweep's
    ``root`` from its members' run directories (hookpoint -> run dir, in sweep order)."""
    hookpoints = list(member_dirs)
    runs = [load_run(d) for d in member_dirs.values()]
    board = grouped_board(leaderboard_table(runs), hookpoints)
    order = {b: i for i, (b, _) in enumerate(runs[0].bases)} if runs else {}
    series = sorted(layer_series(board.table, hookpoints), key=lambda s: order.get(s.basis, 1e9))
    title = str(board.table["suite"][0]) if len(board.table) else ""
    ci = f"{round(board.level * 100)}% bootstrap CI"
    written = plot_layers(series, hookpoints, root / FIGURE, title=title, ci=ci)
    folders = {h: Path(os.path.relpath(d, root)).as_posix() for h, d in member_dirs.items()}
    md = root / "leaderboard.md"
    atomic_write_text(md, render_sweep_markdown(board, hookpoints, folders, series))
    csv = root / "leaderboard.csv"
    atomic_write_text(csv, render_csv(board))
    js = root / "leaderboard.json"
    xs, xlabel = x_positions(hookpoints)
    atomic_write_json(
        js,
        {
            "hookpoints": hookpoints,
            "x": xs,
            "x_label": xlabel,
            "members": folders,
            "layer_series": [s.__dict__ for s in series],
            **board_to_dict(board),
        },
    )
    png = base64.b64encode((root / f"{FIGURE}.png").read_bytes()).decode("ascii")
    preface = (
        f'<h2>Per layer</h2><p class="note">{html.escape(", ".join(hookpoints))}</p>'
        f'<img alt="layer figure: score, lift vs random directions, FVU and CE loss recovered '
        f'per layer" style="max-width:100%" src="data:image/png;base64,{png}">'
    )
    if (root / "circuits.html").exists():
        preface += (
            '<p><a href="circuits.html">Circuits between consecutive hookpoints</a>: edges, '
            "faithfulness per basis, the graph view of each downstream feature.</p>"
        )
    page = root / "leaderboard.html"
    # the per-run plots (L0 vs score, distributions) are in each member's page
    atomic_write_text(page, render_html(board, runs, preface=preface, plots=False))
    return [*written, md, csv, js, page]

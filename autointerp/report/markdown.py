"""The leaderboard as markdown: one table per protocol (reference first), sanity flags,
undefined / failed counts, density bins, set-apart runs, notes and a legend."""

from __future__ import annotations

import polars as pl

from autointerp.report import headline, stage_columns
from autointerp.report.columns import LEGEND, display_columns, fmt_ci, fmt_value, scorer_legend
from autointerp.report.table import Leaderboard


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _md_table(df: pl.DataFrame, specs: list[tuple[str, str, str | None, str | None]]) -> str:
    lines = [
        "| " + " | ".join(h for h, *_ in specs) + " |",
        "|" + "|".join("---" for _ in specs) + "|",
    ]
    for row in df.iter_rows(named=True):
        cells = [_md_escape(fmt_ci(row, c, lo, hi)) for _, c, lo, hi in specs]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _density_md(dens: pl.DataFrame) -> str:
    if dens.is_empty():
        return ""
    bins = list(dict.fromkeys(dens["bin"].to_list()))
    multi = dens["run"].n_unique() > 1
    head = ["basis", "method", *bins]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    keys = dens.select("suite", "run", "basis", "method").unique(maintain_order=True)
    for k in keys.iter_rows(named=True):
        sub = dens.filter(
            (pl.col("suite") == k["suite"])
            & (pl.col("run") == k["run"])
            & (pl.col("basis") == k["basis"])
            & (pl.col("method") == k["method"])
        )
        cell = {
            r["bin"]: (f"{fmt_value(r['mean'])} (n={r['n']})" if r["n"] else "n=0")
            for r in sub.iter_rows(named=True)
        }
        name = f"{k['run']}/{k['basis']}" if multi else k["basis"]
        lines.append(
            "| "
            + " | ".join(
                _md_escape(x) for x in [name, k["method"], *[cell.get(b, "") for b in bins]]
            )
            + " |"
        )
    return "\n".join(lines)


def render_markdown(board: Leaderboard) -> str:
    """Markdown: one table per protocol (reference first), density bins, set-apart runs, notes,
    and a legend."""
    out = ["# autointerp leaderboard", ""]
    if board.reference is None:
        return "# autointerp leaderboard\n\nNo runs.\n"
    legend_head: dict[str, str] = {}
    for pid, df in board.groups.items():
        title = "Reference protocol" if pid == board.reference else "Set apart: protocol"
        head = headline.build_headline(df, board.stage_columns)
        legend_head.update(headline.legend(head))
        out += [
            f"## {title} `{pid or '(none)'}`",
            "",
            f"Runs: {', '.join(board.runs_by_group[pid])}",
            "",
            "### Headline",
            "",
            *headline.markdown(head),
            "### Full table",
            "",
            _md_table(df, display_columns(df, board.scorer_columns)),
            "",
            *stage_columns.markdown(df, board.stage_columns),
        ]
        flagged = [r for r in df.iter_rows(named=True) if r.get("flag")]
        if flagged:
            out += ["Sanity flags:", ""]
            out += [f"- **{r['basis']}** ({r['method']}): {r['flag']}" for r in flagged]
            out.append("")
        undef = [r for r in df.iter_rows(named=True) if r.get("undefined_by_variant")]
        if undef:
            out += ["Undefined / failed scores by scorer / variant / real-or-null:", ""]
            out += [f"- {r['basis']} ({r['method']}): {r['undefined_by_variant']}" for r in undef]
            out.append("")
        pmi = [r for r in df.iter_rows(named=True) if r.get("pmi_tokens")]
        if pmi:
            out += ["PMI alignment (real top_and_random test tokens that got no prediction):", ""]
            out += [
                f"- {r['basis']}: {r['pmi_missing'] or 0} simulator tokens without a logprob, "
                f"{r['pmi_unaligned'] or 0} subject tokens no simulator token overlaps, of "
                f"{r['pmi_tokens']} tokens"
                for r in pmi
            ]
            out.append("")
        dens = board.density.get(pid)
        if dens is not None and not dens.is_empty():
            out += [
                "Simulation score by firing density (mean, n features):",
                "",
                _density_md(dens),
                "",
            ]
    if board.set_apart:
        out += ["## Runs set apart (not comparable with the reference table)", ""]
        for s in board.set_apart:
            diff = "; ".join(s.differences) if s.differences else "no field differs"
            out.append(f"- `{s.run}`: {s.reason}. Differing protocol fields: {diff}")
        out.append("")
    if board.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in board.notes] + [""]
    out += ["## Legend", ""]
    out.append(
        f"- Protocol id: `{board.reference}`; only runs with equal protocol id share a table."
    )
    out.append(f"- CIs: {board.ci_method}; shown as `value [low, high]`.")
    out.append(
        "- Headline: one row per basis — the interpretability lift over random directions, the "
        "causal headline, steering and absorption when the run has them, FVU, CE loss recovered, "
        "L0 and cost (↑ higher / ↓ lower is better); `undefined (N)`: reason N is listed under "
        "the table. The full tables follow it."
    )
    out.append(
        "- random = null row: the kind=random basis is random directions (drawn in the whitened "
        "space unless its info says raw; firing densities matched to the other bases), the "
        "baseline every lift vs random dirs is measured against (its own lift is empty)."
    )
    out.append("- n after a value: the features behind it (lifts: this basis vs the null).")
    out.append(
        "- shuffled = null scores: each feature's examples simulated with another feature's "
        "explanation."
    )
    out.append(
        "- Headline: the lift columns. Failed or undefined scores are never averaged in (counted "
        "in undef / failed)."
    )
    out += [f"- **{k}**: {v}" for k, v in legend_head.items()]
    out += [f"- **{k}**: {v}" for k, v in LEGEND.items()]
    out += [f"- **{k}**: {v}" for k, v in scorer_legend(board.scorer_columns).items()]
    out += [f"- **{k}**: {v}" for k, v in stage_columns.legend(board.stage_columns).items()]
    return "\n".join(out) + "\n"

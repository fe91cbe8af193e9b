"""Stage-contributed columns (``columns/<stage>.json``: causal, output-side, plug-ins) in the
leaderboard: each column ``c`` becomes ``c``, ``c_ci_low``, ``c_ci_high``, ``c_n`` in every
basis row, undefined cells are listed with their reason (``stage_undefined``), and markdown /
HTML show them in a second table, "Causal and output-side" (HTML: ``html_page``)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import polars as pl

from autointerp.columns import ColumnDoc, StageColumns

TITLE = "Causal and output-side"
#: the per-row list of undefined stage cells, ``column: reason; ...``
UNDEFINED = "stage_undefined"


#: stages shown first, in this order (any other stage follows, by name)
STAGE_ORDER = ("ioi", "attribution", "ablation", "output")


def run_columns(cols: list[StageColumns]) -> dict[str, ColumnDoc]:
    """{column: doc} of a run's stages, in ``STAGE_ORDER`` then declaration order."""
    rank = {s: i for i, s in enumerate(STAGE_ORDER)}
    srt = sorted(cols, key=lambda sc: (rank.get(sc.stage, len(rank)), sc.stage))
    return {c.name: c for sc in srt for c in sc.columns}


def basis_cells(cols: list[StageColumns], basis: str) -> dict[str, Any]:
    """The flat cells of ``basis``: ``c``, ``c_ci_low``, ``c_ci_high``, ``c_n`` per column and
    ``stage_undefined`` (``column: reason; ...``)."""
    out: dict[str, Any] = {}
    undefined = []
    for sc in cols:
        for name, cell in (sc.rows.get(basis) or {}).items():
            out[name] = cell.value
            out[f"{name}_ci_low"] = cell.ci_low
            out[f"{name}_ci_high"] = cell.ci_high
            out[f"{name}_n"] = cell.n
            if cell.value is None:
                undefined.append(f"{name}: {cell.reason}")
    if undefined:
        out[UNDEFINED] = "; ".join(undefined)
    return out


def notes(cols: list[StageColumns]) -> list[str]:
    """The stages' own notes (``extra["notes"]``)."""
    return [str(n) for sc in cols for n in (sc.extra.get("notes") or [])]


def schema(docs: dict[str, ColumnDoc]) -> dict[str, Any]:
    """Table schema of the stage columns."""
    out: dict[str, Any] = {}
    for c in docs:
        out.update({c: pl.Float64, f"{c}_ci_low": pl.Float64, f"{c}_ci_high": pl.Float64})
        out[f"{c}_n"] = pl.Int64
    if docs:
        out[UNDEFINED] = pl.Utf8
    return out


def fmt_cell(row: dict[str, Any], doc: ColumnDoc) -> str:
    """``value [low, high] n=N``, or ``undefined`` (the reason is listed under the table);
    empty when the row has no such cell."""
    c = doc.name
    v = row.get(c)
    if v is None:
        reasons = row.get(UNDEFINED) or ""
        return "undefined" if f"{c}: " in reasons else ""
    s = format(v, doc.fmt)
    lo, hi = row.get(f"{c}_ci_low"), row.get(f"{c}_ci_high")
    if lo is not None or hi is not None:
        f = lambda x: "?" if x is None else format(x, doc.fmt)  # noqa: E731
        s += f" [{f(lo)}, {f(hi)}]"
    if row.get(f"{c}_n") is not None:
        s += f" n={row[f'{c}_n']}"
    return s


def shown(df: pl.DataFrame, docs: dict[str, ColumnDoc]) -> list[ColumnDoc]:
    """The stage columns the table has a value or a reason for."""
    out = []
    for d in docs.values():
        has_val = d.name in df.columns and df[d.name].null_count() < len(df)
        has_reason = UNDEFINED in df.columns and any(
            f"{d.name}: " in (r or "") for r in df[UNDEFINED].to_list()
        )
        if has_val or has_reason:
            out.append(d)
    return out


#: where one ``column: reason`` of ``stage_undefined`` ends and the next begins
_NEXT_REASON = re.compile(r"; (?=[A-Za-z_][A-Za-z0-9_]*: )")


def reasons_of(text: str | None) -> dict[str, str]:
    """``{column: reason}`` from a row's ``stage_undefined`` (``column: reason; ...``)."""
    out = {}
    for part in _NEXT_REASON.split(text or ""):
        col, sep, why = part.partition(": ")
        if sep:
            out[col] = why
    return out


def undefined_lines(df: pl.DataFrame, columns: Iterable[str] | None = None) -> list[str]:
    """``basis: column: reason; ...`` per row with undefined stage cells; with ``columns``
    only those columns' reasons (a table of a few columns lists only its own cells)."""
    if UNDEFINED not in df.columns:
        return []
    want = None if columns is None else set(columns)
    multi = "run" in df.columns and df["run"].n_unique() > 1
    out = []
    for r in df.iter_rows(named=True):
        why = reasons_of(r.get(UNDEFINED))
        parts = [f"{c}: {w}" for c, w in why.items() if want is None or c in want]
        if parts:
            out.append(f"{r['run'] + '/' if multi else ''}{r['basis']}: {'; '.join(parts)}")
    return out


def markdown(df: pl.DataFrame, docs: dict[str, ColumnDoc]) -> list[str]:
    """The "Causal and output-side" table and the undefined cells' reasons (markdown lines)."""
    cols = shown(df, docs)
    if not cols:
        return []
    multi = "run" in df.columns and df["run"].n_unique() > 1
    head = ["basis", "kind", *(["run"] if multi else []), *[c.name for c in cols]]
    lines = [f"### {TITLE}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    seen = set()
    for r in df.iter_rows(named=True):
        key = (r.get("run"), r["basis"])
        if key in seen:  # one row per basis (rows per method share the stage cells)
            continue
        seen.add(key)
        cells = [r["basis"], r.get("kind") or "", *([r["run"]] if multi else [])]
        cells += [fmt_cell(r, c) for c in cols]
        lines.append("| " + " | ".join(str(x).replace("|", "\\|") for x in cells) + " |")
    lines.append("")
    und = list(dict.fromkeys(undefined_lines(df, [c.name for c in cols])))
    if und:
        lines += ["Undefined causal / output-side cells and why:", ""]
        lines += [f"- {u}" for u in und] + [""]
    return lines


def legend(docs: dict[str, ColumnDoc]) -> dict[str, str]:
    """Legend entries: what each stage column means and which way is better."""
    better = {"higher": " (higher is better)", "lower": " (lower is better)", "none": ""}
    return {d.name: d.doc + better.get(d.better, "") for d in docs.values()}

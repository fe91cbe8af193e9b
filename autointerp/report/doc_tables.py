"""Named generators of the numbers in README.md and docs/ (``autointerp docs``): each reads
committed runs and returns markdown. A table generator fills a block between
``<!-- autointerp:table NAME ARGS -->`` and ``<!-- /autointerp:table -->``; the ``cell``
generator fills one inline value (:mod:`autointerp.report.docgen` finds the markers).

A RUN argument is a run directory relative to the repository root (``results/default/run-…``),
or a suite (``default``: the one run under ``results/default``; ``default/run-…``: that run).
Register another generator with :func:`generator`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autointerp.errors import AutointerpError
from autointerp.report import headline, stage_columns
from autointerp.report.columns import DISPLAY, fmt_value
from autointerp.report.runs import Run, find_runs, load_run
from autointerp.report.table import Leaderboard, leaderboard_table


@dataclass
class Context:
    """The repository root and the runs / leaderboards read so far (each built once)."""

    root: Path
    _runs: dict[Path, Run] = field(default_factory=dict)
    _boards: dict[Path, Leaderboard] = field(default_factory=dict)

    def run_dir(self, spec: str) -> Path:
        """``default`` / ``default/run-x`` / a path -> the run directory."""
        for cand in (self.root / spec, self.root / "results" / spec):
            if (cand / "manifest.json").is_file():
                return cand
            if cand.is_dir():
                found = find_runs([cand])
                if len(found) == 1:
                    return Path(found[0])
                if len(found) > 1:
                    names = ", ".join(sorted(Path(f).name for f in found))
                    raise AutointerpError(
                        f"{spec!r} holds {len(found)} runs ({names}): name one, e.g. "
                        f"{spec}/{Path(found[0]).name}"
                    )
        raise AutointerpError(
            f"no run {spec!r} under {self.root} (tried {spec} and results/{spec}): give a run "
            "directory or a suite folder under results/"
        )

    def run(self, spec: str) -> Run:
        p = self.run_dir(spec).resolve()
        if p not in self._runs:
            self._runs[p] = load_run(p)
        return self._runs[p]

    def board(self, spec: str) -> Leaderboard:
        p = self.run_dir(spec).resolve()
        if p not in self._boards:
            self._boards[p] = leaderboard_table([self.run(spec)])
        return self._boards[p]


Generator = Callable[[Context, list[str], dict[str, str]], str]
GENERATORS: dict[str, Generator] = {}


def generator(name: str) -> Callable[[Generator], Generator]:
    """Register a table generator ``fn(ctx, args, options) -> markdown`` under ``name``."""

    def deco(fn: Generator) -> Generator:
        GENERATORS[name] = fn
        return fn

    return deco


def _one(args: list[str], n: int, usage: str) -> None:
    if len(args) != n:
        raise AutointerpError(f"marker arguments {args}: expected {usage}")


@generator("headline")
def headline_table(ctx: Context, args: list[str], opts: dict[str, str]) -> str:
    """``headline RUN``: the headline table of the run's leaderboard, with its reasons."""
    _one(args, 1, "headline RUN")
    b = ctx.board(args[0])
    h = headline.build_headline(b.table, b.stage_columns)
    return "\n".join(headline.markdown(h)).rstrip("\n")


@generator("causal")
def causal_table(ctx: Context, args: list[str], opts: dict[str, str]) -> str:
    """``causal RUN [columns=a,b,...]``: the causal and output-side table (those columns only,
    in that order, when given), undefined cells with their reasons."""
    _one(args, 1, "causal RUN [columns=a,b,...]")
    b = ctx.board(args[0])
    docs = b.stage_columns
    if "columns" in opts:
        want = [c for c in opts["columns"].split(",") if c]
        missing = [c for c in want if c not in docs]
        if missing:
            raise AutointerpError(
                f"run {args[0]!r} has no stage column {', '.join(missing)}; it has "
                + ", ".join(docs)
            )
        docs = {c: docs[c] for c in want}
    lines = stage_columns.markdown(b.table, docs)
    if not lines:
        raise AutointerpError(f"run {args[0]!r} has no causal / output-side columns")
    return "\n".join(lines[2:]).rstrip("\n")  # without the "### ..." title


@generator("minus")
def minus_table(ctx: Context, args: list[str], opts: dict[str, str]) -> str:
    """``minus TRAINED RANDOM [column=sim_score] [method=pmi]``: trained minus random model,
    one row per basis, the difference with its bootstrap CI."""
    from autointerp.report.compare import compare_runs

    _one(args, 2, "minus TRAINED RANDOM")
    col, method = opts.get("column", "sim_score"), opts.get("method", "pmi")
    diffs = compare_runs(ctx.run(args[0]), ctx.run(args[1]))
    lines = [f"| basis | trained | random model | trained − random ({col}, {method}) |",
             "|---|---|---|---|"]  # fmt: skip
    for d in diffs:
        if d.method != method:
            continue
        for r in d.table.iter_rows(named=True):
            if r["column"] != col:
                continue
            diff = "undefined" if r["difference"] is None else f"{r['difference']:.3f}"
            if r["ci_low"] is not None and r["ci_high"] is not None:
                diff += f" [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
            t, rv = (fmt_value(r[k], col) or "undefined" for k in ("trained", "random"))
            lines.append(f"| {d.basis} | {t} | {rv} | {diff} |")
    if len(lines) == 2:
        raise AutointerpError(f"no basis has column {col!r} with method {method!r} in both runs")
    return "\n".join(lines)


@generator("stage-times")
def stage_times(ctx: Context, args: list[str], opts: dict[str, str]) -> str:
    """``stage-times RUN``: seconds per stage of the invocation that computed the run
    (``manifest.json``'s stage summary), slowest first, and the total wall time."""
    _one(args, 1, "stage-times RUN")
    m = json.loads((ctx.run_dir(args[0]) / "manifest.json").read_text())
    stages = sorted(m.get("stages") or [], key=lambda s: -float(s.get("seconds") or 0))
    if not stages:
        raise AutointerpError(f"run {args[0]!r} has no stage summary in its manifest.json")
    lines = ["| stage | seconds | what |", "|---|---:|---|"]
    lines += [
        f"| {s['stage']} | {float(s['seconds']):.1f} | {s.get('status', '')} |" for s in stages
    ]
    if m.get("wall_time_s") is not None:
        lines.append(f"| **total (wall)** | **{float(m['wall_time_s']):.1f}** | |")
    return "\n".join(lines)


@generator("bench")
def bench_output(ctx: Context, args: list[str], opts: dict[str, str]) -> str:
    """``bench NAME``: a benchmark's committed output (``benchmarks/results/NAME.txt``, written
    by the benchmark itself with its host and date), as a text block."""
    _one(args, 1, "bench NAME")
    p = ctx.root / "benchmarks" / "results" / f"{args[0]}.txt"
    if not p.is_file():
        raise AutointerpError(
            f"{p} is missing: run benchmarks/{args[0]}.py (it writes its output there)"
        )
    return "```text\n" + p.read_text().rstrip("\n") + "\n```"


#: column -> its CI columns, for the main table (stage columns use ``c_ci_low`` / ``c_ci_high``)
_CI = {c: (lo, hi) for _, c, lo, hi in DISPLAY if lo and hi}


def cell_value(ctx: Context, args: list[str], opts: dict[str, str]) -> str:
    """``cell RUN BASIS COLUMN [method=M] [fmt=.3f] [ci]``: one number of the run's
    leaderboard; the row of method M, else the headline's choice (``HEADLINE_METHODS``).
    ``ci`` appends ``[low, high]``; ``fmt`` overrides the column's format."""
    pos = [a for a in args if a != "ci"]
    _one(pos, 3, "cell RUN BASIS COLUMN [method=M] [fmt=F] [ci]")
    spec, basis, col = pos
    b = ctx.board(spec)
    rows = [r for r in b.table.iter_rows(named=True) if r["basis"] == basis]
    if "method" in opts:
        rows = [r for r in rows if r.get("method") == opts["method"]]
    if not rows:
        raise AutointerpError(
            f"run {spec!r} has no row for basis {basis!r}"
            + (f" and method {opts['method']!r}" if "method" in opts else "")
        )
    row = headline._method_row(rows)
    if col not in row:
        raise AutointerpError(f"the leaderboard of {spec!r} has no column {col!r}")
    doc = b.stage_columns.get(col)
    fmt = opts.get("fmt") or (doc.fmt if doc else None)

    def f(v: Any) -> str:
        if v is None:
            return "undefined"
        return format(v, fmt) if fmt else fmt_value(v, col)

    text = f(row[col])
    if "ci" in args:
        lo, hi = (f"{col}_ci_low", f"{col}_ci_high") if doc else _CI.get(col, (None, None))
        if lo is None or row.get(lo) is None:
            raise AutointerpError(f"column {col!r} of {spec!r} has no CI for {basis!r}")
        text += f" [{f(row[lo])}, {f(row[hi])}]"
    return text

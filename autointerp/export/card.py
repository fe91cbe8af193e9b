"""A one-page markdown results card of one run (``autointerp card RUN_DIR``): setup, the
headline table, the figures, the caveats the run's sanity checks raised, and the command that
reproduces it. Reads only the run directory; the figures are written next to the card."""

from __future__ import annotations

import base64
import shlex
from pathlib import Path
from typing import Any

import polars as pl

from autointerp.export.common import METHODS
from autointerp.report.runs import Run, load_run
from autointerp.results import atomic_write_bytes, atomic_write_text

#: the key columns of the fallback headline table: (header, value column, CI low, CI high)
KEY_COLUMNS: tuple[tuple[str, str, str | None, str | None], ...] = (
    (
        "lift vs random dirs",
        "lift_vs_random_dirs",
        "lift_vs_random_dirs_ci_low",
        "lift_vs_random_dirs_ci_high",
    ),
    ("sim score", "sim_score", "sim_ci_low", "sim_ci_high"),
    ("IOI KL k16 lift", "ioi_kl_k16_lift", "ioi_kl_k16_lift_ci_low", "ioi_kl_k16_lift_ci_high"),
    (
        "output score lift",
        "output_score_lift",
        "output_score_lift_ci_low",
        "output_score_lift_ci_high",
    ),
    ("FVU", "fvu", None, None),
    ("CE loss recovered", "ce_loss_score", None, None),
    ("L0", "l0", None, None),
)
FIGURES = (
    ("l0_vs_score", "L0 vs simulation score"),
    ("score_distributions", "per-feature simulation scores"),
    ("ioi_curve", "IOI patching curve: KL vs k"),
)


def _fmt(v: Any, lo: Any = None, hi: Any = None) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "undefined"
    if not isinstance(v, (int, float)):
        return str(v)
    s = f"{v:.3f}"
    return s + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else "")


def key_table(df: pl.DataFrame) -> list[str]:
    """A markdown table of the key columns, one row per basis (its row of the first method in
    :data:`METHODS`): the fallback when the report has no headline table of its own."""
    cols = [c for c in KEY_COLUMNS if c[1] in df.columns]
    head = "| basis | kind | method | " + " | ".join(c[0] for c in cols) + " |"
    lines = [head, "|---|---|---|" + "---|" * len(cols)]
    rank = {m: i for i, m in enumerate(METHODS)}
    best: dict[str, dict[str, Any]] = {}
    for r in df.iter_rows(named=True):
        cur = best.get(r["basis"])
        key = rank.get(str(r.get("method")), len(METHODS))
        if cur is None or key < rank.get(str(cur.get("method")), len(METHODS)):
            best[r["basis"]] = r
    for r in best.values():
        null = r.get("kind") == "random"
        cells = [
            "(the null)"
            if null and r.get(v) is None and "lift" in v
            else _fmt(r.get(v), r.get(lo) if lo else None, r.get(hi) if hi else None)
            for _, v, lo, hi in cols
        ]
        lines.append(
            f"| {r['basis']} | {r.get('kind', '')} | {r.get('method', '')} | "
            + " | ".join(cells)
            + " |"
        )
    return lines


def headline_markdown(board: Any, df: pl.DataFrame) -> list[str]:
    """The report's headline table when it has one (``autointerp.report.headline``), else
    :func:`key_table`."""
    try:
        from autointerp.report import headline  # type: ignore[attr-defined]

        h = headline.build_headline(df, board.stage_columns)
        return list(headline.markdown(h))
    except (ImportError, AttributeError):
        return key_table(df)


def reproduce_command(run: Run, candidates: list[str] | None = None) -> tuple[str, str]:
    """(command, note): ``autointerp run SUITE`` with the first suite file among
    ``candidates`` (default ``evals/<suite>.toml``, then the bundled suite of that name) whose
    config hash is the run's; else the command for ``evals/<suite>.toml`` and a note that no
    such file matches (the suite as run is ``suite.json`` in the run directory)."""
    from autointerp.config import load_suite
    from autointerp.errors import AutointerpError
    from autointerp.results import stable_hash

    want = str(run.manifest.get("config_hash") or "")
    default = f"evals/{run.suite}.toml"
    for cand in candidates or [default, run.suite]:
        try:
            h = stable_hash(load_suite(cand).model_dump())
        except (AutointerpError, OSError, ValueError):
            continue
        if h == want:
            extra = [] if run.name == f"run-{h}" else ["--run", run.name]
            return " ".join(shlex.quote(p) for p in ["autointerp", "run", cand, *extra]), ""
    cmd = " ".join(shlex.quote(p) for p in ["autointerp", "run", default, "--run", run.name])
    return cmd, (
        f"no suite file found with this run's config hash {want}: the suite as run is "
        f"{run.path.name}/suite.json; write it as {default} to rerun exactly"
    )


def _setup(run: Run) -> list[str]:
    cfg = dict(run.manifest.get("config") or {})
    corpus = cfg.get("corpus") or {}
    llm = run.manifest.get("llm") or {}

    def role(r: str) -> str:
        d = llm.get(r) or {}
        return f"{d.get('model', '?')} ({d.get('backend', '?')})"

    bases = ", ".join(f"{b} ({k})" for b, k in run.bases)
    return [
        f"| model | {run.model} |",
        f"| hookpoint | `{run.hookpoint}` |",
        f"| corpus | {corpus.get('source', '?')}, {corpus.get('n_tokens', '?')} tokens, "
        f"context {corpus.get('context', '?')} |",
        f"| bases | {bases} |",
        f"| explainer | {role('explainer')} |",
        f"| simulator / judge | {role('simulator')} / {role('scorer')} |",
        f"| protocol id | `{run.protocol_id}` |",
        f"| autointerp | {(run.manifest.get('versions') or {}).get('autointerp', '?')} |",
        f"| wall time | {float(run.manifest.get('wall_time_s') or 0):.0f} s on "
        f"{run.manifest.get('device', '?')} |",
    ]


def caveats(run: Run, board: Any) -> list[str]:
    """The run's sanity flags (per leaderboard row), its notes (sanity gate, missing files)
    and the reasons of undefined stage cells (not the null's own "the null itself"), one line
    each."""
    out = []
    for df in board.groups.values():
        for r in df.iter_rows(named=True):
            if r.get("flag"):
                out.append(f"{r['basis']} ({r.get('method', '')}): {r['flag']}")
    out += list(run.notes)
    kinds = dict(run.bases)
    for sc in run.columns:
        for basis, cells in sc.rows.items():
            for col, c in cells.items():
                if c.value is not None or not c.reason:
                    continue
                if kinds.get(basis) == "random" and "null itself" in c.reason:
                    continue
                out.append(f"{basis}: {col} undefined ({c.reason})")
    return list(dict.fromkeys(out))


def _figures(run: Run, board: Any, df: pl.DataFrame, folder: Path) -> list[tuple[str, str]]:
    from autointerp.report.html_plots import (
        _score_values,
        plot_distributions,
        plot_ioi_curves,
        plot_scatter,
    )

    by_label = {(run.suite, run.name): run}
    uris = [
        plot_scatter(df, "l0", "sim_score", "L0 vs simulation score", "simulation score", True),
        plot_distributions(df, _score_values(df, by_label)),
        plot_ioi_curves([run]),
    ]
    out = []
    for (name, alt), uri in zip(FIGURES, uris):
        if not uri:
            continue
        atomic_write_bytes(folder / f"{name}.png", base64.b64decode(uri.split(",", 1)[1]))
        out.append((alt, f"{folder.name}/{name}.png"))
    return out


def write_card(run_dir: str | Path, out: str | Path | None = None, figures: bool = True) -> Path:
    """Write the card of the run at ``run_dir`` to ``out`` (default ``<run_dir>/card.md``),
    its figures to ``<out's folder>/card_figures/``; returns the card's path."""
    from autointerp.report import leaderboard_table

    run = load_run(run_dir)
    path = Path(out) if out is not None else run.path / "card.md"
    board = leaderboard_table([run])
    df = board.table
    lines = [f"# Results card: {run.label}", "", "## Setup", "", "| | |", "|---|---|"]
    lines += _setup(run)
    lines += ["", "## Headline", ""]
    lines += headline_markdown(board, df) if len(df) else ["(no scored rows)"]
    lines += ["", "Bootstrap 95% CIs in brackets; the random-directions row is the null.", ""]
    if figures and len(df):
        figs = _figures(run, board, df, path.parent / "card_figures")
        if figs:
            lines += ["## Figures", ""] + [f"![{alt}]({p})" for alt, p in figs] + [""]
    cav = caveats(run, board)
    lines += ["## Caveats", ""] + ([f"- {c}" for c in cav] or ["- none raised"]) + [""]
    cmd, note = reproduce_command(run)
    lines += ["## Reproduce", "", "```", cmd, "```", ""] + ([note, ""] if note else [])
    atomic_write_text(path, "\n".join(lines))
    return path

"""The ``leaderboard`` command, ``build`` (runs under paths -> one rendered leaderboard) and
the leaderboard written inside each run directory."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from autointerp.errors import AutointerpError
from autointerp.report.html_page import render_html
from autointerp.report.markdown import render_markdown
from autointerp.report.runs import find_runs, load_run
from autointerp.report.table import leaderboard_table
from autointerp.report.tabular import render_csv, render_json
from autointerp.results import atomic_write_text

log = logging.getLogger(__name__)


def write_run_leaderboard(run_dir: str | Path, *, html: bool = True) -> list[Path]:
    """Write ``leaderboard.md`` (and ``leaderboard.html``) inside a run directory."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    board = leaderboard_table([run])
    written = [run_dir / "leaderboard.md"]
    atomic_write_text(written[0], render_markdown(board))
    if html:
        written.append(run_dir / "leaderboard.html")
        atomic_write_text(written[1], render_html(board, [run]))
        from autointerp.report.ioi_panels import write_ioi_panels

        png = write_ioi_panels(run, run_dir)
        if png is not None:
            written.append(png)
    return written


FORMATS = ("md", "html", "csv", "json")


def build(
    paths: list[str | Path],
    fmt: str = "md",
    *,
    sort_by: str | None = None,
    descending: bool = True,
    n_boot: int | None = None,
    seed: int = 0,
) -> str:
    """Find runs under ``paths`` and render their leaderboard in ``fmt``."""
    if fmt not in FORMATS:
        raise AutointerpError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    runs = [load_run(p) for p in find_runs(list(paths))]
    board = leaderboard_table(
        runs, sort_by=sort_by, descending=descending, n_boot=n_boot, seed=seed
    )
    if fmt == "md":
        return render_markdown(board)
    if fmt == "csv":
        return render_csv(board)
    if fmt == "json":
        return render_json(board)
    return render_html(board, runs)


def build_minus(
    trained: str | Path, random: str | Path, fmt: str = "md", *, n_boot: int = 1000, seed: int = 0
) -> str:
    """Trained minus random model, one table per basis (:mod:`autointerp.report.compare`)."""
    from autointerp.report.compare import compare_runs, diffs_frame, render_diff_markdown

    def one(p: str | Path) -> Any:
        found = find_runs([p])
        if len(found) != 1:
            raise AutointerpError(
                f"--minus compares one run with one run; {p} holds {len(found)} runs: give a "
                "run directory (the folder with manifest.json)"
            )
        return load_run(found[0])

    t, r = one(trained), one(random)
    diffs = compare_runs(t, r, n_boot=n_boot, seed=seed)
    if fmt == "md":
        return render_diff_markdown(t, r, diffs)
    if fmt == "csv":
        return diffs_frame(diffs).write_csv()
    if fmt == "json":
        return diffs_frame(diffs).write_json()
    raise AutointerpError("--minus writes md, csv or json; pass --format md|csv|json")


def _cmd(args: argparse.Namespace) -> int:
    if args.minus:
        if len(args.results_dirs) != 1:
            raise AutointerpError("--minus RANDOM_RUN takes one trained run: TRAINED_RUN --minus R")
        text = build_minus(
            args.results_dirs[0], args.minus, args.format, n_boot=args.n_boot or 1000,
            seed=args.seed,
        )  # fmt: skip
    else:
        text = build(
            args.results_dirs,
            args.format,
            sort_by=args.sort,
            descending=not args.asc,
            n_boot=args.n_boot,
            seed=args.seed,
        )
    if args.out:
        atomic_write_text(args.out, text)
        log.info("wrote %s", args.out)
    else:
        sys.stdout.write(text)
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "leaderboard",
        help="tables of many runs (md, html, csv, json)",
        description="Leaderboard of run directories; only runs with equal protocol id are put "
        "side by side, the others are set apart with the reason.",
    )
    p.add_argument(
        "results_dirs",
        nargs="+",
        metavar="RESULTS_DIR",
        help="a run directory or a folder searched recursively for runs (manifest.json)",
    )
    p.add_argument("--format", choices=FORMATS, default="md")
    p.add_argument("--sort", metavar="COLUMN", default=None, help="column to sort by")
    p.add_argument("--asc", action="store_true", help="sort ascending (default descending)")
    p.add_argument("--out", metavar="FILE", default=None, help="write here instead of stdout")
    p.add_argument("--n-boot", type=int, default=None, help="bootstrap resamples for CIs")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument(
        "--minus",
        metavar="RANDOM_RUN",
        default=None,
        help="trained minus random model: RESULTS_DIR is the trained run, RANDOM_RUN the run "
        "of evals/random-model.toml; one table per basis (docs/random-model.md)",
    )
    p.set_defaults(func=_cmd)

"""The ``export`` and ``card`` commands (thin: parse, call :mod:`autointerp.export`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _cmd_export(args: argparse.Namespace) -> int:
    from autointerp.export import export_run

    paths, notes = export_run(args.run_dir, args.to, args.out)
    size = sum(p.stat().st_size for p in paths if p.is_file())
    for n in notes:
        print(f"note: {n}")
    print(f"wrote {len(paths)} files ({size / 1e6:.2f} MB) to {Path(args.out).resolve()}")
    return 0


def _cmd_card(args: argparse.Namespace) -> int:
    from autointerp.export.card import write_card

    p = write_card(args.run_dir, args.out, figures=not args.no_figures)
    print(f"wrote {p.resolve()}")
    return 0


def register(sub: Any) -> None:
    from autointerp.export import TARGETS

    p = sub.add_parser("export", help="write a run as SAEBench result JSON or a Neuronpedia export")
    p.add_argument("run_dir", help="a run directory (results/<suite>/<run>)")
    p.add_argument("out", help="output folder (created)")
    p.add_argument("--to", required=True, choices=sorted(TARGETS), help="export format")
    p.set_defaults(func=_cmd_export)
    c = sub.add_parser("card", help="write a one-page markdown results card of a run")
    c.add_argument("run_dir", help="a run directory (results/<suite>/<run>)")
    c.add_argument("--out", default=None, help="card path (default: RUN_DIR/card.md)")
    c.add_argument("--no-figures", action="store_true", help="no figures (faster)")
    c.set_defaults(func=_cmd_card)

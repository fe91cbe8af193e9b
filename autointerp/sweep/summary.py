"""The command line's summary of a finished sweep: per member, what its stages did, then the
root's stage times (``sweep.json``)."""

from __future__ import annotations

import json
from pathlib import Path

from autointerp.run.runner import format_summary


def print_sweep_summary(root: Path) -> None:
    """Print the sweep's time summary and where its results are."""
    s = json.loads((root / "sweep.json").read_text())
    for h, rows in (s.get("member_stages") or {}).items():
        done = ", ".join(f"{r['stage']} {r['status']}" for r in rows)
        print(f"{h}: {done}")
    print(format_summary(s.get("stages") or [], s["this_invocation_s"]))
    print(f"layer figure: {root / 'layers.png'}")
    print(f"results in {root} (one run per hookpoint: {', '.join(s['members'].values())})")

"""Time building the leaderboard of many runs (target: 50 runs, all formats, <= 5 s).

Baseline in the same run: just reading every run's manifest and parquet files.

    python benchmarks/bench_leaderboard.py [--runs 50] [--features 100]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from synthetic_runs import synth_run  # noqa: E402

from autointerp import report  # noqa: E402


def read_only(paths: list[Path]) -> int:
    n = 0
    for p in paths:
        json.loads((p / "manifest.json").read_text())
        for f in sorted(p.glob("*.parquet")):
            n += pl.read_parquet(f).height
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--features", type=int, default=100, help="scored features per basis")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401  (import cost is not the leaderboard's)
    import scipy.stats  # noqa: F401

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        for i in range(args.runs):
            pid = "p1" if i % 10 else "p2"  # a few runs under another protocol: set apart
            synth_run(
                root / "suite" / f"run{i:03d}", seed=i, n_scored=args.features, protocol_id=pid
            )
        gen = time.perf_counter() - t
        paths = report.find_runs([root])

        t, c = time.perf_counter(), time.process_time()
        n_rows = read_only(paths)
        t_read, c_read = time.perf_counter() - t, time.process_time() - c

        t, c = time.perf_counter(), time.process_time()
        runs = [report.load_run(p) for p in paths]
        board = report.leaderboard_table(runs, n_boot=1000)
        t_table, c_table = time.perf_counter() - t, time.process_time() - c
        timings = {}
        for name, fn in [
            ("md", lambda: report.render_markdown(board)),
            ("csv", lambda: report.render_csv(board)),
            ("json", lambda: report.render_json(board)),
            ("html", lambda: report.render_html(board, runs)),
        ]:
            t, c = time.perf_counter(), time.process_time()
            out = fn()
            timings[name] = (time.perf_counter() - t, time.process_time() - c, len(out))
        total = t_table + sum(v[0] for v in timings.values())
        c_total = c_table + sum(v[1] for v in timings.values())

    print(
        f"{args.runs} runs x 4 bases x {args.features} scored features "
        f"(generated in {gen:.1f} s; {n_rows} parquet rows; n_boot={board.n_boot})"
    )
    print(f"{'step':<36}{'wall s':>8}{'cpu s':>8}")
    print(f"{'baseline: read manifests + parquet':<36}{t_read:>8.3f}{c_read:>8.3f}")
    print(f"{'load + tables + CIs + density bins':<36}{t_table:>8.3f}{c_table:>8.3f}")
    for name, (s, cs, size) in timings.items():
        print(f"{'render ' + name + f' ({size / 1e6:.1f} MB)':<36}{s:>8.3f}{cs:>8.3f}")
    print(f"{'total leaderboard (all formats)':<36}{total:>8.3f}{c_total:>8.3f}   target <= 5 s")
    print(f"load average (1 min) {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(
        f"rows: {sum(g.height for g in board.groups.values())} in {len(board.groups)} "
        f"protocol groups; {len(board.set_apart)} runs set apart"
    )


if __name__ == "__main__":
    from _out import recorded  # benchmarks/_out.py: the output, committed with host and date

    with recorded("bench_leaderboard"):
        main()

"""Spread across seeds: the default suite run with several seeds, each headline number's
between-seed spread printed next to its within-run 95% CI (a claim that does not survive the
seeds is not a claim).

A seed here moves everything that is drawn at random in a run: the suite's ``seed`` (the fit
subsample of PCA / ICA, FastICA's start, the random-directions null, the scored-feature sample,
the records' windows, the shuffled-explanation donors, the output score's derangement, the
IOI prompt pairs and every bootstrap) and the SAE's own ``train.seed`` (its initialisation and
batch order), which the suite's ``seed`` does not set. The corpus, the subject model and the
simulator's weights stay the same.

    python benchmarks/bench_seeds.py [--seeds 0 1 2] [--quick] [--out benchmarks/results/seeds.txt]

``--quick`` runs a reduced suite (16k tokens, 4 features per basis, no causal stages)
to show the script works; its numbers are not the default suite's. Each run goes to its own
run directory under ``--results`` (default: a temporary directory) and the work dir's
caches are shared, so a rerun resumes. Cost of the full run: three cold default runs (their
tokens and activations computed once and reused by the other seeds).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from autointerp.config import load_suite, suite_from_dict  # noqa: E402

#: headline columns: (table column, CI low column, CI high column); rows without them skip
HEADLINES = [
    ("lift_vs_random_dirs", "lift_vs_random_dirs_ci_low", "lift_vs_random_dirs_ci_high"),
    ("lift_vs_shuffled", "lift_vs_shuffled_ci_low", "lift_vs_shuffled_ci_high"),
    ("sim_score", "sim_ci_low", "sim_ci_high"),
    ("fvu", None, None),
    ("ce_loss_score", None, None),
]
#: stage columns (one row per basis, method-independent): cell value, CI low, CI high
STAGE_HEADLINES = ["ioi_kl_k16_lift", "ablation_kl", "output_score_lift"]

QUICK = {
    "corpus.n_tokens": 16384,
    "records.n_features": 4,
    "metrics.n_tokens": 512,
    "causal.ioi.enabled": False,
    "causal.attribution.enabled": False,
    "causal.ablation.enabled": False,
    "causal.output.enabled": False,
    "scoring.n_bootstrap": 100,
}


def _set(d: dict[str, Any], dotted: str, value: Any) -> None:
    *path, last = dotted.split(".")
    for p in path:
        d = d[p]
    d[last] = value


def seeded_suite(path: str, seed: int, quick: bool):
    """The suite at ``path`` with every seed set to ``seed`` (``--quick``: reduced)."""
    d = load_suite(path).model_dump()
    d["seed"] = seed
    d["name"] = f"{d['name']}-seeds"
    for b in d["bases"]:
        if b.get("train") is not None:
            b["train"]["seed"] = seed
    if quick:
        for k, v in QUICK.items():
            _set(d, k, v)
        for b in d["bases"]:
            if b.get("train") is not None:
                b["train"]["epochs"] = 1
    return suite_from_dict(d, path)


def headline_cells(run_dir: Path) -> dict[tuple[str, str, str], tuple[float, float, float]]:
    """{(basis, method, column): (value, CI low, CI high)} of one run's leaderboard (NaN where
    a bound is missing); stage columns under method ``-``."""
    from autointerp.report import leaderboard_table, load_run

    board = leaderboard_table([load_run(run_dir)])
    out: dict[tuple[str, str, str], tuple[float, float, float]] = {}
    for df in board.groups.values():
        for r in df.iter_rows(named=True):
            for col, lo, hi in HEADLINES:
                v = r.get(col)
                if v is None:
                    continue
                lo_v = r.get(lo) if lo else None
                hi_v = r.get(hi) if hi else None
                out[(r["basis"], r["method"], col)] = (
                    float(v),
                    math.nan if lo_v is None else float(lo_v),
                    math.nan if hi_v is None else float(hi_v),
                )
            for col in STAGE_HEADLINES:
                v, lo_v, hi_v = r.get(col), r.get(f"{col}_ci_low"), r.get(f"{col}_ci_high")
                if v is None:
                    continue
                out[(r["basis"], "-", col)] = (
                    float(v),
                    math.nan if lo_v is None else float(lo_v),
                    math.nan if hi_v is None else float(hi_v),
                )
    return out


def spread_table(cells: list[dict], seeds: list[int]) -> str:
    """One line per (basis, method, column): the value of each seed, the between-seed
    standard deviation and range, and the mean within-run CI half-width. ``spread/CI`` above
    1 says the seeds move the number more than its CI admits."""
    keys = sorted({k for c in cells for k in c})
    head = (
        f"{'basis':<10} {'method':<12} {'column':<22} "
        + " ".join(f"{'seed ' + str(s):>9}" for s in seeds)
        + f" {'sd':>7} {'range':>7} {'CI half':>8} {'range/CI':>9}"
    )
    lines = [head, "-" * len(head)]
    for k in keys:
        vals = [c.get(k) for c in cells]
        got = [v[0] for v in vals if v is not None and math.isfinite(v[0])]
        halves = [
            (v[2] - v[1]) / 2
            for v in vals
            if v is not None and math.isfinite(v[1]) and math.isfinite(v[2])
        ]
        sd = statistics.stdev(got) if len(got) > 1 else math.nan
        rng = max(got) - min(got) if got else math.nan
        half = statistics.fmean(halves) if halves else math.nan
        ratio = rng / (2 * half) if half and math.isfinite(half) and half > 0 else math.nan
        cells_txt = " ".join(f"{v[0]:>9.3f}" if v is not None else f"{'-':>9}" for v in vals)
        lines.append(
            f"{k[0]:<10} {k[1]:<12} {k[2]:<22} {cells_txt} {sd:>7.3f} {rng:>7.3f} "
            f"{half:>8.3f} {ratio:>9.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", default=str(REPO / "evals" / "default.toml"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--quick", action="store_true", help="a reduced suite (shows it works)")
    ap.add_argument("--results", default=None, help="results root (default: a temp dir)")
    ap.add_argument("--work-dir", default=None, help="heavy artifacts (default: user cache)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "seeds.txt"))
    args = ap.parse_args()
    from autointerp.pipeline import run_suite

    root = Path(args.results or tempfile.mkdtemp(prefix="autointerp-seeds-"))
    cells, times = [], []
    for seed in args.seeds:
        suite = seeded_suite(args.suite, seed, args.quick)
        t = time.perf_counter()
        rd = run_suite(
            suite, results_root=root, run_name=f"seed-{seed}", work_dir=args.work_dir,
            progress=False,
        )  # fmt: skip
        times.append(time.perf_counter() - t)
        cells.append(headline_cells(Path(rd)))
        print(f"seed {seed}: {times[-1]:.0f} s, {rd}", flush=True)
    what = "quick (reduced) suite" if args.quick else "default suite"
    name = Path(args.suite).resolve()
    name = name.relative_to(REPO) if name.is_relative_to(REPO) else name
    text = (
        f"# between-seed spread of the {what} ({name}{', --quick' * args.quick}), "
        f"seeds {args.seeds}\n"
        f"# run seconds per seed: {', '.join(f'{t:.0f}' for t in times)}\n"
        "# range/CI = (max - min over seeds) / (mean within-run 95% CI width); > 1: the seeds\n"
        "# move the number by more than one run's CI says it is known\n\n"
        + spread_table(cells, args.seeds)
        + "\n"
    )
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    print(f"written to {out}")


if __name__ == "__main__":
    main()

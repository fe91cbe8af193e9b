"""``autointerp score CKPT`` after an earlier ``score`` on the same model, corpus and hookpoint
(the stages it computed reused per basis) vs a fresh work dir and LLM cache (nothing reusable:
every stage computed, as a first score does), side by side in one run.

Setup (not timed): two tiny topk SAEs (seeds 0 and 1) trained on SmolLM2's activations at the
suite's hookpoint over a small corpus, saved as native checkpoints ``ckpt-a`` and ``ckpt-b``;
then ``score ckpt-a --baselines`` (the earlier run). Timed: ``score ckpt-b --baselines`` in
that work dir (reuse) and in a fresh one (fresh). Both the same suite, so the leaderboards'
numbers must match (checked).

    PYTHONPATH=. python benchmarks/bench_score_reuse.py [--n-tokens 8192] [--n-features 4]
                          [--metrics-tokens 512] [--no-llm] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _env(cache: Path) -> dict[str, str]:
    from autointerp.model import cache_dir

    cache.mkdir(parents=True, exist_ok=True)
    models = cache / "models"
    if not models.exists() and (cache_dir() / "models").exists():
        models.symlink_to(cache_dir() / "models")  # the dequantised model: not part of a score
    return {**os.environ, "AUTOINTERP_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO)}


def _sets(args: argparse.Namespace) -> list[str]:
    sets = [f"corpus.n_tokens={args.n_tokens}", f"records.n_features={args.n_features}",
            f"metrics.n_tokens={args.metrics_tokens}"]  # fmt: skip
    if args.no_llm:
        sets += ["explain.style=top_tokens", "scoring.scorers=[]", "scoring.shuffled_null=false"]
    return [x for s in sets for x in ("--set", s)]


def prepare(root: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    """Two SAEs trained by a suite on the small corpus, copied out as checkpoints."""
    from autointerp.config import suite_from_dict

    train = {"architecture": "topk", "expansion": 2, "k": 16, "epochs": 2, "batch_size": 1024}
    suite = suite_from_dict(
        {
            "name": "prep",
            "corpus": {"n_tokens": args.n_tokens},
            "metrics": {"n_tokens": args.metrics_tokens},
            "bases": [
                {"kind": "sae", "name": "ckpt-a", "train": {**train, "seed": 0}},
                {"kind": "sae", "name": "ckpt-b", "train": {**train, "seed": 1}},
            ],
            "records": {"n_features": 1},
            "explain": {"style": "top_tokens"},
            "scoring": {"scorers": [], "shuffled_null": False},
        }
    )
    (root / "prep.json").write_text(suite.model_dump_json())
    code = (
        "import json,sys; from autointerp.config import Suite; from autointerp.pipeline import "
        "SuiteRun; s=Suite.model_validate(json.load(open(sys.argv[1]))); SuiteRun(s, "
        "results_root=sys.argv[2], work_dir=sys.argv[3], progress=False).run()"
    )
    cmd = [sys.executable, "-c", code, str(root / "prep.json"), str(root / "prep-res"),
           str(root / "prep-work")]  # fmt: skip
    subprocess.run(cmd, check=True, env=_env(root / "prep-cache"))
    out = []
    for label in ("ckpt-a", "ckpt-b"):
        (src,) = (root / "prep-work" / "sae").glob(f"{label}-*")
        shutil.copytree(src, root / label)
        out.append(root / label)
    return out[0], out[1]


def score(root: Path, ckpt: Path, work: str, run: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "autointerp", "score", str(ckpt), "--baselines", "-q",
           "--results", str(root / "res"), "--run", run, "--work-dir", str(root / work),
           *_sets(args)]  # fmt: skip
    t = time.perf_counter()
    p = subprocess.run(cmd, env=_env(root / f"cache-{work}"), capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"score failed:\n{p.stderr[-3000:]}")
    rd = root / "res" / "score" / run
    man = json.loads((rd / "manifest.json").read_text())
    return {"wall": wall, "stages": {s["stage"]: s for s in man["stages"]}, "dir": rd,
            "first_line": p.stdout.splitlines()[0]}  # fmt: skip


def board(rd: Path) -> list[dict]:
    from autointerp.report import leaderboard_table, load_run

    t = leaderboard_table([load_run(rd)]).table
    return t.drop("run", "wall_time_s", "protocol_id").sort("basis", "method").to_dicts()


def same_measurements(a: Path, b: Path) -> dict[str, bool]:
    """Metrics, records and diagnostics of two runs compared exactly (NaN equal to NaN)."""
    import polars as pl

    def metrics(rd: Path) -> list[dict]:
        return pl.read_parquet(rd / "metrics.parquet").fill_nan(None).sort("basis").to_dicts()

    recs = sorted(p.name for p in (a / "records").glob("*.jsonl"))
    return {
        "metrics": metrics(a) == metrics(b),
        "records": all(
            (a / "records" / n).read_bytes() == (b / "records" / n).read_bytes() for n in recs
        ),  # fmt: skip
        "diagnostics": (a / "diagnostics.json").read_text() == (b / "diagnostics.json").read_text(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-tokens", type=int, default=8192, help="corpus tokens")
    ap.add_argument("--n-features", type=int, default=4, help="scored features per basis")
    ap.add_argument("--metrics-tokens", type=int, default=512, help="held-out metric tokens")
    ap.add_argument("--no-llm", action="store_true", help="top_tokens explanations, no scorer")
    ap.add_argument("--out", default=None, help="keep the runs here (default: a temp dir)")
    args = ap.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="bench-score-reuse-"))
    root.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    a, b = prepare(root, args)
    earlier = score(root, a, "w", "earlier", args)
    what = "no LLM" if args.no_llm else "LLM"
    print(f"setup: checkpoints {time.perf_counter() - t - earlier['wall']:.0f} s, earlier "
          f"score of ckpt-a {earlier['wall']:.0f} s ({args.n_tokens} tokens, "
          f"{args.n_features} features per basis, {what})")  # fmt: skip
    reuse = score(root, b, "w", "reuse", args)
    fresh = score(root, b, "fresh", "fresh", args)
    print("\nscore ckpt-b --baselines: fresh work dir vs after score ckpt-a (same work dir)")
    print(f"{'stage':<12} {'fresh s':>8} {'reuse s':>8}  reuse status")
    for name, row in fresh["stages"].items():
        r = reuse["stages"].get(name, {})
        print(f"{name:<12} {row['seconds']:8.1f} {r.get('seconds', 0):8.1f}  {r.get('status', '')}")
    print(f"{'wall':<12} {fresh['wall']:8.1f} {reuse['wall']:8.1f}  (process, model load incl.)")
    print(f"speed-up {fresh['wall'] / reuse['wall']:.2f}x")
    same = same_measurements(reuse["dir"], fresh["dir"])
    print(f"equal to the fresh run's: {same}")
    board_same = board(reuse["dir"]) == board(fresh["dir"])
    print(f"leaderboards equal (all columns but run / wall time / protocol id): {board_same}")
    if not board_same and not args.no_llm:
        print("  (explanations come from the LLM response cache for the reused bases; the batched "
              "explainer's greedy answers depend on which prompts share a batch, so the LLM "
              "columns can differ; --no-llm compares the whole leaderboard)")  # fmt: skip
    print(reuse["first_line"])
    if not all(same.values()) or (args.no_llm and not board_same):
        raise SystemExit("the reused run's measurements differ from the fresh run's")


if __name__ == "__main__":
    main()

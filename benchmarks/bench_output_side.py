"""Stages ``ablation`` and ``output`` on the default suite (bundled SmolLM2, 5 bases x 64
features): their own time, next to a naive baseline measured in the same run (one full forward
per (feature, context), spliced, with full-vocabulary logits at every position), extrapolated
from a sample to all the ablation's contexts. Also prints the leaderboard cells.

Reuses the committed run's upstream stages (records) and the work dir's activations and bases
(fitted once when missing), so only the two stages are computed:

    python benchmarks/bench_output_side.py [--suite evals/default.toml] [--baseline-n 16]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from autointerp.config import load_suite  # noqa: E402
from autointerp.model import cache_dir, splice  # noqa: E402
from autointerp.run.runner import Runner  # noqa: E402
from autointerp.run.store import RunStore  # noqa: E402
from autointerp.stages import suite_stages  # noqa: E402
from autointerp.stages.env import SuiteEnv  # noqa: E402

UPSTREAM = {"tokens", "split", "gate", "activations", "bases", "density", "records"}


def naive_seconds(env, runner, n: int) -> tuple[float, int]:
    """Seconds per (feature, context) of the naive way, and the number of contexts."""
    from autointerp.causal.ablation import ablated, top_contexts

    v = runner.values
    ids, acts, mask = v["tokens"].ids, v["activations"].acts, v["split"].mask
    cfg = env.suite.causal.ablation
    hp = env.sm.hookpoint(env.suite.model.hookpoint)
    jobs = []
    for b in v["bases"]:
        for r in v["records"].records[b.name]:
            for c in top_contexts(r, cfg.n_contexts, cfg.n_positions, mask):
                jobs.append((b, c))
    t = time.perf_counter()
    for b, c in jobs[:n]:
        row = torch.from_numpy(ids[c.seq : c.seq + 1].astype(np.int64))
        x = torch.from_numpy(np.array(acts[c.seq : c.seq + 1], dtype=np.float32))
        keep = torch.from_numpy(np.asarray(mask[c.seq : c.seq + 1]))
        with torch.no_grad():
            lp0 = F.log_softmax(env.sm.model(input_ids=row).logits.float(), -1)
            xa = ablated(b, x, torch.tensor([c.feature]), keep)
            with splice(hp, lambda a, xa=xa: xa.to(a.dtype)):
                lp1 = F.log_softmax(env.sm.model(input_ids=row).logits.float(), -1)
        (lp0.exp() * (lp0 - lp1)).sum(-1)
    return (time.perf_counter() - t) / max(1, min(n, len(jobs))), len(jobs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default=str(REPO / "evals" / "default.toml"))
    ap.add_argument("--run", default=None, help="committed run dir to start from")
    ap.add_argument("--baseline-n", type=int, default=16)
    a = ap.parse_args()
    suite = load_suite(a.suite)
    src = Path(a.run) if a.run else next((REPO / "results" / suite.name).glob("run-*"))
    tmp = Path(tempfile.mkdtemp())
    run_dir = tmp / suite.name / src.name
    shutil.copytree(src, run_dir)
    store = RunStore(run_dir, cache_dir() / "work")
    env = SuiteEnv(suite, store, progress=False, llm_cache=tmp / "llm.sqlite")
    stages = [s for s in suite_stages() if s.name in UPSTREAM | {"ablation", "output"}]
    runner = Runner(stages, store, env, progress=False)
    t = time.perf_counter()
    runner.run()
    wall = time.perf_counter() - t
    rows = {r["stage"]: r for r in runner.summary()}
    print(f"torch threads {torch.get_num_threads()}, wall {wall:.1f} s (incl. upstream)")
    for name in ("bases", "records", "ablation", "output"):
        r = rows[name]
        print(f"  {name:9s} {r['seconds']:8.1f} s  {r['status']}")
    per, n_jobs = naive_seconds(env, runner, a.baseline_n)
    abl = runner.values["ablation"]
    print(
        f"ablation: {n_jobs} (feature, context) pairs in {rows['ablation']['seconds']:.1f} s "
        f"(batched, from the hookpoint) vs naive {per:.2f} s each -> ~{per * n_jobs:.0f} s"
    )
    for stage in ("ablation", "output"):
        cols = runner.values[stage]
        print(f"{stage} (per-basis seconds {cols.extra.get('seconds')})")
        for basis, cells in cols.rows.items():
            txt = ", ".join(
                f"{c} {v.value:.4f} [{v.ci_low:.4f}, {v.ci_high:.4f}] n={v.n}"
                if v.value is not None
                else f"{c} undefined ({v.reason})"
                for c, v in cells.items()
            )
            print(f"  {basis:10s} {txt}")
    del abl
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    from _out import recorded  # benchmarks/_out.py: the output, committed with host and date

    with recorded("bench_output_side"):
        main()

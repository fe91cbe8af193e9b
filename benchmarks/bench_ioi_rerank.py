"""The cost of the IOI bootstrap that re-fits the ranking (``[causal.ioi] ranking_bootstrap``)
on the bundled SmolLM2 with the default suite's bases (64 pairs, layer 6), side by side with
the stage's own patched states in one process.

Per basis it counts the distinct patched states (pair, effective feature set) the stage runs
for its three rankings' curves, and the new states R replicates add on top of them (the memo
of :mod:`autointerp.causal.rerank`, seeded with the point curves), for several R. Counting
needs no forward pass: the cost is in states, and a state's seconds are measured by running
``--time-states`` of the SAE's new states, so the printed seconds are states x that figure
(this host, this load). No assertions.

    python benchmarks/bench_ioi_rerank.py            # ~2.5 CPU-min on 2 cores
    python benchmarks/bench_ioi_rerank.py --requests-only   # what the replicates ask for
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_ioi  # noqa: E402
from _out import recorded  # noqa: E402
from bench_ioi import HOOK, load_bases  # noqa: E402

from autointerp.causal import patching  # noqa: E402
from autointerp.causal.ioi_prompts import ioi_pairs  # noqa: E402
from autointerp.causal.ranking import RANKINGS, pair_orders  # noqa: E402
from autointerp.causal.rerank import (  # noqa: E402
    StateMemo,
    draws,
    fitted_blocks,
    rank_masks,
    replicate,
)
from autointerp.model import load_model  # noqa: E402
from autointerp.stages.ioi import full_rotations  # noqa: E402

RS = (1, 5, 10, 20, 50, 100, 200)


def point_states(
    memo: StateMemo, a: np.ndarray, halves: np.ndarray, ks: list[int], rankings: tuple[str, ...]
) -> int:
    """Register the point curves' states of ``rankings``; returns the memo's count."""
    n_p = len(a)
    for r in rankings:
        orders = pair_orders(a, halves, r, True)
        for p in range(n_p):
            memo.request(np.array([p]), rank_masks(orders[p], ks))
    return len(memo.pair)


def _cells(counts, base) -> str:
    return " ".join(f"{int(c):10d} {c / base:4.1f}x" for c in counts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--time-states", type=int, default=192)
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache/autointerp/work")
    ap.add_argument("--random", default="bases/random-5303fc381518", help="the null's dir")
    args = ap.parse_args()
    bench_ioi.DEFAULT["random"] = args.random
    missing = [r for r in bench_ioi.DEFAULT.values() if not (args.work / r).exists()]
    if missing:
        sys.exit(f"the default run's bases are not all in {args.work}: {missing}")
    torch.set_num_threads(args.threads)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, "
          f"torch threads {args.threads}, {args.pairs} pairs, {HOOK}")  # fmt: skip
    sm = load_model("smollm2-gguf", device="cpu")
    hp = sm.hookpoint(HOOK)
    pairs = ioi_pairs(sm.tokenizer, args.pairs, 0, sm.bos_token_id)
    t = time.perf_counter()
    data = patching.prepare(sm, hp, pairs, 2)
    print(f"prepare {time.perf_counter() - t:.1f} s")
    x = torch.cat([g.x_clean[g.patch] for g in data.groups])
    bases = load_bases(args.work, x)
    bases += full_rotations(bases)
    halves = np.array([p.half for p in pairs])
    head = " ".join(f"{'R=' + str(r):>10}     " for r in RS)
    print(f"\nnew patched states for R replicates (in-sample + held-out), / the stage's own\n"
          f"{'basis':12} {'stage':>6} | {head}")  # fmt: skip
    totals = np.zeros(len(RS) + 1)
    timed = None
    for b in bases:
        ks = patching.k_values("pow2", b.n_features)
        a = patching.attribution(sm, hp, data, b)
        stage = point_states(StateMemo(sm, hp, data, b, 64), a, halves, ks, RANKINGS)
        memo = StateMemo(sm, hp, data, b, 64)  # seeded as the stage seeds it
        n0 = point_states(memo, a, halves, ks, ("in_sample", "held_out"))
        counts, done = [], 0
        reps = {r: draws(halves, r, max(RS), 0) for r in ("in_sample", "held_out")}
        for R in RS:
            for i in range(done, R):
                for r, d in reps.items():
                    replicate(memo, ks, fitted_blocks(a, halves, r, d[i], True))
            done = R
            counts.append(len(memo.pair) - n0)
        totals += [stage, *counts]
        print(f"{b.name:12} {stage:6d} | {_cells(counts, stage)}", flush=True)
        if timed is None and b.n_features > 2000:  # time the SAE's first new states
            todo = np.arange(n0, min(n0 + args.time_states, len(memo.pair)))
            memo.vals[:] = 0.0
            memo.vals[todo] = np.nan
            t = time.perf_counter()
            ran = memo.run()
            timed = (time.perf_counter() - t) / max(1, ran)
            print(f"  (timed {ran} of its states: {1e3 * timed:.1f} ms per state)", flush=True)
    print(f"{'all':12} {int(totals[0]):6d} | {_cells(totals[1:], totals[0])}")
    if timed:
        secs = " ".join(f"{c * timed:8.0f} s   " for c in totals[1:])
        print(f"{'seconds':12} {totals[0] * timed:6.0f} | {secs}")
        print(f"(at {1e3 * timed:.1f} ms per state measured here; the stage's seconds also "
              "include prepare and the attribution)")  # fmt: skip


def requests_only() -> None:
    """The (pair, k) states the replicates ask for, before the memo (no model: the draws
    depend only on the halves of the default pairs, the template split of seed 0)."""
    from autointerp.causal.ioi_prompts import TEMPLATES, split_halves

    th = split_halves(len(TEMPLATES), 0)
    halves = np.array([th[i % len(TEMPLATES)] for i in range(64)])
    grids = {"sae-topk": 14, "pca": 12, "ica": 12, "neurons": 12, "random": 14, "pca-full": 12}
    print(f"64 pairs, halves {np.bincount(halves).tolist()}, grid sizes {grids}")
    print("R  requested (pair, k) states, all 6 bases")
    for R in RS:
        n = sum(len(np.unique(d[0])) for d in draws(halves, "in_sample", R, 0))
        n += sum(len(np.unique(x)) for d in draws(halves, "held_out", R, 0) for x in d)
        print(f"{R:<3} {n * sum(grids.values()):10d}")


if __name__ == "__main__":
    if "--requests-only" in sys.argv:
        with recorded("bench_ioi_rerank_requests"):
            requests_only()
    else:
        with recorded("bench_ioi_rerank"):
            main()

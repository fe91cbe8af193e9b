"""Activation caching throughput vs a bare HF forward, and the default suite's time per stage.

    python benchmarks/bench_pipeline.py                # both parts
    python benchmarks/bench_pipeline.py --skip-suite   # throughput only

Part 1 runs, on the same batches in the same process: (a) a bare HF forward of the whole model
(what a naive harness does, reading ``output_hidden_states``), (b) the harness's
``run_to_hookpoint`` (forward stops after the hooked layer), (c) ``cache_activations`` (b + writing
the memory-mapped cache). Part 2 runs the suite cold (fresh cache dir: the GGUF is dequantised
again, no activations, bases or LLM answers; results under ``--results``, which must not hold this
config's run already), then again (rerun of a finished suite), printing per-stage times, LLM
calls and peak RSS. Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def throughput(n_rows: int, batch: int) -> None:
    from autointerp.activations import cache_activations
    from autointerp.config import CorpusConfig
    from autointerp.corpus import tokenize_corpus
    from autointerp.model import load_model, run_to_hookpoint

    sm = load_model("smollm2-gguf", device="cpu")
    tokens = tokenize_corpus(CorpusConfig(n_tokens=n_rows * 64, context=64), sm.tokenizer)
    hp = sm.hookpoint("blocks.6.hook_resid_post")
    n_tok = tokens.size
    batches = [
        torch.from_numpy(tokens[i : i + batch].astype(np.int64))
        for i in range(0, len(tokens), batch)
    ]

    def timed(fn) -> float:
        t = time.perf_counter()
        with torch.no_grad():
            for ids in batches:
                fn(ids)
        return time.perf_counter() - t

    bare = timed(lambda ids: sm.model(input_ids=ids, output_hidden_states=True).hidden_states[7])
    hooked = timed(lambda ids: run_to_hookpoint(sm, hp, ids))
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        cache_activations(sm, hp, tokens, Path(d) / "a.npy", batch_size=batch, progress=False)
        cached = time.perf_counter() - t
    print(f"\n== activation caching, {n_tok} tokens, batch {batch} x {tokens.shape[1]} ==")
    print(f"{'method':45s} {'seconds':>8s} {'tokens/s':>10s}")
    for name, s in [
        ("bare HF forward (all 30 layers + lm_head)", bare),
        ("harness run_to_hookpoint (stops at layer 6)", hooked),
        ("harness cache_activations (+ memmap write)", cached),
    ]:
        print(f"{name:45s} {s:8.2f} {n_tok / s:10.0f}")


def suite_times(suite: str, results: str) -> None:
    from autointerp.config import load_suite
    from autointerp.pipeline import SuiteRun

    s = load_suite(suite)
    with tempfile.TemporaryDirectory() as d:
        # truly cold: no dequantised model, activations, bases or LLM answers from earlier runs
        os.environ["AUTOINTERP_CACHE_DIR"] = str(Path(d) / "cache")
        kw = dict(results_root=results, work_dir=Path(d) / "work", llm_cache=Path(d) / "llm.sqlite")
        first = SuiteRun(s, **kw)
        if (first.paths.run_dir / "manifest.json").exists():
            raise SystemExit(
                f"{first.paths.run_dir} holds this config's run already, so the run would resume, "
                "not start cold; remove it or pass another --results"
            )
        t = time.perf_counter()
        rd = first.run()
        cold = time.perf_counter() - t
        man = json.loads((rd / "manifest.json").read_text())
        t = time.perf_counter()
        SuiteRun(s, progress=False, **kw).run()
        rerun = time.perf_counter() - t
        man2 = json.loads((rd / "manifest.json").read_text())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\n== suite {s.name}: {rd} ==")
    for k, v in sorted(man["timings"].items(), key=lambda kv: -kv[1]):
        print(f"  {k:28s} {v:8.1f} s")
    u = man["llm_usage"]["total"]
    print(
        f"cold run: {cold:.1f} s (target <= 600 s); LLM calls {u['calls']}, "
        f"prompt tokens {u['prompt_tokens']}, completion tokens {u['completion_tokens']}"
    )
    for stage, us in sorted(man["llm_usage"]["by_stage"].items()):
        print(
            f"  LLM stage {stage:14s} calls {us['calls']:5d}  prompt tokens {us['prompt_tokens']}"
        )
    items = first._journals()[1].read()
    n_feat = sum(1 for r in items if r["key"][3] == "llm")
    sim_calls = man["llm_usage"]["by_stage"].get("score", {}).get("calls", 0)
    sim_calls += man["llm_usage"]["by_stage"].get("score.shuffled", {}).get("calls", 0)
    print(
        f"simulator calls per scored (feature, null): {sim_calls / max(n_feat, 1):.2f} "
        f"({n_feat} items; pmi: one prompt per test window and explanation, the neutral one "
        "shared)"
    )
    new_calls = man2["llm_usage"]["total"]["calls"] - u["calls"]
    print(f"rerun of the finished suite: {rerun:.1f} s (target <= 20 s); new LLM calls {new_calls}")
    print(f"peak RSS {peak:.2f} GiB (target <= 6 GiB)")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=128, help="rows of 65 tokens for part 1")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--suite", default="evals/default.toml")
    p.add_argument("--results", default="results")
    p.add_argument("--skip-suite", action="store_true")
    p.add_argument("--skip-throughput", action="store_true")
    a = p.parse_args()
    if not a.skip_throughput:
        throughput(a.rows, a.batch)
    if not a.skip_suite:
        suite_times(a.suite, a.results)


if __name__ == "__main__":
    main()

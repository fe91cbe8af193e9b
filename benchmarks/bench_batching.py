"""Batching in the transformers backend, side by side with the unbatched baselines (same
process, same inputs: 16-token windows of gensim's Wikipedia text, the SmolLM2 weights):

1. explanation-PMI prompts of one feature (10 windows x (explanation, neutral)): the shared-
   prefix batch (prefix run once, keys/values repeated) vs the same prompts as one right-padded
   batch, in bfloat16 (where native) and float32;
2. compact explanations of N features: greedy chats generated together (batches of
   ``--batch``) vs llama.cpp one at a time (the previous default explainer).

Prints seconds; asserts nothing.

    python benchmarks/bench_batching.py [--features 8] [--explanations 32] [--batch 32]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from autointerp.config import CorpusConfig
from autointerp.corpus import tokenize_corpus
from autointerp.explain import explain_feature
from autointerp.llm import LLMConfig, make_client
from autointerp.llm import transformers_backend as tb
from autointerp.model import load_tokenizer
from autointerp.scoring.pmi import NEUTRAL, pmi_prefix, window_text
from autointerp.types import Example, FeatureRecord

EXPLANATION = 'The words "war" and "army" are both about the military and battles in history'


def _windows(n: int) -> list[Example]:
    tok = load_tokenizer("smollm2-gguf")
    rows = tokenize_corpus(CorpusConfig(n_tokens=n * 64, context=64), tok)
    out = []
    for r in rows[:n]:
        ids = [int(t) for t in r[1:17]]
        acts = [float(i % 5 == 0) for i in range(16)]
        out.append(Example([tok.decode([t]) for t in ids], ids, acts, "top"))
    return out


def pmi_batches(n_features: int) -> None:
    wins = _windows(10 * n_features)
    print(f"\n== explanation-PMI, {n_features} features x 20 prompts ==")
    for dtype in ("bfloat16", "float32"):
        for name, min_shared in (("shared-prefix batch", 8), ("right-padded batch", 10**9)):
            tb.MIN_SHARED_PREFIX = min_shared
            cl = make_client(LLMConfig(backend="transformers", dtype=dtype))
            if dtype == "bfloat16" and cl.dtype != "bfloat16":
                print("  (no native bf16 here: skipped)")
                break
            t = time.perf_counter()
            for f in range(n_features):
                prompts, ats = [], []
                for ex in wins[10 * f : 10 * f + 10]:
                    text, _ = window_text(ex.tokens)
                    for pre in (pmi_prefix(EXPLANATION), pmi_prefix(NEUTRAL)):
                        prompts.append(pre + text)
                        ats.append(list(range(len(pre), len(pre) + len(text))))
                cl._prompt_batch_sync(prompts, 0, None, ats)
            dt = (time.perf_counter() - t) / n_features
            print(f"  {dtype:9s} {name:22s} {dt:6.2f} s/feature")
    tb.MIN_SHARED_PREFIX = 8


def explanations(n: int, batch: int) -> None:
    wins = _windows(4 * n)
    recs = [FeatureRecord("b", i, 0.01, 1.0, explain=wins[4 * i : 4 * i + 4]) for i in range(n)]
    print(f"\n== compact explanations of {n} features (max_tokens 48) ==")
    engines = {
        f"transformers, batches of {batch}": LLMConfig(
            backend="transformers", max_concurrency=batch
        ),
        "llama.cpp one at a time (baseline)": LLMConfig(backend="llamacpp", max_concurrency=1),
    }
    for name, cfg in engines.items():
        cl = make_client(cfg)

        async def run(client=cl):
            return await asyncio.gather(
                *(explain_feature(r, client, style="compact", max_tokens=48) for r in recs)
            )

        t = time.perf_counter()
        res = asyncio.run(run())
        dt = (time.perf_counter() - t) / n
        ok = sum(e.status == "ok" for e in res)
        print(f"  {name:36s} {dt:6.2f} s/explanation  ({ok}/{n} ok)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", type=int, default=8)
    ap.add_argument("--explanations", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    a = ap.parse_args()
    pmi_batches(a.features)
    explanations(a.explanations, a.batch)


if __name__ == "__main__":
    main()

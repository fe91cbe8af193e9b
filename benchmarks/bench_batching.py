"""Batching in the transformers backend, side by side with the unbatched baselines (same
process, same inputs: 16-token windows of gensim's Wikipedia text, the SmolLM2 weights):

1. explanation-PMI prompts of one feature (10 windows x (explanation, neutral)): the shared-
   prefix batch (prefix run once, keys/values repeated) vs the same prompts as one right-padded
   batch, in bfloat16 (where native) and float32;
2. the same PMI prompts of N features with distinct explanations, as the pipeline sends them
   (``prompt_logprobs_many`` per feature, all in flight): merged into multi-prefix passes
   (``max_concurrency`` 8) vs one feature per pass (``max_concurrency`` 1);
3. compact explanations of N features (4 example windows each, every 20th feature 12, so
   prompt lengths have a tail as in the suite): greedy chats generated together in batches of
   ``--batch`` (the default suite's) by ``llm/greedy.py`` vs the same batches through
   ``model.generate`` (left-padded prefill, dynamic cache), batches of 160, batches of 32 (the
   first 160 features), batches of 32 with the LM-head input strided, and llama.cpp one at a
   time (the first 32 features for the last two);
4. one batch of 154 real-text prompts with a long tail (146 of 54-72 tokens, 8 of 100-157),
   every row forced to 48 new tokens: ``greedy_generate`` vs ``model.generate``.

Prints seconds; asserts nothing.

    python benchmarks/bench_batching.py [--features 8] [--explanations 320] [--batch 320]
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


def pmi_merged(n_features: int) -> None:
    wins = _windows(10 * n_features)
    expls = [f"{EXPLANATION}, feature {f}" for f in range(n_features)]  # distinct prefixes
    print(f"\n== explanation-PMI, {n_features} features in flight, bfloat16 where native ==")
    for conc in (1, 8):
        cl = make_client(LLMConfig(backend="transformers", max_concurrency=conc))

        async def one(f: int, client=cl) -> None:
            prompts, ats = [], []
            for ex in wins[10 * f : 10 * f + 10]:
                text, _ = window_text(ex.tokens)
                for pre in (pmi_prefix(expls[f]), pmi_prefix(NEUTRAL)):
                    prompts.append(pre + text)
                    ats.append(list(range(len(pre), len(pre) + len(text))))
            await client.prompt_logprobs_many(prompts, top_logprobs=0, only_at=ats, cache=False)

        async def run() -> None:
            await asyncio.gather(*(one(f) for f in range(n_features)))

        t = time.perf_counter()
        asyncio.run(run())
        dt = (time.perf_counter() - t) / n_features
        what = "merged passes (max_concurrency 8)" if conc > 1 else "one feature per pass"
        print(f"  {what:36s} {dt:6.2f} s/feature")


def explanations(n: int, batch: int) -> None:
    wins = _windows(12 * n)
    recs = [
        FeatureRecord("b", i, 0.01, 1.0, explain=wins[12 * i : 12 * i + (4 if i % 20 else 12)])
        for i in range(n)
    ]
    print(f"\n== compact explanations of {n} features (max_tokens 48) ==")
    tf = "transformers"
    big = LLMConfig(backend=tf, max_concurrency=batch)
    engines = [  # (row, config, features used)
        (f"transformers, batches of {batch}", big, n),
        (f"batches of {batch}, model.generate (was)", big, n),
        ("batches of 160", LLMConfig(backend=tf, max_concurrency=160), n),
        ("batches of 32", LLMConfig(backend=tf, max_concurrency=32), min(n, 160)),
        ("batches of 32, LM-head input strided", LLMConfig(backend=tf, max_concurrency=32), 32),
        ("llama.cpp one at a time (baseline)", LLMConfig(backend="llamacpp"), 32),
    ]
    for name, cfg, used in engines:
        cl = make_client(cfg)
        if hasattr(cl, "_greedy"):
            cl._greedy = "generate" not in name and tb.supports_greedy_batch(cl.sm.model)
        if "strided" in name:  # same model object: drop the hook for this row only
            cl.sm.model.autointerp_head_hook.remove()

        async def run(client=cl, used=used):
            return await asyncio.gather(
                *(explain_feature(r, client, style="compact", max_tokens=48) for r in recs[:used])
            )

        t = time.perf_counter()
        res = asyncio.run(run())
        dt = (time.perf_counter() - t) / used
        ok = sum(e.status == "ok" for e in res)
        print(f"  {name:38s} {dt:6.2f} s/explanation  ({ok}/{used} ok)")
        if "strided" in name:
            tb._contiguous_head_input(cl.sm.model)


def long_tail(reps: int = 2) -> None:
    import torch

    from autointerp.llm.greedy import greedy_generate

    print("\n== 154 prompts (146 of 54-72 tokens, 8 of 100-157), 48 new tokens each ==")
    tok = load_tokenizer("smollm2-gguf")
    ids = tokenize_corpus(CorpusConfig(n_tokens=154 * 160, context=160), tok)
    g = torch.Generator().manual_seed(0)
    lens = torch.randint(54, 73, (146,), generator=g).tolist()
    lens += torch.randint(100, 158, (8,), generator=g).tolist()
    seqs = [[int(t) for t in r[:n]] for r, n in zip(ids, lens, strict=False)]
    cl = make_client(LLMConfig(backend="transformers"))
    model, pad, n = cl.sm.model, 0, max(lens)
    x = torch.tensor([[pad] * (n - len(q)) + q for q in seqs])
    mask = (torch.arange(n)[None] >= n - torch.tensor(lens)[:, None]).long()
    for _ in range(reps):
        t = time.perf_counter()
        greedy_generate(model, seqs, max_new_tokens=48, ends=set(), pad_id=pad)
        a = time.perf_counter() - t
        t = time.perf_counter()
        with torch.inference_mode():
            model.generate(
                input_ids=x, attention_mask=mask, max_new_tokens=48, min_new_tokens=48,
                do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=pad,
            )  # fmt: skip
        b = time.perf_counter() - t
        print(f"  greedy_generate {a:6.1f} s   model.generate (was) {b:6.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", type=int, default=8)
    ap.add_argument("--explanations", type=int, default=320)
    ap.add_argument("--batch", type=int, default=320)
    a = ap.parse_args()
    pmi_batches(a.features)
    pmi_merged(a.features)
    explanations(a.explanations, a.batch)
    long_tail()


if __name__ == "__main__":
    main()

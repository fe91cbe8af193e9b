"""All-at-once simulation: seconds per call through llama.cpp (the baseline) and through the
in-process transformers backend in float32 and bfloat16, on prompts shaped like the default
suite's (15 windows of 16 tokens of gensim's Wikipedia text), plus how closely each engine's
predictions follow llama.cpp's and float32's (Pearson over all predicted tokens). Same process,
same prompts. A second table times llama.cpp's bare prompt evaluation of the first prompt under
settings that could have sped it up (no logits, larger batches, flash attention). Prints
figures; asserts nothing.

    python benchmarks/bench_simulator.py [--features 6] [--windows 15] [--window 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import numpy as np

from autointerp.config import CorpusConfig
from autointerp.corpus import tokenize_corpus
from autointerp.llm import LLMConfig, make_client
from autointerp.model import load_tokenizer
from autointerp.scoring.simulation import simulate
from autointerp.types import Example

EXPLANATIONS = [
    "the word 'the'",
    "years and dates",
    "names of people",
    "punctuation at the end of a sentence",
    "words about music",
    "verbs in the past tense",
]


def _prompts(n_features: int, n_windows: int, window: int) -> list[tuple[str, list[Example]]]:
    tok = load_tokenizer("smollm2-gguf")
    rows = tokenize_corpus(CorpusConfig(n_tokens=n_features * n_windows * 64, context=64), tok)
    out = []
    for f in range(n_features):
        exs = []
        for w in range(n_windows):
            ids = [int(t) for t in rows[f * n_windows + w, 1 : 1 + window]]
            exs.append(Example([tok.decode([t]) for t in ids], ids, [0.0] * window, "top"))
        out.append((EXPLANATIONS[f % len(EXPLANATIONS)], exs))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", type=int, default=6)
    ap.add_argument("--windows", type=int, default=15)
    ap.add_argument("--window", type=int, default=16)
    a = ap.parse_args()
    prompts = _prompts(a.features, a.windows, a.window)
    engines = {
        "llama.cpp (Q4_1 GGUF), baseline": LLMConfig(backend="llamacpp", n_ctx=4096),
        "transformers float32": LLMConfig(backend="transformers", dtype="float32"),
        "transformers bfloat16": LLMConfig(backend="transformers", dtype="bfloat16"),
    }
    preds: dict[str, np.ndarray] = {}
    rows = []
    for name, cfg in engines.items():
        client = make_client(cfg)
        asyncio.run(simulate(*prompts[0], client))  # warm-up (first-call allocations)
        flat, n_tok = [], 0
        t = time.perf_counter()
        for expl, exs in prompts:
            res = asyncio.run(simulate(expl, exs, client))
            flat += [v for p in res.pred for v in p]
            n_tok += res.extra["prompt_tokens"]
        dt = time.perf_counter() - t
        preds[name] = np.array(flat)
        rows.append((name, dt / len(prompts), n_tok / dt))
    base = preds[next(iter(engines))]
    shape = f"{len(prompts)} prompts of {a.windows}x{a.window} tokens"
    print(f"\n== all-at-once simulation, {shape} ==")
    fp32 = preds["transformers float32"]
    head = ("engine", "s/call", "prompt tok/s", "speed-up", "r vs base", "r vs fp32")
    print("{:34s} {:>7s} {:>13s} {:>9s} {:>10s} {:>10s}".format(*head))
    for name, per_call, tps in rows:
        r = float(np.corrcoef(base, preds[name])[0, 1])
        r32 = float(np.corrcoef(fp32, preds[name])[0, 1])
        print(
            f"{name:34s} {per_call:7.2f} {tps:13.0f} {rows[0][1] / per_call:8.2f}x "
            f"{r:10.4f} {r32:10.4f}"
        )
    llama_settings(*prompts[0])


def llama_settings(explanation: str, examples: list[Example]) -> None:
    """Seconds for llama.cpp to evaluate one all-at-once prompt under other settings."""
    from llama_cpp import Llama

    from autointerp.llm.llamacpp import resolve_gguf
    from autointerp.scoring.simulation import build_all_at_once_prompt

    prompt, _ = build_all_at_once_prompt(explanation, examples)
    settings = {
        "logits at every token (what prompt logprobs need)": dict(logits_all=True),
        "no logits (lower bound of any selective read-out)": dict(logits_all=False),
        "no logits, n_batch = n_ubatch = 2048": dict(n_batch=2048, n_ubatch=2048),
        "no logits, flash attention": dict(flash_attn=True),
    }
    print("\n== llama.cpp prompt evaluation of one prompt, 2 runs, the second timed ==")
    for name, kw in settings.items():
        llm = Llama(
            model_path=str(resolve_gguf("smollm2-gguf")),
            n_ctx=4096,
            verbose=False,
            n_threads=os.cpu_count() or 1,
            **{"logits_all": False, **kw},
        )
        ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        for _ in range(2):
            llm.reset()
            t = time.perf_counter()
            llm.eval(ids)
            dt = time.perf_counter() - t
        print(f"{name:52s} {len(ids):5d} tokens {dt:6.2f} s")
        llm.close()


if __name__ == "__main__":
    main()

"""Known-answer benchmark: can a judge tell a feature's correct explanation from another's?

Synthetic features with exact per-token truth on real text (gensim's Wikipedia sample cut into
16-token windows by the real SmolLM2 tokenizer): single tokens, token classes, topical word
lists and contextual features (see ``FEATURES``). Per feature the test set is built as the suite
builds it: the 5 windows where it fires most plus 5 uniform random windows (disjoint from 10
explain windows that the floor's ``top_tokens`` explanation and the end-to-end explainer see).

Each (judge, method) scores every feature twice — with its correct explanation and with a
shuffled one (another feature's, a seeded derangement) — and prints per method:
mean r correct, mean r shuffled, the gap, and the paired effect size d_z = mean(diff) / sd(diff)
over features, next to a bootstrap 95% CI of the gap. Explanation sources: ``gold`` (the written
explanation), ``explained`` (the default suite's compact explainer, end to end) and
``top_tokens`` (no LLM; scored by ``token_match``, the floor). Prints figures; asserts nothing.

    python benchmarks/bench_known_answers.py [--backend transformers] [--no-all-at-once]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from collections.abc import Callable

import numpy as np

from autointerp.config import CorpusConfig
from autointerp.corpus import tokenize_corpus
from autointerp.explain import explain_feature
from autointerp.llm import LLMConfig, make_client
from autointerp.model import load_tokenizer
from autointerp.scoring.correlation import correlation_score
from autointerp.scoring.simulation import simulate
from autointerp.stats import bootstrap_mean_ci
from autointerp.types import Example, FeatureRecord

WINDOW = 16
Pred = Callable[[list[str], int], bool]  # (window tokens, position) -> fires?


def _word(t: str) -> str:
    return t.strip().lower()


def one_of(*words: str) -> Pred:
    ws = {w.lower() for w in words}
    return lambda toks, i: _word(toks[i]) in ws


#: (name, kind, gold explanation, predicate)
FEATURES: list[tuple[str, str, str, Pred]] = [
    ("the", "single token", 'the word "the"', lambda t, i: t[i] == " the"),
    ("of", "single token", 'the word "of"', lambda t, i: t[i] == " of"),
    ("comma", "single token", "commas", lambda t, i: t[i].strip() == ","),
    ("and", "single token", 'the word "and"', lambda t, i: t[i] == " and"),
    ("digits", "token class", "digits in numbers", lambda t, i: t[i].strip().isdigit()),
    (
        "capitalised",
        "token class",
        "capitalized words such as names",
        lambda t, i: t[i][:1] == " " and t[i][1:2].isupper(),
    ),
    ("period", "token class", "the period at the end of a sentence", lambda t, i: t[i] == "."),
    ("brackets", "token class", "parentheses", lambda t, i: t[i].strip() in ("(", ")")),
    (
        "months",
        "topical list",
        "names of months",
        one_of(
            *"january february march april may june july august september october "
            "november december".split()
        ),
    ),  # fmt: skip
    (
        "family",
        "topical list",
        "family members like father, mother, son",
        one_of(
            *"father mother son daughter brother sister wife husband family children "
            "child parents king queen".split()
        ),
    ),  # fmt: skip
    (
        "war",
        "topical list",
        "war and the military",
        one_of(*"war army battle troops military forces soldiers navy attack killed".split()),
    ),
    (
        "music",
        "topical list",
        "music, songs and albums",
        one_of(*"music song songs album band singer guitar rock released record".split()),
    ),
    (
        "after_the",
        "contextual",
        'the word right after "the"',
        lambda t, i: i > 0 and t[i - 1] == " the",
    ),
    (
        "in_year",
        "contextual",
        'the word "in" before a year',
        lambda t, i: t[i] == " in" and i + 1 < len(t) and t[i + 1].strip().isdigit(),
    ),
    (
        "sentence_start",
        "contextual",
        "the first word of a sentence",
        lambda t, i: i > 0 and t[i - 1] == "." and t[i][:1] == " " and t[i][1:2].isupper(),
    ),
    (
        "verb_was",
        "single token",
        'the words "was" and "were"',
        one_of("was", "were"),
    ),
]


def windows(n: int) -> list[tuple[list[int], list[str]]]:
    tok = load_tokenizer("smollm2-gguf")
    rows = tokenize_corpus(CorpusConfig(n_tokens=n * WINDOW * 4, context=64), tok)
    out = []
    for row in rows:
        body = [int(x) for x in row[1:]]
        for s in range(0, len(body) - WINDOW + 1, WINDOW):
            ids = body[s : s + WINDOW]
            out.append((ids, [tok.decode([i]) for i in ids]))
    return out[:n]


def build_record(name: str, pred: Pred, wins, rng: np.random.Generator) -> FeatureRecord:
    """5 top + 5 uniform random test windows, 10 explain windows (next strongest)."""
    exs = []
    for ids, toks in wins:
        acts = [1.0 if pred(toks, i) else 0.0 for i in range(len(toks))]
        exs.append((ids, toks, acts))
    order = sorted(range(len(exs)), key=lambda k: (-sum(exs[k][2]), rng.random()))
    firing = [k for k in order if sum(exs[k][2]) > 0]
    test_top, explain = firing[:5], firing[5:15]
    rest = sorted(set(range(len(exs))) - set(test_top) - set(explain))
    rand = list(rng.choice(rest, size=5, replace=False))

    def ex(k: int, kind: str) -> Example:
        ids, toks, acts = exs[k]
        return Example(list(toks), list(ids), list(acts), kind, seq=int(k), start=0)

    return FeatureRecord(
        basis="known",
        feature=FEATURES.index(next(f for f in FEATURES if f[0] == name)),
        density=float(np.mean([a for k in range(len(exs)) for a in exs[k][2]])),
        max_act=1.0,
        explain=[ex(k, "top") for k in explain],
        test_top=[ex(k, "top") for k in test_top],
        test_random=[ex(k, "random") for k in rand],
    )


def derangement(n: int, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    while True:
        p = rng.permutation(n)
        if not np.any(p == np.arange(n)):
            return p.tolist()


async def score_all(records, texts: list[str], client, method: str) -> list[float | None]:
    out = []
    for r, text in zip(records, texts, strict=True):
        exs = r.test_top + r.test_random
        if not text:
            out.append(None)
            continue
        sim = await simulate(text, exs, client, method=method)
        out.append(correlation_score([e.acts for e in exs], sim.pred))
    return out


def summary(real: list[float | None], shuf: list[float | None]) -> dict[str, float]:
    pairs = [(a, b) for a, b in zip(real, shuf, strict=True) if a is not None and b is not None]
    if len(pairs) < 2:
        return {"n": len(pairs)}
    a, b = np.array(pairs).T
    d = a - b
    ci = bootstrap_mean_ci(list(d), n_boot=2000, seed=0)
    sd = float(d.std(ddof=1))
    return {
        "n": len(pairs),
        "correct": float(a.mean()),
        "shuffled": float(b.mean()),
        "gap": float(d.mean()),
        "lo": ci.low,
        "hi": ci.high,
        "d_z": float(d.mean() / sd) if sd > 0 else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="transformers", help="simulator backend")
    ap.add_argument("--explainer", default="transformers", help="end-to-end explainer backend")
    ap.add_argument("--windows", type=int, default=3000)
    ap.add_argument("--no-all-at-once", action="store_true")
    ap.add_argument("--no-end-to-end", action="store_true")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    wins = windows(a.windows)
    records = [build_record(n, p, wins, rng) for n, _, _, p in FEATURES]
    perm = derangement(len(records))
    print(f"{len(records)} known-answer features on {len(wins)} real 16-token windows")
    for (n, kind, gold, _), r in zip(FEATURES, records, strict=True):
        fires = sum(a > 0 for e in r.test_top for a in e.acts)
        print(f"  {n:15s} {kind:13s} density {r.density:.4f}  top-window hits {fires:3d}  {gold}")
    sources: dict[str, list[str]] = {"gold": [g for _, _, g, _ in FEATURES]}
    if not a.no_end_to_end:
        expl = make_client(LLMConfig(backend=a.explainer, max_concurrency=32))

        async def explain_all():
            return await asyncio.gather(
                *(explain_feature(r, expl, style="compact", max_tokens=48) for r in records)
            )

        got = asyncio.run(explain_all())
        sources["explained"] = [e.text if e.status == "ok" else "" for e in got]
        for (n, *_), e in zip(FEATURES, got, strict=True):
            print(f"  explained {n:15s} [{e.status}] {e.text or e.error}")

    async def top_all():
        return await asyncio.gather(
            *(explain_feature(r, None, style="top_tokens") for r in records)
        )

    top = asyncio.run(top_all())
    sim = make_client(LLMConfig(backend=a.backend))
    runs = [("pmi", s) for s in sources]
    if not a.no_all_at_once:
        runs += [("all_at_once", s) for s in sources]
    rows = []
    for method, src in runs:
        texts = sources[src]
        t = time.perf_counter()
        real = asyncio.run(score_all(records, texts, sim, method))
        shuf = asyncio.run(score_all(records, [texts[p] for p in perm], sim, method))
        rows.append((f"{a.backend} {method}", src, summary(real, shuf), time.perf_counter() - t))
    texts = [e.text for e in top]
    real = asyncio.run(score_all(records, texts, None, "token_match"))
    shuf = asyncio.run(score_all(records, [texts[p] for p in perm], None, "token_match"))
    rows.append(("no LLM token_match (floor)", "top_tokens", summary(real, shuf), 0.0))
    print("\n== correct vs shuffled explanation, pooled Pearson r per feature ==")
    head = (
        "judge / method",
        "explanation",
        "n",
        "correct",
        "shuffled",
        "gap",
        "95% CI",
        "d_z",
        "s",
    )
    print("{:34s} {:11s} {:>3s} {:>8s} {:>8s} {:>7s} {:>17s} {:>6s} {:>6s}".format(*head))
    for name, src, s, dt in rows:
        if "gap" not in s:
            print(f"{name:34s} {src:11s} {s['n']:3d}  (too few scored features)")
            continue
        ci = f"[{s['lo']:.3f}, {s['hi']:.3f}]"
        print(
            f"{name:34s} {src:11s} {s['n']:3d} {s['correct']:8.3f} {s['shuffled']:8.3f} "
            f"{s['gap']:7.3f} {ci:>17s} {s['d_z']:6.2f} {dt:6.1f}"
        )
    print("\nexplained (first 6):", [re.sub(r"\s+", " ", t)[:40] for t in sources.get(
        "explained", [])[:6]])  # fmt: skip


if __name__ == "__main__":
    main()

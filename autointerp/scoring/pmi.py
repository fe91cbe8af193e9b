"""Explanation-PMI simulator and the no-LLM token-match floor.

``pmi`` (explanation pointwise mutual information; needs prompt-token logprobs). For each test
window ``w`` (its subject-model tokens joined into text) two prompts are read in one plain forward
pass each, no answer slots and no digits:

    P_e = "The following text contains many examples of {explanation}.\\n" + w
    P_0 = the same with the explanation replaced by ``NEUTRAL`` ("words")

For every simulator token ``u`` of ``w``: ``pmi(u) = log p(u | P_e before u) − log p(u | P_0
before u)`` (natural log). A subject token's prediction is the sum of ``pmi`` over the simulator
tokens that overlap its character span, clipped at 0: ``pred_j = max(0, Σ_u∩span(j) pmi(u))``;
a simulator token spanning two subject tokens (a merged "\\n\\n", or the prefix's last
characters merged with the window's first) counts for each of them.
It asks how much the explanation makes the token more expected; the correlation score is
invariant to its scale (nats, not 0-10). The neutral prompt does not depend on the explanation,
so real and shuffled-explanation scorings share it (one cached call). Simulator tokens with no
logprob (a shifted server's token outside its top-N) contribute 0 and are counted in
``extra["n_missing"]``; subject tokens no simulator token overlaps (an empty token text)
predict 0 and are counted in ``extra["n_unaligned"]`` (``docs/simulation.md``).

``token_match`` (no LLM; paired with the ``top_tokens`` explainer): the explanation
``tokens: "a", "b"`` lists tokens; ``pred_j = 1`` when token ``j`` (as :func:`display_token`
shows it) is one of them, else 0. A floor: how much of a score token identity alone buys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from autointerp.errors import AutointerpError, LLMError
from autointerp.llm.base import LLMClient, PromptLogprobs, Tag
from autointerp.scoring.methods import PMI_BACKENDS, pick_method
from autointerp.templates import display_token, render
from autointerp.types import Example

NEUTRAL = "words"
SHIFTED_TOP_N = 20


def _one_line(text: str) -> str:
    return " ".join(text.split())


def pmi_prefix(explanation: str) -> str:
    return render("simulate_pmi", explanation=_one_line(explanation))


def window_text(tokens: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """The window's text and each token's character span in it."""
    spans, pos = [], 0
    for t in tokens:
        spans.append((pos, pos + len(t)))
        pos += len(t)
    return "".join(tokens), spans


#: characters before the window start whose tokens are read too: a simulator token that
#: merges the prefix's last characters with the window's first ("\n\n") overlaps the window
LOOKBACK = 4

Span = tuple[int, int]


def _own_tokens(pl: PromptLogprobs, start: int, length: int) -> dict[Span, float | None]:
    """{(start, end) relative to ``start``: logprob} of every simulator token that overlaps the
    window ``[start, length)`` (a token that begins in the prefix and runs into it included)."""
    if pl.token_logprobs is None:
        raise LLMError(
            "the backend returned no logprobs of the prompt tokens; the pmi simulator needs "
            f"them ({PMI_BACKENDS})"
        )
    out: dict[Span, float | None] = {}
    offs = pl.offsets
    for i, (off, lp) in enumerate(zip(offs, pl.token_logprobs, strict=True)):
        end = offs[i + 1] if i + 1 < len(offs) else length
        if end > start and end > off:
            out[(off - start, end - start)] = lp
    return out


def pmi_values(
    spans: Sequence[Span],
    with_expl: dict[Span, float | None],
    neutral: dict[Span, float | None],
) -> tuple[list[float], dict[str, int]]:
    """Per subject token ``max(0, Σ pmi)`` over the simulator tokens that overlap its span (a
    simulator token spanning two subject tokens, e.g. a merged "\n\n", counts for both).

    Returns the values and the misses: ``n_missing`` simulator tokens without a logprob on
    either side (or tokenised differently under the two prefixes), ``n_unaligned`` subject
    tokens that no simulator token overlaps (an empty token text); both predict 0."""
    out, missing, unaligned = [], 0, 0
    toks = sorted(set(with_expl) | set(neutral))
    for a, b in spans:
        s, hit = 0.0, False
        for o, e in toks:
            if o >= b:
                break
            if e > a:
                hit = True
                le, ln = with_expl.get((o, e)), neutral.get((o, e))
                if le is None or ln is None:
                    missing += 1
                    continue
                s += le - ln
        unaligned += not hit
        out.append(max(0.0, s))
    return out, {"n_missing": missing, "n_unaligned": unaligned}


async def _top_n_needed(client: LLMClient) -> int:
    """0 where prompt-token logprobs are exact; 20 for a server whose echo is shifted (the own
    token's logprob is then read from the previous position's top-N)."""
    extra = await client._prompt_request_extra()  # probes a server's alignment once
    return SHIFTED_TOP_N if extra.get("shifted") else 0


async def simulate_pmi(
    explanation: str, examples: Sequence[Example], client: LLMClient, tag: Tag | None = None
) -> tuple[list[list[float]], dict[str, int]]:
    """PMI predictions for every token of ``examples`` (see the module docstring); two
    prompt-logprob calls per example (the neutral one shared across explanations)."""
    pick_method(client, "pmi")  # one clear error for a backend without prompt logprobs
    pe, p0 = pmi_prefix(explanation), pmi_prefix(NEUTRAL)
    texts = [window_text(ex.tokens) for ex in examples]
    top_n = await _top_n_needed(client)
    prompts, starts = [], []
    for text, _ in texts:
        for prefix in (pe, p0):
            prompts.append(prefix + text)
            starts.append(len(prefix))
    pls = await client.prompt_logprobs_many(
        prompts,
        top_logprobs=top_n,
        tag=tag,
        only_at=[
            list(range(max(0, s - LOOKBACK), len(p))) for p, s in zip(prompts, starts, strict=True)
        ],
    )
    got = [_own_tokens(pl, s, len(p)) for pl, s, p in zip(pls, starts, prompts, strict=True)]
    pred, misses = [], {"n_missing": 0, "n_unaligned": 0}
    for i, (_, spans) in enumerate(texts):
        row, m = pmi_values(spans, got[2 * i], got[2 * i + 1])
        pred.append(row)
        for k, v in m.items():
            misses[k] += v
    return pred, {"n_calls": len(prompts), **misses}


# ----------------------------------------------------------------------------- token match

_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')


def parse_top_tokens(explanation: str) -> list[str]:
    """The tokens of a ``top_tokens`` explanation (``tokens: "a", "b"``)."""
    if not explanation.startswith("tokens:"):
        raise AutointerpError(
            f"token_match needs a top_tokens explanation ('tokens: \"a\", ...'), got "
            f"{explanation[:40]!r}; pair it with explain style top_tokens"
        )
    return [json.loads(m.group(0)) for m in _QUOTED.finditer(explanation)]


def simulate_token_match(explanation: str, examples: Sequence[Example]) -> list[list[float]]:
    """1.0 where a token (as displayed) is one of the explanation's tokens, else 0.0."""
    wanted = set(parse_top_tokens(explanation))
    return [[1.0 if display_token(t) in wanted else 0.0 for t in ex.tokens] for ex in examples]

"""AxBench-style LLM judge of steered continuations (opt-in: ``[llm.judge]``; docs/steering.md).

Three chat prompts (``prompts/steer_judge_{concept,instruction,fluency}.txt``), each answered with
a rating 0, 1 or 2 as ``Rating: [[score]]``; a continuation's score is the harmonic mean of its
three ratings, 0 when any is 0. A reply without a parsable rating is undefined (None, its raw
text kept), never 0. :func:`judge_many` asks each distinct prompt once (the unsteered answer's
instruction and fluency prompts are the same for every feature); the client's response cache
and call journal make a rerun ask nothing again.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from autointerp.errors import FatalLLMError, LLMError
from autointerp.llm.base import LLMClient, Tag
from autointerp.templates import render_messages

_RATING = re.compile(r"Rating:\s*\[\[\s*([0-2])(?:\.0+)?\s*\]\]")
ASPECTS = ("concept", "instruction", "fluency")
_NEEDS = {"concept": ("concept", "text"), "instruction": ("instruction", "text"),
          "fluency": ("text",)}  # fmt: skip
NO_JUDGE = "no judge LLM configured ([llm.judge])"


def parse_rating(text: str) -> float | None:
    """The last ``Rating: [[x]]`` in ``text`` with ``x`` in {0, 1, 2}; None if there is none."""
    got = _RATING.findall(text)
    return float(got[-1]) if got else None


def harmonic_mean(ratings: Sequence[float | None]) -> float | None:
    """``n / Σ 1/r`` of the ratings; 0 when any is 0; None when any is undefined."""
    if any(r is None for r in ratings):
        return None
    if any(r == 0 for r in ratings):
        return 0.0
    return len(ratings) / sum(1.0 / r for r in ratings)  # type: ignore[operator]


@dataclass(frozen=True)
class Job:
    """One continuation to judge: the concept (an explanation), the instruction it answers."""

    concept: str
    instruction: str
    text: str
    tag: Tag | None = None


class JudgeFailed(LLMError):
    """Some judge calls failed after their retries; the answers received are cached."""


async def judge_many(
    client: LLMClient, jobs: Sequence[Job], *, max_tokens: int = 256
) -> list[dict[str, Any]]:
    """Per job ``{concept, instruction, fluency, hmean}`` (ratings in {0, 1, 2} or None) and,
    for an unparsable reply, ``raw: {aspect: reply}``. Calls that fail after the client's
    retries raise :class:`JudgeFailed` once every other call is done (a rerun asks only them)."""
    prompts: dict[str, tuple[list[dict[str, str]], Tag | None]] = {}
    keys: list[dict[str, str]] = []
    for j in jobs:
        vals = {"concept": j.concept, "instruction": j.instruction, "text": j.text}
        ks = {}
        for a in ASPECTS:
            msgs = render_messages(f"steer_judge_{a}", **{k: vals[k] for k in _NEEDS[a]})
            k = json.dumps(msgs, sort_keys=True)
            prompts.setdefault(k, (msgs, j.tag))
            ks[a] = k
        keys.append(ks)
    replies: dict[str, str] = {}
    failed: list[str] = []

    async def ask(k: str) -> None:
        msgs, tag = prompts[k]
        try:
            r = await client.chat(msgs, max_tokens=max_tokens, temperature=0.0, tag=tag)
        except FatalLLMError:
            raise
        except LLMError as e:
            failed.append(str(e))
            return
        replies[k] = r.text

    tasks = [asyncio.ensure_future(ask(k)) for k in prompts]
    try:
        await asyncio.gather(*tasks)
    except FatalLLMError:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    if failed:
        raise JudgeFailed(
            f"{len(failed)} of {len(prompts)} judge calls failed after retries (first: "
            f"{failed[0]}); rerun to retry them: the answers received are cached"
        )
    out = []
    for ks in keys:
        d: dict[str, Any] = {a: parse_rating(replies[ks[a]]) for a in ASPECTS}
        raw = {a: replies[ks[a]] for a in ASPECTS if d[a] is None}
        d["hmean"] = harmonic_mean([d[a] for a in ASPECTS])
        if raw:
            d["raw"] = raw
        out.append(d)
    return out


async def judge(
    client: LLMClient,
    concept: str,
    instruction: str,
    text: str,
    *,
    max_tokens: int = 256,
    tag: Tag | None = None,
) -> dict[str, Any]:
    """The three ratings and their harmonic mean (``hmean``) of one continuation."""
    got = await judge_many(client, [Job(concept, instruction, text, tag)], max_tokens=max_tokens)
    return got[0]

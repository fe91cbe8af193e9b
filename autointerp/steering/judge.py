"""AxBench-style LLM judge of a steered continuation (opt-in; docs/steering.md).

Three chat prompts (``prompts/steer_judge_{concept,instruction,fluency}.txt``), each answered with
a rating 0-2 as ``Rating: [[score]]``; the AxBench score is their harmonic mean, 0 when any rating
is 0. A reply without a parsable rating is undefined (None), never 0.
"""

from __future__ import annotations

import re

from autointerp.llm.base import LLMClient, Tag
from autointerp.templates import render_messages

_RATING = re.compile(r"Rating:\s*\[\[\s*([0-2](?:\.\d+)?)\s*\]\]")
ASPECTS = ("concept", "instruction", "fluency")


def parse_rating(text: str) -> float | None:
    """The last ``Rating: [[x]]`` in ``text`` with ``0 <= x <= 2``; None if there is none."""
    got = _RATING.findall(text)
    if not got:
        return None
    v = float(got[-1])
    return v if 0.0 <= v <= 2.0 else None


def harmonic_mean(ratings: list[float | None]) -> float | None:
    """``n / Σ 1/r`` of the ratings; 0 when any is 0; None when any is undefined."""
    if any(r is None for r in ratings):
        return None
    if any(r == 0 for r in ratings):
        return 0.0
    return len(ratings) / sum(1.0 / r for r in ratings)  # type: ignore[operator]


async def judge(
    client: LLMClient,
    concept: str,
    instruction: str,
    text: str,
    *,
    max_tokens: int = 256,
    tag: Tag | None = None,
) -> dict[str, float | None]:
    """The three ratings and their harmonic mean (``score``) of one continuation."""
    values = {"concept": concept, "instruction": instruction, "text": text}
    out: dict[str, float | None] = {}
    for aspect in ASPECTS:
        need = {"concept": ("concept", "text"), "instruction": ("instruction", "text"),
                "fluency": ("text",)}[aspect]  # fmt: skip
        msgs = render_messages(f"steer_judge_{aspect}", **{k: values[k] for k in need})
        r = await client.chat(msgs, max_tokens=max_tokens, temperature=0.0, tag=tag)
        out[aspect] = parse_rating(r.text)
    out["score"] = harmonic_mean([out[a] for a in ASPECTS])
    return out

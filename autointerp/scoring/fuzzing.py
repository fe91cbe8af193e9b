"""Fuzzing scoring (docs/classification.md): can the explanation tell correct highlighting?

Same windows as detection, but tokens are highlighted ``<<tok>>``: on activating windows the
tokens where the feature fires (correct; label 1), on non-activating windows as many random
tokens as a typical activating window has firing tokens (median count, seeded; label 0). The
judge answers for each window whether the highlighting fits the explanation (0/1 list).
Scores as for detection.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from autointerp.llm.base import LLMClient, Tag
from autointerp.scoring.classify import (
    Judge,
    active_positions,
    render_window,
    score_binary,
    typical_n_active,
)
from autointerp.types import Example, Explanation, FeatureRecord, Score


def _render(
    pos: list[Example], neg: list[Example], rng: random.Random
) -> list[tuple[str, int, Example]]:
    k = typical_n_active(pos)
    items = [(render_window(e, active_positions(e)), 1, e) for e in pos]
    for e in neg:
        hl = set(rng.sample(range(len(e.tokens)), min(k, len(e.tokens))))
        items.append((render_window(e, hl), 0, e))
    return items


async def score_fuzzing(
    record: FeatureRecord,
    explanation: Explanation | str,
    client: LLMClient | Judge,
    *,
    examples_per_prompt: int = 5,
    n_activating: int | None = None,
    n_nonactivating: int | None = None,
    sources: Sequence[str] = ("quantile", "top"),
    seed: int = 0,
    protocol_id: str = "",
    tag: Tag | None = None,
    max_parse_retries: int | None = None,
    top_logprobs: int | None = 5,
    null: str = "",
) -> list[Score]:
    """Fuzzing scores of one feature: variants ``balanced_accuracy``, ``accuracy``, ``auroc``
    (arguments as :func:`autointerp.scoring.detection.score_detection`)."""
    return await score_binary(
        "fuzzing",
        record,
        explanation,
        client,
        _render,
        examples_per_prompt=examples_per_prompt,
        n_activating=n_activating,
        n_nonactivating=n_nonactivating,
        sources=sources,
        seed=seed,
        protocol_id=protocol_id,
        tag=tag,
        max_parse_retries=max_parse_retries,
        top_logprobs=top_logprobs,
        null=null,
    )

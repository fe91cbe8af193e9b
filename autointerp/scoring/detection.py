"""Detection scoring (docs/classification.md): can the explanation tell activating windows?

The judge sees unmarked windows — activating ones (``test_quantile`` and/or ``test_top``) and
non-activating ones (``test_random`` windows where the feature does not fire; every window is
labelled by ``max_act > 0``, never by its pool) — shuffled with a seeded generator,
``examples_per_prompt`` per prompt, and answers a 0/1 list. Scores: balanced accuracy, plain
accuracy and AUROC from P(1) / (P(0) + P(1)) (see :mod:`autointerp.scoring.classify`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from autointerp.llm.base import LLMClient, Tag
from autointerp.scoring.classify import Judge, render_window, score_binary
from autointerp.types import Example, Explanation, FeatureRecord, Score


def _render(
    pos: list[Example], neg: list[Example], rng: random.Random
) -> list[tuple[str, int, Example]]:
    return [(render_window(e), 1, e) for e in pos] + [(render_window(e), 0, e) for e in neg]


async def score_detection(
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
    """Detection scores of one feature: variants ``balanced_accuracy``, ``accuracy``, ``auroc``.

    ``n_activating`` / ``n_nonactivating``: how many windows of each class to draw (None = all
    available). ``client`` is an LLM client or a deterministic :class:`Judge`. Prompts whose
    answer cannot be parsed after ``max_parse_retries`` are recorded as failed
    (``extra["n_failed_prompts"]``) and left out of the metrics. ``null="shuffled"`` marks a
    shuffled-explanation null row (score it with the same ``seed`` so the windows are paired).
    """
    return await score_binary(
        "detection",
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

"""Intruder scoring (docs/classification.md): can a judge spot the window that does not belong?

Each prompt shows ``k`` activating windows and one non-activating window (labels by
``max_act > 0``), in a seeded random order, unmarked and without any explanation; the judge
names the intruder's number. Score: accuracy over ``n_prompts`` prompts (chance ``1/(k+1)``,
recorded in ``extra["chance"]``). Failed prompts (unparseable after retries) are recorded and
left out.
"""

from __future__ import annotations

from collections.abc import Sequence

from autointerp.errors import AutointerpError
from autointerp.llm.base import LLMClient, Tag
from autointerp.scoring.classify import (
    Judge,
    Prompt,
    as_judge,
    feature_rng,
    render_window,
    run_prompts,
    split_examples,
)
from autointerp.types import FeatureRecord, Score


async def score_intruder(
    record: FeatureRecord,
    client: LLMClient | Judge,
    *,
    k: int = 4,
    n_prompts: int = 5,
    sources: Sequence[str] = ("quantile", "top"),
    seed: int = 0,
    protocol_id: str = "",
    tag: Tag | None = None,
    max_parse_retries: int | None = None,
) -> list[Score]:
    """One Score (scorer ``"intruder"``, variant ``"accuracy"``) for one feature.

    Each prompt draws ``k`` distinct activating windows and one non-activating window; across
    prompts windows may repeat. The value is None (status ``undefined``) when the feature has
    fewer than ``k`` activating or no non-activating test windows, and ``failed`` when every
    prompt failed.
    """
    if k < 1 or n_prompts < 1:
        raise AutointerpError(f"intruder needs k >= 1 and n_prompts >= 1, got {k}, {n_prompts}")
    rng = feature_rng(seed, "intruder", record)
    pos, neg = split_examples(record, sources)
    tag = tag or Tag(stage="intruder", basis=record.basis, feature=record.feature)
    judge = as_judge(client, tag=tag, max_parse_retries=max_parse_retries)
    extra = {"k": k, "chance": 1.0 / (k + 1), "n_prompts": n_prompts, "judge": judge.describe()}
    base = dict(basis=record.basis, feature=record.feature, scorer="intruder", variant="accuracy")
    if len(pos) < k or not neg:
        why = f"needs {k} activating and 1 non-activating windows, has {len(pos)} and {len(neg)}"
        return [
            Score(
                **base,
                value=None,
                method=judge.method,
                protocol_id=protocol_id,
                status="undefined",
                error=why,
                extra=extra,
            )
        ]
    prompts = []
    for _ in range(n_prompts):
        shown = rng.sample(pos, k)
        where = rng.randrange(k + 1)
        shown.insert(where, rng.choice(neg))
        labels = [int(i == where) for i in range(k + 1)]
        prompts.append(Prompt("intruder", [render_window(e) for e in shown], labels, None, shown))
    results = await run_prompts(judge, prompts)
    ok = [r for r in results if r.answer is not None]
    errors = [r.error for r in results if r.answer is None]
    correct = sum(r.answer.preds == r.prompt.labels for r in ok)  # type: ignore[union-attr]
    extra.update(n_failed_prompts=len(errors), n_correct=correct, n_answered=len(ok))
    if errors:
        extra["errors"] = errors[:5]
    method = "text" if not isinstance(client, Judge) else judge.method
    if not ok:
        return [
            Score(
                **base,
                value=None,
                method=method,
                protocol_id=protocol_id,
                status="failed",
                error=f"all {n_prompts} prompts failed: {errors[0]}",
                extra=extra,
            )
        ]
    return [
        Score(**base, value=correct / len(ok), method=method, protocol_id=protocol_id, extra=extra)
    ]

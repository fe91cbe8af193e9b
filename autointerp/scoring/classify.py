"""Shared machinery of the detection, fuzzing and intruder scorers (docs/classification.md).

A scorer turns a :class:`~autointerp.types.FeatureRecord` into :class:`Prompt` s: a few text
windows, each with a hidden 0/1 truth label. A :class:`Judge` answers a prompt with one 0/1
prediction per window (and, when it can, P(1) per window). The answers are pooled over all
prompts of a feature into balanced accuracy, plain accuracy and AUROC.

Metrics (written out so they can be checked by hand):

* ``accuracy = (TP + TN) / (TP + TN + FP + FN)``.
* ``balanced_accuracy = (TPR + TNR) / 2`` with ``TPR = TP / (TP + FN)``, ``TNR = TN / (TN + FP)``.
  A judge that always answers 0 scores exactly 0.5, whatever the class balance (its plain
  accuracy is the negative fraction, e.g. 10/14 = 0.714 on SAEBench's 2 top + 2 sampled +
  10 random). Undefined (None) when either class is absent.
* ``auroc`` = ``sklearn.metrics.roc_auc_score(labels, p1)``, where ``p1 = P(1) / (P(0) + P(1))``
  is read from the top logprobs of each generated "0"/"1" token. Undefined (None) with one class.

Judges: :class:`LLMJudge` (an LLM client behind a prompt template, strict parsing with bounded
retries fed the parse error) and deterministic non-LLM judges for tests and reference baselines:
:class:`OracleJudge` (the truth), :class:`ConstantJudge`, :class:`KeywordJudge` (a given word).
"""

from __future__ import annotations

import asyncio
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from autointerp.errors import AutointerpError, FatalLLMError, LLMError, ParseError
from autointerp.llm.base import LLMClient, Tag
from autointerp.scoring.judges import (  # noqa: F401 - re-exported
    Answer,
    ConstantJudge,
    Judge,
    KeywordJudge,
    LLMJudge,
    OracleJudge,
    Prompt,
    accuracy,
    as_judge,
    auroc,
    balanced_accuracy,
    confusion,
    format_examples,
    parse_binary_list,
    parse_index,
    probs_from_logprobs,
)
from autointerp.templates import display_token
from autointerp.types import Example, Explanation, FeatureRecord, Score

# ---------------------------------------------------------------------------------------------
# example selection and rendering


def feature_rng(seed: int, scorer: str, record: FeatureRecord, salt: str = "") -> random.Random:
    """A generator seeded by (seed, scorer, basis, feature): reproducible and per feature."""
    return random.Random(f"{seed}:{scorer}:{record.basis}:{record.feature}:{salt}")


def split_examples(
    record: FeatureRecord, sources: Sequence[str] = ("quantile", "top")
) -> tuple[list[Example], list[Example]]:
    """(activating, non-activating) windows. ``sources`` name the activating pools
    (``"quantile"`` -> ``test_quantile``, ``"top"`` -> ``test_top``); ``test_random`` is always
    added. Every window is labelled by whether its max activation is > 0, never by its pool."""
    pools = {"quantile": record.test_quantile, "top": record.test_top}
    bad = [s for s in sources if s not in pools]
    if bad:
        raise AutointerpError(f"unknown activating source {bad[0]!r}; use 'quantile' and/or 'top'")
    windows = [e for s in sources for e in pools[s]] + list(record.test_random)
    # a random window may be a quantile window too: show it once (unlocated ones all kept)
    at = {(e.seq, e.start) if e.seq >= 0 else i: e for i, e in enumerate(windows)}.values()
    return [e for e in at if e.fires], [e for e in at if not e.fires]


def sample(pool: list[Example], n: int | None, rng: random.Random) -> list[Example]:
    """``n`` windows drawn without replacement (all of them, in random order, when ``n`` is None
    or larger than the pool)."""
    k = len(pool) if n is None else min(n, len(pool))
    return rng.sample(pool, k)


def render_window(ex: Example, highlight: set[int] | None = None) -> str:
    """The window as text (tokens via :func:`display_token`); runs of highlighted positions are
    wrapped in ``<<...>>`` with a token's leading spaces kept outside the marks."""
    out: list[str] = []
    hl = highlight or set()
    i, n = 0, len(ex.tokens)
    while i < n:
        if i not in hl:
            out.append(display_token(ex.tokens[i]))
            i += 1
            continue
        j = i
        while j < n and j in hl:
            j += 1
        run = "".join(display_token(t) for t in ex.tokens[i:j])
        lead = run[: len(run) - len(run.lstrip(" "))]
        out.append(f"{lead}<<{run.lstrip(' ')}>>")
        i = j
    return "".join(out)


def active_positions(ex: Example) -> set[int]:
    return {i for i, a in enumerate(ex.acts) if a > 0}


def typical_n_active(examples: Sequence[Example]) -> int:
    """Median number of firing tokens over ``examples`` (at least 1)."""
    counts = [len(active_positions(e)) for e in examples if e.fires]
    return max(1, round(statistics.median(counts))) if counts else 1


def batches(items: list[Any], per_prompt: int) -> list[list[Any]]:
    if per_prompt < 1:
        raise AutointerpError(f"examples_per_prompt must be >= 1, got {per_prompt}")
    return [items[i : i + per_prompt] for i in range(0, len(items), per_prompt)]


# ---------------------------------------------------------------------------------------------
# running prompts and turning answers into scores


@dataclass
class PromptResult:
    prompt: Prompt
    answer: Answer | None
    error: str = ""


async def run_prompts(judge: Judge, prompts: Sequence[Prompt]) -> list[PromptResult]:
    """Ask all prompts concurrently (the client bounds concurrency). A prompt whose answer cannot
    be parsed after retries, or whose call fails for good, is recorded as failed;
    :class:`FatalLLMError` (a call that can never succeed) propagates and stops the run."""

    async def one(p: Prompt) -> PromptResult:
        try:
            a = await judge.answer(p)
        except FatalLLMError:
            raise
        except (ParseError, LLMError) as e:
            return PromptResult(p, None, f"{type(e).__name__}: {e}")
        if len(a.preds) != len(p.texts):
            return PromptResult(p, None, f"judge gave {len(a.preds)} answers for {len(p.texts)}")
        return PromptResult(p, a)

    return list(await asyncio.gather(*(one(p) for p in prompts)))


def _score(
    record: FeatureRecord, scorer: str, variant: str, value: float | None, **kw: Any
) -> Score:
    kw["extra"] = dict(kw.get("extra", {}))  # one dict per Score
    return Score(record.basis, record.feature, scorer, variant, value, **kw)


def binary_scores(
    record: FeatureRecord,
    scorer: str,
    results: Sequence[PromptResult],
    *,
    judge: Judge,
    protocol_id: str,
    extra: dict[str, Any],
    setup_error: str = "",
    null: str = "",
    fail_error: str = "",
) -> list[Score]:
    """balanced_accuracy, accuracy and auroc Scores from pooled per-window answers.
    ``setup_error``: nothing to score (status ``undefined``); ``fail_error``: cannot be scored
    (status ``failed``)."""
    ok = [r for r in results if r.answer is not None]
    errors = [r.error for r in results if r.answer is None]
    labels = [y for r in ok for y in r.prompt.labels]
    preds = [p for r in ok for p in r.answer.preds]  # type: ignore[union-attr]
    c = confusion(labels, preds)
    ex = {
        **extra,
        **c,
        "n_prompts": len(results),
        "n_failed_prompts": len(errors),
        "n_examples": len(labels),
        "n_positive": c["tp"] + c["fn"],
        "n_negative": c["tn"] + c["fp"],
        "attempts": sum(r.answer.attempts for r in ok),  # type: ignore[union-attr]
        "judge": judge.describe(),
    }
    if errors:
        ex["errors"] = errors[:5]
    base = {"protocol_id": protocol_id, "extra": ex, "null": null}
    text_method = "text" if isinstance(judge, LLMJudge) else judge.method
    if setup_error or fail_error or not ok:
        err = (
            setup_error
            or fail_error
            or f"all {len(results)} prompts failed: {errors[0] if errors else ''}"
        )
        status = "undefined" if setup_error else "failed"
        return [
            _score(record, scorer, v, None, method=text_method, status=status, error=err, **base)
            for v in ("balanced_accuracy", "accuracy", "auroc")
        ]
    out = []
    ba = balanced_accuracy(labels, preds)
    one_class = "" if ba is not None else "only one class among the scored examples"
    out.append(
        _score(
            record,
            scorer,
            "balanced_accuracy",
            ba,
            method=text_method,
            status="ok" if ba is not None else "undefined",
            error=one_class,
            **base,
        )
    )
    out.append(
        _score(record, scorer, "accuracy", accuracy(labels, preds), method=text_method, **base)
    )
    missing = sum(r.answer.probs is None for r in ok)  # type: ignore[union-attr]
    if missing:
        why = (
            "no token logprobs from this judge/backend"
            if missing == len(ok)
            else f"token logprobs missing for {missing} of {len(ok)} prompts"
        )
        out.append(
            _score(
                record, scorer, "auroc", None, method="text", status="undefined", error=why, **base
            )
        )
    else:
        probs = [q for r in ok for q in r.answer.probs]  # type: ignore[union-attr]
        au = auroc(labels, probs)
        method = "logprobs" if isinstance(judge, LLMJudge) else judge.method
        out.append(
            _score(
                record,
                scorer,
                "auroc",
                au,
                method=method,
                status="ok" if au is not None else "undefined",
                error=one_class,
                **base,
            )
        )
    return out


async def score_binary(
    task: str,
    record: FeatureRecord,
    explanation: Explanation | str,
    client: LLMClient | Judge,
    render: Callable[[list[Example], list[Example], random.Random], list[tuple[str, int, Example]]],
    *,
    examples_per_prompt: int,
    n_activating: int | None,
    n_nonactivating: int | None,
    sources: Sequence[str],
    seed: int,
    protocol_id: str,
    tag: Tag | None,
    max_parse_retries: int | None,
    top_logprobs: int | None,
    null: str = "",
) -> list[Score]:
    """The detection/fuzzing driver: pick windows, ``render`` them to (text, label, example),
    shuffle (seeded), cut into prompts of ``examples_per_prompt``, ask the judge, score.
    A failed or empty explanation gives ``failed`` scores without any call."""
    fail_error = ""
    if isinstance(explanation, Explanation):
        if explanation.status != "ok":
            fail_error = f"explanation failed: {explanation.error}"
        explanation = explanation.text
    if not fail_error and not explanation.strip():
        fail_error = "empty explanation"
    rng = feature_rng(seed, task, record)
    pos, neg = split_examples(record, sources)
    pos, neg = sample(pos, n_activating, rng), sample(neg, n_nonactivating, rng)
    items = render(pos, neg, rng)
    rng.shuffle(items)
    prompts = [
        Prompt(task, [t for t, _, _ in b], [y for _, y, _ in b], explanation, [e for _, _, e in b])
        for b in batches(items, examples_per_prompt)
    ]
    tag = tag or Tag(stage=task, basis=record.basis, feature=record.feature)
    judge = as_judge(
        client, tag=tag, max_parse_retries=max_parse_retries, top_logprobs=top_logprobs
    )
    setup_error = ""
    if not pos:
        setup_error = "no activating test windows for this feature"
    elif not neg:
        setup_error = "no non-activating test windows for this feature"
    results = [] if setup_error or fail_error else await run_prompts(judge, prompts)
    ex = {
        "examples_per_prompt": examples_per_prompt,
        "sources": list(sources),
        "n_activating_requested": n_activating,
        "n_nonactivating_requested": n_nonactivating,
        "seed": seed,
    }
    return binary_scores(
        record,
        task,
        results,
        judge=judge,
        protocol_id=protocol_id,
        extra=ex,
        setup_error=setup_error,
        null=null,
        fail_error=fail_error,
    )

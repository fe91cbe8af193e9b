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
import math
import random
import re
import statistics
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from autointerp.errors import AutointerpError, FatalLLMError, LLMError, ParseError
from autointerp.llm.base import LLMClient, Tag, TokenLogprob
from autointerp.llm.helpers import chat_parsed_response
from autointerp.templates import display_token, render_messages
from autointerp.types import Example, Explanation, FeatureRecord, Score

# ---------------------------------------------------------------------------------------------
# metrics


def _counts(labels: Sequence[int], preds: Sequence[int]) -> dict[str, int]:
    if len(labels) != len(preds):
        raise ValueError(f"labels and preds differ in length: {len(labels)} vs {len(preds)}")
    c = {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
    for y, p in zip(labels, preds, strict=True):
        if y not in (0, 1) or p not in (0, 1):
            raise ValueError(f"labels and preds must be 0/1, got label {y!r}, pred {p!r}")
        c[("t" if y == p else "f") + ("p" if p == 1 else "n")] += 1
    return c


def confusion(labels: Sequence[int], preds: Sequence[int]) -> dict[str, int]:
    """``{"tp", "fp", "tn", "fn"}`` counts of 0/1 predictions against 0/1 labels."""
    return _counts(labels, preds)


def accuracy(labels: Sequence[int], preds: Sequence[int]) -> float | None:
    """``(TP + TN) / N``; None when there is nothing to score."""
    c = _counts(labels, preds)
    n = sum(c.values())
    return (c["tp"] + c["tn"]) / n if n else None


def balanced_accuracy(labels: Sequence[int], preds: Sequence[int]) -> float | None:
    """``(TPR + TNR) / 2`` = ``(TP/(TP+FN) + TN/(TN+FP)) / 2``; None when a class is absent."""
    c = _counts(labels, preds)
    pos, neg = c["tp"] + c["fn"], c["tn"] + c["fp"]
    if pos == 0 or neg == 0:
        return None
    return (c["tp"] / pos + c["tn"] / neg) / 2.0


def auroc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve (``sklearn.metrics.roc_auc_score``); None with one class."""
    from sklearn.metrics import roc_auc_score

    if len(labels) != len(scores):
        raise ValueError(f"labels and scores differ in length: {len(labels)} vs {len(scores)}")
    if len(set(labels)) < 2:
        return None
    return float(roc_auc_score(list(labels), list(scores)))


# ---------------------------------------------------------------------------------------------
# prompts and judges


@dataclass
class Prompt:
    """One question to a judge. ``texts`` is what the judge sees (numbered 1..n in the prompt);
    ``labels`` the hidden truth (detection/fuzzing: 1 = activating / correctly highlighted;
    intruder: one-hot, 1 = the intruder). ``explanation`` is None for the intruder task."""

    task: str  # "detection" | "fuzzing" | "intruder"
    texts: list[str]
    labels: list[int]
    explanation: str | None = None
    examples: list[Example] = field(default_factory=list)


@dataclass
class Answer:
    """One 0/1 prediction per text, and P(1) per text when the judge can give it."""

    preds: list[int]
    probs: list[float] | None = None
    attempts: int = 1


class Judge(ABC):
    """Answers :class:`Prompt` s. ``method`` names how (e.g. ``"text"``, ``"oracle"``)."""

    method: str = "judge"

    @abstractmethod
    async def answer(self, prompt: Prompt) -> Answer: ...

    def describe(self) -> dict[str, Any]:
        return {"judge": type(self).__name__, "method": self.method}


class OracleJudge(Judge):
    """Deterministic, not an LLM: answers the hidden truth (P(1) = the label)."""

    method = "oracle"

    async def answer(self, prompt: Prompt) -> Answer:
        return Answer(list(prompt.labels), [float(y) for y in prompt.labels])


class ConstantJudge(Judge):
    """Deterministic, not an LLM: always answers ``value`` (intruder: always index ``value``)."""

    method = "constant"

    def __init__(self, value: int = 0):
        self.value = value

    async def answer(self, prompt: Prompt) -> Answer:
        n = len(prompt.texts)
        if prompt.task == "intruder":
            return Answer([int(i == self.value) for i in range(n)], None)
        return Answer([self.value] * n, [float(self.value)] * n)


class KeywordJudge(Judge):
    """Deterministic, not an LLM: 1 iff the window contains the first double-quoted word of the
    explanation (e.g. ``the word "the"`` -> "the") as a whole word, case-insensitive. With no
    quoted word it answers 0 everywhere. Fuzzing: 1 iff every highlighted span is that word and
    the word is highlighted at least once."""

    method = "keyword"

    async def answer(self, prompt: Prompt) -> Answer:
        m = re.search(r'"([^"]+)"', prompt.explanation or "")
        preds = []
        for t in prompt.texts:
            if m is None:
                preds.append(0)
            elif prompt.task == "fuzzing":
                spans = re.findall(r"<<(.*?)>>", t)
                ok = bool(spans) and all(s.strip().lower() == m.group(1).lower() for s in spans)
                preds.append(int(ok))
            else:
                word = re.escape(m.group(1))
                plain = t.replace("<<", "").replace(">>", "")
                preds.append(int(re.search(rf"\b{word}\b", plain, re.IGNORECASE) is not None))
        return Answer(preds, [float(p) for p in preds])


# ---------------------------------------------------------------------------------------------
# parsing


_LIST = re.compile(r"\[([^\[\]]*)\]")


def parse_binary_list(text: str, n: int) -> tuple[list[int], tuple[int, int]]:
    """The last ``[...]`` list in ``text``: exactly ``n`` items, each 0 or 1.

    Returns the values and the character span of the list. Raises :class:`ParseError` with a
    message fit to feed back to the model.
    """
    matches = list(_LIST.finditer(text))
    if not matches:
        raise ParseError(
            f"no list found; answer with a list of exactly {n} numbers in square brackets, "
            f"each 1 or 0, e.g. [{','.join(['0'] * n)}]"
        )
    m = matches[-1]
    items = [s.strip() for s in m.group(1).split(",")] if m.group(1).strip() else []
    if len(items) != n:
        raise ParseError(
            f"the list {m.group(0)} has {len(items)} items but there are {n} examples; "
            f"answer with exactly {n} numbers, each 1 or 0"
        )
    bad = [s for s in items if s not in ("0", "1")]
    if bad:
        raise ParseError(f"the list {m.group(0)} contains {bad[0]!r}; every item must be 1 or 0")
    return [int(s) for s in items], m.span()


def parse_index(text: str, n: int) -> int:
    """The 1-based example number in the last ``[k]`` of ``text`` (``1 <= k <= n``) -> 0-based."""
    matches = list(_LIST.finditer(text))
    if not matches:
        raise ParseError(f"no answer in square brackets; answer with one number like [{n}]")
    s = matches[-1].group(1).strip()
    if not s.isdigit() or not 1 <= int(s) <= n:
        raise ParseError(f"{matches[-1].group(0)} is not an example number from 1 to {n}")
    return int(s) - 1


def probs_from_logprobs(
    logprobs: Sequence[TokenLogprob] | None, span: tuple[int, int], n: int
) -> list[float] | None:
    """P(1) / (P(0) + P(1)) for each of the ``n`` generated "0"/"1" tokens inside ``span``.

    The generated tokens are concatenated to recover character offsets, so digits outside the
    answer list (reasoning, echoed examples) are ignored. For each answer token the
    probabilities of every top alternative whose stripped text is "0" (resp. "1") are summed,
    plus the generated token itself. None when logprobs are missing or do not line up.
    """
    if not logprobs:
        return None
    out: list[float] = []
    pos = 0
    for t in logprobs:
        start, pos = pos, pos + len(t.token)
        if start < span[0] or start >= span[1] or t.token.strip() not in ("0", "1"):
            continue
        p = {"0": 0.0, "1": 0.0}
        for alt, lp in t.top.items():
            if alt.strip() in p and lp is not None:
                p[alt.strip()] += math.exp(lp)
        if t.token not in t.top and t.logprob is not None:
            p[t.token.strip()] += math.exp(t.logprob)
        tot = p["0"] + p["1"]
        if tot <= 0:
            return None
        out.append(p["1"] / tot)
    return out if len(out) == n else None


# ---------------------------------------------------------------------------------------------
# the LLM judge


def format_examples(texts: Sequence[str]) -> str:
    """``Example 1: ...`` lines (outer whitespace of each window stripped)."""
    return "\n".join(f"Example {i + 1}: {t.strip()}" for i, t in enumerate(texts))


class LLMJudge(Judge):
    """An LLM behind template ``prompts/<task>.txt``; strict parsing, bounded parse retries.

    Detection/fuzzing templates get ``$explanation``, ``$examples``, ``$n``; the intruder
    template gets ``$examples`` and ``$n``. With ``top_logprobs`` and a backend that returns
    token logprobs, P(1) per window is read from the answer tokens (AUROC); otherwise
    ``probs`` is None. ``max_tokens`` None -> ``3 * n + 8`` (room for the list and a little
    more; a runaway answer is cut short and fails to parse instead of burning tokens).
    """

    def __init__(
        self,
        client: LLMClient,
        *,
        tag: Tag | None = None,
        max_parse_retries: int = 2,
        top_logprobs: int | None = 5,
        max_tokens: int | None = None,
        template: str | None = None,
    ):
        self.client = client
        self.tag = tag
        self.max_parse_retries = max_parse_retries
        self.top_logprobs = top_logprobs if client.supports_top_logprobs else None
        self.max_tokens = max_tokens
        self.template = template
        self.method = "logprobs" if self.top_logprobs else "text"

    def describe(self) -> dict[str, Any]:
        return {"judge": "llm", "method": self.method, **self.client.describe()}

    async def answer(self, prompt: Prompt) -> Answer:
        n = len(prompt.texts)
        max_tokens = self.max_tokens or 3 * n + 8
        values: dict[str, object] = {"examples": format_examples(prompt.texts), "n": n}
        if prompt.task != "intruder":
            values["explanation"] = prompt.explanation or ""
        messages = render_messages(self.template or prompt.task, **values)
        if prompt.task == "intruder":
            idx, _, attempts = await chat_parsed_response(
                self.client,
                messages,
                lambda r: parse_index(r.text, n),
                max_parse_retries=self.max_parse_retries,
                tag=self.tag,
                max_tokens=max_tokens,
            )
            return Answer([int(i == idx) for i in range(n)], None, attempts)
        (preds, span), resp, attempts = await chat_parsed_response(
            self.client,
            messages,
            lambda r: parse_binary_list(r.text, n),
            max_parse_retries=self.max_parse_retries,
            tag=self.tag,
            max_tokens=max_tokens,
            top_logprobs=self.top_logprobs,
        )
        probs = probs_from_logprobs(resp.logprobs, span, n) if self.top_logprobs else None
        return Answer(preds, probs, attempts)


def as_judge(
    client: LLMClient | Judge, *, tag: Tag | None, max_parse_retries: int | None, **kw: Any
) -> Judge:
    """``client`` itself when it is a Judge, else an :class:`LLMJudge` around it
    (``max_parse_retries`` None -> the client's configured ``max_parse_retries``)."""
    if isinstance(client, Judge):
        return client
    if isinstance(client, LLMClient):
        n = client.cfg.max_parse_retries if max_parse_retries is None else max_parse_retries
        return LLMJudge(client, tag=tag, max_parse_retries=n, **kw)
    raise AutointerpError(
        f"scorer client must be an autointerp LLMClient or a Judge, got {type(client).__name__}"
    )


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

"""Judges of the detection, fuzzing and intruder scorers, and the binary metrics they are
scored with (``docs/classification.md``): :class:`Prompt` / :class:`Answer`, the LLM judge with
strict parsing, deterministic reference judges, and accuracy, balanced accuracy and AUROC."""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from autointerp.errors import AutointerpError, ParseError
from autointerp.llm.base import LLMClient, Tag, TokenLogprob
from autointerp.llm.helpers import chat_parsed_response
from autointerp.templates import render_messages
from autointerp.types import Example

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

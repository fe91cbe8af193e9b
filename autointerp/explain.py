"""Explainer: a feature's train examples -> one short natural-language explanation.

Styles are registered by name (:mod:`autointerp.explain_styles`; the built-ins at the end of
this module). The built-in ones (the prompt text lives in ``prompts/explain_<style>.txt``):

- ``openai`` (Bills et al. 2023): activations normalised per feature to
  ``v = min(10, floor(10 * relu(a) / max_a))`` with ``max_a`` the maximum over the examples shown;
  each example is a block of ``token<TAB>v`` lines between ``<start>`` and ``<end>``; when fewer
  than 20% of a block's values are non-zero the block is repeated right after it with the zeros
  left out. Few-shot chat; the answer completes "the main thing this feature does is find", and
  :attr:`Explanation.text` holds the completion only. Shows the ``max_examples`` examples with the
  highest maximum activation.
- ``highlight`` (delphi style): each window as text with activating tokens (``a > 0``; runs of
  consecutive ones merged) wrapped in ``<<`` ``>>``, then the list of ``(token, v)`` pairs; the
  answer is the sentence after ``[EXPLANATION]:``. Shows ``max_examples`` examples spread evenly
  over the explain set sorted by maximum activation (top and lower quantiles both appear).
- ``compact``: for small local explainers (the offline default; SmolLM2-135M could not follow
  the two prompts above nor marked-snippet prompts). The strongest token of each of the
  ``max_examples`` strongest examples, distinct, at most ``COMPACT_WORDS``, listed; the model is
  asked what they have in common (zero-shot: with few-shot turns it copied their answers).
- ``top_tokens``: no LLM. The tokens at each example's argmax, counted, most frequent first,
  written as ``tokens: "a", "b"`` — a floor showing how much a score owes to token identity.

Answers are parsed strictly (:func:`parse_sentence`); a :class:`ParseError` is fed back to the LLM
up to ``max_parse_retries`` times (``autointerp.llm.chat_parsed``), then the result is
``Explanation(status="failed", error=...)``. A transient LLM failure that survived the client's
retries also gives ``failed``; a :class:`FatalLLMError` (bad key, bad model) propagates.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections import Counter
from collections.abc import Sequence

from autointerp.errors import AutointerpError, FatalLLMError, LLMError, ParseError
from autointerp.explain_styles import (
    EXPLAIN_STYLES,
    ExplainStyle,
    get_explain_style,
    register_explain_style,
)
from autointerp.llm.base import ChatResponse, LLMClient, Message, Tag
from autointerp.llm.helpers import chat_parsed_response
from autointerp.templates import display_token, render_messages
from autointerp.types import Example, Explanation, FeatureRecord

STYLES = ("openai", "highlight", "compact", "top_tokens")  # the built-in styles
COMPACT_WORDS = 8
OPENAI_PREFIX = "the main thing this feature does is find"
EXPLANATION_MARKER = "[EXPLANATION]:"
# The answers of the templates' few-shot turns: echoing one back is not an explanation.
_FEW_SHOT_ANSWERS = {
    "openai": ("days of the week", "adjectives that describe price or speed"),
    "highlight": ("names of days of the week",),
}
MAX_WORDS = 40
MAX_CHARS = 300


# ----------------------------------------------------------------------------- formatting


def normalize_acts(examples: Sequence[Example]) -> list[list[int]]:
    """``v = min(10, floor(10 * relu(a) / max_a))``, ``max_a`` over all ``examples``; all zeros
    when nothing is positive."""
    max_a = max((max(e.acts, default=0.0) for e in examples), default=0.0)
    if max_a <= 0:
        return [[0] * len(e.acts) for e in examples]
    return [[min(10, math.floor(10 * max(a, 0.0) / max_a)) for a in e.acts] for e in examples]


def _block(tokens: Sequence[str], values: Sequence[int]) -> str:
    lines = [f"{display_token(t)}\t{v}" for t, v in zip(tokens, values, strict=True)]
    return "\n".join(["<start>", *lines, "<end>"])


def format_openai_examples(examples: Sequence[Example]) -> str:
    """The ``token<TAB>v`` blocks; a block with < 20% non-zero values is repeated without zeros."""
    out = []
    for ex, values in zip(examples, normalize_acts(examples), strict=True):
        out.append(_block(ex.tokens, values))
        nonzero = [(t, v) for t, v in zip(ex.tokens, values, strict=True) if v > 0]
        if values and len(nonzero) < 0.2 * len(values):
            out.append(_block([t for t, _ in nonzero], [v for _, v in nonzero]))
    return "\n".join(out)


def highlight_text(tokens: Sequence[str], acts: Sequence[float]) -> str:
    """Window text with each run of consecutive activating tokens (``a > 0``) in ``<<...>>``."""
    parts, inside = [], False
    for tok, a in zip(tokens, acts, strict=True):
        fires = a > 0
        if fires and not inside:
            parts.append("<<")
        elif not fires and inside:
            parts.append(">>")
        inside = fires
        parts.append(display_token(tok))
    if inside:
        parts.append(">>")
    return "".join(parts)


def format_highlight_examples(examples: Sequence[Example]) -> str:
    """Numbered excerpts with ``<<marked>>`` tokens, each followed by its (token, v) pairs."""
    out = []
    for i, (ex, values) in enumerate(zip(examples, normalize_acts(examples), strict=True), 1):
        pairs = [
            f"({json.dumps(display_token(t), ensure_ascii=False)}, {v})"
            for t, a, v in zip(ex.tokens, ex.acts, values, strict=True)
            if a > 0
        ]
        out.append(f"Excerpt {i}: {highlight_text(ex.tokens, ex.acts)}")
        out.append(f"Activations: {', '.join(pairs)}")
    return "\n".join(out)


def format_compact_examples(examples: Sequence[Example]) -> str:
    """``"w1", "w2", ...``: each example's strongest token, distinct, at most ``COMPACT_WORDS``."""
    words: list[str] = []
    for ex in examples:
        w = display_token(ex.tokens[ex.acts.index(ex.max_act)]).strip()
        if w and w not in words:
            words.append(w)
    return ", ".join(json.dumps(w, ensure_ascii=False) for w in words[:COMPACT_WORDS])


def select_examples(record: FeatureRecord, n: int, style: str | ExplainStyle) -> list[Example]:
    """Firing explain examples: the ``n`` strongest (openai, compact, top_tokens) or ``n``
    spread evenly over the list sorted by maximum activation (highlight: ``select="spread"``)."""
    st = style if isinstance(style, ExplainStyle) else get_explain_style(style)
    firing = sorted((e for e in record.explain if e.fires), key=lambda e: -e.max_act)
    if st.select != "spread" or len(firing) <= n:
        return firing[:n]
    step = len(firing) / n
    return [firing[int(i * step)] for i in range(n)]


def top_tokens_text(examples: Sequence[Example], n_tokens: int = 5) -> str:
    """``tokens: "a", "b"``: tokens at each example's argmax, most frequent first (ties: first
    seen)."""
    counts = Counter(display_token(e.tokens[e.acts.index(e.max_act)]) for e in examples if e.fires)
    toks = [t for t, _ in counts.most_common(n_tokens)]
    return "tokens: " + ", ".join(json.dumps(t, ensure_ascii=False) for t in toks)


# ----------------------------------------------------------------------------- parsing

_PREFIX_RE = re.compile(
    r"^\W*(?:the\s+)?main\s+thing\s+this\s+(?:feature|neuron)\s+does\s+is\s+(?:to\s+)?"
    r"find(?:s|ing)?\b\s*[:,\-]?\s*",
    re.IGNORECASE,
)
_LABEL_RE = re.compile(r"^\s*(?:answer|explanation)\s*:\s*", re.IGNORECASE)
_REFUSAL_RE = re.compile(
    r"\b(?:I'?m sorry|I cannot|I can'?t|as an AI|I'?m here to|I am here to|here to help)\b",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


def parse_sentence(text: str, *, reject: Sequence[str] = ()) -> str:
    """One short explanation sentence out of an answer, or :class:`ParseError` saying why not.

    Drops a leading "Answer:"/"Explanation:" label and the "the main thing this feature does is
    find" prefix, keeps the first non-empty line and its first sentence, strips quotes and the
    final period. Rejects: empty, no letters, echoed activation data (tabs, ``<start>``),
    more than 40 words / 300 characters, refusals, and the few-shot answer (``reject``).
    """
    s = _LABEL_RE.sub("", text.strip())
    s = _PREFIX_RE.sub("", s)
    lines = [ln.strip() for ln in s.splitlines() if ln.strip()]
    if not lines:
        raise ParseError("the answer was empty; reply with one short sentence")
    s = _SENTENCE_END.split(lines[0], maxsplit=1)[0]
    s = s.strip().strip("\"'`*").strip().rstrip(".").strip()
    if not re.search(r"[A-Za-z]{2,}", s):
        raise ParseError(f"{s!r} is not an explanation; reply with one short sentence in words")
    if "\t" in s or "<start>" in s or "<end>" in s or "<<" in s:
        raise ParseError("the answer repeats the activation data; describe the pattern in words")
    if len(s.split()) > MAX_WORDS or len(s) > MAX_CHARS:
        raise ParseError(f"the answer is too long (max {MAX_WORDS} words); use one short sentence")
    if _REFUSAL_RE.search(s):
        raise ParseError("that is a refusal; describe what the marked tokens have in common")
    if s.lower() in {r.lower() for r in reject}:
        raise ParseError("that is the answer to the example, not to this feature; look again")
    return s


class TruncatedAnswer(ParseError):
    """The answer hit ``max_tokens`` inside its first sentence."""


def check_complete(resp: ChatResponse) -> None:
    """Raise :class:`TruncatedAnswer` when the answer was cut at ``max_tokens`` before its first
    sentence ended (no sentence end or line break after it): a half sentence is no explanation."""
    if resp.finish_reason != "length":
        return
    text = _LABEL_RE.sub("", resp.text.strip())
    first = text.split("\n", 1)
    if len(first) > 1 and first[1].strip():
        return
    if re.search(r"[.!?][\"')\]]*$", first[0].strip()) or _SENTENCE_END.search(first[0]):
        return
    raise TruncatedAnswer(
        "the answer was cut off mid-sentence by the token limit; answer with a shorter phrase"
    )


def parse_openai_answer(text: str) -> str:
    """Completion of "the main thing this feature does is find" (see :func:`parse_sentence`)."""
    return parse_sentence(text, reject=_FEW_SHOT_ANSWERS["openai"])


def parse_compact_answer(text: str) -> str:
    """A short noun phrase (see :func:`parse_sentence`)."""
    return parse_sentence(text)


def parse_highlight_answer(text: str) -> str:
    """The sentence after the last ``[EXPLANATION]:`` marker (see :func:`parse_sentence`)."""
    idx = text.upper().rfind("[EXPLANATION]")
    if idx < 0:
        raise ParseError(
            f"no '{EXPLANATION_MARKER}' line; end with '{EXPLANATION_MARKER} <sentence>'"
        )
    rest = text[idx + len("[EXPLANATION]") :].lstrip().removeprefix(":")
    return parse_sentence(rest, reject=_FEW_SHOT_ANSWERS["highlight"])


# ----------------------------------------------------------------------------- LLM loop


def build_messages(record: FeatureRecord, style: str, max_examples: int) -> list[Message]:
    """The chat messages the explainer sees for ``record`` (a style that uses an LLM)."""
    st = get_explain_style(style)
    if st.messages is None:
        llm = [n for n in EXPLAIN_STYLES.names() if get_explain_style(n).uses_llm]
        raise AutointerpError(f"explain style {style!r} has no prompt; use {', '.join(llm)}")
    return st.messages(select_examples(record, max_examples, st))


async def explain_feature(
    record: FeatureRecord,
    client: LLMClient | None,
    *,
    style: str = "openai",
    max_examples: int = 10,
    max_tokens: int = 48,
    max_parse_retries: int = 2,
    tag: Tag | None = None,
) -> Explanation:
    """Explain one feature. Returns ``status="failed"`` (with ``error``) when the feature has no
    firing explain example or the LLM's answers never parse, ``status="truncated"`` when the
    last answer was cut at ``max_tokens`` mid-sentence; ``attempts`` counts LLM calls
    (0 for ``top_tokens``). ``client`` may be None for ``top_tokens``."""
    st = get_explain_style(style)  # one clear error for an unknown style
    if max_examples < 1:
        raise AutointerpError(f"max_examples must be >= 1, got {max_examples}")
    base = {"basis": record.basis, "feature": record.feature, "style": style}
    examples = select_examples(record, max_examples, st)
    if not examples:
        return Explanation(
            **base, text="", status="failed", attempts=0, error="no firing explain example"
        )
    if st.text is not None:
        return Explanation(**base, text=st.text(examples), attempts=0)
    if client is None:
        raise AutointerpError(f"explain style {style!r} needs an LLM client")
    tag = tag or Tag(stage="explain", basis=record.basis, feature=record.feature)
    parser = st.parse or parse_sentence
    calls = 0

    def parse(resp: ChatResponse) -> str:
        nonlocal calls
        calls += 1
        text = parser(resp.text)
        check_complete(resp)
        return text

    try:
        text, _, _ = await chat_parsed_response(
            client,
            build_messages(record, style, max_examples),
            parse,
            max_parse_retries=max_parse_retries,
            tag=tag,
            max_tokens=max_tokens,
        )
    except ParseError as e:
        status = "truncated" if isinstance(e.__cause__, TruncatedAnswer) else "failed"
        return Explanation(**base, text="", status=status, attempts=calls, error=f"parse: {e}")
    except FatalLLMError:
        raise
    except LLMError as e:
        return Explanation(**base, text="", status="failed", attempts=calls, error=f"llm: {e}")
    return Explanation(**base, text=text, attempts=calls)


async def explain_features(
    records: Sequence[FeatureRecord], client: LLMClient | None, **kwargs
) -> list[Explanation]:
    """:func:`explain_feature` over many records concurrently (the client limits concurrency);
    results in input order."""
    return list(await asyncio.gather(*(explain_feature(r, client, **kwargs) for r in records)))


# ----------------------------------------------------------------------------- built-in styles


def _template(name: str, fmt):
    return lambda examples: render_messages(name, examples=fmt(examples))


for _style in (
    ExplainStyle(
        "openai",
        _template("explain_openai", format_openai_examples),
        parse_openai_answer,
        doc="Bills et al. 2023: token<TAB>value blocks, few-shot",
    ),
    ExplainStyle(
        "highlight",
        _template("explain_highlight", format_highlight_examples),
        parse_highlight_answer,
        select="spread",
        doc="delphi: <<marked>> windows, few-shot",
    ),
    ExplainStyle(
        "compact",
        _template("explain_compact", format_compact_examples),
        parse_compact_answer,
        doc="the strongest tokens, 'what do these words have in common?' (small explainers)",
    ),
    ExplainStyle("top_tokens", text=top_tokens_text, doc="no LLM: the top tokens (the floor)"),
):
    register_explain_style(_style)

"""Simulator: explanation + token windows -> predicted activation of every token.

Answer scale. The simulator answers on a 0-9 scale and every prediction is mapped to the 0-10
scale of the explainer by ``x * 10 / 9``. Reason: many tokenizers (SmolLM2, Qwen, Llama-2)
write "10" as two tokens "1","0", so at a single position the probability of "1" mixes the
answers 1 and 10 and cannot be split in one forward pass; the ten digits "0".."9" are single
tokens everywhere, so the read-out below is exact for every tokenizer and the same prompt serves
every backend.

Methods (``method="auto"`` takes the first the client supports):

- ``all_at_once`` (``client.supports_prompt_logprobs``): ONE completion prompt (instructions,
  a few-shot feature, the explanation, then all examples; the shared prefix first so prompt
  caches hit), each token written ``token<TAB>unknown``. One ``prompt_logprobs`` call; at each
  ``unknown`` the logprobs of "0".."9" (exact via ``candidates`` in-process, else those among the
  top-N) are renormalised over the digits and the prediction is the expected value. Slots are
  found from the character offsets the backend returns, never by assuming a tokenization.
- ``top_logprobs`` (``client.supports_top_logprobs``): per example, a chat asking for a JSON list
  of integers; each generated number's top logprobs give an expected value (the parsed integer
  where a number does not start a generated token).
- ``json``: the same chat, the parsed integers taken as they are (lossy fallback).
- ``pmi`` (``client.supports_prompt_logprobs``; never chosen by ``auto``): explanation
  pointwise mutual information per token, see :mod:`autointerp.scoring.pmi`.
- ``token_match`` (no LLM): the floor paired with the ``top_tokens`` explainer, see
  :mod:`autointerp.scoring.pmi`.

JSON answers are parsed strictly (:func:`parse_json_prediction`): a :class:`ParseError` is fed
back up to ``max_parse_retries`` times, then raised.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from autointerp.errors import AutointerpError, LLMError, ParseError
from autointerp.llm.base import ChatResponse, LLMClient, Message, PromptLogprobs, Tag
from autointerp.scoring.methods import pick_method
from autointerp.templates import display_token, render, render_messages
from autointerp.types import Example

SCALE_MAX = 9  # the simulator answers 0..SCALE_MAX
TO_0_10 = 10.0 / SCALE_MAX
DIGITS = [str(d) for d in range(SCALE_MAX + 1)]
PLACEHOLDER = "unknown"


@dataclass
class SimulationResult:
    """``pred[i][j]``: predicted activation (0-10 scale) of token ``j`` of example ``i``."""

    pred: list[list[float]]
    method: str
    n_calls: int
    extra: dict[str, Any] = field(default_factory=dict)


def _one_line(text: str) -> str:
    return " ".join(text.split())


# ----------------------------------------------------------------------------- read-out math


def expected_value(dist: dict[str, float]) -> float | None:
    """Expected answer on the 0-10 scale from ``{token: logprob}``: keys that are a digit 0-9
    (after stripping whitespace; e.g. "3" and " 3" both count as 3) are renormalised among
    themselves, ``E = sum(d * p_d) * 10 / 9``. None when no digit is present."""
    by_digit: dict[int, float] = {}
    for tok, lp in dist.items():
        t = tok.strip()
        if len(t) == 1 and t in DIGITS and lp is not None and lp > -math.inf:
            d = int(t)
            by_digit[d] = _logaddexp(by_digit[d], lp) if d in by_digit else lp
    if not by_digit:
        return None
    m = max(by_digit.values())
    w = {d: math.exp(lp - m) for d, lp in by_digit.items()}
    z = sum(w.values())
    return sum(d * p for d, p in w.items()) / z * TO_0_10


def _logaddexp(a: float, b: float) -> float:
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


# ----------------------------------------------------------------------------- all at once


def build_all_at_once_prompt(
    explanation: str, examples: Sequence[Example]
) -> tuple[str, list[list[int]]]:
    """The completion prompt and, per example, the character offset of each token's slot."""
    head = render("simulate_all_at_once", explanation=_one_line(explanation), examples="\x00")
    at = head.index("\x00")
    parts: list[str] = []
    slots: list[list[int]] = []
    pos = at
    for ex in examples:
        ex_slots = []
        parts.append("<start>\n")
        pos += len("<start>\n")
        for tok in ex.tokens:
            line_head = f"{display_token(tok)}\t"
            ex_slots.append(pos + len(line_head))
            line = f"{line_head}{PLACEHOLDER}\n"
            parts.append(line)
            pos += len(line)
        parts.append("<end>\n")
        pos += len("<end>\n")
        slots.append(ex_slots)
    prompt = head[:at] + "".join(parts) + head[at + 1 :]
    return prompt, slots


def slot_token_indices(pl: PromptLogprobs, slots: Sequence[Sequence[int]]) -> list[list[int]]:
    """Index of the prompt token starting at each slot's character offset. Raises
    :class:`LLMError` when a placeholder does not start a token (the distribution there would
    not be "the next number given everything before")."""
    start_of = {off: i for i, off in enumerate(pl.offsets)}
    out = []
    for ex_slots in slots:
        idx = []
        for off in ex_slots:
            i = start_of.get(off)
            tok = pl.tokens[i] if i is not None else ""
            if not tok or not (PLACEHOLDER.startswith(tok) or tok.startswith(PLACEHOLDER)):
                raise LLMError(
                    f"no prompt token starts at the placeholder at character {off}; the "
                    "backend's token offsets do not line up with the prompt"
                )
            idx.append(i)
        out.append(idx)
    return out


def read_slots(pl: PromptLogprobs, token_idx: Sequence[Sequence[int]]) -> list[list[float]]:
    """Expected value (0-10) at every slot, from ``candidates`` when present else ``top``."""
    table = pl.candidates if pl.candidates is not None else pl.top
    pred = []
    for ex_idx in token_idx:
        row = []
        for i in ex_idx:
            v = expected_value(table[i])
            if v is None:
                raise LLMError(
                    f"no digit 0-9 among the logprobs at prompt token {i}; ask for more top "
                    "logprobs or use a backend with exact candidates"
                )
            row.append(v)
        pred.append(row)
    return pred


async def _all_at_once(
    explanation: str, examples: Sequence[Example], client: LLMClient, tag: Tag | None
) -> SimulationResult:
    prompt, slots = build_all_at_once_prompt(explanation, examples)
    exact = bool(getattr(client, "exact_candidates", False))
    pl = await client.prompt_logprobs(
        prompt,
        top_logprobs=1 if exact else 20,
        candidates=DIGITS,
        tag=tag,
        only_at=[off for ex_slots in slots for off in ex_slots],
    )
    pred = read_slots(pl, slot_token_indices(pl, slots))
    extra = {
        "prompt_tokens": pl.usage.prompt_tokens,
        "cached_tokens": pl.usage.cached_tokens,
        "exact_candidates": pl.exact_candidates,
    }
    return SimulationResult(pred=pred, method="all_at_once", n_calls=1, extra=extra)


# ----------------------------------------------------------------------------- chat methods

_LIST_RE = re.compile(r"\[[^\[\]]*\]")


def parse_json_prediction(text: str, n_tokens: int) -> list[int]:
    """The first ``[...]`` in ``text`` as a JSON list of exactly ``n_tokens`` integers 0-9,
    or :class:`ParseError` saying what is wrong."""
    m = _LIST_RE.search(text)
    if m is None:
        raise ParseError(f"no JSON list found; reply with a JSON list of {n_tokens} integers")
    try:
        values = json.loads(m.group(0))
    except json.JSONDecodeError as e:
        raise ParseError(f"the list is not valid JSON ({e.msg})") from e
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ParseError("every element must be an integer from 0 to 9")
    if len(values) != n_tokens:
        raise ParseError(f"the list has {len(values)} numbers but there are {n_tokens} tokens")
    bad = [v for v in values if not 0 <= v <= SCALE_MAX]
    if bad:
        raise ParseError(f"values must be from 0 to {SCALE_MAX}; got {bad[0]}")
    return values


def json_messages(explanation: str, example: Example) -> list[Message]:
    toks = json.dumps([display_token(t) for t in example.tokens], ensure_ascii=False)
    return render_messages(
        "simulate_json",
        explanation=_one_line(explanation),
        n_tokens=len(example.tokens),
        tokens=toks,
    )


def top_logprob_values(resp: ChatResponse, values: Sequence[int]) -> tuple[list[float], int]:
    """Expected value (0-10) for each number of the answer's JSON list from the top logprobs of
    the generated token where the number starts; the parsed integer (times 10/9) where no
    generated token starts there. Returns (values, number of such fallbacks)."""
    text = "".join(t.token for t in resp.logprobs or [])
    m = _LIST_RE.search(text)
    starts: dict[int, int] = {}
    pos = 0
    for i, t in enumerate(resp.logprobs or []):
        starts[pos] = i
        pos += len(t.token)
    out, fallbacks = [], 0
    nums = list(re.finditer(r"-?\d+", m.group(0))) if m else []
    for k, v in enumerate(values):
        ev = None
        if len(nums) == len(values):
            i = starts.get(m.start() + nums[k].start())
            if i is not None:
                tl = resp.logprobs[i]
                dist = dict(tl.top)
                if tl.logprob is not None:
                    dist.setdefault(tl.token, tl.logprob)
                ev = expected_value(dist)
        if ev is None:
            ev, fallbacks = v * TO_0_10, fallbacks + 1
        out.append(ev)
    return out, fallbacks


async def _chat_json(
    client: LLMClient,
    messages: list[Message],
    n_tokens: int,
    *,
    top_logprobs: int | None,
    max_parse_retries: int,
    tag: Tag | None,
) -> tuple[list[int], ChatResponse, int]:
    """Chat until the answer parses (feedback on failure); returns (values, response, calls)."""
    msgs = list(messages)
    max_tokens = 8 + 3 * n_tokens
    for attempt in range(1, max_parse_retries + 2):
        resp = await client.chat(msgs, max_tokens=max_tokens, top_logprobs=top_logprobs, tag=tag)
        try:
            return parse_json_prediction(resp.text, n_tokens), resp, attempt
        except ParseError as e:
            client.forget(resp.key)
            if attempt > max_parse_retries:
                raise ParseError(f"{e} (after {attempt} answers)") from e
            msgs += [
                {"role": "assistant", "content": resp.text},
                {"role": "user", "content": f"That answer could not be used: {e}. Try again."},
            ]
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------- entry point


async def _token_match(explanation, examples, client, *, max_parse_retries, tag):
    from autointerp.scoring.pmi import simulate_token_match

    return SimulationResult(simulate_token_match(explanation, examples), "token_match", 0)


async def _pmi(explanation, examples, client, *, max_parse_retries, tag):
    from autointerp.scoring.pmi import simulate_pmi

    pred, extra = await simulate_pmi(explanation, examples, client, tag)
    return SimulationResult(pred, "pmi", extra.pop("n_calls"), extra)


async def _all_at_once_method(explanation, examples, client, *, max_parse_retries, tag):
    return await _all_at_once(explanation, examples, client, tag)


async def _chat_method(method: str, explanation, examples, client, *, max_parse_retries, tag):
    """``top_logprobs`` / ``json``: one chat per example asking for a JSON list."""
    pred, calls, fallbacks = [], 0, 0
    for ex in examples:
        if not ex.tokens:
            pred.append([])
            continue
        values, resp, n = await _chat_json(
            client,
            json_messages(explanation, ex),
            len(ex.tokens),
            top_logprobs=10 if method == "top_logprobs" else None,
            max_parse_retries=max_parse_retries,
            tag=tag,
        )
        calls += n
        if method == "top_logprobs":
            row, fb = top_logprob_values(resp, values)
            fallbacks += fb
        else:
            row = [v * TO_0_10 for v in values]
        pred.append(row)
    extra = {"n_fallback": fallbacks} if method == "top_logprobs" else {}
    return SimulationResult(pred=pred, method=method, n_calls=calls, extra=extra)


async def _top_logprobs(explanation, examples, client, **kw):
    return await _chat_method("top_logprobs", explanation, examples, client, **kw)


async def _json(explanation, examples, client, **kw):
    return await _chat_method("json", explanation, examples, client, **kw)


#: simulation method -> ``async fn(explanation, examples, client, *, max_parse_retries, tag)``
#: (which backends can serve each: :func:`autointerp.scoring.methods.pick_method`)
SIMULATION_METHODS = {
    "token_match": _token_match,
    "pmi": _pmi,
    "all_at_once": _all_at_once_method,
    "top_logprobs": _top_logprobs,
    "json": _json,
}


async def simulate(
    explanation: str,
    examples: Sequence[Example],
    client: LLMClient | None,
    *,
    method: str = "auto",
    max_parse_retries: int = 2,
    tag: Tag | None = None,
) -> SimulationResult:
    """Predict every token's activation (0-10) of ``examples`` from ``explanation``.

    ``all_at_once`` makes exactly one LLM call for all examples; the chat methods make one call
    per example (plus parse retries). Raises :class:`ParseError` / :class:`LLMError` when the
    LLM's answers cannot be used."""
    if not examples:
        raise AutointerpError("simulate needs at least one example")
    if not explanation.strip():
        raise AutointerpError("simulate needs a non-empty explanation")
    method = pick_method(client, method)
    return await SIMULATION_METHODS[method](
        explanation, examples, client, max_parse_retries=max_parse_retries, tag=tag
    )

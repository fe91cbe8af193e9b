"""OpenAI wire-format parsing and error classification shared by the openai/litellm backends."""

from __future__ import annotations

import email.utils
import time
from typing import Any

from autointerp.errors import FatalLLMError, LLMError
from autointerp.llm.types import (
    ChatResponse,
    PromptBatch,
    PromptLogprobs,
    TokenLogprob,
    TransientLLMError,
    Usage,
)

#: A repeated 5-word cycle: after the first cycle any model (even a 135M one, by induction)
#: predicts each word from the ones before it, and never predicts a word to repeat itself.
ALIGN_PROBE = " ".join(["apple river stone cloud lamp"] * 6)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if dt is None:
        return None
    return max(0.0, dt.timestamp() - (time.time() if now is None else now))


def classify_status(status: int, body: str, retry_after: float | None, where: str) -> LLMError:
    """Map an HTTP error status to the error the retry loop acts on."""
    snippet = (body or "").strip().replace("\n", " ")[:300]
    if status in (408, 409, 425, 429) or status >= 500:
        return TransientLLMError(f"HTTP {status} from {where}: {snippet}", retry_after)
    if status in (401, 403):
        return FatalLLMError(
            f"HTTP {status} from {where}: the API key is missing or not allowed; set the "
            f"environment variable named by api_key_env. Server said: {snippet}"
        )
    if status == 404 or (status == 400 and "model" in snippet.lower()):
        return FatalLLMError(
            f"HTTP {status} from {where}: wrong model name or base_url? Server said: {snippet}"
        )
    return LLMError(f"HTTP {status} from {where} (not retried): {snippet}")


def _f(x: Any) -> float | None:
    return None if x is None else float(x)


def usage_from(u: dict[str, Any] | None) -> Usage:
    u = u or {}
    details = u.get("prompt_tokens_details") or {}
    return Usage(
        prompt_tokens=int(u.get("prompt_tokens") or 0),
        cached_tokens=int(details.get("cached_tokens") or 0),
        completion_tokens=int(u.get("completion_tokens") or 0),
    )


def parse_chat(d: Any, want_logprobs: bool) -> ChatResponse:
    """Parse a chat.completions JSON body; a malformed one is a transient error."""
    try:
        ch = d["choices"][0]
        text = ch["message"].get("content") or ""
        lps = None
        if want_logprobs:
            content = (ch.get("logprobs") or {}).get("content")
            if content is None:
                raise LLMError(
                    "the server returned no logprobs for a request that asked for them; use a "
                    "model/server that supports logprobs"
                )
            lps = [
                TokenLogprob(
                    token=t["token"],
                    logprob=_f(t.get("logprob")),
                    top={a["token"]: float(a["logprob"]) for a in t.get("top_logprobs") or []},
                )
                for t in content
            ]
        return ChatResponse(
            text=text,
            logprobs=lps,
            usage=usage_from(d.get("usage")),
            finish_reason=str(ch.get("finish_reason") or ""),
        )
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
        raise TransientLLMError(f"malformed chat response ({type(e).__name__}: {e})") from e


def raw_echo(d: Any, prompt: str) -> tuple[list[str], list[int], list[float | None], list[dict]]:
    """(tokens, offsets, token_logprobs, top) of the prompt part of a completions echo body."""
    try:
        lp = d["choices"][0]["logprobs"]
        toks, offs = list(lp["tokens"]), list(lp["text_offset"])
        tlp = list(lp.get("token_logprobs") or [None] * len(toks))
        top = [dict(t) if t else {} for t in (lp.get("top_logprobs") or [None] * len(toks))]
        n = sum(1 for o in offs if o < len(prompt))
        top = [{str(k): float(v) for k, v in t.items()} for t in top[:n]]
        return toks[:n], [int(o) for o in offs[:n]], [_f(x) for x in tlp[:n]], top
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
        raise TransientLLMError(f"malformed completions response ({type(e).__name__}: {e})") from e


def detect_shifted(d: Any) -> bool:
    """True when echoed logprobs are shifted by one (entry i = distribution *after* token i,
    as llama.cpp servers return), judged on the ``ALIGN_PROBE`` prompt: with standard alignment
    the cycle words get high logprobs at their own positions; shifted, the next word does."""
    toks, _, tlp, top = raw_echo(d, ALIGN_PROBE)
    idx = range(len(toks) // 2, len(toks) - 1)
    own = [x if x is not None else -30.0 for x in (tlp[i] for i in idx)]
    nxt = [top[i].get(toks[i + 1], -30.0) for i in idx]
    return sum(nxt) > sum(own)


def parse_echo(d: Any, prompt: str, shifted: bool, candidates: list[str] | None) -> PromptLogprobs:
    toks, offs, tlp, top = raw_echo(d, prompt)
    if shifted:  # entry i is the distribution after token i: the own logprob is in top[i-1]
        top = [{}] + top[:-1]
        tlp = [t.get(tok) for t, tok in zip(top, toks, strict=True)]
    cands = None
    if candidates:
        cands = [{c: t[c] for c in candidates if c in t} for t in top]
    return PromptLogprobs(
        tokens=toks,
        offsets=offs,
        top=top,
        usage=usage_from(d.get("usage")),
        candidates=cands,
        exact_candidates=False,
        token_logprobs=tlp,
    )


def split_total(total: int, weights: list[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainder): the parts sum to it."""
    w = sum(weights)
    if w <= 0:
        weights, w = [1] * len(weights), len(weights)
    exact = [total * x / w for x in weights]
    parts = [int(e) for e in exact]
    for i in sorted(range(len(exact)), key=lambda i: parts[i] - exact[i])[: total - sum(parts)]:
        parts[i] += 1
    return parts


def parse_echo_batch(d: Any, prompts: list[str], shifted: bool) -> PromptBatch:
    """One completions echo body for a list of prompts -> one ``PromptLogprobs`` per prompt
    (``choices[i].index`` = prompt index). A body whose choices are not one per prompt, or whose
    echoed text is not its prompt, is an error, never a silently wrong answer. The request's
    usage is split over the prompts: prompt tokens in proportion to each prompt's echoed tokens,
    completion tokens evenly (both sum to the request's)."""
    try:
        by_index = {int(c["index"]): c for c in d["choices"]}
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
        raise TransientLLMError(f"malformed completions response ({type(e).__name__}: {e})") from e
    if sorted(by_index) != list(range(len(prompts))):
        raise LLMError(
            f"the server answered choices {sorted(by_index)[:8]} for {len(prompts)} prompts in "
            "one request; it does not batch prompt lists: set prompt_batch = 1 for this role"
        )
    out = []
    for i, p in enumerate(prompts):
        c = by_index[i]
        text = c.get("text")
        if isinstance(text, str) and not text.startswith(p):
            raise LLMError(
                f"choice {i} of a batched echo does not echo prompt {i}; the server mixes up "
                "prompt lists: set prompt_batch = 1 for this role"
            )
        out.append(parse_echo({"choices": [c]}, p, shifted, None))
    total = usage_from(d.get("usage"))
    sizes = [len(r.tokens) for r in out]
    for r, pt, ct, cached in zip(
        out,
        split_total(total.prompt_tokens, sizes),
        split_total(total.completion_tokens, [1] * len(out)),
        split_total(total.cached_tokens, sizes),
        strict=True,
    ):
        r.usage = Usage(prompt_tokens=pt, completion_tokens=ct, cached_tokens=cached)
    return PromptBatch(results=out, usage=total)


BATCH_PROBE = ["apple river stone", "cloud lamp"]


async def probe_batch(client: Any) -> tuple[bool, str]:
    """Send ``BATCH_PROBE`` as one two-prompt echo request, one attempt; (True, "") when the
    server answers one correct echo per prompt, else (False, why). Only a yes is cached."""
    key = client.key_for("batch_probe", {"prompt": BATCH_PROBE})
    if client.cache is not None and client.cache.get(key) is not None:
        return True, ""
    try:
        d = await client._echo_many(BATCH_PROBE, 1)
        parse_echo_batch(d, BATCH_PROBE, False)
    except Exception as e:  # noqa: BLE001 - any failure: one prompt per request
        return False, f"{type(e).__name__}: {e}"
    if client.cache is not None:
        client.cache.put(key, "batch_probe", {"batch": True})
    return True, ""


async def probe_alignment(client: Any) -> bool:
    """Echo ``ALIGN_PROBE`` once (cached) and decide whether the server's echo is shifted."""
    key = client.key_for("align_probe", {"prompt": ALIGN_PROBE})
    if client.cache is not None and (hit := client.cache.get(key)) is not None:
        return bool(hit["shifted"])

    class _Raw:
        def __init__(self, raw: Any):
            self.raw, self.usage = raw, Usage()

    async def once() -> _Raw:
        return _Raw(await client._echo(ALIGN_PROBE, 5))

    d = await client._with_retries(once, 64, key)
    shifted = detect_shifted(d.raw)
    if client.cache is not None:
        client.cache.put(key, "align_probe", {"shifted": shifted})
    return shifted

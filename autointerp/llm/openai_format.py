"""OpenAI wire-format parsing and error classification shared by the openai/litellm backends."""

from __future__ import annotations

import email.utils
import time
from typing import Any

from autointerp.errors import FatalLLMError, LLMError
from autointerp.llm.types import (
    ChatResponse,
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

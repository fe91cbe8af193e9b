"""The data types every LLM module shares: a request's messages, what an answer holds
(``ChatResponse``, ``PromptLogprobs``, ``TokenLogprob``), what it cost (``Usage``), who it was for
(``Tag``) and the retryable error. They import nothing else of autointerp.llm, so the client
(``base``), the cache, accounting and every backend can import them without a cycle; they are
re-exported from ``autointerp.llm.base`` and ``autointerp.llm``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from autointerp.errors import LLMError

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": "..."}


@dataclass
class Usage:
    """What one call cost. ``cache_hit`` is True when served from autointerp's own disk cache
    (then ``cost_usd`` is 0 and the token fields repeat what the original call used)."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0
    cache_hit: bool = False


@dataclass
class TokenLogprob:
    """One generated (or prompt) token with its logprob and the top alternatives."""

    token: str
    logprob: float | None
    top: dict[str, float] = field(default_factory=dict)


@dataclass
class ChatResponse:
    """``key`` is the cache key of the request (pass it to ``LLMClient.forget``).
    ``finish_reason``: "stop", "length" (cut at ``max_tokens``) or "" when unknown."""

    text: str
    logprobs: list[TokenLogprob] | None = None
    usage: Usage = field(default_factory=Usage)
    key: str = ""
    finish_reason: str = ""


@dataclass
class PromptLogprobs:
    """Per prompt token: its text, its character offset in the prompt and top-N logprobs of
    what the model predicted *at that position* (i.e. given everything before it).

    Alignment: ``top[i]`` is the distribution of token ``i`` given tokens ``0..i-1`` for every
    backend (raw llama.cpp echo output is shifted by one; backends undo that). ``top[0]`` is
    ``{}`` unless the model prepends a BOS token. ``candidates[i]`` (when candidate strings were
    asked for) maps each candidate to its logprob at position ``i``: exact for every candidate
    when ``exact_candidates`` (in-process llama.cpp), else only those found in ``top[i]``.

    ``token_logprobs[i]`` is the logprob of the actual prompt token ``i`` given tokens
    ``0..i-1`` (what the explanation-PMI simulator reads): exact in-process and from servers
    whose echo is standard-aligned; from a shifted (llama.cpp) server only when the token is in
    the top-N there, else None. None for positions not asked for (``only_at``) and for ``i=0``
    without a BOS.
    """

    tokens: list[str]
    offsets: list[int]
    top: list[dict[str, float]]
    usage: Usage = field(default_factory=Usage)
    candidates: list[dict[str, float]] | None = None
    exact_candidates: bool = False
    key: str = ""
    token_logprobs: list[float | None] | None = None


@dataclass
class PromptBatch:
    """What one batched prompt-logprob pass returns (``usage.latency_s``: the whole pass)."""

    results: list[PromptLogprobs]
    usage: Usage = field(default_factory=Usage)


@dataclass
class Tag:
    """Who a call is for, so accounting can total per basis and per stage."""

    stage: str = ""
    basis: str = ""
    feature: int = -1


class TransientLLMError(LLMError):
    """A failure worth retrying (429, 5xx, timeout, connection error, malformed body)."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after

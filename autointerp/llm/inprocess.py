"""What the in-process backends (llama.cpp, transformers) share: each call runs in a worker
thread (the backend holds its model's lock inside, as neither engine is thread-safe), calls are
never wrapped in a timeout (a worker thread cannot be cancelled), and ``candidates`` must be
single tokens, whose logprobs are then exact."""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Iterable
from typing import Any

from autointerp.errors import AutointerpError
from autointerp.llm.base import LLMClient
from autointerp.llm.types import ChatResponse, Message, PromptLogprobs


def top_by_text(pairs: Iterable[tuple[str, float]]) -> dict[str, float]:
    """``{token text: logprob}``, most likely first; of token ids that decode to the same text
    (e.g. partial UTF-8 bytes) the likeliest is kept."""
    d: dict[str, float] = {}
    for name, lp in pairs:
        if lp > d.get(name, float("-inf")):
            d[name] = lp
    return dict(sorted(d.items(), key=lambda kv: -kv[1]))


class InProcessClient(LLMClient):
    supports_prompt_logprobs = True
    supports_top_logprobs = True
    exact_candidates = True
    apply_timeout = False

    async def _chat(self, messages: list[Message], **params: Any) -> ChatResponse:
        return await asyncio.to_thread(self._chat_sync, messages, **params)

    async def _prompt_logprobs(
        self,
        prompt: str,
        *,
        top_logprobs: int,
        candidates: list[str] | None = None,
        only_at: list[int] | None = None,
    ) -> PromptLogprobs:
        return await asyncio.to_thread(self._prompt_sync, prompt, top_logprobs, candidates, only_at)

    @abstractmethod
    def _chat_sync(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float,
        top_logprobs: int | None,
        stop: list[str] | None,
        seed: int | None,
    ) -> ChatResponse: ...

    @abstractmethod
    def _prompt_sync(
        self, prompt: str, top_n: int, candidates: list[str] | None, only_at: list[int] | None
    ) -> PromptLogprobs: ...

    @abstractmethod
    def _encode(self, text: str) -> list[int]:
        """Token ids of ``text`` as plain text (no special tokens added or parsed)."""

    def _candidate_ids(self, candidates: list[str]) -> list[int]:
        ids = []
        for c in candidates:
            t = self._encode(c)
            if len(t) != 1:
                raise AutointerpError(
                    f"candidate {c!r} is {len(t)} tokens for {self.model}; candidates must be "
                    "single tokens (SmolLM2 splits numbers into digits: use '0'..'9')"
                )
            ids.append(int(t[0]))
        return ids

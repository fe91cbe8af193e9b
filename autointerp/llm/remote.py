"""What the two HTTP backends (``openai`` SDK, ``litellm``) share: identity, the chat request's
fields, and prompt logprobs through a completions call with ``echo`` (alignment probed once per
client unless ``echo_alignment`` says it; see ``openai_format``). A subclass supplies how one
request is sent (``_send_chat``, ``_echo``) and how transport errors are classified."""

from __future__ import annotations

import ipaddress
import logging
from abc import abstractmethod
from functools import lru_cache
from typing import Any
from urllib.parse import urlparse

from autointerp.errors import AutointerpError
from autointerp.llm import openai_format as fmt
from autointerp.llm.base import LLMClient
from autointerp.llm.types import ChatResponse, Message, PromptBatch, PromptLogprobs

LOCAL_KEY = "sk-local-no-key"
#: prompts per completions request once a server has answered a prompt list correctly
AUTO_BATCH = 64

log = logging.getLogger("autointerp.llm")


@lru_cache(maxsize=256)  # asked for every call's cost; parsing the address cost ~0.1 ms
def is_local_url(url: str | None) -> bool:
    host = urlparse(url or "").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RemoteClient(LLMClient):
    supports_prompt_logprobs = True
    supports_top_logprobs = True
    #: can send a list of prompts in one completions request (``_echo_many``)
    echo_lists = True

    def __init__(self, cfg=None, **kw: Any):
        super().__init__(cfg, **kw)
        self.model = self.cfg.model
        #: every endpoint (a pool when ``base_url`` is a list); ``base_url``: the first
        self.base_urls = self.cfg.base_urls
        self.base_url = self.base_urls[0] if self.base_urls else None
        pl = self.cfg.prompt_logprobs
        if pl is None:  # OpenAI's own API: chat models only, no echo
            pl = not (self.backend == "openai" and not self.base_url)
        self.supports_prompt_logprobs = pl
        #: True/False once known; None: probe the server on the first prompt-logprob call
        self._shifted: bool | None = {"standard": False, "shifted": True}.get(
            self.cfg.echo_alignment
        )
        pb = self.cfg.prompt_batch
        if pb != "auto" and pb > 1 and not self.echo_lists:
            raise AutointerpError(
                f"the {self.backend} backend sends one prompt per request: set prompt_batch "
                f'to "auto" or 1 (got {pb})'
            )
        #: prompts per echo request once known; None: probe on the first batched call
        self._batch: int | None = (1 if not self.echo_lists else None) if pb == "auto" else pb

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": self.model, "base_url": self.cfg.base_url}

    def _is_local(self) -> bool:
        return bool(self.base_urls) and all(is_local_url(u) for u in self.base_urls)

    @abstractmethod
    async def _send_chat(self, **kw: Any) -> Any:
        """One chat-completions request; the parsed JSON body."""

    @abstractmethod
    async def _echo(self, prompt: str, top_logprobs: int) -> Any:
        """One completions request with ``echo=True, logprobs=N, max_tokens=1``."""

    async def _echo_many(self, prompts: list[str], top_logprobs: int) -> Any:
        """One completions request with a list of prompts (``echo_lists`` backends)."""
        raise NotImplementedError

    async def _chat(self, messages: list[Message], **p: Any) -> ChatResponse:
        kw: dict[str, Any] = dict(
            messages=messages, max_tokens=p["max_tokens"], temperature=p["temperature"]
        )
        if p.get("stop"):
            kw["stop"] = p["stop"]
        if p.get("seed") is not None:
            kw["seed"] = p["seed"]
        if p.get("top_logprobs") is not None:
            kw.update(logprobs=True, top_logprobs=p["top_logprobs"])
        d = await self._send_chat(**kw)
        return fmt.parse_chat(d, p.get("top_logprobs") is not None)

    async def _prompt_request_extra(self) -> dict[str, Any]:
        if self._shifted is None:
            async with self._state().lock:
                if self._shifted is None:
                    self._shifted = await fmt.probe_alignment(self)
        return {"shifted": self._shifted}

    async def _batch_size(self) -> int:
        if self._batch is None:
            async with self._state().lock:
                if self._batch is None:
                    ok, why = await fmt.probe_batch(self)
                    if not ok:
                        log.info(
                            "%s at %s does not batch prompt lists (%s): one prompt per request",
                            self.backend,
                            self.base_url,
                            why[:200],
                        )
                    self._batch = AUTO_BATCH if ok else 1
        return self._batch

    async def _prompt_logprobs_batch(
        self, prompts: list[str], top_logprobs: int, only_at: list[list[int] | None]
    ) -> PromptBatch:
        d = await self._echo_many(prompts, top_logprobs)
        return fmt.parse_echo_batch(d, prompts, bool(self._shifted))

    async def _prompt_logprobs(
        self,
        prompt: str,
        *,
        top_logprobs: int,
        candidates: list[str] | None = None,
        only_at: list[int] | None = None,  # answered at every position
    ) -> PromptLogprobs:
        d = await self._echo(prompt, top_logprobs)
        return fmt.parse_echo(d, prompt, bool(self._shifted), candidates)

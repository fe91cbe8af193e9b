"""What the two HTTP backends (``openai`` SDK, ``litellm``) share: identity, the chat request's
fields, and prompt logprobs through a completions call with ``echo`` (alignment probed once per
client unless ``echo_alignment`` says it; see ``openai_format``). A subclass supplies how one
request is sent (``_send_chat``, ``_echo``) and how transport errors are classified."""

from __future__ import annotations

import ipaddress
from abc import abstractmethod
from functools import lru_cache
from typing import Any
from urllib.parse import urlparse

from autointerp.llm import openai_format as fmt
from autointerp.llm.base import LLMClient
from autointerp.llm.types import ChatResponse, Message, PromptLogprobs

LOCAL_KEY = "sk-local-no-key"


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

    def __init__(self, cfg=None, **kw: Any):
        super().__init__(cfg, **kw)
        self.model = self.cfg.model
        self.base_url = self.cfg.base_url
        pl = self.cfg.prompt_logprobs
        if pl is None:  # OpenAI's own API: chat models only, no echo
            pl = not (self.backend == "openai" and not self.base_url)
        self.supports_prompt_logprobs = pl
        #: True/False once known; None: probe the server on the first prompt-logprob call
        self._shifted: bool | None = {"standard": False, "shifted": True}.get(
            self.cfg.echo_alignment
        )

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": self.model, "base_url": self.base_url}

    def _is_local(self) -> bool:
        return is_local_url(self.base_url)

    @abstractmethod
    async def _send_chat(self, **kw: Any) -> Any:
        """One chat-completions request; the parsed JSON body."""

    @abstractmethod
    async def _echo(self, prompt: str, top_logprobs: int) -> Any:
        """One completions request with ``echo=True, logprobs=N, max_tokens=1``."""

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

"""Any OpenAI-compatible endpoint through the openai SDK (``AsyncOpenAI``).

The SDK's own retries are off (``max_retries=0``); autointerp retries. Bodies are read raw and
parsed here, so a garbage body is a retryable error rather than a crash. Prompt logprobs use the
completions endpoint with ``echo=True, logprobs=N, max_tokens=1``; see ``openai_format`` for the
alignment handling (``echo_alignment``). Several prompts go in one completions request
(``prompt`` as a list, one choice per prompt) once the server has shown it answers such a list
correctly (``prompt_batch``, see ``remote``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from autointerp.errors import FatalLLMError
from autointerp.llm import openai_format as fmt
from autointerp.llm.pool import EndpointDown, EndpointPool
from autointerp.llm.registry import register_backend
from autointerp.llm.remote import LOCAL_KEY, RemoteClient
from autointerp.llm.types import TransientLLMError


def resolve_api_key(env: str | None, base_url: str | None, default_env: str) -> str:
    """The key from the named env var; a dummy for a custom base_url without one."""
    name = env or default_env
    key = os.environ.get(name)
    if key:
        return key
    if base_url:
        return LOCAL_KEY
    raise FatalLLMError(
        f"no API key: set the environment variable {name} (or name another one with "
        "llm.<role>.api_key_env, or point base_url at a local server)"
    )


@register_backend("openai")
class OpenAIClient(RemoteClient):
    backend = "openai"

    def __init__(self, cfg=None, **kw: Any):
        super().__init__(cfg, **kw)
        from openai import AsyncOpenAI

        key = resolve_api_key(self.cfg.api_key_env, self.base_url, "OPENAI_API_KEY")
        self._pool: EndpointPool[Any] = EndpointPool(
            self.base_urls or [None],  # type: ignore[list-item]
            lambda url: AsyncOpenAI(
                api_key=key, base_url=url, timeout=self.cfg.timeout_s, max_retries=0
            ),
        )

    async def _request(self, route: Callable[[Any], Any], **kw: Any) -> Any:
        """One request on an endpoint of the pool; ``route(client)`` is the SDK method."""
        return await self._pool.call(lambda c, url: self._send(route(c), url, **kw))

    async def _send(self, create: Any, url: str | None, **kw: Any) -> Any:
        import openai

        where = url or "api.openai.com"
        try:
            raw = await create(**kw)
            text = raw.http_response.text
        except openai.APIStatusError as e:
            ra = fmt.parse_retry_after(e.response.headers.get("retry-after"))
            raise fmt.classify_status(e.status_code, e.response.text, ra, where) from e
        except openai.APITimeoutError as e:
            raise EndpointDown(f"timeout talking to {where}") from e
        except openai.APIConnectionError as e:
            raise EndpointDown(f"connection error to {where}: {e}") from e
        try:
            return json.loads(text)
        except ValueError as e:
            raise TransientLLMError(f"non-JSON body from {where}: {text[:120]!r}") from e

    async def _send_chat(self, **kw: Any) -> Any:
        return await self._request(
            lambda c: c.chat.completions.with_raw_response.create, model=self.model, **kw
        )

    async def _echo(self, prompt: str | list[str], top_logprobs: int) -> Any:
        return await self._request(
            lambda c: c.completions.with_raw_response.create,
            model=self.model,
            prompt=prompt,
            max_tokens=1,
            temperature=0.0,
            echo=True,
            logprobs=top_logprobs,
        )

    async def _echo_many(self, prompts: list[str], top_logprobs: int) -> Any:
        return await self._echo(prompts, top_logprobs)  # type: ignore[arg-type]

    async def aclose(self) -> None:
        for c in self._pool.clients.values():
            await c.close()

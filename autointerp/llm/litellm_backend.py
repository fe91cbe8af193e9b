"""Any provider through litellm (``acompletion`` / ``atext_completion``).

``model`` is litellm's provider-prefixed name; for an OpenAI-compatible server (e.g.
``python -m llama_cpp.server``) use ``openai/<name>`` with ``base_url``. litellm's own retries
are off; autointerp retries. ``LITELLM_LOCAL_MODEL_COST_MAP=True`` is set before import so
litellm never fetches its price map.
"""

from __future__ import annotations

import os
from typing import Any

from autointerp.errors import AutointerpError, LLMError
from autointerp.llm import openai_format as fmt
from autointerp.llm.registry import register_backend
from autointerp.llm.remote import LOCAL_KEY, RemoteClient
from autointerp.llm.types import TransientLLMError


def _litellm():
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.disable_aiohttp_transport = True  # httpx: no unclosed aiohttp sessions
    litellm.suppress_debug_info = True
    return litellm


@register_backend("litellm")
class LiteLLMClient(RemoteClient):
    echo_lists = False  # one prompt per completions request (prompt lists not checked here)
    backend = "litellm"

    def __init__(self, cfg=None, **kw: Any):
        super().__init__(cfg, **kw)
        if len(self.base_urls) > 1:
            raise AutointerpError(
                "a pool of base URLs (base_url = [...]) is served by the openai backend; "
                'set backend = "openai" or give one base_url'
            )
        self._lt = _litellm()
        key = os.environ.get(self.cfg.api_key_env) if self.cfg.api_key_env else None
        if key is None and self.base_url and self.model.startswith("openai/"):
            key = os.environ.get("OPENAI_API_KEY") or LOCAL_KEY
        self._key = key  # None: litellm reads the provider's usual env var itself
        self._where = self.base_url or self.model

    def _common(self) -> dict[str, Any]:
        kw: dict[str, Any] = dict(
            model=self.model, timeout=self.cfg.timeout_s, num_retries=0, max_retries=0
        )
        if self.base_url:
            kw["api_base"] = self.base_url
        if self._key:
            kw["api_key"] = self._key
        return kw

    async def _request(self, fn: Any, **kw: Any) -> dict[str, Any]:
        lt = self._lt
        try:
            res = await fn(**self._common(), **kw)
        except lt.Timeout as e:
            raise TransientLLMError(f"timeout talking to {self._where}") from e
        except lt.APIConnectionError as e:
            raise TransientLLMError(f"connection error to {self._where}: {e}") from e
        except Exception as e:  # litellm wraps provider errors; classify by HTTP status
            status = getattr(e, "status_code", None)
            if isinstance(status, int) and status >= 400:
                resp = getattr(e, "response", None)
                headers = getattr(resp, "headers", None) or {}
                ra = fmt.parse_retry_after(headers.get("retry-after"))
                raise fmt.classify_status(status, str(e), ra, self._where) from e
            if isinstance(e, LLMError):
                raise
            raise TransientLLMError(f"{type(e).__name__} from {self._where}: {e}") from e
        try:
            return res.model_dump() if hasattr(res, "model_dump") else dict(res)
        except (TypeError, ValueError) as e:
            raise TransientLLMError(f"malformed response from {self._where}") from e

    async def _send_chat(self, **kw: Any) -> dict[str, Any]:
        return await self._request(self._lt.acompletion, **kw)

    async def _echo(self, prompt: str, n: int) -> dict[str, Any]:
        return await self._request(
            self._lt.atext_completion,
            prompt=prompt,
            max_tokens=1,
            temperature=0.0,
            echo=True,
            logprobs=n,
        )

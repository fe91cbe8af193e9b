"""LLM access for autointerp: ``make_client(cfg)`` builds the client for one role.

Backends: ``llamacpp`` (in-process, offline default), ``transformers`` (in-process torch),
``openai`` (openai SDK, any OpenAI-compatible endpoint) and ``litellm``. All share caching, retries,
concurrency limits and accounting (see ``autointerp.llm.base``).
"""

from __future__ import annotations

import threading

from autointerp.errors import FatalLLMError, LLMError, ParseError
from autointerp.llm.accounting import Ledger
from autointerp.llm.base import (
    ChatResponse,
    LLMClient,
    Message,
    PromptLogprobs,
    Tag,
    TokenLogprob,
    Usage,
)
from autointerp.llm.cache import ResponseCache
from autointerp.llm.config import LLMConfig
from autointerp.llm.helpers import as_completed_limited, chat_parsed, map_concurrent
from autointerp.llm.prices import PriceTable

__all__ = [
    "ChatResponse",
    "FatalLLMError",
    "LLMClient",
    "LLMConfig",
    "LLMError",
    "Ledger",
    "Message",
    "ParseError",
    "PriceTable",
    "PromptLogprobs",
    "ResponseCache",
    "Tag",
    "TokenLogprob",
    "Usage",
    "as_completed_limited",
    "chat_parsed",
    "local_client",
    "make_client",
    "map_concurrent",
]


def make_client(
    cfg: LLMConfig,
    *,
    cache: ResponseCache | None = None,
    ledger: Ledger | None = None,
) -> LLMClient:
    """The client for one role (explainer, simulator or scorer) as configured."""
    if cfg.backend == "llamacpp":
        from autointerp.llm.llamacpp import LlamaCppClient

        return LlamaCppClient(cfg, cache=cache, ledger=ledger)
    if cfg.backend == "transformers":
        from autointerp.llm.transformers_backend import TransformersClient

        return TransformersClient(cfg, cache=cache, ledger=ledger)
    if cfg.backend == "openai":
        from autointerp.llm.openai_backend import OpenAIClient

        return OpenAIClient(cfg, cache=cache, ledger=ledger)
    if cfg.backend == "litellm":
        from autointerp.llm.litellm_backend import LiteLLMClient

        return LiteLLMClient(cfg, cache=cache, ledger=ledger)
    raise FatalLLMError(
        f"unknown llm backend {cfg.backend!r}; use llamacpp, transformers, openai or litellm"
    )


_LOCAL: LLMClient | None = None
_LOCAL_LOCK = threading.Lock()


def local_client() -> LLMClient:
    """A ready in-process llama.cpp client on the bundled SmolLM2 GGUF (one per process; no
    cache, no ledger; n_ctx 4096)."""
    global _LOCAL
    with _LOCAL_LOCK:
        if _LOCAL is None:
            _LOCAL = make_client(LLMConfig(backend="llamacpp", model="smollm2-gguf", n_ctx=4096))
        return _LOCAL

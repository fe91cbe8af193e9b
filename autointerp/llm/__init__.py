"""LLM access for autointerp: ``make_client(cfg)`` builds the client for one role.

Backends: ``llamacpp`` (in-process, offline default), ``transformers`` (in-process torch),
``openai`` (openai SDK, any OpenAI-compatible endpoint) and ``litellm``, plus any registered with
``register_backend`` or the ``autointerp.llm_backends`` entry-point group (see
``autointerp.llm.registry``). All share caching, retries, concurrency limits and accounting (see
``autointerp.llm.base``).
"""

from __future__ import annotations

import threading

from autointerp.errors import FatalLLMError, LLMError, ParseError
from autointerp.llm.accounting import Ledger
from autointerp.llm.base import LLMClient
from autointerp.llm.cache import ResponseCache
from autointerp.llm.config import LLMConfig
from autointerp.llm.helpers import as_completed_limited, chat_parsed, map_concurrent
from autointerp.llm.prices import PriceTable
from autointerp.llm.registry import backend_names, get_backend, register_backend
from autointerp.llm.types import ChatResponse, Message, PromptLogprobs, Tag, TokenLogprob, Usage

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
    "backend_names",
    "chat_parsed",
    "local_client",
    "make_client",
    "map_concurrent",
    "register_backend",
]


def make_client(
    cfg: LLMConfig,
    *,
    cache: ResponseCache | None = None,
    ledger: Ledger | None = None,
) -> LLMClient:
    """The client for one role (explainer, simulator or scorer) as configured: the factory
    ``autointerp.llm.registry`` holds for ``cfg.backend``."""
    return get_backend(cfg.backend)(cfg, cache=cache, ledger=ledger)


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

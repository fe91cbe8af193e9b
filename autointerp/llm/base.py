"""The one LLM interface the rest of autointerp sees.

Every backend (in-process llama.cpp or transformers, the openai SDK for any OpenAI-compatible
endpoint, litellm) implements the raw calls ``_chat`` and ``_prompt_logprobs``; the public ``chat``
and ``prompt_logprobs`` add, in this order: the disk cache (a hit makes no call), de-duplication of
identical requests in flight, the concurrency bound (``max_concurrency``), the rate limiter
(``requests_per_minute`` / ``tokens_per_minute``), retries (tenacity: exponential backoff with full
jitter, ``Retry-After`` honoured) and accounting (``Ledger``). No other module knows which provider
is in use.

Errors a caller sees: ``FatalLLMError`` (401/403/404, unknown model: stop the run),
``LLMError`` (this request failed for good: record the item as failed and go on).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from autointerp.errors import FatalLLMError, LLMError
from autointerp.llm.accounting import BudgetExceeded, Ledger
from autointerp.llm.cache import ResponseCache, decode_response, encode_response
from autointerp.llm.config import LLMConfig
from autointerp.llm.prices import PriceTable
from autointerp.llm.ratelimit import RateLimiter
from autointerp.llm.types import (
    ChatResponse,
    Message,
    PromptBatch,
    PromptLogprobs,
    Tag,
    TokenLogprob,
    TransientLLMError,
    Usage,
)

__all__ = [  # the data types are re-exported: other packages import them from here
    "CACHE_KEY_VERSION",
    "ChatResponse",
    "LLMClient",
    "Message",
    "PromptBatch",
    "PromptLogprobs",
    "Tag",
    "TokenLogprob",
    "TransientLLMError",
    "Usage",
    "request_key",
]

log = logging.getLogger("autointerp.llm")

R = TypeVar("R", "ChatResponse", "PromptLogprobs")

CACHE_KEY_VERSION = 1
MAX_RETRY_AFTER_S = 600.0


def request_key(ident: dict[str, Any], kind: str, request: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of (client identity, call kind, request). ``ident`` comes
    from ``describe()``, which never holds secrets, so the API key never enters a key."""
    blob = json.dumps(
        {"v": CACHE_KEY_VERSION, "client": ident, "kind": kind, "request": request},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class _LoopState:
    """Asyncio primitives are bound to one event loop; keep one set per running loop."""

    def __init__(self, max_concurrency: int):
        self.sem = asyncio.Semaphore(max(1, max_concurrency))
        self.inflight: dict[str, asyncio.Future] = {}
        self.lock = asyncio.Lock()
        #: in-process batching: name -> (queued items, the worker task draining them)
        self.queues: dict[str, tuple[list, Any]] = {}


class LLMClient(ABC):
    """Async client. Backends set ``backend``, ``model`` and the capability flags.

    ``cfg`` supplies limits and retry settings; ``cache`` (a ``ResponseCache``) and ``ledger``
    (a ``Ledger``) are optional and may be shared between clients.
    """

    backend: str = "abstract"
    model: str = ""
    supports_prompt_logprobs: bool = False
    supports_top_logprobs: bool = False
    exact_candidates: bool = False
    #: evaluates several prompts in one pass (``_prompt_logprobs_batch``)
    batch_prompts: bool = False
    #: wrap each attempt in ``asyncio.wait_for(timeout_s)`` (off for in-process work)
    apply_timeout: bool = True

    def __init__(
        self,
        cfg: LLMConfig | None = None,
        *,
        cache: ResponseCache | None = None,
        ledger: Ledger | None = None,
        prices: PriceTable | None = None,
    ):
        self.cfg = cfg if cfg is not None else LLMConfig()
        self.cache = cache
        self.ledger = ledger
        self.prices = prices if prices is not None else PriceTable.from_config(self.cfg.prices)
        self.limiter = RateLimiter(self.cfg.requests_per_minute, self.cfg.tokens_per_minute)
        self._states: dict[int, _LoopState] = {}

    # ----------------------------------------------------------------------------- public
    async def chat(
        self,
        messages: list[Message],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_logprobs: int | None = None,
        stop: list[str] | None = None,
        seed: int | None = 0,
        tag: Tag | None = None,
        cache: bool = True,
    ) -> ChatResponse:
        """One chat completion. ``cache=False`` neither reads nor writes the disk cache."""
        if top_logprobs is not None and not self.supports_top_logprobs:
            raise LLMError(f"{self.backend} backend cannot return top logprobs")
        params = dict(
            max_tokens=max_tokens,
            temperature=temperature,
            top_logprobs=top_logprobs,
            stop=list(stop) if stop else None,
            seed=seed,
        )
        request = {"messages": [dict(m) for m in messages], **params}
        est = sum(len(m.get("content", "")) for m in messages) // 3 + max_tokens
        return await self._call(
            "chat", request, lambda: self._chat(messages, **params), tag, cache, est
        )

    async def prompt_logprobs(
        self,
        prompt: str,
        *,
        top_logprobs: int = 20,
        tag: Tag | None = None,
        candidates: list[str] | None = None,
        cache: bool = True,
        only_at: list[int] | None = None,
    ) -> PromptLogprobs:
        """Top-N logprobs at every prompt position (see ``PromptLogprobs`` for alignment).

        ``candidates``: single-token strings whose logprob is wanted at every position; exact
        in-process, approximated from the top-N elsewhere (missing = below the top-N).
        ``only_at``: character offsets of the tokens whose logprobs are wanted; a backend may
        then leave the other positions ``{}`` (the transformers backend skips their LM head),
        others answer every position.
        """
        if not self.supports_prompt_logprobs:
            raise NotImplementedError(f"{self.backend} backend has no prompt logprobs")
        cands = list(candidates) if candidates else None
        extra = await self._prompt_request_extra()
        at = sorted(set(only_at)) if only_at is not None else None
        request = {"prompt": prompt, "top_logprobs": top_logprobs, "candidates": cands, **extra}
        if at is not None:
            request["only_at"] = at
        est = len(prompt) // 3 + 1
        return await self._call(
            "prompt_logprobs",
            request,
            lambda: self._prompt_logprobs(
                prompt, top_logprobs=top_logprobs, candidates=cands, only_at=at
            ),
            tag,
            cache,
            est,
        )

    async def prompt_logprobs_many(
        self,
        prompts: list[str],
        *,
        top_logprobs: int = 20,
        tag: Tag | None = None,
        only_at: list[list[int] | None] | None = None,
        cache: bool = True,
    ) -> list[PromptLogprobs]:
        """:meth:`prompt_logprobs` of each prompt (``only_at[i]`` for prompt ``i``), each cached
        (same key as one :meth:`prompt_logprobs` call) and accounted as its own call. A backend
        that batches (:meth:`_batch_size` > 1 or 0) evaluates the prompts not in the cache in
        requests / passes of up to that many (0: all); others make one call per prompt."""
        ats = list(only_at) if only_at is not None else [None] * len(prompts)
        size = await self._batch_size() if len(prompts) > 1 else 1
        if size == 1:
            return list(
                await asyncio.gather(
                    *(
                        self.prompt_logprobs(
                            p, top_logprobs=top_logprobs, tag=tag, only_at=a, cache=cache
                        )
                        for p, a in zip(prompts, ats, strict=True)
                    )
                )
            )
        if not self.supports_prompt_logprobs:
            raise NotImplementedError(f"{self.backend} backend has no prompt logprobs")
        tag = tag or Tag()
        extra = await self._prompt_request_extra()
        ats = [sorted(set(a)) if a is not None else None for a in ats]
        keys = []
        for p, a in zip(prompts, ats, strict=True):
            req = {"prompt": p, "top_logprobs": top_logprobs, "candidates": None, **extra}
            if a is not None:
                req["only_at"] = a
            keys.append(self.key_for("prompt_logprobs", req))
        out: list[PromptLogprobs | None] = [None] * len(prompts)
        if cache:
            for i, k in enumerate(keys):
                out[i] = self._cached("prompt_logprobs", k, tag)
        st = self._state()
        own: dict[str, int] = {}  # key -> the index this call computes it for
        shared: dict[str, asyncio.Future] = {}  # keys another caller is computing
        for i, k in enumerate(keys):
            if out[i] is not None or k in own or k in shared:
                continue
            if cache and (pending := st.inflight.get(k)) is not None:
                shared[k] = pending
                continue
            own[k] = i
            if cache:
                st.inflight[k] = asyncio.get_running_loop().create_future()
        idx = list(own.values())
        step = size if size > 0 else max(1, len(idx))
        chunks = [idx[j : j + step] for j in range(0, len(idx), step)]
        try:
            done = await asyncio.gather(
                *(self._one_batch(c, prompts, ats, keys, top_logprobs, tag, cache) for c in chunks),
                return_exceptions=True,
            )
        finally:
            for k in own if cache else ():
                fut = st.inflight.pop(k, None)
                if fut is not None and not fut.done():  # its request never ran to the end
                    fut.set_exception(LLMError("the batched request for this prompt was cancelled"))
                    fut.exception()
        for c, res in zip(chunks, done, strict=True):
            if isinstance(res, BaseException):
                raise res
            for i, r in zip(c, res, strict=True):
                out[i] = r
        for i, k in enumerate(keys):  # repeated within the list, or computed by another caller
            if out[i] is None:
                t0 = time.perf_counter()
                src = out[own[k]] if k in own else await asyncio.shield(shared[k])
                assert src is not None
                out[i] = self._hit(
                    decode_response("prompt_logprobs", encode_response(src)),
                    k,
                    tag,
                    time.perf_counter() - t0,
                )
        return [r for r in out if r is not None]

    async def _one_batch(
        self,
        idx: list[int],
        prompts: list[str],
        ats: list[list[int] | None],
        keys: list[str],
        top_logprobs: int,
        tag: Tag,
        cache: bool,
    ) -> list[PromptLogprobs]:
        """One batched request / pass for ``prompts[i] for i in idx``: each answer costed,
        accounted, cached and handed to callers waiting on its key."""
        st = self._state()
        futs = [st.inflight.get(keys[i]) if cache else None for i in idx]
        try:
            async with st.sem:
                if self.ledger is not None:
                    self.ledger.check_budget()  # --max-cost: no new request once reached
                batch = await self._with_retries(
                    lambda: self._prompt_logprobs_batch(
                        [prompts[i] for i in idx], top_logprobs, [ats[i] for i in idx]
                    ),
                    sum(len(prompts[i]) // 3 + 1 for i in idx),
                    keys[idx[0]],
                )
            if len(batch.results) != len(idx):
                raise LLMError(
                    f"{self.backend}: {len(batch.results)} answers for {len(idx)} prompts"
                )
        except BaseException as e:
            if self.ledger is not None and isinstance(e, Exception):
                if not isinstance(e, BudgetExceeded):
                    self.ledger.record_failure(
                        tag,
                        f"{type(e).__name__}: {e} ({len(idx)} prompts in one request)",
                        backend=self.backend,
                        model=self.model,
                        kind="prompt_logprobs",
                    )
            for f in futs:
                if f is not None and not f.done():
                    f.set_exception(e)
                    f.exception()  # mark retrieved: followers re-raise it themselves
            raise
        share = batch.usage.latency_s / len(idx)
        for i, res, f in zip(idx, batch.results, futs, strict=True):
            res.usage.latency_s = share
            self._store(res, "prompt_logprobs", keys[i], tag, cache)
            if f is not None and not f.done():
                f.set_result(res)
        return batch.results

    async def _prompt_logprobs_batch(
        self, prompts: list[str], top_logprobs: int, only_at: list[list[int] | None]
    ) -> PromptBatch:
        raise NotImplementedError

    def forget(self, key: str) -> None:
        """Drop one cached answer (e.g. it failed to parse), so the next identical call is
        made afresh."""
        if self.cache is not None and key:
            self.cache.forget(key)

    def describe(self) -> dict[str, Any]:
        """Identity for manifests, protocol ids and cache keys (never contains secrets)."""
        return {"backend": self.backend, "model": self.model}

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources (HTTP sessions, model handles)."""

    # ----------------------------------------------------------------------------- backends
    @abstractmethod
    async def _chat(self, messages: list[Message], **params: Any) -> ChatResponse: ...

    async def _prompt_logprobs(
        self,
        prompt: str,
        *,
        top_logprobs: int,
        candidates: list[str] | None = None,
        only_at: list[int] | None = None,
    ) -> PromptLogprobs:
        raise NotImplementedError

    async def _batch_size(self) -> int:
        """Prompts per batched prompt-logprob request or pass: 1 = one call per prompt, 0 = all
        of a :meth:`prompt_logprobs_many` call at once (``batch_prompts`` backends)."""
        return 0 if self.batch_prompts else 1

    async def _prompt_request_extra(self) -> dict[str, Any]:
        """Extra fields that change what a prompt-logprobs answer means (e.g. alignment)."""
        return {}

    # ----------------------------------------------------------------------------- machinery
    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        st = self._states.get(id(loop))
        if st is None or getattr(st, "_loop", None) is not loop:
            st = _LoopState(self.cfg.max_concurrency)
            st._loop = loop  # type: ignore[attr-defined]
            self._states = {id(loop): st}
        return st

    def key_for(self, kind: str, request: dict[str, Any]) -> str:
        return request_key(self.describe(), kind, request)

    async def _call(
        self,
        kind: str,
        request: dict[str, Any],
        fn: Callable[[], Awaitable[R]],
        tag: Tag | None,
        use_cache: bool,
        est_tokens: int,
    ) -> R:
        tag = tag or Tag()
        key = self.key_for(kind, request)
        if use_cache and (hit := self._cached(kind, key, tag)) is not None:
            return hit
        st = self._state()
        if use_cache:
            pending = st.inflight.get(key)
            if pending is not None:  # identical request in flight: share its answer
                t0 = time.perf_counter()
                res = await asyncio.shield(pending)
                return self._hit(
                    decode_response(kind, encode_response(res)), key, tag, time.perf_counter() - t0
                )
            fut: asyncio.Future = asyncio.get_running_loop().create_future()
            st.inflight[key] = fut
        try:
            async with st.sem:
                if self.ledger is not None:
                    self.ledger.check_budget()  # --max-cost: no new request once reached
                res = await self._with_retries(fn, est_tokens, key)
            self._store(res, kind, key, tag, use_cache)
            if use_cache:
                fut.set_result(res)
            return res
        except BaseException as e:
            failed = isinstance(e, Exception) and not isinstance(e, BudgetExceeded)
            if self.ledger is not None and failed:
                self.ledger.record_failure(
                    tag,
                    f"{type(e).__name__}: {e}",
                    backend=self.backend,
                    model=self.model,
                    kind=kind,
                )
            if use_cache and not fut.done():
                fut.set_exception(e)
                fut.exception()  # mark retrieved: followers re-raise it themselves
            raise
        finally:
            if use_cache:
                st.inflight.pop(key, None)

    def _cached(self, kind: str, key: str, tag: Tag) -> Any:
        """The disk cache's answer for ``key`` (accounted as a hit), or None."""
        if self.cache is None:
            return None
        t0 = time.perf_counter()
        stored = self.cache.get(key)
        if stored is None:
            return None
        try:
            res = decode_response(kind, stored)
        except (KeyError, TypeError, ValueError):
            log.warning("unreadable cache entry %s dropped", key[:12])
            self.cache.forget(key)
            return None
        return self._hit(res, key, tag, time.perf_counter() - t0)

    def _store(self, res: Any, kind: str, key: str, tag: Tag, use_cache: bool) -> None:
        """Cost, account and (``use_cache``) cache a freshly computed answer."""
        res.key = key
        res.usage.cache_hit = False
        res.usage.cost_usd = self.prices.cost(self.backend, self.model, self._is_local(), res.usage)
        if self.ledger is not None:
            self.ledger.record(tag, res.usage, backend=self.backend, model=self.model, kind=kind)
        if use_cache and self.cache is not None:
            self.cache.put(key, kind, encode_response(res))

    def _hit(self, res: R, key: str, tag: Tag, latency: float) -> R:
        res.key = key
        res.usage.cache_hit = True
        res.usage.cost_usd = 0.0
        res.usage.latency_s = latency
        if self.ledger is not None:
            self.ledger.record(tag, res.usage, backend=self.backend, model=self.model, kind="hit")
        return res

    def _is_local(self) -> bool:
        return True

    def _wait(self, rs: Any) -> float:
        exc = rs.outcome.exception() if rs.outcome else None
        ra = getattr(exc, "retry_after", None)
        if ra is not None:
            return float(min(max(ra, 0.0), MAX_RETRY_AFTER_S))
        return wait_random_exponential(
            multiplier=self.cfg.retry_initial_s, max=self.cfg.retry_max_s
        )(rs)

    async def _with_retries(self, fn: Callable[[], Awaitable[R]], est_tokens: int, key: str) -> R:
        attempts = max(1, self.cfg.max_retries + 1)
        n = 0
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(attempts),
                retry=retry_if_exception_type(TransientLLMError),
                wait=self._wait,
                reraise=True,
                before_sleep=lambda rs: log.warning(
                    "%s/%s request %s: %s; retry %d/%d",
                    self.backend,
                    self.model,
                    key[:12],
                    rs.outcome.exception(),
                    rs.attempt_number,
                    attempts - 1,
                ),
            ):
                with attempt:
                    n += 1
                    await self.limiter.acquire(est_tokens)
                    t0 = time.perf_counter()
                    if self.apply_timeout and self.cfg.timeout_s:
                        try:
                            res = await asyncio.wait_for(fn(), timeout=self.cfg.timeout_s)
                        except asyncio.TimeoutError as e:
                            raise TransientLLMError(
                                f"no answer within timeout_s={self.cfg.timeout_s}"
                            ) from e
                    else:
                        res = await fn()
                    res.usage.latency_s = time.perf_counter() - t0
            return res
        except TransientLLMError as e:
            raise LLMError(
                f"{self.backend}/{self.model}: gave up after {n} attempt(s): {e.reason}"
            ) from e
        except FatalLLMError:
            raise
        except LLMError:
            raise

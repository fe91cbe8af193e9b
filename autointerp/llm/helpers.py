"""Caller-side helpers: parse-with-feedback retries and bounded concurrent mapping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

from autointerp.errors import FatalLLMError, ParseError
from autointerp.llm.base import LLMClient
from autointerp.llm.types import ChatResponse, Message, Tag

T = TypeVar("T")
X = TypeVar("X")

FEEDBACK = (
    "Your answer could not be used: {error}\nAnswer again, following the required format exactly."
)


async def chat_parsed(
    client: LLMClient,
    messages: list[Message],
    parse: Callable[[str], T],
    *,
    max_parse_retries: int | None = None,
    tag: Tag | None = None,
    **params: Any,
) -> T:
    """Chat, then ``parse(text)``; on ``ParseError`` drop the bad answer from the cache, append
    it and an error-feedback user message, and ask again (at most ``max_parse_retries`` times,
    default ``client.cfg.max_parse_retries``). Raises the last ``ParseError`` when all fail:
    record the item as failed, never score it 0. (The feedback changes the messages, so each
    retry is a new cache key; ``forget`` keeps a rerun from being served the bad first answer.)
    """
    n = client.cfg.max_parse_retries if max_parse_retries is None else max_parse_retries
    parsed, _, _ = await chat_parsed_response(
        client, messages, lambda r: parse(r.text), max_parse_retries=n, tag=tag, **params
    )
    return parsed


async def chat_parsed_response(
    client: LLMClient,
    messages: list[Message],
    parse: Callable[[ChatResponse], T],
    *,
    max_parse_retries: int,
    tag: Tag | None = None,
    **params: Any,
) -> tuple[T, ChatResponse, int]:
    """:func:`chat_parsed` where ``parse`` gets the whole response (e.g. to read answer-token
    logprobs). Returns ``(parsed, response, attempts)``."""
    msgs = list(messages)
    for attempt in range(max_parse_retries + 1):
        resp = await client.chat(msgs, tag=tag, **params)
        try:
            return parse(resp), resp, attempt + 1
        except ParseError as e:
            client.forget(getattr(resp, "key", ""))
            if attempt == max_parse_retries:
                raise ParseError(f"{e} (after {attempt + 1} answers)") from e
            msgs = msgs + [
                {"role": "assistant", "content": resp.text},
                {"role": "user", "content": FEEDBACK.format(error=e)},
            ]
    raise AssertionError("unreachable")


async def as_completed_limited(
    items: Iterable[X], fn: Callable[[X], Awaitable[T]], limit: int
) -> AsyncIterator[tuple[X, T | Exception]]:
    """Run ``fn(item)`` for all items with at most ``limit`` running; yield ``(item, result)``
    as each finishes, where ``result`` is the return value or the ``Exception`` it raised.
    A ``FatalLLMError`` cancels the rest and is raised. Pipeline pattern::

        async for feat, res in as_completed_limited(features, explain_one, limit=8):
            if isinstance(res, Exception): record_failed(feat, res)
            else: write(feat, res)
    """
    it = iter(items)
    running: dict[asyncio.Task, X] = {}

    async def wrap(x: X):
        return await fn(x)

    def fill() -> None:
        while len(running) < max(1, limit):
            try:
                x = next(it)
            except StopIteration:
                return
            running[asyncio.ensure_future(wrap(x))] = x

    fill()
    try:
        while running:
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                x = running.pop(t)
                exc = t.exception()
                if isinstance(exc, FatalLLMError):
                    raise exc
                if exc is not None and not isinstance(exc, Exception):
                    raise exc
                yield x, (exc if exc is not None else t.result())
            fill()
    finally:
        for t in running:
            t.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)


async def map_concurrent(
    items: Iterable[X], fn: Callable[[X], Awaitable[T]], limit: int
) -> list[T | Exception]:
    """``as_completed_limited`` collected back into input order."""
    xs = list(items)
    out: list[Any] = [None] * len(xs)

    async def at(i: int) -> T:
        return await fn(xs[i])

    async for i, r in as_completed_limited(range(len(xs)), at, limit):
        out[i] = r
    return out

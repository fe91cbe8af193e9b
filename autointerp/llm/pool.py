"""A pool of OpenAI-compatible endpoints serving the same model (several vLLM servers).

Each request goes to the live endpoint with the fewest requests in flight (ties: the one that
has served fewest), so the client's ``max_concurrency`` spreads over the pool; the client's
retries, pacing and budget are unchanged (they sit above the pool: a retried request picks an
endpoint afresh). An endpoint whose requests fail to connect or time out ``dead_after`` times
in a row, with no success between, is taken out of the pool for the rest of the run with one
warning; its failed requests are retried on the others. The last endpoint is never taken out:
with one left the pool behaves as a single ``base_url`` does."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from autointerp.llm.types import TransientLLMError

log = logging.getLogger("autointerp.llm")

C = TypeVar("C")
R = TypeVar("R")


class EndpointDown(TransientLLMError):
    """A request could not reach its endpoint (refused, reset, timed out): retriable."""


class EndpointPool(Generic[C]):
    """``clients[url]`` for each URL; :meth:`call` runs one request on a chosen endpoint."""

    def __init__(self, urls: Sequence[str], make: Callable[[str], C], dead_after: int = 3):
        if not urls:
            raise ValueError("an endpoint pool needs at least one base URL")
        self.urls = list(urls)
        self.clients = {u: make(u) for u in self.urls}
        self.alive = list(self.urls)
        self.dead_after = dead_after
        self.in_flight = dict.fromkeys(self.urls, 0)
        self.served = dict.fromkeys(self.urls, 0)
        self.failures = dict.fromkeys(self.urls, 0)  # consecutive connect failures / timeouts

    def pick(self) -> str:
        return min(self.alive, key=lambda u: (self.in_flight[u], self.served[u]))

    async def call(self, fn: Callable[[C, str], Awaitable[R]]) -> R:
        """``fn(client, url)`` on the picked endpoint; :class:`EndpointDown` from ``fn`` counts
        against that endpoint and is re-raised (the client's retry loop tries again)."""
        url = self.pick()
        self.in_flight[url] += 1
        try:
            out = await fn(self.clients[url], url)
        except EndpointDown as e:
            self._failed(url, e)
            raise
        finally:
            self.in_flight[url] -= 1
        self.failures[url] = 0
        self.served[url] += 1
        return out

    def _failed(self, url: str, e: Exception) -> None:
        self.failures[url] += 1
        if self.failures[url] >= self.dead_after and url in self.alive and len(self.alive) > 1:
            self.alive.remove(url)
            log.warning(
                "LLM endpoint %s is down (%d failures in a row, last: %s): taken out of the "
                "pool; %d left (%s)",
                url, self.failures[url], e, len(self.alive), ", ".join(self.alive),
            )  # fmt: skip

    def stats(self) -> dict[str, Any]:
        """Per endpoint: requests answered, and whether it is still in the pool."""
        return {u: {"served": self.served[u], "alive": u in self.alive} for u in self.urls}

"""A pool of OpenAI-compatible endpoints (``base_url = [...]``) on loopback: two real fault
servers, one stopped mid-run; every item answered once, none lost, the dead one taken out."""

from __future__ import annotations

import asyncio
import collections
import logging

import pytest

from autointerp.errors import AutointerpError
from autointerp.llm import (
    ChatResponse,
    Ledger,
    LLMConfig,
    ResponseCache,
    Tag,
    make_client,
    map_concurrent,
)
from autointerp.llm.budget import is_paid
from autointerp.llm.faultserver import FaultServer


def _cfg(urls: list[str], **kw) -> LLMConfig:
    base = dict(backend="openai", model="pool-model", base_url=urls, timeout_s=2.0, max_retries=4,
                retry_initial_s=0.01, retry_max_s=0.05, max_concurrency=6)  # fmt: skip
    return LLMConfig(**{**base, **kw})


def test_dead_endpoint_is_taken_out_and_no_item_is_lost(tmp_path, caplog):
    n = 60
    dying, living = FaultServer(latency_s=0.01).start(), FaultServer(latency_s=0.01).start()
    try:
        client = make_client(
            _cfg([dying.url, living.url]), cache=ResponseCache(tmp_path / "c.sqlite"),
            ledger=Ledger(),
        )  # fmt: skip

        async def one(i: int):
            msgs = [{"role": "user", "content": f"describe feature {i}"}]
            return await client.chat(msgs, max_tokens=8, tag=Tag("explain", "sae", i))

        async def main():
            async def kill_when_busy():
                while sum(e.outcome == "ok" for e in dying.log) < 10:
                    await asyncio.sleep(0.005)
                await asyncio.to_thread(dying.stop)  # mid-run: connections now refused

            killer = asyncio.create_task(kill_when_busy())
            out = await map_concurrent(list(range(n)), one, limit=12)
            await killer
            return out

        with caplog.at_level(logging.WARNING, logger="autointerp.llm"):
            results = asyncio.run(main())
        stats = client._pool.stats()
        asyncio.run(client.aclose())
    finally:
        living.stop()
    assert all(isinstance(r, ChatResponse) for r in results), [
        r for r in results if not isinstance(r, ChatResponse)
    ]
    # every item answered exactly once over the two servers: none lost, none paid twice
    ok = collections.Counter(e.key for fs in (dying, living) for e in fs.log if e.outcome == "ok")
    assert len(ok) == n and set(ok.values()) == {1}
    n_dying = sum(e.outcome == "ok" for e in dying.log)
    assert 10 <= n_dying < n and stats[dying.url] == {"served": n_dying, "alive": False}
    assert stats[living.url] == {"served": n - n_dying, "alive": True}
    warn = [r.getMessage() for r in caplog.records if "taken out of the pool" in r.getMessage()]
    assert len(warn) == 1 and dying.url in warn[0] and living.url in warn[0].split("left")[1]


def test_requests_spread_over_the_pool(tmp_path):
    """With both endpoints alive, least-in-flight picking splits the work about evenly."""
    a, b = FaultServer(latency_s=0.02).start(), FaultServer(latency_s=0.02).start()
    try:
        client = make_client(_cfg([a.url, b.url]))

        async def one(i: int):
            msgs = [{"role": "user", "content": f"item {i}"}]
            return await client.chat(msgs, max_tokens=4, tag=Tag("explain", "sae", i))

        results = asyncio.run(map_concurrent(list(range(40)), one, limit=6))
        asyncio.run(client.aclose())
    finally:
        a.stop()
        b.stop()
    assert all(isinstance(r, ChatResponse) for r in results)
    na, nb = len(a.log), len(b.log)
    assert na + nb == 40 and abs(na - nb) <= 4, (na, nb)


def test_pool_config():
    c = LLMConfig(backend="openai", base_url=["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"])
    assert c.base_urls == ["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"]
    assert not is_paid(c)  # every endpoint on loopback: local, free
    remote = c.model_copy(update={"base_url": ["http://127.0.0.1:1/v1", "https://api.x.com/v1"]})
    assert is_paid(remote)
    assert LLMConfig(base_url="http://h/v1").base_urls == ["http://h/v1"]
    assert LLMConfig().base_urls == []
    for bad, msg in (([], "empty list"), (["http://a", "http://a"], "twice")):
        with pytest.raises(ValueError, match=msg):
            LLMConfig(backend="openai", base_url=bad)
    lite = LLMConfig(backend="litellm", model="openai/x", base_url=["http://a", "http://b"])
    with pytest.raises(AutointerpError, match="openai backend"):
        make_client(lite)

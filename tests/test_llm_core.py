"""LLM layer units: retry-after parsing, prices, ledger totals, cache, rate limiter, parse retry."""

from __future__ import annotations

import asyncio
import email.utils
import time

import pytest

from autointerp.errors import ConfigError, ParseError
from autointerp.llm import Ledger, LLMConfig, ResponseCache, Tag, Usage, chat_parsed, make_client
from autointerp.llm.faultserver import FaultServer
from autointerp.llm.openai_format import classify_status, parse_retry_after
from autointerp.llm.prices import PriceTable
from autointerp.llm.ratelimit import RateLimiter


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 0.25 ") == 0.25
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(30.0, abs=1.0)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_status_classification():
    from autointerp.errors import FatalLLMError, LLMError
    from autointerp.llm.base import TransientLLMError

    assert isinstance(classify_status(429, "", 3.0, "x"), TransientLLMError)
    assert classify_status(429, "", 3.0, "x").retry_after == 3.0
    assert isinstance(classify_status(503, "", None, "x"), TransientLLMError)
    for s in (401, 403, 404):
        assert isinstance(classify_status(s, "", None, "x"), FatalLLMError)
    assert isinstance(classify_status(400, "model 'nope' does not exist", None, "x"), FatalLLMError)
    e = classify_status(400, "context too long", None, "x")
    assert type(e) is LLMError


def test_price_hand_computation(tmp_path):
    pt = PriceTable()
    u = Usage(prompt_tokens=1_000_000, cached_tokens=400_000, completion_tokens=200_000)
    # gpt-4o-mini: 600k fresh * 0.15 + 400k cached * 0.075 + 200k out * 0.60 (USD per 1M)
    expect = 0.6 * 0.15 + 0.4 * 0.075 + 0.2 * 0.60
    assert pt.cost("openai", "gpt-4o-mini", False, u) == pytest.approx(expect)
    assert pt.cost("litellm", "openai/gpt-4o-mini-2024-07-18", False, u) == pytest.approx(expect)
    assert pt.cost("openai", "gpt-4o-mini", True, u) == 0.0  # local server
    assert pt.cost("llamacpp", "gpt-4o-mini", False, u) == 0.0
    assert pt.cost("openai", "mystery-model", False, u) == 0.0 and "mystery-model" in pt.unpriced
    f = tmp_path / "p.toml"
    f.write_text("[my-model]\ninput = 1.0\noutput = 2.0\n")
    pt2 = PriceTable.from_config(str(f))
    assert pt2.cost("openai", "my-model", False, Usage(10**6, 0, 10**6)) == pytest.approx(3.0)
    with pytest.raises(ConfigError, match="needs 'input' and 'output'"):
        PriceTable.from_config({"m": {"input": 1.0}})
    with pytest.raises(ConfigError, match="does not exist"):
        PriceTable.from_config(str(tmp_path / "missing.json"))


def test_ledger_totals_shape_and_sums():
    led = Ledger()
    led.record(
        Tag("explain", "sae", 1), Usage(10, 2, 5, 0.5, 0.01), backend="b", model="m", kind="chat"
    )
    led.record(
        Tag("simulate", "sae", 1), Usage(20, 0, 1, 0.25, 0.02), backend="b", model="m", kind="chat"
    )
    led.record(
        Tag("simulate", "pca", 3),
        Usage(20, 0, 1, 0.1, 0.5, cache_hit=True),
        backend="b",
        model="m",
        kind="hit",
    )
    t = led.totals()
    keys = {
        "calls",
        "cache_hits",
        "prompt_tokens",
        "cached_tokens",
        "completion_tokens",
        "cost_usd",
        "latency_s",
        "work_tokens",
    }
    assert set(t) == {"total", "by_basis", "by_stage"}
    assert set(t["total"]) == keys
    assert t["total"]["calls"] == 3 and t["total"]["cache_hits"] == 1
    assert t["total"]["prompt_tokens"] == 30 and t["total"]["cached_tokens"] == 2
    assert t["total"]["work_tokens"] == 10 + 5 + 20 + 1 + 20 + 1  # the hit's tokens too
    assert t["total"]["cost_usd"] == pytest.approx(0.03)  # the hit costs nothing
    assert t["by_basis"]["sae"]["calls"] == 2 and t["by_basis"]["pca"]["cache_hits"] == 1
    assert t["by_stage"]["simulate"]["latency_s"] == pytest.approx(0.25)


def test_cache_roundtrip_forget_and_reopen(tmp_path):
    c = ResponseCache(tmp_path / "c.sqlite")
    c.put("k1", "chat", {"text": "a"})
    assert c.get("k1") == {"text": "a"} and "k1" in c and len(c) == 1
    c.forget("k1")
    assert c.get("k1") is None
    c.put("k2", "chat", {"text": "b"})
    c.close()
    assert ResponseCache(tmp_path / "c.sqlite").get("k2") == {"text": "b"}


def test_rate_limiter_spaces_requests():
    async def go():
        rl = RateLimiter(rpm=600)  # one start per 0.1 s
        t0 = time.monotonic()
        for _ in range(4):
            await rl.acquire()
        return time.monotonic() - t0

    assert asyncio.run(go()) >= 0.3 - 0.02
    with pytest.raises(ConfigError):
        RateLimiter(rpm=0)


def test_chat_parsed_feeds_back_and_forgets(tmp_path):
    """The fault server answers 'n_messages=K'; parse accepts only K >= 3, i.e. after one
    round of feedback. The bad first answer must be dropped from the cache."""

    def parse(text: str) -> int:
        k = int(text.rsplit("=", 1)[1])
        if k < 3:
            raise ParseError(f"expected at least 3 messages, saw {k}")
        return k

    async def go(fs, cache, n):
        cfg = LLMConfig(backend="openai", model="m", base_url=fs.url, max_parse_retries=n)
        cl = make_client(cfg, cache=cache, ledger=Ledger())
        try:
            return await chat_parsed(
                cl, [{"role": "user", "content": "hi"}], parse, tag=Tag("explain")
            )
        finally:
            await cl.aclose()

    with FaultServer() as fs:
        cache = ResponseCache(tmp_path / "c.sqlite")
        assert asyncio.run(go(fs, cache, 2)) == 3
        assert len(fs.log) == 2
        assert len(cache) == 1  # only the good answer stays cached
        with pytest.raises(ParseError, match="after 1 answers"):
            asyncio.run(go(fs, cache, 0))

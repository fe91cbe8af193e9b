"""Retries, failures, de-duplication and durability against a real loopback fault server."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from autointerp.errors import FatalLLMError, LLMError
from autointerp.llm import (
    ChatResponse,
    Ledger,
    LLMConfig,
    ResponseCache,
    Tag,
    as_completed_limited,
    make_client,
    map_concurrent,
)
from autointerp.llm.faultserver import FaultServer, echo_logprob

ROOT = Path(__file__).resolve().parents[1]


def _cfg(fs: FaultServer, **kw) -> LLMConfig:
    base = dict(
        backend="openai",
        model="fault-model",
        base_url=fs.url,
        timeout_s=0.5,
        max_retries=4,
        retry_initial_s=0.01,
        retry_max_s=0.05,
        max_concurrency=8,
    )
    return LLMConfig(**{**base, **kw})


def _msgs(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"describe feature {i}"}]


def test_faulty_run_completes_without_paying_twice(tmp_path):
    n_distinct = 30
    items = [i % n_distinct for i in range(2 * n_distinct)] + [-1]  # -1: always fails (500)
    with FaultServer(fault_rate=0.35, seed=3, slow_s=1.0) as fs:
        ledger = Ledger()
        client = make_client(_cfg(fs), cache=ResponseCache(tmp_path / "c.sqlite"), ledger=ledger)

        async def one(i: int):
            content = "POISON" if i < 0 else f"describe feature {i}"
            msgs = [{"role": "user", "content": content}]
            return await client.chat(msgs, max_tokens=8, tag=Tag("explain", "sae", i))

        results = asyncio.run(map_concurrent(items, one, limit=16))
        asyncio.run(client.aclose())

    seen = collections.Counter(e.outcome for e in fs.log)
    for kind in ("429", "500", "slow", "garbage"):
        assert seen[kind] > 0, f"seeded faults should include {kind}: {seen}"
    ok_per_key = collections.Counter(e.key for e in fs.log if e.outcome == "ok")
    assert max(ok_per_key.values()) == 1, "a request was paid for twice"
    failed = [(i, r) for i, r in zip(items, results, strict=True) if isinstance(r, Exception)]
    for r in results:
        assert isinstance(r, (ChatResponse, LLMError)), r
        if isinstance(r, ChatResponse):
            assert r.text.startswith("answer ") and r.text.endswith("n_messages=1")
    assert [i for i, _ in failed].count(-1) == 1
    poison = next(r for i, r in failed if i == -1)
    assert "gave up after 5 attempt(s)" in str(poison) and "HTTP 500" in str(poison)
    # every call is accounted: answered ones in the ledger, failed ones in failures
    tot = ledger.totals()["total"]
    assert tot["calls"] + len(ledger.failures) == len(items)
    assert tot["calls"] - tot["cache_hits"] == len(ok_per_key)
    assert tot["cache_hits"] >= n_distinct - len(failed)
    assert all(f["reason"] for f in ledger.failures)


def test_bad_key_stops_at_once(monkeypatch):
    monkeypatch.setenv("FAULT_KEY", "wrong-key")
    with FaultServer(api_key="right-key") as fs:
        client = make_client(_cfg(fs, api_key_env="FAULT_KEY"))

        async def one(i):
            return await client.chat(_msgs(i), max_tokens=4)

        async def run():
            async for _ in as_completed_limited(range(20), one, limit=1):
                pass

        with pytest.raises(FatalLLMError, match="HTTP 401"):
            asyncio.run(run())
        assert [e.outcome for e in fs.log] == ["401"]  # no retry, nothing else started


def test_retry_after_is_honoured():
    with FaultServer(fault_rate=1.0, faults=("429",), retry_after="1") as fs:
        client = make_client(_cfg(fs, max_retries=1, timeout_s=5))
        with pytest.raises(LLMError, match="gave up after 2 attempt"):
            asyncio.run(client.chat(_msgs(0), max_tokens=4))
        t = [e.t for e in fs.log]
        assert len(t) == 2 and t[1] - t[0] >= 0.95  # waited Retry-After, not 0.01 s backoff


def test_identical_requests_in_flight_are_sent_once():
    with FaultServer(latency_s=0.3) as fs:
        client = make_client(_cfg(fs))

        async def run():
            return await asyncio.gather(*[client.chat(_msgs(7), max_tokens=4) for _ in range(5)])

        res = asyncio.run(run())
        assert len(fs.log) == 1
        assert sum(r.usage.cache_hit for r in res) == 4
        assert len({r.text for r in res}) == 1


def test_cache_never_holds_the_api_key(tmp_path, monkeypatch):
    secret = "sk-SECRET-7f3a9c1e"
    monkeypatch.setenv("FAULT_KEY", secret)
    with FaultServer(api_key=secret) as fs:
        cache = ResponseCache(tmp_path / "c.sqlite")
        client = make_client(_cfg(fs, api_key_env="FAULT_KEY"), cache=cache)
        r = asyncio.run(client.chat(_msgs(1), max_tokens=4))
        p = asyncio.run(client.prompt_logprobs("a b c d", top_logprobs=2))
        assert r.text and p.tokens == ["a", " b", " c", " d"]
        assert p.top[1] == {" b": echo_logprob("a"), " x": -3.0}  # standard alignment detected
        assert secret not in repr(client.describe())
        cache.close()
    blob = b"".join(f.read_bytes() for f in tmp_path.iterdir())
    assert len(blob) > 0 and secret.encode() not in blob


SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from autointerp.llm import LLMConfig, ResponseCache, make_client
    url, path, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    async def main():
        c = make_client(LLMConfig(backend="openai", model="m", base_url=url, timeout_s=10),
                        cache=ResponseCache(path))
        for i in range(k):
            r = await c.chat([{"role": "user", "content": f"item {i}"}], max_tokens=4)
            print(f"done {i} hit={r.usage.cache_hit}", flush=True)
    asyncio.run(main())
    """
)


def test_killed_run_does_not_repeat_finished_calls(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    cache = tmp_path / "cache.sqlite"
    k = 8
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with FaultServer(latency_s=0.25) as fs:
        cmd = [sys.executable, str(script), fs.url, str(cache), str(k)]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        done = []
        try:
            while len(done) < 3:
                line = p.stdout.readline()
                assert line, "child exited early"
                done.append(int(line.split()[1]))
        finally:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
        assert p.returncode == -signal.SIGKILL
        n_before = len(fs.log)
        time.sleep(0.3)  # let a request that was in flight reach the log
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        rerun = out.stdout.splitlines()
        for i in done:  # finished before the kill: served from the cache, not asked again
            assert rerun[i] == f"done {i} hit=True"
        per_key = collections.Counter(e.key for e in fs.log)
        assert len(per_key) == k  # every item was asked for
        asked_twice = [key for key, n in per_key.items() if n > 1]
        assert len(asked_twice) <= 1  # at most the one in flight at the kill
        assert len(fs.log) - n_before <= k - len(done) + 1

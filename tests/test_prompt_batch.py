"""PMI prompts in one completions request (``llm.<role>.prompt_batch``) against the loopback
OpenAI-compatible server: the same scores, cache entries and accounting as one request per
prompt, in fewer requests; a server that answers a prompt list wrongly is an error."""

from __future__ import annotations

import asyncio

import pytest

from autointerp.config import suite_from_dict
from autointerp.errors import AutointerpError, LLMError
from autointerp.llm import Ledger, LLMConfig, ResponseCache, make_client
from autointerp.llm.faultserver import FaultServer
from autointerp.llm.openai_format import parse_echo_batch, split_total
from autointerp.results import stable_hash
from autointerp.scoring.simulation import simulate
from autointerp.types import Example

WINDOWS = [
    ["The", " army", " won", " the", " battle", " and", " the", " war", " ended."],
    ["A", " dog", " ran", " to", " 12", " red", " doors"],
    ["cats", " sat", " on", " a", " mat"],
]


def _examples() -> list[Example]:
    return [
        Example(tokens=t, token_ids=[0] * len(t), acts=[0.0] * len(t), kind="top") for t in WINDOWS
    ]


def _pmi(fs: FaultServer, batch, expl: str, cache=None, ledger=None):
    cfg = LLMConfig(backend="openai", model="m", base_url=fs.url, prompt_batch=batch)
    cl = make_client(cfg, cache=cache, ledger=ledger)

    async def go():
        try:
            return await simulate(expl, _examples(), cl, method="pmi")
        finally:
            await cl.aclose()

    return asyncio.run(go())


def test_batched_pmi_equals_one_request_per_prompt(tmp_path):
    with FaultServer(keep_alive=True) as fs:
        led1, led2 = Ledger(), Ledger()
        one = _pmi(fs, 1, "war and the military", ledger=led1)
        r1 = dict(fs.stats)
        many = _pmi(fs, "auto", "war and the military", ledger=led2)
        r2 = {k: fs.stats[k] - r1[k] for k in r1}
    assert one.pred == many.pred and one.extra == many.extra and one.n_calls == many.n_calls == 6
    assert any(v > 0 for row in one.pred for v in row)  # the server's logprobs follow the prefix
    # requests: alignment probe + 6 prompts, against alignment probe + list probe + one list
    assert r1 == {"requests": 7, "prompts": 7}
    assert r2 == {"requests": 3, "prompts": 1 + 2 + 6}
    # accounting per prompt, the same either way: 6 calls, the same tokens
    t1, t2 = led1.totals()["total"], led2.totals()["total"]
    for k in ("calls", "cache_hits", "prompt_tokens", "completion_tokens"):
        assert t1[k] == t2[k], k
    assert t1["calls"] == 6 and t1["completion_tokens"] == 6


def test_batched_and_per_prompt_share_cache_entries(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    with FaultServer(keep_alive=True) as fs:
        first = _pmi(fs, 1, "cats", cache=cache)
        n = fs.stats["requests"]
        led = Ledger()
        again = _pmi(fs, "auto", "cats", cache=cache, ledger=led)
        # every prompt hit the per-prompt run's entries; only the list probe was sent
        assert fs.stats["requests"] == n + 1
        assert again.pred == first.pred and led.totals()["total"]["cache_hits"] == 6
        # a new explanation: its 3 prompts in one request, the 3 neutral ones from the cache
        _pmi(fs, "auto", "dogs", cache=cache)
        assert fs.stats["requests"] == n + 2 and fs.stats["prompts"] == n + 2 + 3


def test_concurrent_callers_share_prompts_in_flight(tmp_path):
    """Real and shuffled-explanation scorings share the neutral prompts: sent once."""
    with FaultServer(keep_alive=True, latency_s=0.05) as fs:
        cfg = LLMConfig(backend="openai", model="m", base_url=fs.url, prompt_batch=8)
        led = Ledger()
        cl = make_client(cfg, cache=ResponseCache(tmp_path / "c.sqlite"), ledger=led)

        async def go():
            try:
                return await asyncio.gather(
                    simulate("war", _examples(), cl, method="pmi"),
                    simulate("cats", _examples(), cl, method="pmi"),
                )
            finally:
                await cl.aclose()

        a, b = asyncio.run(go())
        # alignment probe + 3 + 3 explanation prompts + the 3 neutral ones once
        assert fs.stats["prompts"] == 1 + 9
    assert a.pred != b.pred
    t = led.totals()["total"]
    assert t["calls"] == 12 and t["cache_hits"] == 3


def test_a_wrong_list_answer_is_an_error_never_a_wrong_score():
    def choice(i: int, text: str) -> dict:
        lp = {"tokens": ["a", " b"], "text_offset": [0, 1], "token_logprobs": [None, -1.0]}
        return {"index": i, "text": text, "logprobs": {**lp, "top_logprobs": [None, {" b": -1}]}}

    ok = {"choices": [choice(1, "a b x"), choice(0, "a b x")], "usage": {"prompt_tokens": 5}}
    got = parse_echo_batch(ok, ["a b", "a b"], False)
    assert [r.usage.prompt_tokens for r in got.results] == [3, 2]  # split, summing to 5
    with pytest.raises(LLMError, match="prompt_batch = 1"):  # one choice for two prompts
        parse_echo_batch({"choices": [choice(0, "a b x")]}, ["a b", "a b"], False)
    with pytest.raises(LLMError, match="does not echo prompt 1"):
        parse_echo_batch({"choices": [choice(0, "a b"), choice(1, "a b")]}, ["a b", "c d"], False)


def test_split_total_by_hand():
    assert split_total(10, [1, 1, 1]) == [4, 3, 3]
    assert split_total(7, [2, 5]) == [2, 5]
    assert split_total(3, [0, 0]) == [2, 1]
    assert sum(split_total(101, [3, 7, 11, 13])) == 101


def test_prompt_batch_config():
    with pytest.raises(ValueError, match="prompt_batch"):
        LLMConfig(prompt_batch=0)
    with pytest.raises(AutointerpError, match="one prompt per request"):
        make_client(LLMConfig(backend="litellm", model="openai/m", base_url="http://x/v1",
                              prompt_batch=4))  # fmt: skip
    # the default is left out of the suite's dump: suites keep their hashes
    sim = {"backend": "openai", "model": "m", "base_url": "http://127.0.0.1:1/v1"}
    plain = suite_from_dict({"llm": {"simulator": sim}})
    auto = suite_from_dict({"llm": {"simulator": {**sim, "prompt_batch": "auto"}}})
    assert "prompt_batch" not in str(plain.model_dump())
    assert stable_hash(plain.model_dump()) == stable_hash(auto.model_dump())
    one = suite_from_dict({"llm": {"simulator": {**sim, "prompt_batch": 1}}})
    assert one.llm.simulator.prompt_batch == 1
    assert stable_hash(one.model_dump()) != stable_hash(plain.model_dump())


def test_llm_calls_journal_rows_equal_asdict():
    """The journal writes ``vars(record)`` (no deep copy): equal to ``asdict`` while a
    CallRecord holds scalars only."""
    from dataclasses import asdict, fields

    from autointerp.llm.accounting import CallRecord

    r = CallRecord("score", "sae", 3, "openai", "m", "prompt_logprobs", False, 9, 0, 1, 0.1, 0.2)
    assert dict(vars(r)) == asdict(r)
    assert all(f.type in ("str", "int", "bool", "float") for f in fields(CallRecord))

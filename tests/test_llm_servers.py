"""The LLM layer against the real local LLM: in-process llama.cpp, and a real
``llama_cpp.server`` on 127.0.0.1 reached through the openai SDK and through litellm."""

from __future__ import annotations

import asyncio
import math
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from autointerp.llm import Ledger, LLMConfig, Tag, local_client, make_client

pytestmark = pytest.mark.slow

PROMPT = "The cat sat on the mat. The dog sat on the rug. The cat sat on the"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(local_llm_path, tmp_path_factory):
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        local_llm_path,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--logits_all",
        "true",
        "--n_ctx",
        "2048",
    ]
    log = tmp_path_factory.mktemp("llama_server") / "server.log"
    fh = open(log, "wb")  # a file, not a pipe: a full pipe would block the server
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server died: {log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(url + "/models", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        yield url
    finally:
        proc.kill()
        proc.wait()
        fh.close()


def _server_clients(url: str, ledger: Ledger):
    return [
        make_client(LLMConfig(backend="openai", model="smollm2", base_url=url), ledger=ledger),
        make_client(
            LLMConfig(backend="litellm", model="openai/smollm2", base_url=url), ledger=ledger
        ),
    ]


def test_in_process_prompt_logprobs_are_exact_and_aligned():
    cl = local_client()
    pl = asyncio.run(cl.prompt_logprobs(PROMPT, top_logprobs=3, candidates=[" mat", " rug", "7"]))
    assert "".join(pl.tokens) == PROMPT
    # every token starts at its offset, and the offsets tile the prompt (PMI reads activations
    # by these offsets: a shifted token would score the wrong position)
    assert len(pl.offsets) == len(pl.tokens) > 5
    assert all(PROMPT[o:].startswith(t) for t, o in zip(pl.tokens, pl.offsets, strict=True))
    assert pl.offsets[0] == 0
    assert all(o + len(t) == nxt for t, o, nxt in zip(pl.tokens, pl.offsets, pl.offsets[1:]))
    assert pl.top[0] == {} and pl.exact_candidates
    # position i is the distribution of token i given the prefix: the repeated phrase is
    # predicted by induction, so the true token ranks in the top 3 at ' sat' and ' on'
    i_sat = max(i for i, t in enumerate(pl.tokens) if t == " sat")
    assert " sat" in pl.top[i_sat] and " on" in pl.top[i_sat + 1]
    for i in range(1, len(pl.tokens)):
        probs = sum(math.exp(v) for v in pl.candidates[i].values())
        assert probs <= 1.0 + 1e-6
        for c, v in pl.candidates[i].items():  # candidates agree with top where both exist
            if c in pl.top[i]:
                assert v == pytest.approx(pl.top[i][c], abs=1e-5)
    # exact candidates exist even where the top-3 truncates them
    assert any("7" not in t for t in pl.top[1:])
    assert all("7" in c for c in pl.candidates[1:])
    # the same numbers as llama-cpp-python's own echo output, shifted back by one
    raw = cl.llm.create_completion(PROMPT, max_tokens=1, echo=True, logprobs=3, temperature=0)
    raw_top = raw["choices"][0]["logprobs"]["top_logprobs"]
    for i in range(2, len(pl.tokens)):
        for tok, v in pl.top[i].items():
            assert raw_top[i - 1][tok] == pytest.approx(v, abs=1e-3)


def test_in_process_chat_concurrent_and_accounted():
    cl = local_client()
    led = Ledger()
    cl.ledger = led
    try:
        msgs = [[{"role": "user", "content": f"Say the number {i}."}] for i in range(2)]

        async def run():
            return await asyncio.gather(
                *[
                    cl.chat(m, max_tokens=3, top_logprobs=2, tag=Tag("explain", "sae", i))
                    for i, m in enumerate(msgs)
                ]
            )

        res = asyncio.run(run())
    finally:
        cl.ledger = None
    for r in res:
        assert r.text and r.usage.prompt_tokens > 0 and 0 < r.usage.completion_tokens <= 3
        for t in r.logprobs:  # greedy: the chosen token is the most likely one
            assert t.logprob == pytest.approx(max(t.top.values()), abs=1e-5)
    tot = led.totals()
    assert tot["total"]["calls"] == 2 and tot["total"]["cost_usd"] == 0.0
    assert tot["by_basis"]["sae"]["prompt_tokens"] == sum(r.usage.prompt_tokens for r in res)


def test_server_backends_chat_and_prompt_logprobs(llama_server):
    ledger = Ledger()
    local = local_client()
    exact = asyncio.run(local.prompt_logprobs(PROMPT, top_logprobs=3))

    async def run(cl):
        try:
            r = await cl.chat([{"role": "user", "content": "Say hi"}], max_tokens=3)
            rl = await cl.chat(
                [{"role": "user", "content": "Say hi"}], max_tokens=3, top_logprobs=2
            )
            pl = await cl.prompt_logprobs(PROMPT, top_logprobs=3, candidates=[" mat"])
            return r, rl, pl
        finally:
            await cl.aclose()

    for cl in _server_clients(llama_server, ledger):
        r, rl, pl = asyncio.run(run(cl))
        assert r.text and r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
        assert rl.text == r.text  # greedy, same answer
        assert 0 < len(rl.logprobs) <= 3 and all(len(t.top) == 2 for t in rl.logprobs)
        assert cl._shifted is True  # llama.cpp servers echo shifted logprobs; detected
        assert pl.tokens == exact.tokens and pl.offsets == exact.offsets
        for i in range(2, len(pl.tokens)):  # aligned like the in-process exact values
            for tok, v in exact.top[i].items():
                assert pl.top[i][tok] == pytest.approx(v, abs=2e-3), (cl.backend, i, tok)
    assert ledger.totals()["total"]["calls"] == 6


def test_explain_and_simulate_through_server_backends(llama_server, local_llm_path):
    from autointerp.explain import explain_feature
    from autointerp.scoring.simulation import simulate
    from autointerp.types import Example, FeatureRecord

    llm = local_client().llm
    texts = [
        "In 1969 the first people walked on the moon.",
        "The meeting is at 10 am on March 3.",
        "She bought 2 apples and 5 pears.",
        "The river flows slowly to the sea.",
    ]

    def example(t: str) -> Example:
        ids = llm.tokenize(t.encode(), add_bos=False)
        toks = [llm.detokenize([i]).decode() for i in ids]
        acts = [5.0 if tk.strip().isdigit() else 0.0 for tk in toks]
        return Example(tokens=toks, token_ids=ids, acts=acts, kind="top")

    exs = [example(t) for t in texts]
    rec = FeatureRecord(
        basis="neurons", feature=0, density=0.1, max_act=5.0, explain=exs[:3], test_top=exs[1:]
    )

    async def run(cl):
        try:
            ex = await explain_feature(
                rec, cl, style="compact", max_examples=2, max_tokens=16, max_parse_retries=0
            )
            # A fixed explanation: with the 135M model's own one, some slots may carry no digit
            # among a server's top-20 logprobs, and the simulator then (rightly) fails the feature.
            sim = await simulate("digits", rec.test_top[:2], cl, tag=Tag("simulate", "neurons", 0))
            return ex, sim
        finally:
            await cl.aclose()

    ledger = Ledger()
    for cl in _server_clients(llama_server, ledger):
        ex, sim = asyncio.run(run(cl))
        assert ex.status in ("ok", "failed", "truncated") and ex.attempts >= 1
        assert sim.method == "all_at_once" and sim.n_calls == 1
        assert [len(p) for p in sim.pred] == [len(e.tokens) for e in rec.test_top[:2]]
        assert all(0.0 <= v <= 10.0 for p in sim.pred for v in p)
    by_stage = ledger.totals()["by_stage"]
    assert by_stage["explain"]["calls"] == 2 and by_stage["simulate"]["calls"] == 2


def test_pmi_through_server_backends_matches_in_process(llama_server):
    """The explanation-PMI simulator through a llama.cpp server (shifted echo: the own token's
    logprob is read from the previous position's top-20) agrees with in-process llama.cpp
    wherever the server gave a logprob."""
    from autointerp.scoring.simulation import simulate
    from autointerp.types import Example

    local = local_client()
    llm = local.llm
    ids = llm.tokenize(b"The army won the battle and the war ended.", add_bos=False)
    toks = [llm.detokenize([i]).decode() for i in ids]
    exs = [Example(tokens=toks, token_ids=ids, acts=[0.0] * len(ids), kind="top")]
    exact = asyncio.run(simulate("war and the military", exs, local, method="pmi"))
    assert exact.extra["n_missing"] == 0

    async def run(cl):
        try:
            return await simulate("war and the military", exs, cl, method="pmi")
        finally:
            await cl.aclose()

    for cl in _server_clients(llama_server, Ledger()):
        res = asyncio.run(run(cl))
        assert res.method == "pmi" and res.n_calls == 2 and len(res.pred[0]) == len(toks)
        assert res.extra["n_missing"] < len(toks)  # most tokens are in the top-20
        war = toks.index(" war")
        assert res.pred[0][war] == pytest.approx(exact.pred[0][war], abs=0.05)


def test_llama_server_takes_one_prompt_per_request_and_pmi_is_unchanged(llama_server):
    """llama-cpp-python's server answers a prompt list with HTTP 500 (it asserts one prompt):
    ``prompt_batch = "auto"`` finds that out and sends one prompt per request, with the same
    PMI scores as ``prompt_batch = 1``; an explicit list size is an error, never a wrong score."""
    from autointerp.errors import LLMError
    from autointerp.scoring.simulation import simulate
    from autointerp.types import Example

    llm = local_client().llm
    ids = llm.tokenize(b"The army won the battle and the war ended.", add_bos=False)
    toks = [llm.detokenize([i]).decode() for i in ids]
    exs = [Example(tokens=toks, token_ids=ids, acts=[0.0] * len(ids), kind="top")]

    def run(**kw):
        cl = make_client(LLMConfig(backend="openai", model="s", base_url=llama_server, **kw))

        async def go():
            try:
                return await simulate("war and the military", exs, cl, method="pmi"), (
                    await cl._batch_size()
                )
            finally:
                await cl.aclose()

        return asyncio.run(go())

    one, n1 = run(prompt_batch=1)
    auto, n_auto = run()
    assert n1 == n_auto == 1
    assert auto.pred == one.pred and auto.extra == one.extra
    assert max(one.pred[0]) > 0  # a real signal: the explanation raises some tokens
    with pytest.raises(LLMError, match="HTTP 500"):
        run(prompt_batch=2, max_retries=0)

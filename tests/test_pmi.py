"""Explanation-PMI simulator and the token_match floor: the formula by hand, the backends'
prompt-token logprobs against a hand forward pass, the clear error for a backend without them,
and (slow) the real SmolLM2 through transformers and llama.cpp."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from autointerp.errors import AutointerpError
from autointerp.llm import LLMConfig, make_client
from autointerp.scoring.correlation import score_simulation
from autointerp.scoring.pmi import (
    NEUTRAL,
    pmi_prefix,
    pmi_values,
    simulate_token_match,
    window_text,
)
from autointerp.scoring.simulation import pick_method, simulate
from autointerp.types import Example, FeatureRecord
from tests.test_llm_transformers import _client, _hand_logprobs, _save_tiny


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-lm-pmi")
    _save_tiny(d)
    return d


def _ex(tokens: list[str], acts: list[float] | None = None, kind: str = "top") -> Example:
    return Example(list(tokens), list(range(len(tokens))), acts or [0.0] * len(tokens), kind)


def test_pmi_values_by_hand():
    spans = [(0, 3), (3, 7), (7, 8)]
    with_expl = {(0, 3): -1.0, (3, 5): -2.0, (5, 7): -0.5, (7, 8): None}
    neutral = {(0, 3): -1.5, (3, 5): -1.0, (5, 7): -1.0, (7, 8): -3.0}
    vals, misses = pmi_values(spans, with_expl, neutral)
    # token 0: -1.0 - -1.5 = 0.5; token 1: (-2 + 1) + (-0.5 + 1) = -0.5 -> clipped to 0;
    # token 2: its only simulator token has no logprob with the explanation -> 0, counted
    assert vals == [pytest.approx(0.5), 0.0, 0.0]
    assert misses == {"n_missing": 1, "n_unaligned": 0}


def test_pmi_merged_simulator_tokens_count_for_every_subject_token_they_overlap():
    # subject tokens "\n", "\n", "x"; the simulator merged the two newlines into one token, and
    # a token that began 1 character before the window ran into its first subject token
    spans = [(0, 1), (1, 2), (2, 3), (3, 3)]
    with_expl = {(-1, 2): -1.0, (2, 3): -2.0}
    neutral = {(-1, 2): -3.0, (2, 3): -2.5}
    vals, misses = pmi_values(spans, with_expl, neutral)
    # the merged token's pmi 2.0 goes to both newlines; "x" gets 0.5; the empty 4th token has
    # no simulator token: 0, counted as unaligned (before: the first two predicted 0 silently)
    assert vals == [pytest.approx(2.0), pytest.approx(2.0), pytest.approx(0.5), 0.0]
    assert misses == {"n_missing": 0, "n_unaligned": 1}


def test_window_text_spans():
    text, spans = window_text(["The", " cat", "\n", " sat"])
    assert text == "The cat\n sat" and spans == [(0, 3), (3, 7), (7, 8), (8, 12)]


def test_token_logprobs_equal_a_hand_forward_pass(tiny_dir):
    cl = _client(tiny_dir)
    prompt = "abc de"
    pl = asyncio.run(cl.prompt_logprobs(prompt, top_logprobs=0))
    ids = cl.tok(prompt, add_special_tokens=False)["input_ids"]
    lp = _hand_logprobs(cl, ids)
    assert pl.token_logprobs[0] is None  # no BOS: nothing predicts token 0
    for i in range(1, len(ids)):
        assert pl.token_logprobs[i] == pytest.approx(float(lp[i - 1, ids[i]]), abs=1e-4)
    only = asyncio.run(cl.prompt_logprobs(prompt, top_logprobs=0, only_at=[3, 4]))
    assert only.token_logprobs[3] == pytest.approx(pl.token_logprobs[3], abs=1e-5)
    assert only.token_logprobs[1] is None and only.token_logprobs[5] is None


def test_pmi_simulation_equals_the_formula_by_hand(tiny_dir):
    cl = _client(tiny_dir)
    toks = ["ab", " c", "d"]
    res = asyncio.run(simulate("xy z", [_ex(toks)], cl, method="pmi"))
    assert res.method == "pmi" and res.n_calls == 2

    def own(prefix: str) -> list[float]:
        ids = cl.tok(prefix + "ab cd", add_special_tokens=False)["input_ids"]
        lp = _hand_logprobs(cl, ids)
        n = len(prefix)  # char-level tokenizer: one token per character
        return [float(lp[j - 1, ids[j]]) for j in range(n, len(ids))]

    e, z = own(pmi_prefix("xy z")), own(pmi_prefix(NEUTRAL))
    d = [a - b for a, b in zip(e, z, strict=True)]
    want = [max(0.0, d[0] + d[1]), max(0.0, d[2] + d[3]), max(0.0, d[4])]
    assert res.pred[0] == pytest.approx(want, abs=1e-4)
    same = asyncio.run(simulate(NEUTRAL, [_ex(toks)], cl, method="pmi"))
    assert same.pred == [[0.0, 0.0, 0.0]]  # the neutral explanation carries no information


def test_token_match_floor_by_hand():
    exs = [_ex(["The", " cat", " the", "↵x"]), _ex([" dog", "\n"])]
    pred = simulate_token_match('tokens: " the", "↵", "The"', exs)
    assert pred == [[1.0, 0.0, 1.0, 0.0], [0.0, 1.0]]  # newline shown as ↵ by display_token
    with pytest.raises(AutointerpError, match="top_tokens"):
        simulate_token_match("cats and dogs", exs)


def test_token_match_scores_through_score_simulation():
    top = [_ex([" a", " the", " b"], [0.0, 2.0, 0.0]), _ex([" the", " c"], [1.0, 0.0])]
    rand = [_ex([" x", " y"], [0.0, 0.0], kind="random")]
    rec = FeatureRecord("b", 0, 0.1, 2.0, test_top=top, test_random=rand)
    s = asyncio.run(score_simulation(rec, 'tokens: " the"', None, method="token_match"))
    by = {x.variant: x for x in s.scores}
    t = np.array([0, 2, 0, 1, 0, 0, 0], float)
    p = np.array([0, 1, 0, 1, 0, 0, 0], float)
    assert by["top_and_random"].value == pytest.approx(np.corrcoef(t, p)[0, 1])
    assert by["top_and_random"].method == "token_match"
    assert by["random"].status == "undefined"  # constant activations: undefined, never 0


def test_pmi_on_a_backend_without_prompt_logprobs_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")
    cl = make_client(LLMConfig(backend="openai", model="gpt-4o-mini"))
    assert not cl.supports_prompt_logprobs  # OpenAI's own API: chat models have no echo
    with pytest.raises(AutointerpError) as e:
        pick_method(cl, "pmi")
    msg = str(e.value)
    assert "pmi" in msg and "transformers" in msg and "llamacpp" in msg and "openai" in msg
    with pytest.raises(AutointerpError, match="pmi"):
        asyncio.run(simulate("x", [_ex(["a"])], cl, method="pmi"))
    local = make_client(
        LLMConfig(backend="openai", model="m", base_url="http://127.0.0.1:9/v1")
    )  # a local OpenAI-compatible server (vLLM, llama.cpp) is assumed to echo
    assert pick_method(local, "pmi") == "pmi"


@pytest.mark.slow
def test_real_smollm2_pmi_follows_the_explanation_on_both_engines():
    """The same explanation raises the predicted activation of the tokens it names, through
    torch (transformers) and llama.cpp alike, and the two engines agree."""
    from autointerp.model import load_tokenizer

    tok = load_tokenizer("smollm2-gguf")
    texts = [
        "The war began in 1914 when the army attacked the city at dawn.",
        "She released her first album of rock songs with the band in 1998.",
    ]
    exs = []
    for t in texts:
        ids = tok(t, add_special_tokens=False)["input_ids"][:14]
        exs.append(Example([tok.decode([i]) for i in ids], ids, [0.0] * len(ids), "top"))
    preds = {}
    for backend in ("transformers", "llamacpp"):
        cl = make_client(LLMConfig(backend=backend, dtype="float32"))
        war = asyncio.run(simulate("war and the military", exs, cl, method="pmi")).pred
        music = asyncio.run(simulate("music, songs and albums", exs, cl, method="pmi")).pred
        i_war, i_album = exs[0].tokens.index(" war"), exs[1].tokens.index(" album")
        assert war[0][i_war] > music[0][i_war] + 1.0
        assert music[1][i_album] > war[1][i_album] + 1.0
        assert all(v >= 0 and math.isfinite(v) for p in war + music for v in p)
        preds[backend] = np.array([v for p in war + music for v in p])
    r = np.corrcoef(preds["transformers"], preds["llamacpp"])[0, 1]
    assert r > 0.9  # Q4_1 kernels vs the dequantised weights: close, not equal


def test_pmi_reads_prompt_token_logprobs_from_a_cache_hit(tiny_dir, tmp_path):
    from autointerp.llm.cache import ResponseCache

    cache = ResponseCache(tmp_path / "c.sqlite")
    cfg = LLMConfig(backend="transformers", model=str(tiny_dir), device="cpu", dtype="float32")
    exs = [_ex(["x", "y"])]
    first = asyncio.run(simulate("ab", exs, make_client(cfg, cache=cache), method="pmi"))
    again = asyncio.run(simulate("ab", exs, make_client(cfg, cache=cache), method="pmi"))
    assert again.pred == first.pred and len(cache) == 2  # explanation + neutral prompt


def test_batched_prompt_logprobs_equal_one_at_a_time(tiny_dir, tmp_path):
    from autointerp.llm import Ledger
    from autointerp.llm.cache import ResponseCache

    cl = _client(tiny_dir)
    prompts = ["ab cd", "a longer prompt here", "xyz", "ab cd"]
    ats = [[1, 2, 3], None, [1, 2], [1, 2, 3]]
    single = [
        asyncio.run(cl.prompt_logprobs(p, top_logprobs=2, only_at=a, cache=False))
        for p, a in zip(prompts, ats, strict=True)
    ]
    ledger, cache = Ledger(), ResponseCache(tmp_path / "c.sqlite")
    cfg = LLMConfig(backend="transformers", model=str(tiny_dir), device="cpu", dtype="float32")
    bc = make_client(cfg, cache=cache, ledger=ledger)
    assert bc.batch_prompts
    many = asyncio.run(bc.prompt_logprobs_many(prompts, top_logprobs=2, only_at=ats))
    for a, b in zip(single, many, strict=True):  # right padding changes nothing
        assert a.tokens == b.tokens and a.offsets == b.offsets
        for x, y in zip(a.token_logprobs, b.token_logprobs, strict=True):
            assert (x is None and y is None) or x == pytest.approx(y, abs=1e-4)
        assert [sorted(t) for t in a.top] == [sorted(t) for t in b.top]
    # three distinct prompts computed and cached, the repeat served as a hit
    tot = ledger.totals()["total"]
    assert len(cache) == 3 and tot["calls"] + tot.get("cache_hits", 0) >= 3
    again = asyncio.run(bc.prompt_logprobs_many(prompts, top_logprobs=2, only_at=ats))
    assert [r.token_logprobs for r in again] == [r.token_logprobs for r in many]
    assert all(r.usage.cache_hit for r in again)


def test_failed_explanation_is_filed_under_the_method_asked_for():
    from autointerp.types import Explanation

    rec = FeatureRecord("b", 0, 0.1, 1.0, test_top=[_ex([" a"], [1.0])])
    e = Explanation("b", 0, "", "compact", status="truncated", error="parse: cut off")
    s = asyncio.run(score_simulation(rec, e, None, method="pmi"))
    assert {x.method for x in s.scores} == {"pmi"} and {x.status for x in s.scores} == {"failed"}

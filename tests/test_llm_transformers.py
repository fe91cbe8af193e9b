"""The in-process transformers backend: prompt logprobs and chat checked against a hand-run
forward pass of the same model (tiny random model saved to disk), and against llama.cpp on the
real SmolLM2 weights (slow)."""

from __future__ import annotations

import asyncio
import re

import numpy as np
import pytest
import torch

from autointerp.errors import AutointerpError, FatalLLMError, LLMError
from autointerp.llm import Ledger, LLMConfig, make_client
from autointerp.scoring.simulation import DIGITS, simulate
from autointerp.types import Example
from tests.conftest import make_tiny_model

CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def _save_tiny(path, bos: bool = False):
    sm = make_tiny_model()
    tok = sm.tokenizer
    tok.chat_template = CHAT_TEMPLATE
    if bos:
        from tokenizers.processors import TemplateProcessing

        tok._tokenizer.post_processor = TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", tok.bos_token_id)]
        )
    sm.model.config.max_position_embeddings = 2048  # char-level prompts are long
    sm.model.save_pretrained(path)
    tok.save_pretrained(path)
    return sm


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-lm")
    _save_tiny(d)
    return d


def _client(path, **kw):
    return make_client(
        LLMConfig(backend="transformers", model=str(path), device="cpu", dtype="float32", **kw)
    )


def _hand_logprobs(client, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        logits = client.sm.model(torch.tensor([ids])).logits[0]
    return torch.log_softmax(logits.double(), dim=-1)


def test_prompt_logprobs_equal_a_hand_forward_pass(tiny_dir):
    cl = _client(tiny_dir)
    prompt = "cat sat\tunknown\n"
    pl = asyncio.run(cl.prompt_logprobs(prompt, top_logprobs=3, candidates=["a", "b"]))
    ids = cl.tok(prompt, add_special_tokens=False)["input_ids"]
    lp = _hand_logprobs(cl, ids)
    assert "".join(pl.tokens) == prompt and pl.offsets == list(range(len(prompt)))
    assert pl.top[0] == {} and pl.candidates[0] == {}  # no BOS: nothing predicts token 0
    a, b = cl.tok.convert_tokens_to_ids(["a", "b"])
    for i in range(1, len(ids)):  # token i is predicted from row i-1
        assert pl.candidates[i]["a"] == pytest.approx(float(lp[i - 1, a]), abs=1e-4)
        assert pl.candidates[i]["b"] == pytest.approx(float(lp[i - 1, b]), abs=1e-4)
        assert len(pl.top[i]) == 3
        assert max(pl.top[i].values()) == pytest.approx(float(lp[i - 1].max()), abs=1e-4)
    assert pl.exact_candidates and pl.usage.prompt_tokens == len(ids)


def test_only_at_fills_just_the_asked_positions_with_the_same_values(tiny_dir):
    cl = _client(tiny_dir)
    prompt = "x\tunknown\ny\tunknown\n"
    full = asyncio.run(cl.prompt_logprobs(prompt, top_logprobs=1, candidates=DIGITS))
    slots = [m.start() for m in re.finditer("unknown", prompt)]
    part = asyncio.run(cl.prompt_logprobs(prompt, top_logprobs=1, candidates=DIGITS, only_at=slots))
    filled = [i for i, c in enumerate(part.candidates) if c]
    assert [part.offsets[i] for i in filled] == slots
    for i in filled:
        for d in DIGITS:
            assert part.candidates[i][d] == pytest.approx(full.candidates[i][d], abs=1e-5)


def test_a_model_with_logit_softcapping_is_read_from_its_full_forward(tmp_path, tiny_dir):
    """Gemma-2 caps its logits after the LM head: head(decoder(x)) is not the model's output,
    so the backend must notice and use the full forward."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from tests.conftest import make_char_tokenizer

    tok = make_char_tokenizer()
    torch.manual_seed(0)
    cfg = Gemma2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=512,
        final_logit_softcapping=0.5,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    Gemma2ForCausalLM(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    cl = _client(tmp_path)
    assert cl._split is None
    prompt = "abcabc"
    pl = asyncio.run(cl.prompt_logprobs(prompt, candidates=["a"], only_at=[3]))
    ids = cl.tok(prompt, add_special_tokens=False)["input_ids"]
    lp = _hand_logprobs(cl, ids)
    a = cl.tok.convert_tokens_to_ids("a")
    assert pl.candidates[3]["a"] == pytest.approx(float(lp[2, a]), abs=1e-4)
    assert _client(tiny_dir)._split is not None  # plain Llama: decoder and head run apart


def test_tokenizer_bos_is_prepended_and_predicts_token_zero(tmp_path):
    _save_tiny(tmp_path, bos=True)
    cl = _client(tmp_path)
    assert cl._lead == [cl.tok.bos_token_id]
    prompt = "abc"
    pl = asyncio.run(cl.prompt_logprobs(prompt, top_logprobs=2, candidates=["a"]))
    lp = _hand_logprobs(
        cl, [cl.tok.bos_token_id, *cl.tok(prompt, add_special_tokens=False)["input_ids"]]
    )
    a = cl.tok.convert_tokens_to_ids("a")
    assert pl.tokens == ["a", "b", "c"]  # the BOS is not a prompt token
    assert pl.candidates[0]["a"] == pytest.approx(float(lp[0, a]), abs=1e-4)
    assert pl.usage.prompt_tokens == 4


def test_simulation_through_transformers_is_one_call_on_the_slots(tiny_dir):
    ledger = Ledger()
    cl = make_client(
        LLMConfig(backend="transformers", model=str(tiny_dir), device="cpu", dtype="float32"),
        ledger=ledger,
    )
    exs = [Example(list("cat"), [0, 1, 2], [1.0, 0.0, 0.0], "top")]
    res = asyncio.run(simulate("letter c", exs, cl))
    assert res.method == "all_at_once" and res.n_calls == 1 and len(ledger.records) == 1
    assert len(res.pred[0]) == 3 and all(0.0 <= v <= 10.0 for v in res.pred[0])


def test_greedy_chat_equals_a_hand_argmax_loop(tiny_dir):
    cl = _client(tiny_dir)
    msgs = [{"role": "user", "content": "hi"}]
    resp = asyncio.run(cl.chat(msgs, max_tokens=6, top_logprobs=2, cache=False))
    enc = cl.tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
    ids = list(enc["input_ids"] if hasattr(enc, "keys") else enc)
    out = []
    for _ in range(6):
        nxt = int(_hand_logprobs(cl, ids + out)[-1].argmax())
        if nxt == cl.tok.eos_token_id:
            break
        out.append(nxt)
    assert resp.text == cl.tok.decode(out, skip_special_tokens=True)
    assert resp.usage.completion_tokens >= len(out)
    assert [t.token for t in resp.logprobs] == [cl.tok.decode([t]) for t in out]
    for t in resp.logprobs:  # greedy: the chosen token is the top one
        assert t.logprob == pytest.approx(max(t.top.values()), abs=1e-5)
    if len(resp.text) > 2:  # a stop string cuts the text where it first appears
        stop = resp.text[2]
        cut = asyncio.run(cl.chat(msgs, max_tokens=6, stop=[stop], cache=False))
        assert cut.text == resp.text[: resp.text.index(stop)]


def test_bad_inputs_name_the_fix(tiny_dir, tmp_path):
    cl = _client(tiny_dir)
    with pytest.raises(AutointerpError, match="single tokens"):
        asyncio.run(cl.prompt_logprobs("abc", candidates=["ab"]))
    with pytest.raises(FatalLLMError, match="cannot load model"):
        _client(tmp_path / "missing")
    with pytest.raises(FatalLLMError, match="unknown device"):
        make_client(LLMConfig(backend="transformers", model=str(tiny_dir), device="tpu9"))


@pytest.mark.slow
def test_real_smollm2_simulation_agrees_with_llama_cpp():
    """Same weights, two engines: torch (dequantised GGUF, float32) and llama.cpp (Q4_1 kernels)
    must predict nearly the same activations from one all-at-once prompt."""
    words = "The cat sat on the mat while the dog slept by the door of the old house".split()
    toks = [w if i == 0 else " " + w for i, w in enumerate(words)]
    exs = [Example(toks[:8], list(range(8)), [0.0] * 8, "top")]
    exs.append(Example(toks[8:], list(range(len(toks) - 8)), [0.0] * (len(toks) - 8), "random"))
    preds = []
    for cfg in (
        LLMConfig(backend="transformers", dtype="float32", device="cpu"),
        LLMConfig(backend="llamacpp", n_ctx=4096),
    ):
        res = asyncio.run(simulate("the word 'the'", exs, make_client(cfg)))
        preds.append(np.array([v for p in res.pred for v in p]))
    assert np.corrcoef(preds[0], preds[1])[0, 1] > 0.95
    assert np.abs(preds[0] - preds[1]).max() < 1.0


def test_prefix_groups_keep_prompts_that_share_only_a_few_words_apart():
    from autointerp.llm.transformers_backend import prefix_groups

    a = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    seqs = [a + [11, 12], [1, 2, 3, 20, 21, 22], a + [13], a + [11, 14], [1, 2, 3, 20, 21, 23]]
    groups = {tuple(sorted(idx)): shared for shared, idx in prefix_groups(seqs, 3)}
    assert groups == {(0, 2, 3): 10, (1, 4): 5}
    assert prefix_groups([[1, 2]], 1) == [(0, [0])]  # alone: nothing shared
    # the shared run always leaves each member a suffix token
    ((shared, idx),) = prefix_groups([[1, 2, 3], [1, 2, 3, 4]], 2)
    assert shared == 2 and sorted(idx) == [0, 1]


def test_shared_prefix_batch_equals_one_prompt_at_a_time(tiny_dir):
    cl = _client(tiny_dir)
    head = "The following text is about cats.\n"
    other = "A much longer instruction, about dogs and their many owners, comes first.\n"
    prompts = [head + w for w in ("the cat sat", "a dog ran off", "cats")] + ["short one"]
    prompts += [other + w for w in ("dogs bark", "one")]  # a second prefix, in the same pass
    ats = [list(range(len(head), len(p))) for p in prompts[:3]] + [None]
    ats += [list(range(len(other), len(p))) for p in prompts[4:]]
    single = [
        asyncio.run(cl.prompt_logprobs(p, top_logprobs=2, only_at=a, cache=False))
        for p, a in zip(prompts, ats, strict=True)
    ]
    passes = []
    orig = cl._prefixed_fns
    cl._prefixed_fns = lambda items: passes.append(len(items)) or orig(items)
    batch = cl._prompt_batch_sync(prompts, 2, None, ats)
    assert passes == [5]  # both prefixes' prompts in one pass; the lone prompt runs alone
    for a, b in zip(single, batch, strict=True):
        assert a.offsets == b.offsets
        for x, y in zip(a.token_logprobs, b.token_logprobs, strict=True):
            assert (x is None and y is None) or x == pytest.approx(y, abs=1e-4)
        for x, y in zip(a.top, b.top, strict=True):
            assert x.keys() == y.keys()


def test_cached_prefixes_hold_only_their_own_keys_and_values(tiny_dir):
    """The prefix LRU keeps each prefix's own tokens: an entry that were a view of the padded
    batch would keep the whole batch's keys/values alive (a run's score stage grew by GiBs)."""
    cl = _client(tiny_dir)
    short, long = [1, 2, 3], list(range(1, 41))
    got = cl._prefix_states([short, long])
    for (kv, rows), p in zip(got, (short, long), strict=True):
        assert rows.shape[0] == len(p)
        assert rows.untyped_storage().nbytes() == rows.numel() * rows.element_size()
        for k, v in kv:
            assert k.shape[2] == len(p)
            for t in (k, v):
                assert t.untyped_storage().nbytes() == t.numel() * t.element_size()


def test_prefix_cache_is_bounded_by_bytes(tiny_dir, monkeypatch):
    from autointerp.llm import transformers_prompt as tp

    cl = _client(tiny_dir)
    one = tp._entry_bytes(cl._prefix_states([[1, 2, 3, 4]])[0])
    monkeypatch.setattr(tp, "PREFIX_BYTES", 3 * one)
    for i in range(6):  # same-length prefixes: each entry holds `one` bytes
        cl._prefix_states([[5 + i, 2, 3, 4]])
    assert len(cl._prefixes) == 3
    assert list(cl._prefixes)[-1] == (10, 2, 3, 4)  # the newest are kept
    cl._prefix_states([[20 + i, 2, 3, 4] for i in range(5)])  # one call's own prefixes stay
    assert len(cl._prefixes) == 5


def test_concurrent_greedy_chats_are_one_batch_with_the_same_answers(tiny_dir):
    msgs = [[{"role": "user", "content": t}] for t in ("hi", "a longer question here", "xyz")]

    async def run(cl, n_tokens):
        return await asyncio.gather(*(cl.chat(m, max_tokens=n_tokens) for m in msgs))

    one = _client(tiny_dir, max_concurrency=1)
    many = _client(tiny_dir, max_concurrency=8)
    calls = []
    orig = many._chat_batch_sync
    many._chat_batch_sync = lambda m, **kw: calls.append(len(m)) or orig(m, **kw)
    a = asyncio.run(run(one, 6))
    b = asyncio.run(run(many, 6))
    assert calls == [3]  # the three chats in flight were generated together
    assert [r.text for r in a] == [r.text for r in b]
    assert [r.finish_reason for r in b] == [r.finish_reason for r in a]
    assert all(r.usage.completion_tokens <= 6 for r in b)
    assert {r.finish_reason for r in b} <= {"length", "stop"}


def test_concurrent_prompt_batches_are_merged_with_the_same_values(tiny_dir):
    head = "The following text is about cats.\n"
    reqs = [[head + w, "words.\n" + w] for w in ("the cat sat", "a dog ran off", "cats", "x y")]

    async def run(cl, reqs):
        return await asyncio.gather(
            *(cl.prompt_logprobs_many(r, top_logprobs=0, cache=False) for r in reqs),
            return_exceptions=True,
        )

    one = _client(tiny_dir, max_concurrency=1)
    many = _client(tiny_dir, max_concurrency=8)
    passes = []
    orig = many._prompt_batch_sync
    many._prompt_batch_sync = lambda p, *a: passes.append(len(p)) or orig(p, *a)
    a = asyncio.run(run(one, reqs))
    b = asyncio.run(run(many, reqs))
    assert sum(passes) == 8 and len(passes) < 4  # later callers joined a pass
    for ra, rb in zip(a, b, strict=True):
        for x, y in zip(ra, rb, strict=True):
            assert x.offsets == y.offsets
            assert x.token_logprobs == pytest.approx(y.token_logprobs, abs=1e-4)
    # a prompt longer than the model's positions fails its own caller only
    passes.clear()
    bad = [[head + "ok", "words.\nok"], ["word " * 5000, "x y"], [head + "fine", "words.\nfine"]]
    got = asyncio.run(run(many, bad))
    assert passes[0] == 6  # tried together first, then each alone
    assert isinstance(got[1], LLMError) and "positions" in str(got[1])
    assert not isinstance(got[0], Exception) and not isinstance(got[2], Exception)

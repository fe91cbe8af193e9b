"""Batched greedy generation (llm/greedy.py) against transformers' ``generate`` row by row."""

from __future__ import annotations

import torch

from autointerp.llm.greedy import _chunks, greedy_generate, supports_greedy_batch
from tests.conftest import make_tiny_model

PAD = 2


def _prompts(n: int = 7, seed: int = 1) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lens = [1, 3, 9, 9, 17, 30, 41][:n]
    return [torch.randint(3, 90, (k,), generator=g).tolist() for k in lens]


def _generate_alone(model, ids: list[int], n_new: int, eos: int | None) -> list[int]:
    x = torch.tensor([ids])
    with torch.inference_mode():
        out = model.generate(
            input_ids=x,
            attention_mask=torch.ones_like(x),
            max_new_tokens=n_new,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            eos_token_id=eos,
            pad_token_id=PAD,
        )
    return out[0, len(ids) :].tolist()


def test_equals_generate_one_prompt_at_a_time_across_prefill_chunks():
    model = make_tiny_model(seed=3).model
    seqs = _prompts()
    got = greedy_generate(model, seqs, max_new_tokens=12, ends=set(), pad_id=PAD, prefill_tokens=40)
    assert len(_chunks(sorted(map(len, seqs)), 40)) >= 3  # several prefill passes
    for q, g in zip(seqs, got, strict=True):
        assert g == _generate_alone(model, q, 12, eos=-1)


def test_a_row_that_ends_is_padded_and_the_others_go_on():
    model = make_tiny_model(seed=3).model
    seqs = _prompts()
    free = greedy_generate(model, seqs, max_new_tokens=12, ends=set(), pad_id=PAD)
    end = free[2][3]  # a token row 2 produces at its 4th step
    got = greedy_generate(model, seqs, max_new_tokens=12, ends={end}, pad_id=PAD)
    assert got[2][:4] == free[2][:4] and set(got[2][4:]) <= {PAD}
    ended = 0
    for q, g in zip(seqs, got, strict=True):
        ref = _generate_alone(model, q, 12, eos=end)  # stops at the end token
        assert g[: len(ref)] == ref
        assert set(g[len(ref) :]) <= {PAD}
        ended += end in ref
    assert ended >= 1


def test_stop_ends_a_row_when_its_new_tokens_meet_it():
    model = make_tiny_model(seed=3).model
    seqs = _prompts()
    free = greedy_generate(model, seqs, max_new_tokens=10, ends=set(), pad_id=PAD)
    got = greedy_generate(
        model, seqs, max_new_tokens=10, ends=set(), pad_id=PAD, stop=lambda new: len(new) >= 2
    )
    for f, g in zip(free, got, strict=True):
        assert g[:2] == f[:2]
        assert len(g) == 2  # every row stopped after two tokens: the loop ends


def test_chunks_keep_each_prefill_within_the_token_budget():
    assert _chunks([1, 2, 3, 10, 10], 10) == [slice(0, 3), slice(3, 4), slice(4, 5)]
    assert _chunks([50], 10) == [slice(0, 1)]  # a prompt longer than the budget runs alone


def test_supported_models_only():
    sm = make_tiny_model()
    assert supports_greedy_batch(sm.model)
    sm.model.generation_config.repetition_penalty = 1.3  # a logits processor argmax would skip
    assert not supports_greedy_batch(sm.model)

    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    assert not supports_greedy_batch(gpt2)


def test_a_shared_prefix_run_once_gives_generates_answers():
    """Prompts that start with the same tokens (a chat template's system prompt): the prefix
    is run once and copied to every row; each answer is still ``generate``'s, across several
    prefill chunks of the rest."""
    from autointerp.llm.greedy import shared_prefix

    model = make_tiny_model(seed=3).model
    head = torch.randint(3, 90, (11,), generator=torch.Generator().manual_seed(5)).tolist()
    seqs = [head + q for q in _prompts()]
    assert shared_prefix(seqs) == 11 and shared_prefix([head + [5], head]) == 10
    assert shared_prefix([[1, 2, 3], [4, 5, 6]]) == 0 and shared_prefix([head]) == 0
    got = greedy_generate(model, seqs, max_new_tokens=10, ends=set(), pad_id=PAD, prefill_tokens=60)
    assert len(_chunks(sorted(len(q) - 11 for q in seqs), 60)) >= 2
    plain = greedy_generate(
        model, seqs, max_new_tokens=10, ends=set(), pad_id=PAD, share_prefix=False
    )
    assert got == plain
    for q, g in zip(seqs, got, strict=True):
        assert g == _generate_alone(model, q, 10, eos=-1)


def test_a_batch_over_the_cache_budget_runs_in_groups_with_the_same_answers():
    from autointerp.llm.greedy import _kv_groups

    model = make_tiny_model(seed=3).model
    seqs = _prompts()
    # tiny model: 4 layers x 2 kv heads x 8 dims x 2 (k, v) x 4 bytes = 512 bytes a slot
    budget = 3 * (41 + 6) * 512  # three rows of the longest prompt
    groups = _kv_groups(model, seqs, 6, budget)
    assert len(groups) >= 2 and sorted(i for g in groups for i in g) == list(range(len(seqs)))
    for g in groups:
        longest = max(len(seqs[i]) for i in g)
        assert len(g) == 1 or len(g) * (longest + 6) * 512 <= budget
    assert _kv_groups(model, seqs, 6, None) == [sorted(range(7), key=lambda i: len(seqs[i]))]
    got = greedy_generate(model, seqs, max_new_tokens=6, ends=set(), pad_id=PAD, kv_bytes=budget)
    one = greedy_generate(model, seqs, max_new_tokens=6, ends=set(), pad_id=PAD, kv_bytes=None)
    assert got == one

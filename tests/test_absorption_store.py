"""The absorption eval's prompt activations (autointerp/absorption/store.py, acts.py): cutting a
prompt after its word leaves the activation read unchanged, a larger word sample reuses every
prompt a smaller one ran (same prompts, same activations), and a run killed between chunks
keeps the chunks it saved. Tiny random-weight model with a word-level tokenizer."""

from __future__ import annotations

import random

import numpy as np
import pytest

from autointerp.absorption.acts import word_activations
from autointerp.absorption.config import AbsorptionConfig
from autointerp.absorption.groundtruth import build_ground_truth, sample_words
from autointerp.absorption.store import PromptActs
from autointerp.absorption.vocab import alpha_words, icl_prompt, word_positions
from tests.causal_tiny import tiny_word_model

HOOK = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def sm():
    return tiny_word_model()


def test_cut_after_the_word_is_exact(sm):
    hp = sm.hookpoint(HOOK)
    words = alpha_words(sm.tokenizer)
    rng = random.Random(0)
    ps = [icl_prompt(w, words, "{word} has the first letter:", 4, rng) for w in words[:24]]
    ids, pos = word_positions(sm.tokenizer, ps, sm.bos_token_id)
    assert all(int(p) < len(t) - 1 for p, t in zip(pos, ids))  # something after the word
    whole = word_activations(sm, hp, ids, pos, batch_size=5, truncate=False)
    cut = word_activations(sm, hp, ids, pos, batch_size=5)
    assert np.abs(whole).max() > 0.1
    np.testing.assert_allclose(cut, whole, atol=1e-5, rtol=1e-4)


def test_a_larger_sample_reuses_the_smaller_ones_prompts(sm, tmp_path):
    hp = sm.hookpoint(HOOK)
    vocab = alpha_words(sm.tokenizer)
    assert len(vocab) >= 40
    small = AbsorptionConfig(max_words=20, max_icl_examples=3, probe_epochs=2)
    big = small.model_copy(update={"max_words": 40})
    tr_s, te_s, pool_tr, pool_te = sample_words(vocab, small, 0)
    tr_b, te_b, *_ = sample_words(vocab, big, 0)
    assert (len(tr_s), len(te_s), len(tr_b), len(te_b)) == (16, 4, 32, 8)
    assert tr_b[:16] == tr_s and te_b[:4] == te_s  # nested samples of one whole-vocabulary split
    assert set(pool_tr) | set(pool_te) == set(vocab) and not set(pool_tr) & set(pool_te)

    path = tmp_path / "prompts.npz"
    st1 = PromptActs(path, hp.width)
    g1 = build_ground_truth(sm, hp, small, 0, sm.bos_token_id, st1)
    assert st1.computed == 20 + len(g1.abs_idx) and st1.reused == 0 and path.is_file()
    st2 = PromptActs(path, hp.width)
    g2 = build_ground_truth(sm, hp, big, 0, sm.bos_token_id, st2)
    assert st2.reused >= 20  # the small sample's train and test prompts
    assert st2.computed == 20 + len(g2.abs_idx) - (st2.reused - 20)
    np.testing.assert_array_equal(g2.train_acts[:16], g1.train_acts)
    np.testing.assert_array_equal(g2.test_acts[:4], g1.test_acts)
    # the same activations as a run without the store (other batches: float tolerance)
    g3 = build_ground_truth(sm, hp, big, 0, sm.bos_token_id)
    np.testing.assert_allclose(g3.train_acts, g2.train_acts, atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(g3.test_acts, g2.test_acts, atol=1e-5, rtol=1e-4)
    assert list(g3.train_words) == list(g2.train_words)


def test_a_killed_run_keeps_its_saved_chunks(tmp_path):
    path = tmp_path / "prompts.npz"
    st = PromptActs(path, 3)
    calls = []

    def compute(words):
        if calls:
            raise KeyboardInterrupt
        calls.append(words)
        return np.ones((len(words), 3), dtype=np.float32) * len(calls), np.full(len(words), -6)

    with pytest.raises(KeyboardInterrupt):
        st.get("train", ["a", "b", "c", "d", "e"], compute, chunk=2)
    again = PromptActs(path, 3)
    assert set(again.acts["train"]) == {"a", "b"} and again.rel["train"]["a"] == -6

    def rest(words):
        assert words == ["c", "d", "e"]
        return np.zeros((len(words), 3), dtype=np.float32), np.full(len(words), -6)

    x, rel = again.get("train", ["a", "b", "c", "d", "e"], rest)
    assert x[:2].tolist() == [[1, 1, 1]] * 2 and x[2:].sum() == 0 and rel == {-6}
    assert again.computed == 3 and again.reused == 2

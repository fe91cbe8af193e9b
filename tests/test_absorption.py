"""The absorption eval (docs/absorption.md): known answers on synthetic dictionaries built to
absorb (or not), the per-word formulas by hand, feature splitting, the word's token position
for several tokenizers, and the undefined case."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from autointerp.absorption.config import AbsorptionConfig
from autointerp.absorption.evaluate import decoder_directions, evaluate_basis
from autointerp.absorption.fractions import cosines, word_absorption, words_absorption
from autointerp.absorption.probe import f1
from autointerp.absorption.sparse import feature_split
from autointerp.absorption.synthetic import S, planted_world
from autointerp.absorption.vocab import (
    alpha_words,
    icl_prompt,
    is_alpha_word,
    word_positions,
)

# --------------------------------------------------------------------------- synthetic world

FULL, PARTIAL, BETA, N_TEST = 8, 8, 0.25, 40  # partial words: code 1 vs 4 (k=1 boundary 2)


def _world(absorb: bool):
    return planted_world(absorb, n_test=N_TEST, full=FULL, partial=PARTIAL, beta=BETA)


CFG = AbsorptionConfig(sparse_epochs=50, max_k=4)


def test_planted_absorption_is_found():
    gt, basis = _world(absorb=True)
    res = evaluate_basis(basis, gt, CFG, seed=0)
    assert res.reason is None and len(res.letters) == 26
    by = {a.letter: a for a in res.letters}
    s = by["s"]
    assert s.num_probe_true_positives == N_TEST
    assert res.sparse["s"]["main"] == [S]  # the s latent is the main latent
    # planted: FULL words absorbed wholly (fraction 1), PARTIAL words with fraction 1 - BETA
    want = (FULL * 1.0 + PARTIAL * (1 - BETA)) / N_TEST
    assert s.mean_absorption_fraction == pytest.approx(want, abs=1e-5)
    assert s.full_absorption_rate == pytest.approx(FULL / N_TEST)
    assert s.num_split_features == 1
    for a in res.letters:
        if a.letter != "s":
            assert a.mean_absorption_fraction == 0.0 and a.full_absorption_rate == 0.0
    summ = res.summary()
    assert summ["mean_absorption_fraction_score"] == pytest.approx(want / 26, abs=1e-6)
    assert summ["mean_full_absorption_score"] == pytest.approx(FULL / N_TEST / 26)
    assert summ["mean_num_split_features"] == 1.0
    # the browser: the s latent misses exactly the absorbed words, each absorbing latent named
    miss = res.latents[str(S)]
    assert miss["letter"] == "s" and miss["n_missed"] == FULL
    assert [m["absorbers"] for m in miss["missed"]] == [[26 + k] for k in range(FULL)]


def test_no_absorption_gives_zero():
    gt, basis = _world(absorb=False)
    res = evaluate_basis(basis, gt, CFG, seed=0)
    summ = res.summary()
    assert summ["mean_absorption_fraction_score"] == 0.0
    assert summ["mean_full_absorption_score"] == 0.0
    # the missed s-words: s latent fires on all of them, nothing to browse
    assert res.latents[str(S)]["n_missed"] == 0


def test_undefined_with_too_few_letters():
    gt, basis = _world(absorb=True)
    gt.probe_f1[:8] = 0.5  # 18 letters left
    res = evaluate_basis(basis, gt, CFG, seed=0)
    assert res.reason and "only 18 letters" in res.reason
    assert res.summary()["mean_absorption_fraction_score"] is None


# --------------------------------------------------------------------------- formulas by hand


def test_word_absorption_by_hand():
    u = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    # latent 0: the main latent; 1-4: cos 0.6 with the probe; 5: cos 0.05 (never an absorber)
    dirs = torch.tensor([[1.0, 0, 0], [0.6, 0.8, 0], [0.6, -0.8, 0], [0.6, 0, 0.8],
                         [0.6, 0, -0.8], [0.05, 0, 1.0]])  # fmt: skip
    cos = cosines(dirs, u)
    assert cos[1] == pytest.approx(0.6) and cos[5] == pytest.approx(0.05 / np.hypot(0.05, 1))
    x = np.array([2.0, 5.0, 1.0], dtype=np.float32)  # P = x.u = 2

    def w(*codes, main=(0,), sign=1.0):
        return word_absorption("sun", sign * x, torch.tensor(codes), cos, u, list(main))

    # m = 0.5; absorbers 1, 2: 1.2 + 0.6 = 1.8 >= 0.4 P; absorbed = min(1.8, P - m) = 1.5
    r = w(0.5, 2.0, 1.0, 0.0, 0.0, 10.0)
    assert r.fraction == pytest.approx(1.5 / (1.5 + 0.5)) and sorted(r.absorbers) == [1, 2]
    assert not r.full
    # only the top 3 absorbers count: 0.3 + 0.24 + 0.18 = 0.72 < 0.4 P (all four: 0.84 >= 0.8)
    assert w(0.5, 0.5, 0.4, 0.3, 0.2, 0.0).fraction == 0.0
    assert w(0.5, 0.5, 0.5, 0.4, 0.2, 0.0).fraction == pytest.approx(0.84 / (0.84 + 0.5))
    # main latents off and one absorber with >= 40% of P: fraction 1, full absorption
    r = w(0.0, 2.0, 0.0, 0.0, 0.0, 0.0)
    assert r.fraction == 1.0 and r.full and r.top[0] == 1
    # full absorption needs the top latent's share >= 0.4: 0.6 * 1.0 / 2 = 0.3
    r = w(0.0, 1.0, 1.0, 0.0, 0.0, 0.0)
    assert r.fraction == 1.0 and not r.full
    # the main latent covers the projection: 0
    assert w(3.0, 2.0, 0.0, 0.0, 0.0, 0.0).fraction == 0.0
    # a negative probe projection: never absorption (and no division by it)
    r = w(0.0, 2.0, 0.0, 0.0, 0.0, 0.0, sign=-1.0)
    assert r.fraction == 0.0 and not r.full
    # two main latents: their projections add (m = 0.5 + 0.6 = 1.1; absorber 3: 0.6 < 0.8)
    assert w(0.5, 1.0, 0.0, 1.0, 0.0, 0.0, main=(0, 1)).fraction == 0.0


def test_words_at_once_match_word_by_word():
    """The batched per-letter computation gives each word's numbers of the per-word one."""
    g = torch.Generator().manual_seed(0)
    F, d, n = 60, 8, 200
    dirs = torch.randn(F, d, generator=g)
    dirs[:20] += 3 * torch.eye(d)[0]  # a third of the latents aligned with the probe
    u = np.eye(d, dtype=np.float32)[0]
    cos = cosines(dirs, u)
    X = (torch.randn(n, d, generator=g) + torch.eye(d)[0] * 2).numpy()
    codes = torch.relu(torch.randn(n, F, generator=g)) * (torch.rand(n, F, generator=g) < 0.2)
    names = [f"w{i}" for i in range(n)]
    for main in ([], [0], [0, 3, 25]):
        many = words_absorption(names, X, codes, cos, u, main)
        one = [word_absorption(w, X[i], codes[i], cos, u, main) for i, w in enumerate(names)]
        assert sum(a.fraction > 0 for a in one) > 10 and sum(a.full for a in one) > 0
        for a, b in zip(many, one):
            assert a.fraction == pytest.approx(b.fraction, abs=1e-6) and a.full == b.full
            assert set(a.absorbers) == set(b.absorbers) and a.top[0] == b.top[0]
            assert a.probe_projection == pytest.approx(b.probe_projection, abs=1e-5)


def test_feature_split_and_f1():
    feats = {k: list(range(k)) for k in range(1, 6)}
    assert feature_split({1: 0.5, 2: 0.6, 3: 0.62, 4: 0.9, 5: 1.0}, feats, 0.03) == [0, 1]
    assert feature_split({1: 0.9, 2: 0.93, 3: 1.0}, feats, 0.03) == [0]  # 0.03 is not > 0.03
    assert f1([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.5)
    assert f1([0, 0], [0, 0]) == 0.0


def test_directions_of_an_affine_decoder():
    gt, basis = _world(absorb=True)
    basis.bias = torch.ones(basis.D.shape[1])  # decode(0) != 0: directions unchanged
    assert torch.allclose(decoder_directions(basis, batch=700), basis.D, atol=1e-6)


# --------------------------------------------------------------------------- prompts, positions


def _last_token_text(tok, ids, pos):
    return tok.decode([ids[pos]])


def test_positions_char_and_word_tokenizers():
    from tests.causal_tiny import word_tokenizer
    from tests.conftest import make_char_tokenizer

    rng = random.Random(0)
    for tok in (make_char_tokenizer(), word_tokenizer()):
        words = alpha_words(tok)
        assert words and all(is_alpha_word(w) for w in words)
        ps = [icl_prompt(w, words, "{word} has the first letter:", 3, rng) for w in words[:10]]
        ids, pos = word_positions(tok, ps, bos=tok.bos_token_id)
        for p, t, i in zip(ps, ids, pos):
            assert t[0] == tok.bos_token_id
            assert _last_token_text(tok, t, i).strip() == p.word.strip()[-1:] or (
                _last_token_text(tok, t, i).strip() == p.word.strip()
            )
            assert p.text.endswith(p.word + " has the first letter:")


def test_prompt_shape():
    rng = random.Random(1)
    p = icl_prompt(" cat", [" dog", " cat", "Apple"], "{word} has the first letter:", 2, rng)
    lines = p.text.split("\n")
    assert lines[0] == "" and lines[-1] == " cat has the first letter:"
    assert sorted(lines[1:3]) == [" dog has the first letter: D", "Apple has the first letter: A"]
    assert p.text[: p.word_end].endswith(" cat")


@pytest.mark.slow
def test_smollm2_word_position_is_minus_six(real_model):
    """SAEBench's fixed prompt_token_pos = -6 holds for SmolLM2 (single-token words); the
    computed position finds the word's last token, also for a word split into tokens."""
    tok = real_model.tokenizer
    words = alpha_words(tok)
    assert len(words) > 20000
    rng = random.Random(0)
    ps = [icl_prompt(w, words, "{word} has the first letter:", 10, rng) for w in words[::997]]
    ps.append(icl_prompt(" absorbingly", words, "{word} has the first letter:", 10, rng))
    ids, pos = word_positions(tok, ps, bos=None)
    rel = [int(p) - len(t) for p, t in zip(pos, ids)]
    assert set(rel[:-1]) == {-6}
    assert tok.decode(ids[-1][pos[-1]]).strip() and " absorbingly".endswith(
        tok.decode(ids[-1][pos[-1]]).strip()
    )

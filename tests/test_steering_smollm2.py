"""Known answer on the real SmolLM2-135M-Instruct (slow): a DiffMean direction of the corpus
windows holding one frequent word steers the model to write that word's concept far above random
directions of the same edit size and the unsteered answers, and at a very large factor fluency
collapses (so the budget matters)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from autointerp.bases.linear import SignedLinearBasis
from autointerp.causal.intervene import hidden
from autointerp.config import CorpusConfig
from autointerp.corpus import tokenize_corpus
from autointerp.steering.experiment import Settings, Target, run_experiment
from autointerp.steering.interventions import unit_scale
from autointerp.steering.prompts import split_prompts

pytestmark = pytest.mark.slow
HP = "blocks.6.hook_resid_post"


def _frequent_word(ids: np.ndarray, tok) -> int:
    """The most frequent token that decodes to a space + a capitalised word of >= 5 letters."""
    vals, counts = np.unique(ids[:, 1:], return_counts=True)
    for v in vals[np.argsort(-counts, kind="stable")]:
        t = tok.decode([int(v)])
        if t.startswith(" ") and t[1:].isalpha() and t[1].isupper() and len(t) >= 6:
            return int(v)
    raise AssertionError("no frequent capitalised word in the corpus")


def test_diffmean_of_a_frequent_word_steers_and_large_factors_break_fluency(real_model):
    sm = real_model
    hp = sm.hookpoint(HP)
    ids = tokenize_corpus(CorpusConfig(source="gensim-lee", context=32, n_tokens=32 * 160),
                          sm.tokenizer)  # fmt: skip
    acts = torch.cat([hidden(sm, hp, torch.from_numpy(ids[i : i + 32]).long())
                      for i in range(0, len(ids), 32)])  # fmt: skip
    word = _frequent_word(ids, sm.tokenizer)
    pos = torch.from_numpy(np.argwhere(ids == word))
    assert len(pos) >= 10
    rng = np.random.default_rng(0)
    neg = torch.from_numpy(np.stack([rng.integers(0, len(ids), 512),
                                     rng.integers(1, ids.shape[1], 512)], 1))  # fmt: skip
    x_pos, x_neg = acts[pos[:, 0], pos[:, 1]], acts[neg[:, 0], neg[:, 1]]
    u = x_pos.mean(0) - x_neg.mean(0)
    unit = u / u.norm()
    # read back the concept as the positive projection on the DiffMean direction (a probe)
    probe = SignedLinearBasis("probe", "probe", unit[:, None], unit[None], torch.zeros_like(u),
                              None)  # fmt: skip
    max_act = float((x_pos @ unit).max())
    m = float(acts[:, 1:].norm(dim=-1).mean())
    g = torch.Generator().manual_seed(0)
    dirs = [u] + [torch.randn(u.shape, generator=g) for _ in range(3)]
    targets = [Target(probe, 0, d, float(unit_scale(d[None], m)[0]), max_act) for d in dirs]
    sel, rep = split_prompts(4, seed=0)
    s = Settings([0.0, 0.25, 1.0, 16.0], max_new_tokens=16, budget=1.0, repeat_budget=0.25,
                 prompting=False, pmi=False)  # fmt: skip
    res = asyncio.run(run_experiment(sm, hp, targets, sel, rep, s))
    arms = [t["arms"]["feature"] for t in res["targets"]]
    dm, rnd = arms[0], arms[1:]
    word_text = sm.tokenizer.decode([word]).strip().lower()
    one = dm["curve"]["1.0"]
    # at the same edit size (||edit|| = mean ||x||): far above the unsteered answers (gain 0 by
    # definition) and every random direction; the steered text says the word
    assert one["act"] > 0.2, (word_text, one)
    assert one["act"] > 5 * max(abs(r["curve"]["1.0"]["act"]) for r in rnd) + 0.05, (one, rnd)
    assert word_text[:5] in one["text"].lower(), (word_text, one["text"])
    # a very large factor: fluency collapses (the text loops; the NLL alone is fooled by loops,
    # hence the repeat budget), the concept is lost again, and the factor is never chosen
    big = dm["curve"]["16.0"]
    assert big["repeat"] > 0.5 and big["repeat"] > dm["curve"]["0.0"]["repeat"] + 0.25, big
    assert all(a["factor"] < 16.0 for a in arms)
    # the chosen factors respect both budgets on the selection prompts
    for a in arms:
        c = a["curve"][str(a["factor"])]
        assert c["nll_rise"] <= 1.0 and c["repeat"] - a["curve"]["0.0"]["repeat"] <= 0.25

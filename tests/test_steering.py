"""Steering (docs/steering.md): interventions against hand computations on a tiny random-weight
model, factor 0 = the unsteered text exactly, the KV-cached steered generation = a cache-free
loop, the read-back NLL, the scores' formulas by hand, and the stage in a suite."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from autointerp.model import splice
from autointerp.steering.generate import prompt_ids, read_back, steered_generate
from autointerp.steering.interventions import (
    Steer,
    apply_edits,
    diffmean_direction,
    mean_norm,
    steer_vectors,
    unit_scale,
)
from autointerp.steering.prompts import instructions, split_prompts
from autointerp.steering.scores import choose_factor, repeated_bigrams
from autointerp.steering.summary import ranks, spearman, top_quartile
from autointerp.types import Example, FeatureRecord

HP = "blocks.1.hook_resid_post"
INSTR = ["Tell me a story", "Hi", "Describe a cat and a dog"]


def _greedy_ref(sm, hp, ids, vec, n):
    """Cache-free greedy loop: the whole sequence re-run each step with ``vec`` added."""
    seq = list(ids)
    for _ in range(n):
        with splice(hp, lambda a: a + vec.to(a.dtype)):
            logits = sm.model(input_ids=torch.tensor([seq]), use_cache=False).logits
        seq.append(int(logits[0, -1].argmax()))
    return seq[len(ids) :]


def test_scale_rule_puts_every_direction_at_the_same_edit_size():
    dirs = torch.tensor([[3.0, 4.0], [0.0, 0.5], [0.0, 0.0]])
    s = unit_scale(dirs, 10.0)
    assert torch.allclose(s, torch.tensor([2.0, 20.0, 0.0]))
    v = steer_vectors(dirs, s, [0.0, 0.5, 2.0])
    assert v.shape == (3, 3, 2)
    norms = v.norm(dim=-1)  # alpha * m for every nonzero direction, whatever its norm
    assert torch.allclose(norms[:, :2], torch.tensor([[0.0, 0.0], [5.0, 5.0], [20.0, 20.0]]))
    assert float(v[0].abs().max()) == 0.0 and float(norms[:, 2].max()) == 0.0


def test_mean_norm_skips_special_tokens():
    acts = np.zeros((2, 3, 2), dtype=np.float32)
    acts[0, 0] = [100.0, 0.0]  # BOS: excluded
    acts[0, 1], acts[0, 2], acts[1, 1] = [3.0, 4.0], [0.0, 1.0], [6.0, 8.0]
    excl = np.zeros((2, 3), dtype=bool)
    excl[:, 0] = True
    assert mean_norm(acts, excl, np.array([0, 1])) == pytest.approx((5 + 1 + 10 + 0) / 4)


def test_apply_edits_by_hand_and_zero_is_bitwise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 4, generator=g)
    v = torch.tensor([1.0, -2.0, 0.5, 0.0])
    out = apply_edits(x, [Steer(torch.zeros(4)), Steer(v)])
    assert torch.equal(out[0], x[0])
    assert torch.allclose(out[1], x[1] + v[None])


def test_clamp_sets_the_code_and_keeps_the_error(tiny_model):
    from autointerp.bases.linear import fit_pca

    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, tiny_model.d_model, generator=g)
    pca = fit_pca(x, k=None)
    from autointerp.causal.logit_lens import feature_directions

    d = feature_directions(pca, [0])[0]
    out = apply_edits(x[None, :3], [Steer(torch.zeros(x.shape[1]), (pca, 0, 2.5, d))])[0]
    # hand: codes c, c' = c with c'_0 = 2.5, x' = decode(c') + (x - decode(c))
    c = pca.encode(x[:3])
    c2 = c.clone()
    c2[:, 0] = 2.5
    want = pca.decode(c2) + (x[:3] - pca.decode(c))
    assert torch.allclose(out, want, atol=1e-5)
    assert torch.allclose(out, x[:3] + (2.5 - c[:, :1]) * d[None], atol=1e-5)


def test_intervention_equals_hand_forward(tiny_model):
    """The steered model's logits = the layers after the hookpoint run on x + alpha s d."""
    from autointerp.causal.hook_forward import HookForward
    from autointerp.causal.intervene import hidden

    sm = tiny_model
    hp = sm.hookpoint(HP)
    ids = torch.tensor([prompt_ids(sm, INSTR[0])])
    d = torch.randn(sm.d_model, generator=torch.Generator().manual_seed(2))
    x = hidden(sm, hp, ids)
    m = float(x[0, 1:].norm(dim=-1).mean())
    vec = 2.0 * float(unit_scale(d[None], m)[0]) * d
    assert float(vec.norm()) == pytest.approx(2.0 * m, rel=1e-5)
    fwd = HookForward(sm, hp)
    h = fwd.hidden(ids, x + vec)  # hand: the edited residual, layers after the hookpoint
    want = fwd.head(h).float()
    with splice(hp, lambda a: apply_edits(a, [Steer(vec)])):
        got = sm.model(input_ids=ids, use_cache=False).logits.float()
    assert torch.allclose(got, want, atol=1e-4)


def test_factor_zero_is_the_unsteered_text_exactly(tiny_model):
    sm = tiny_model
    hp = sm.hookpoint(HP)
    ps = [prompt_ids(sm, q) for q in INSTR]
    z = torch.zeros(sm.d_model)
    v = 8.0 * torch.randn(sm.d_model, generator=torch.Generator().manual_seed(3))
    ref = [
        sm.model.generate(torch.tensor([p]), max_new_tokens=10, do_sample=False)[0, len(p) :]
        for p in ps
    ]
    from autointerp.llm.greedy import end_ids

    ends = end_ids(sm.model, sm.tokenizer)
    ref = [[int(t) for t in r] for r in ref]
    ref = [r[: next((j for j, t in enumerate(r) if t in ends), len(r))] for r in ref]
    plain = steered_generate(sm, hp, ps, [Steer(z)] * 3, max_new_tokens=10)
    mixed = steered_generate(sm, hp, ps, [Steer(z), Steer(v), Steer(z)], max_new_tokens=10)
    assert plain == ref
    assert mixed[0] == ref[0] and mixed[2] == ref[2]
    assert mixed[1] != ref[1]  # the steered row did change


def test_cached_steered_generation_matches_a_cache_free_loop(tiny_model):
    sm = tiny_model
    hp = sm.hookpoint(HP)
    ps = [prompt_ids(sm, q) for q in INSTR]
    vs = [
        3.0 * torch.randn(sm.d_model, generator=torch.Generator().manual_seed(s)) for s in (4, 5, 6)
    ]
    got = steered_generate(sm, hp, ps, [Steer(v) for v in vs], max_new_tokens=6)
    for p, v, g in zip(ps, vs, got, strict=True):
        ref = _greedy_ref(sm, hp, p, v, 6)
        assert g == ref[: len(g)] and len(g) in (len(ref), *range(len(ref)))


def test_read_back_nll_and_acts_by_hand(tiny_model):
    from autointerp.causal.intervene import hidden

    sm = tiny_model
    hp = sm.hookpoint(HP)
    p, c = prompt_ids(sm, "Hi"), [10, 11, 12, 13]
    p2, c2 = prompt_ids(sm, "Describe it"), [20, 21]
    # rows 0 and 2 share a prompt: one cached prompt pass, continuations right-padded
    rb = read_back(sm, hp, [p, p2, p, p], [c, c2, c[:2], []])
    assert np.isnan(rb.nll[3]) and len(rb.acts[3]) == 0
    for pr, co, k in ((p, c, 0), (p2, c2, 1), (p, c[:2], 2)):
        ids = torch.tensor([pr + co])
        logits = sm.model(input_ids=ids, use_cache=False).logits[0].float()
        lp = F.log_softmax(logits, -1)
        nll = -np.mean([float(lp[len(pr) - 1 + j, t]) for j, t in enumerate(co)])
        assert rb.nll[k] == pytest.approx(nll, abs=1e-4)
        x = hidden(sm, hp, ids)[0, len(pr) :]
        assert torch.allclose(rb.acts[k], x, atol=1e-4)


def test_repeated_bigrams_by_hand():
    assert repeated_bigrams([1, 2, 1, 2, 1]) == pytest.approx(0.5)  # 4 bigrams, 2 distinct
    assert repeated_bigrams([1, 2, 3]) == 0.0
    assert repeated_bigrams([5, 5, 5, 5]) == pytest.approx(2 / 3)
    assert repeated_bigrams([7]) is None


def test_choose_factor_by_hand():
    factors = [0.0, 1.0, 2.0, 4.0]
    # prompts 0, 1 select; 2, 3 report
    gain = np.array([[0, 0, 0, 0], [0.2, 0.4, 0.1, 0.3], [0.8, 1.0, 0.5, 0.7], [3, 3, 2, 2.0]])
    rise = np.array([[0, 0, 0, 0], [0.1, 0.1, 0.2, 0.2], [0.9, 0.9, 1.5, 0.1], [4, 4, 4, 4.0]])
    rep = np.zeros((4, 4))
    c = choose_factor(factors, gain, rise, rep, np.array([0, 1]), np.array([2, 3]), 1.0)
    # factor 4 has the largest gain but breaks the budget; factor 2's selection rise is 0.9
    assert c.factor == 2.0 and c.select_gain == pytest.approx(0.9)
    assert c.score == pytest.approx(0.6) and c.nll_rise == pytest.approx(0.8)
    # nothing within budget -> factor 0, score 0 (the unsteered text)
    c0 = choose_factor(factors, gain, rise + 5, rep, np.array([0, 1]), np.array([2, 3]), 1.0)
    assert c0.factor == 0.0 and c0.score == 0.0


def test_spearman_and_top_quartile_by_hand():
    assert list(ranks(np.array([10.0, 20.0, 20.0, 5.0]))) == [2.0, 3.5, 3.5, 1.0]
    a = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert spearman(a, [2.0, 4.0, 6.0, 8.0, 100.0]).value == pytest.approx(1.0)
    assert spearman(a, [5.0, 4.0, 3.0, 2.0, 1.0]).value == pytest.approx(-1.0)
    # d = ranks differ by a swap of the last two: rho = 1 - 6*2/(5*24) = 0.9
    e = spearman(a, [1.0, 2.0, 3.0, 5.0, 4.0])
    assert e.value == pytest.approx(0.9) and e.low <= e.value <= e.high and e.n == 5
    assert spearman([1.0, 2.0, None], [1.0, 2.0, 3.0]).value is None
    q = top_quartile([1.0, 1.0, 1.0, 5.0], [0.0, 1.0, 2.0, 3.0])
    assert q.value == pytest.approx(4.0)
    # one nonzero steering score in 16: (15/16)^16 = 36% of the resamples miss it (constant),
    # the rest are conditioned on it (their CI excluded rho in the default run): undefined
    one = spearman([0.0] * 15 + [1.0], list(range(16)))
    assert one.value is None and "constant side" in one.reason and one.n == 16


def test_instructions_and_split():
    all_ = instructions()
    assert len(all_) >= 16 and len(set(all_)) == len(all_)
    sel, rep = split_prompts(8, seed=0)
    assert len(sel) == 4 and len(rep) == 4 and not set(sel) & set(rep)
    assert split_prompts(8, seed=0) == (sel, rep) and split_prompts(8, seed=1) != (sel, rep)


def test_diffmean_by_hand():
    acts = np.arange(2 * 4 * 2, dtype=np.float32).reshape(2, 4, 2)
    ex = Example(["a", "b"], [1, 2], [0.1, 0.9], "top", seq=1, start=1)  # max at position 2
    q = Example(["a"], [1], [0.5], "quantile", seq=0, start=0)
    rec = FeatureRecord("b", 0, 0.1, 0.9, explain=[ex, q])
    neg = np.array([[0, 1], [0, 3]])
    d = diffmean_direction(rec, acts, np.zeros((2, 4), bool), neg, 2)
    want = acts[1, 2] - (acts[0, 1] + acts[0, 3]) / 2
    assert torch.allclose(d, torch.from_numpy(want))


# --------------------------------------------------------------------------- the stage


def test_steering_stage_in_a_suite(tmp_path):
    """On a tiny word-level model: columns/steering.json has every column for every basis
    (random included), defined or with a reason; per-feature texts for the browser; cached on
    rerun; factor 0 rows are the shared unsteered answers."""
    from autointerp.columns import load_columns
    from tests.test_causal_stages import _run, tiny_suite

    steer = {"steering": {"enabled": True, "n_features": 2, "n_prompts": 4, "factors": [1.0, 8.0],
                          "max_new_tokens": 6, "pmi": False, "n_random_tokens": 32}}  # fmt: skip
    from autointerp.explain_styles import EXPLAIN_STYLES, ExplainStyle, register_explain_style
    from autointerp.scoring.registry import SCORERS, register_scorer
    from tests.test_causal_stages import _Len

    register_explain_style(ExplainStyle("causal_first", text=lambda ex: "first token"))
    register_scorer(_Len())
    try:
        suite = tiny_suite(tmp_path, **steer)
        rd, st = _run(tmp_path, suite)
        assert st["steering"] == "computed"
        cols = {c.stage: c for c in load_columns(rd)}["steering"]
        assert set(cols.rows) == {"pca", "neurons", "random"}
        for b, row in cols.rows.items():
            assert {c.name for c in cols.columns} == set(row), b
            for name in ("steer_act", "steer_factor", "steer_nll_rise", "steer_diffmean_act",
                         "steer_prompting_act"):  # fmt: skip
                assert row[name].value is not None, (b, name, row[name].reason)
            assert row["steer_pmi"].value is None and "pmi = false" in row["steer_pmi"].reason
            assert row["steer_rho_sim"].value is None or -1 <= row["steer_rho_sim"].value <= 1
        feats = cols.extra["features"]
        m = cols.extra["mean_norm"]
        for ds in feats.values():
            for d in ds:
                assert set(d["arms"]) == {"feature", "diffmean", "prompting"}
                assert d["arms"]["feature"]["factor"] in (0.0, 1.0, 8.0)
                assert isinstance(d["arms"]["feature"]["text"], str)
        assert m > 0 and len(cols.extra["unsteered"]) == 4
        from autointerp.report.browser import _causal

        panel = _causal(rd)  # the feature browser's per-feature data
        st_panels = [d["steering"] for d in panel.values() if "steering" in d]
        assert len(st_panels) == sum(len(ds) for ds in feats.values())
        assert all({"feature", "diffmean"} <= set(p["arms"]) for p in st_panels)
        assert all(isinstance(p["unsteered"], str) for p in st_panels)
        board = (rd / "leaderboard.md").read_text()
        assert "steer_act" in board and "steer_diffmean_act" in board
        _, st2 = _run(tmp_path, suite)
        assert st2["steering"] == "cached"
    finally:
        EXPLAIN_STYLES.unregister("causal_first")
        SCORERS.unregister("causal_len")


def test_judge_rating_parse_and_harmonic_mean_by_hand():
    from autointerp.steering.judge import harmonic_mean, parse_rating
    from autointerp.templates import render_messages

    assert parse_rating("ok. Rating: [[2]]") == 2.0
    assert parse_rating("Rating: [[1]] then Rating: [[0]]") == 0.0
    assert parse_rating("Rating: 2") is None and parse_rating("Rating: [[3]]") is None
    assert parse_rating("Rating: [[1.5]]") is None and parse_rating("Rating: [[ 2.0 ]]") == 2.0
    assert harmonic_mean([2.0, 1.0, 2.0]) == pytest.approx(3 / (0.5 + 1 + 0.5))
    assert harmonic_mean([2.0, 0.0, 2.0]) == 0.0
    assert harmonic_mean([2.0, None, 2.0]) is None
    msgs = render_messages("steer_judge_concept", concept="bridges", text="The bridge.")
    assert [m["role"] for m in msgs] == ["system", "user"] and "bridges" in msgs[1]["content"]


def test_choose_factor_repeat_budget_by_hand():
    factors = [0.0, 1.0, 2.0]
    gain = np.array([[0, 0], [0.5, 0.5], [2.0, 2.0]])
    rise = np.zeros((3, 2))  # a looping text can have a low NLL
    rep = np.array([[0.1, 0.1], [0.2, 0.2], [0.9, 0.9]])
    sel = rpt = np.array([0, 1])
    c = choose_factor(factors, gain, rise, rep, sel, rpt, 1.0, 0.25)
    assert c.factor == 1.0 and c.repeat == pytest.approx(0.2)  # factor 2 loops: +0.8 > 0.25
    assert choose_factor(factors, gain, rise, rep, sel, rpt, 1.0).factor == 2.0


def test_pmi_per_token_by_hand(tmp_path):
    """Explanation-PMI of a continuation = mean over its tokens of log p(u | P_e + text) -
    log p(u | P_0 + text), from the real in-process backend's prompt logprobs (tiny model)."""
    import asyncio

    from autointerp.llm import LLMConfig, make_client
    from autointerp.scoring.pmi import NEUTRAL, pmi_prefix
    from autointerp.steering.scores import pmi_per_token
    from tests.conftest import make_tiny_model, save_tiny_files

    model_dir, _ = save_tiny_files(tmp_path, make_tiny_model())
    cl = make_client(LLMConfig(backend="transformers", model=str(model_dir), device="cpu",
                               dtype="float32"))  # fmt: skip
    texts = ["The cat sat.", "", "dogs"]
    got = asyncio.run(pmi_per_token(cl, ["cats", "cats", "dogs"], texts))
    assert got[1] is None
    for e, t, g in (("cats", texts[0], got[0]), ("dogs", texts[2], got[2])):
        side = []
        for prefix in (pmi_prefix(e), pmi_prefix(NEUTRAL)):
            pl = asyncio.run(cl.prompt_logprobs(prefix + t, top_logprobs=0, cache=False))
            # character tokens: the text's tokens are those starting at or after the prefix
            side.append([lp for o, lp in zip(pl.offsets, pl.token_logprobs, strict=True)
                         if o >= len(prefix)])  # fmt: skip
        assert len(side[0]) == len(t)
        want = np.mean([a - b for a, b in zip(side[0], side[1], strict=True)])
        assert g == pytest.approx(want, abs=1e-4)


def test_opt_in_steering_suite_is_the_default_but_for_steering():
    """evals/steering.toml reuses every other stage of a default run only while it equals
    evals/default.toml outside [causal.steering] and the name."""
    from pathlib import Path

    from autointerp.config import load_suite

    root = Path(__file__).resolve().parents[1] / "evals"
    d, s = (load_suite(root / f).model_dump() for f in ("default.toml", "steering.toml"))
    for x in (d, s):
        x.pop("name")
        x["causal"].pop("steering")
    assert d == s

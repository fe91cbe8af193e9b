"""TokenChange output explanations, the target-KL strength and the held-out score
(docs/output.md) against hand computations on a tiny random-weight model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autointerp.causal.hook_forward import HookForward
from autointerp.causal.logit_lens import feature_directions
from autointerp.causal.token_change import (
    Prompts,
    arad_scores,
    calibrate_strength,
    mean_kl,
    set_gains,
    token_change,
    unit_shifts,
)
from autointerp.model import run_to_hookpoint
from autointerp.stages.output_side import tc_rows
from tests.test_output_side import HOOK, _basis, _full_logprobs, _rows, _run, tiny_suite


@pytest.fixture()
def setup(tiny_model):
    sm = tiny_model
    hp = sm.hookpoint(HOOK)
    ids, exclude = _rows(sm, n=3, T=10)
    acts = run_to_hookpoint(sm, hp, ids)
    p = Prompts(HookForward(sm, hp), ids.numpy(), acts.numpy(), exclude.numpy(), 6)
    basis = _basis(hp.width)
    return sm, hp, ids, acts, p, basis


def _amplified(sm, hp, ids, acts, shift):
    x = acts[:, :6].clone()
    x0 = x.clone()
    x[:, 1:] += shift  # every position but BOS
    lp0 = _full_logprobs(sm, hp, ids[:, :6], x0)[:, -1].double()
    lp1 = _full_logprobs(sm, hp, ids[:, :6], x)[:, -1].double()
    return lp0, lp1


def test_unit_shift_has_the_prompts_mean_norm(setup):
    sm, hp, ids, acts, p, basis = setup
    m = float(acts[:, 1:6].norm(dim=-1).mean())
    assert p.m == pytest.approx(m, rel=1e-5)
    dirs = feature_directions(basis, [0, 4])
    u = unit_shifts(dirs, p.m)
    assert u.norm(dim=-1).numpy() == pytest.approx([m, m], rel=1e-5)
    assert torch.allclose(unit_shifts(torch.zeros(1, 4), 2.0), torch.zeros(1, 4))


def test_token_change_kl_and_gains_by_hand(setup):
    sm, hp, ids, acts, p, basis = setup
    shifts = 0.7 * unit_shifts(feature_directions(basis, [0, 4]), p.m)
    toks = token_change(p, shifts, 5, batch_size=4)
    sets = [toks, toks[::-1]]
    gains = set_gains(p, shifts, sets, batch_size=4)
    kls = []
    for i in range(2):
        lp0, lp1 = _amplified(sm, hp, ids, acts, shifts[i])
        d = (lp1 - lp0).mean(0)  # tie-aware: the chosen tokens are among the 5 largest
        assert float(d[torch.as_tensor(toks[i])].min()) >= float(d.topk(5).values[-1]) - 1e-5
        for s in range(2):
            S = torch.as_tensor(sets[s][i])
            g = (lp1[:, S].logsumexp(-1) - lp0[:, S].logsumexp(-1)).mean()
            assert gains[s, i] == pytest.approx(float(g), abs=1e-4)
        kls.append(float((lp0.exp() * (lp0 - lp1)).sum(-1).mean()))
    assert mean_kl(p, shifts, batch_size=4) == pytest.approx(np.mean(kls), rel=1e-3, abs=1e-6)


def test_strength_reaches_the_target_kl(setup):
    _, _, _, _, p, basis = setup
    unit = unit_shifts(feature_directions(basis, [0, 1, 2]), p.m)
    lo_kl = mean_kl(p, unit / 16, 8)
    hi_kl = mean_kl(p, unit * 16, 8)
    target = float(np.sqrt(lo_kl * hi_kl))  # inside the bracket
    s, kl = calibrate_strength(p, unit, target, 8)
    assert kl == pytest.approx(mean_kl(p, s * unit, 8), rel=1e-6)
    assert abs(np.log(kl / target)) < 0.25  # within 6 halvings of a 2^8 bracket
    # a target above what the bracket reaches: its top, with the KL there
    s_hi, kl_hi = calibrate_strength(p, unit, hi_kl * 10, 8)
    assert s_hi == 16.0 and kl_hi == pytest.approx(hi_kl, rel=1e-6)


def test_explain_and_score_prompts_are_disjoint():
    ex, sc = tc_rows(np.arange(100, 140), 8)
    assert len(ex) == len(sc) == 8 and not set(ex) & set(sc)
    ex, sc = tc_rows(np.arange(5), 8)  # fewer rows than asked: split what there is
    assert sorted([*ex, *sc]) == list(range(5)) and not set(ex) & set(sc)


def test_arad_output_score_by_hand(setup):
    sm, hp, ids, acts, p, basis = setup
    shifts = 3.0 * feature_directions(basis, [1, 2])
    sets = [[np.array([4, 9, 30]), np.array([7])]]
    got = arad_scores(p, shifts, sets, batch_size=4)
    for i in range(2):
        _, lp1 = _amplified(sm, hp, ids, acts, shifts[i])
        pr = lp1.exp()
        V = pr.shape[-1]
        want = []
        for n in range(len(pr)):
            S = sets[0][i].tolist()
            ranks = [int((pr[n] > pr[n, v]).sum()) for v in S]
            want.append((1 - min(ranks) / V) * max(float(pr[n, v]) for v in S))
        assert got[0, i] == pytest.approx(np.mean(want), rel=1e-4, abs=1e-7)


def test_stage_columns_with_arad(tmp_path, tiny_model):
    from autointerp.columns import load_columns

    suite = tiny_suite(tmp_path, tiny_model, output={"n_prompts": 4, "prompt_len": 8, "arad": True})
    rd, _ = _run(tmp_path, suite)
    out = {c.stage: c for c in load_columns(rd)}["output"]
    for basis in ("neurons", "pca"):
        per = out.extra["features"][basis]
        assert all(0 <= f["arad"] <= 1 for f in per)
        want = np.mean([f["arad"] for f in per])
        assert out.rows[basis]["output_arad"].value == pytest.approx(want)
        assert out.rows[basis]["output_arad_lift"].n == len(per)

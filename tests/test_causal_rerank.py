"""The IOI bootstrap that re-fits the ranking in every replicate (autointerp/causal/rerank.py,
docs/causal.md "Confidence intervals"): draws and orders by hand, the memo against a plain
evaluation of every replicate, known answers on a tiny model (a basis whose held-out or
in-sample ranking flips between replicates gets a wider CI than with the ranking fixed; the
planted IO direction, always ranked first, gets the same CI), and the columns and stage."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from autointerp.bases.linear import SignedLinearBasis, neuron_basis
from autointerp.causal import patching
from autointerp.causal.ioi_prompts import TEMPLATES, IOIPair, ioi_pairs, single_token_names
from autointerp.causal.ranking import ioi_curves, order_of
from autointerp.causal.rerank import (
    Reranked,
    StateMemo,
    bootstrap,
    draws,
    fitted_blocks,
    rank_masks,
    seed_memo,
)
from autointerp.causal.summary import (
    IOI_COLUMNS,
    _boot,
    _ci,
    boot_idx,
    curve_readings,
    ioi_columns,
)
from autointerp.columns import load_columns
from tests.causal_tiny import tiny_word_model
from tests.test_causal import orth_basis
from tests.test_causal_stages import _run, no_llm, tiny_suite  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def sm():
    return tiny_word_model()


def test_draws_and_orders_by_hand():
    halves = np.array([0, 1, 0, 1, 1, 0])
    ins = draws(halves, "in_sample", 3, seed=5)
    np.testing.assert_array_equal(np.stack([d[0] for d in ins]), boot_idx(6, 5)[:3])
    for d0, d1 in draws(halves, "held_out", 20, seed=5):  # each half drawn within itself
        assert len(d0) == 3 and len(d1) == 3
        assert set(d0) <= {0, 2, 5} and set(d1) <= {1, 3, 4}
    a = np.array([[0.0, -1.0, 2.0], [-3.0, 0.5, 0.0], [0.0, 0.0, -0.2], [1.0, 1.0, -5.0],
                  [0.0, -0.1, 0.0], [-1.0, 0.0, 0.0]])  # fmt: skip
    # in-sample: the draw's pooled a; pair 1 drawn twice: [-6, 0, 0] + [0, -1, 2] -> 0, 1, 2
    ((drawn, order),) = fitted_blocks(a, halves, "in_sample", [np.array([1, 1, 0])], True)
    assert order.tolist() == [0, 1, 2] and drawn.tolist() == [1, 1, 0]
    # |a| order of the same sums: |-6|, |-1|, |2| -> 0, 2, 1
    assert fitted_blocks(a, halves, "in_sample", [np.array([1, 1, 0])], False)[0][1].tolist() == [
        0, 2, 1]  # fmt: skip
    # fixed ranking: fitted on every pair whatever the draw
    ((_, fixed),) = fitted_blocks(a, halves, "in_sample", [np.array([1, 1, 0])], True, refit=False)
    assert fixed.tolist() == order_of(a.sum(0)).tolist()
    # held out: half 0's drawn pairs use the order of half 1's draw, and the other way round
    d = [np.array([0, 0, 2]), np.array([3, 4, 4])]
    (r0, o0), (r1, o1) = fitted_blocks(a, halves, "held_out", d, True)
    assert r0.tolist() == [0, 0, 2] and r1.tolist() == [3, 4, 4]
    assert o0.tolist() == order_of(a[[3, 4, 4]].sum(0)).tolist() == [2, 1, 0]  # [1, .8, -5]
    assert o1.tolist() == order_of(a[[0, 0, 2]].sum(0)).tolist() == [1, 0, 2]  # [0, -2, 3.8]
    (_, f0), (_, f1) = fitted_blocks(a, halves, "held_out", d, True, refit=False)
    assert f0.tolist() == order_of(a[[1, 3, 4]].sum(0)).tolist()
    assert f1.tolist() == order_of(a[[0, 2, 5]].sum(0)).tolist()
    assert rank_masks(np.array([2, 0, 1]), [1, 2, 3]).tolist() == [
        [False, False, True], [True, False, True], [True, True, True]]  # fmt: skip


def _plain(sm, hp, data, basis, a, ks, ranking, n_rep, seed, refit=True) -> Reranked:
    """Every replicate evaluated on its own with patched_runs (no memo, no seeding)."""
    halves = np.array([p.half for p in data.pairs])
    rd, kls = [], []
    for d in draws(halves, ranking, n_rep, seed):
        kl_, er_, ea_ = [], [], []
        for drawn, order in fitted_blocks(a, halves, ranking, d, True, refit):
            sets = [torch.from_numpy(m) for m in rank_masks(order, ks)]
            r = patching.patched_runs(sm, hp, data, basis, sets, batch_size=7)
            kl_.append(r.kl[:, drawn])
            er_.append(r.edit[:, drawn])
            ea_.append(r.edit_abs[:, drawn])
        kl, er, ea = (np.concatenate(x, 1).mean(1) for x in (kl_, er_, ea_))
        k0 = float(data.kl_clean[np.concatenate(d)].mean())
        rd.append(curve_readings(ks, kl, ea, er, k0))
        kls.append(kl)
    return Reranked(np.array(rd), np.array(kls))


def test_memo_gives_the_plain_evaluation(sm):
    """The memoised, seeded, batched replicates equal each replicate run on its own; the memo
    runs fewer states than the replicates ask for; with the ranking fixed nothing new runs
    (the point curves seeded every state) and the readings are summary's fixed bootstrap."""
    hp = sm.hookpoint("blocks.1.hook_resid_post")
    data = patching.prepare(sm, hp, ioi_pairs(sm.tokenizer, 10, 0, sm.bos_token_id), ig_steps=1)
    b = neuron_basis(32, k=4)
    ks = [1, 2, 4, 8, 16, 64]
    a = patching.attribution(sm, hp, data, b)
    halves = np.array([p.half for p in data.pairs])
    curves = ioi_curves(sm, hp, data, b, ks, batch_size=16, rankings=("in_sample", "held_out"))
    memo = StateMemo(sm, hp, data, b, batch_size=5)
    seed_memo(memo, a, halves, curves, True)
    fixed = bootstrap(memo, a, ks, ("in_sample", "held_out"), 6, 3, refit=False)
    assert memo.n_run == 0
    want = _boot(curves["in_sample"], data.kl_clean, boot_idx(10, 3)[:6])
    np.testing.assert_allclose(fixed["in_sample"].readings, want, rtol=1e-9, equal_nan=True)
    got = bootstrap(memo, a, ks, ("in_sample", "held_out"), 6, 3)
    asked = 6 * len(ks) * 10 * 2
    assert 0 < memo.n_run < asked / 2
    for r in ("in_sample", "held_out"):
        plain = _plain(sm, hp, data, b, a, ks, r, 6, 3)
        np.testing.assert_allclose(got[r].kl, plain.kl, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(got[r].readings, plain.readings, rtol=1e-4, atol=1e-7,
                                   equal_nan=True)  # fmt: skip
        pf = _plain(sm, hp, data, b, a, ks, r, 6, 3, refit=False)
        np.testing.assert_allclose(fixed[r].kl, pf.kl, rtol=1e-5, atol=1e-8)


def _pair(tok, bos, t, order, io, s, c, half) -> IOIPair:
    ids = dict(single_token_names(tok))
    a, b = (io, s) if order == "ABBA" else (s, io)
    ca, cb = (c, s) if order == "ABBA" else (s, c)
    clean = (bos, *tok.encode(TEMPLATES[t].format(A=a, B=b, S=s), add_special_tokens=False))
    cf = (bos, *tok.encode(TEMPLATES[t].format(A=ca, B=cb, S=s), add_special_tokens=False))
    return IOIPair(t, order, io, s, c, clean, cf, ids[io], ids[s], ids[c], half)


def _width(x: np.ndarray) -> float:
    lo, hi = _ci(x)
    assert lo is not None and hi is not None
    return hi - lo


def test_unstable_ranking_widens_the_ci_stable_one_keeps_it(sm):
    """Known answer at the embedding output (blocks.0.hook_resid_pre), where a pair's
    counterfactual differs from its clean prompt only by E[C] - E[IO] at the IO position.
    Pairs of kind A swap Mary for Tom, of kind B Mary for Bob. The dual basis has decoder rows
    u_A = E[Tom] - E[Mary] and u_B = E[Bob] - E[Mary] (then random rows; encoder its inverse,
    centred at E[Mary]): an A pair moves only feature 0, a B pair only feature 1, and
    patching a pair's own feature takes its KL to ~0.

    Half 0 holds 10 A pairs and 2 B pairs; half 1 one A and one B pair whose attributions are
    nearly tied. Half 0's held-out order is fitted on half 1: with the ranking fixed it is
    always the same feature first, re-fitted on each draw of half 1's two pairs it flips
    between A and B, and the KL at k = 1 on half 0 with it (2 or 10 pairs left unpatched): the
    re-ranked CI is much wider. In-sample, 12 A and 6 B pairs have close pooled attributions:
    the draw's first feature flips, the CI widens. The planted IO direction (every pair A, an
    orthonormal basis whose first direction is u_A) is first in every replicate: the same CI
    either way."""
    tok, bos = sm.tokenizer, sm.bos_token_id
    hp = sm.hookpoint("blocks.0.hook_resid_pre")
    ids = dict(single_token_names(tok))
    emb = sm.model.get_input_embeddings().weight.detach().float()
    u_a, u_b = emb[ids[" Tom"]] - emb[ids[" Mary"]], emb[ids[" Bob"]] - emb[ids[" Mary"]]
    g = torch.Generator().manual_seed(0)
    dec = torch.cat([u_a[None], u_b[None], torch.randn(30, 32, generator=g)])
    # top-1 codes: float noise of the inverse never enters a pair's support
    dual = SignedLinearBasis("dual", "test", torch.linalg.inv(dec), dec, emb[ids[" Mary"]], 1)
    both = [
        _pair(tok, bos, t, o, " Mary", " John", c, 0)
        for c in (" Tom", " Bob") for t in range(6) for o in ("ABBA", "BABA")
    ]  # fmt: skip
    d_all = patching.prepare(sm, hp, both)
    a = patching.attribution(sm, hp, d_all, dual)
    np.testing.assert_array_equal(a[:12, 1:], 0)  # A pairs move feature 0 only
    np.testing.assert_array_equal(a[12:, 0], 0)  # B pairs feature 1 only
    # pairs whose own feature lowers the KL; half 1: the A and B pair with the closest
    # attributions
    ok_a = [i for i in range(12) if a[i, 0] < 0]
    ok_b = [i for i in range(12, 24) if a[i, 1] < 0]
    assert len(ok_a) >= 11 and len(ok_b) >= 3
    gap = np.abs(a[ok_a, 0][:, None] - a[ok_b, 1][None])
    i, j = np.unravel_index(gap.argmin(), gap.shape)
    p, q = ok_a[i], ok_b[j]
    rest_a = [i for i in ok_a if i != p][:10]
    rest_b = [i for i in ok_b if i != q][:2]
    pick = [(i, 0) for i in rest_a + rest_b] + [(p, 1), (q, 1)]
    pairs = [replace(both[i], half=h) for i, h in pick]
    data = patching.prepare(sm, hp, pairs)
    ks = patching.k_values("pow2", dual.n_features)
    curves = ioi_curves(sm, hp, data, dual, ks, rankings=("in_sample", "held_out"))
    a = patching.attribution(sm, hp, data, dual)
    memo = StateMemo(sm, hp, data, dual)
    seed_memo(memo, a, np.array([h for _, h in pick]), curves, True)
    n_rep = 60
    re = bootstrap(memo, a, ks, ("held_out",), n_rep, 0)["held_out"]
    fx = bootstrap(memo, a, ks, ("held_out",), n_rep, 0, refit=False)["held_out"]
    halves = np.array([h for _, h in pick])
    firsts = {
        int(fitted_blocks(a, halves, "held_out", d, True)[0][1][0])
        for d in draws(halves, "held_out", n_rep, 0)
    }
    assert firsts == {0, 1}  # half 0's first feature flips between replicates
    assert _width(re.kl[:, 0]) > 3 * _width(fx.kl[:, 0])
    assert _width(re.readings[:, 4]) > 1.5 * _width(fx.readings[:, 4])  # the AUC

    # in-sample: 12 A and 6 B pairs, whose pooled attributions are close enough that a
    # draw's first feature flips; the fixed ranking always patches the same one first
    pairs_ab = [replace(both[i], half=both[i].template % 2) for i in range(18)]
    data = patching.prepare(sm, hp, pairs_ab)
    curves = ioi_curves(sm, hp, data, dual, ks, rankings=("in_sample",))
    a = patching.attribution(sm, hp, data, dual)
    memo = StateMemo(sm, hp, data, dual)
    seed_memo(memo, a, np.array([p.half for p in pairs_ab]), curves, True)
    re = bootstrap(memo, a, ks, ("in_sample",), n_rep, 0)["in_sample"]
    fx = bootstrap(memo, a, ks, ("in_sample",), n_rep, 0, refit=False)["in_sample"]
    assert _width(re.kl[:, 0]) > 2 * _width(fx.kl[:, 0])

    # the stable basis: the planted IO direction, every pair of kind A
    pairs_a = [_pair(tok, bos, t, o, " Mary", " John", " Tom", t % 2)
               for t in range(6) for o in ("ABBA", "BABA")]  # fmt: skip
    data = patching.prepare(sm, hp, pairs_a)
    q = orth_basis(32, u_a / u_a.norm()).E
    planted = SignedLinearBasis("planted", "test", q, q.T, emb[ids[" Mary"]], 1)
    ks = patching.k_values([1, 2, 4, 8], planted.n_features)
    curves = ioi_curves(sm, hp, data, planted, ks, rankings=("in_sample", "held_out"))
    a = patching.attribution(sm, hp, data, planted)
    memo = StateMemo(sm, hp, data, planted)
    seed_memo(memo, a, np.array([p.half for p in pairs_a]), curves, True)
    rk = ("in_sample", "held_out")
    re, fx = bootstrap(memo, a, ks, rk, 40, 0), bootstrap(memo, a, ks, rk, 40, 0, refit=False)
    for r in rk:
        np.testing.assert_array_equal(re[r].kl, fx[r].kl)
        np.testing.assert_array_equal(re[r].readings, fx[r].readings)
        assert np.all(re[r].readings[:, 0] == 1.0)  # half KL at k = 1 in every replicate


def _curve(ks, kl_mean, n):
    from autointerp.causal.patching import Curve

    kl = np.tile(np.array(kl_mean)[:, None], (1, n))
    e = np.tile(np.linspace(0.1, 1, len(ks))[:, None], (1, n))
    return Curve("b", ks[-1], ks, kl, e, np.zeros(ks[-1]), np.arange(ks[-1]), {}, e * 2)


def test_columns_take_the_re_ranked_replicates_and_say_so():
    """With replicates given, the in-sample and held-out CIs are their percentiles (the
    point estimate is still the curve's), and the docs and notes say which bootstrap it is."""
    from autointerp.causal.patching import IOIData

    n = 6
    data = IOIData([None] * n, [], 0, np.ones(n), np.full(n, 4.0))  # type: ignore[list-item]
    ks = [1, 2, 4, 8, 16]
    c = _curve(ks, [4.0, 3.0, 1.0, 0.5, 0.2], n)
    curves = {"b": {"in_sample": c, "held_out": c, "per_pair": c},
              "r": {"in_sample": c, "held_out": c, "per_pair": c}}  # fmt: skip
    kinds = {"b": "sae", "r": "random"}
    reps = np.linspace(1, 3, 41)
    fake = Reranked(np.tile(reps[:, None], (1, 5)), np.tile(reps[:, None], (1, len(ks))))
    rr = {b: {"in_sample": fake, "held_out": fake} for b in curves}
    cols = ioi_columns(data, curves, kinds, 0, reranked=rr)
    cell = cols.rows["b"]["ioi_half_kl_features_heldout"]
    assert cell.value == pytest.approx(2**1.5)
    assert cell.ci_low == pytest.approx(np.percentile(reps, 2.5))
    assert cell.ci_high == pytest.approx(np.percentile(reps, 97.5))
    k16 = cols.rows["b"]["ioi_kl_k16"]
    assert k16.value == pytest.approx(0.2) and k16.ci_high == pytest.approx(
        np.percentile(reps, 97.5)
    )
    assert cols.rows["b"]["ioi_kl_k16_lift"].ci_low == 0.0  # paired: the same replicates
    doc = {d.name: d.doc for d in cols.columns}
    assert "41 bootstrap replicates over pairs, each re-fitting the ranking" in doc["ioi_auc_edit"]
    assert "each pair's own order" in doc["ioi_half_kl_features_per_pair"]
    assert doc["ioi_logit_diff"] == IOI_COLUMNS[0].doc  # no ranking in it: no note
    assert any("re-fitting" in x for x in cols.extra["notes"])
    fixed = ioi_columns(data, curves, kinds, 0)
    doc = {d.name: d.doc for d in fixed.columns}
    assert "ranking FIXED (ranking_bootstrap = 0)" in doc["ioi_edit_half_kl_heldout"]
    assert any("ranking FIXED" in x for x in fixed.extra["notes"])
    assert fixed.rows["b"]["ioi_half_kl_features_heldout"].ci_low == pytest.approx(2**1.5)


def test_stage_runs_the_ranking_bootstrap(no_llm, tmp_path):  # noqa: F811
    """``ranking_bootstrap = 4`` in a suite: the stage records the replicates' cost per basis
    and its columns say their CIs re-fit the ranking."""
    ioi = {"n_pairs": 8, "ranking_bootstrap": 4, "full_rotation": False}
    suite = tiny_suite(tmp_path, ioi=ioi, attribution={"enabled": False})
    rd, _st = _run(tmp_path, suite)
    ioi_cols = {c.stage: c for c in load_columns(rd)}["ioi"]
    cost = ioi_cols.extra["ranking_bootstrap_cost"]
    assert cost["replicates"] == 4 and set(cost["states"]) == {"pca", "neurons", "random"}
    assert ioi_cols.extra["ranking_bootstrap"] == 4
    doc = {d.name: d.doc for d in ioi_cols.columns}
    assert "4 bootstrap replicates" in doc["ioi_edit_half_kl_heldout"]
    cell = ioi_cols.rows["pca"]["ioi_kl_k1"]
    assert cell.value is not None and cell.ci_low is not None and cell.ci_low <= cell.ci_high

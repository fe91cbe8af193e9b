"""Hand computations for the causal measures on tiny random-weight models (docs/causal.md):
KL, edit size, attribution = grad x delta (finite differences), the batched resumed patched
pass vs one spliced full forward per state, half-KL counting, the known-answer planted basis,
IOI prompt construction, and the concentration shares."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from autointerp.bases.linear import SignedLinearBasis, neuron_basis
from autointerp.causal import matched, patching
from autointerp.causal.attribution import concentration, ioi_attribution, loss_attribution
from autointerp.causal.intervene import decode_with_error, encode_with_error, kl_last
from autointerp.causal.ioi_prompts import TEMPLATES, IOIPair, ioi_pairs, single_token_names
from autointerp.causal.ranking import ioi_curves
from autointerp.causal.summary import half_kl_k
from autointerp.model import splice
from tests.causal_tiny import tiny_word_model

HP = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def sm():
    return tiny_word_model()


@pytest.fixture(scope="module")
def data(sm):
    pairs = ioi_pairs(sm.tokenizer, 10, 0, sm.bos_token_id)
    return patching.prepare(sm, sm.hookpoint(HP), pairs, ig_steps=1)  # the clean point


def orth_basis(
    d: int, first: torch.Tensor | None = None, seed: int = 0, mu: torch.Tensor | None = None
) -> SignedLinearBasis:
    """An orthonormal signed basis (exact reconstruction), optionally with ``first`` as its
    first direction and centred at ``mu``."""
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(d, d, generator=g)
    if first is not None:
        m[:, 0] = first
    q, _ = torch.linalg.qr(m)
    if first is not None and float(q[:, 0] @ first) < 0:
        q[:, 0] = -q[:, 0]
    return SignedLinearBasis("b", "test", q, q.T, torch.zeros(d) if mu is None else mu, None)


def test_kl_matches_the_formula_and_torch():
    p = torch.log_softmax(torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0]]), -1)
    q = torch.log_softmax(torch.tensor([[0.5, 2.5, 0.0], [1.0, 0.0, 0.0]]), -1)
    want = [
        sum(math.exp(a) * (a - b) for a, b in zip(p[i].tolist(), q[i].tolist())) for i in (0, 1)
    ]
    assert kl_last(p, q).tolist() == pytest.approx(want, rel=1e-6)
    ref = torch.nn.functional.kl_div(q, p, log_target=True, reduction="none").sum(-1)
    assert kl_last(p, q).tolist() == pytest.approx(ref.tolist(), rel=1e-6)


def test_error_term_keeps_unedited_activations_exact():
    x = torch.randn(3, 5, 8)
    b = neuron_basis(8, k=2)  # lossy: top-2 of 16 signed codes
    c, err = encode_with_error(b, x)
    assert err.abs().max() > 0.1  # the basis alone does not reconstruct x
    torch.testing.assert_close(decode_with_error(b, c, err), x, atol=1e-6, rtol=0)


def test_edit_size_and_kl_by_hand(sm, data):
    """With the exact neuron basis, patching the set S moves x_clean by delta on S only: the
    edit is ||delta restricted to S||_F / ||x_cf - x_clean||_F; patching all gives x_cf and
    KL(P_cf || P_cf) = 0; patching none gives the unpatched KL."""
    hp = sm.hookpoint(HP)
    b = neuron_basis(32, k=None)
    none = torch.zeros(64, dtype=torch.bool)
    every = torch.ones(64, dtype=torch.bool)
    s = torch.zeros(64, dtype=torch.bool)
    s[[3, 32 + 3, 7, 32 + 7]] = True  # neurons 3 and 7, both signs
    r = patching.patched_runs(sm, hp, data, b, [none, every, s], batch_size=7)
    kl, edit = r.kl, r.edit
    assert kl[0] == pytest.approx(data.kl_clean, rel=1e-3, abs=1e-7)
    assert np.abs(kl[1]).max() < 1e-6
    assert edit[0] == pytest.approx(0, abs=1e-6) and edit[1] == pytest.approx(1, rel=1e-5)
    for g in data.groups:
        dx = (g.x_cf - g.x_clean) * g.patch[..., None]
        want = dx[..., [3, 7]].flatten(1).norm(dim=1) / dx.flatten(1).norm(dim=1)
        assert edit[2, g.rows] == pytest.approx(want.numpy(), rel=1e-4)
        # the paper's edit: mean over the patched positions of ||dx_t||_2
        per_pos = dx[..., [3, 7]].norm(dim=-1).sum(1) / g.patch.sum(1)
        assert r.edit_abs[2, g.rows] == pytest.approx(per_pos.numpy(), rel=1e-4)


def test_batched_resumed_runs_equal_spliced_full_forwards(sm, data):
    """The stacked (set, pair) states resumed at the hookpoint give the KL of one spliced full
    forward per state."""
    hp = sm.hookpoint(HP)
    assert data.skip == 2
    b = neuron_basis(32, k=8)
    sets = [torch.rand(64, generator=torch.Generator().manual_seed(i)) < 0.3 for i in range(3)]
    kl = patching.patched_runs(sm, hp, data, b, sets, batch_size=5).kl
    g = data.groups[0]
    c, err = encode_with_error(b, g.x_clean)
    c_cf, _ = encode_with_error(b, g.x_cf)
    delta = (c_cf - c) * g.patch[..., None]
    for j, m in enumerate(sets):
        x = decode_with_error(b, c + delta * m, err)
        for r in range(len(g.rows)):
            with torch.no_grad(), splice(hp, lambda a, x=x, r=r: x[r : r + 1].to(a.dtype)):
                logits = sm.model(input_ids=g.clean[r : r + 1]).logits[:, -1]
            want = kl_last(g.logp_cf[r : r + 1], torch.log_softmax(logits.float(), -1))
            assert kl[j, g.rows[r]] == pytest.approx(float(want), rel=1e-3, abs=1e-8)


def test_integrated_gradients_add_up_to_the_kl_change(sm):
    """Completeness: with the gradient averaged over 16 midpoints of the clean -> counterfactual
    path, an exact basis's attributions of a pair sum to the KL change of the full patch,
    KL(P_cf || P_cf) - KL(P_cf || P_clean) = -kl0 (midpoint rule: within a few percent); the
    clean-point gradient alone (one step) does not have to."""
    hp = sm.hookpoint(HP)
    pairs = ioi_pairs(sm.tokenizer, 6, 2, sm.bos_token_id)
    d = patching.prepare(sm, hp, pairs, ig_steps=16)
    a = patching.attribution(sm, hp, d, neuron_basis(32, k=None))
    assert a.sum(1) == pytest.approx(-d.kl_clean, rel=0.05, abs=0.02 * d.kl_clean.max())
    assert patching.path_points(1) == [0.0] and patching.path_points(2) == [0.25, 0.75]


def test_attribution_is_grad_times_delta(sm, data):
    """a[p, i] = sum_t delta[t, i] dKL/dc[t, i] equals the derivative of KL along feature i's
    patch direction (central finite difference)."""
    hp = sm.hookpoint(HP)
    b = neuron_basis(32, k=None)
    a = patching.attribution(sm, hp, data, b)
    g = data.groups[0]
    c, err = encode_with_error(b, g.x_clean)
    c_cf, _ = encode_with_error(b, g.x_cf)
    delta = (c_cf - c) * g.patch[..., None]
    top = np.argsort(-np.abs(a[g.rows]).sum(0))[:3]
    eps = 1e-2
    for i in top:
        m = torch.zeros(64)
        m[int(i)] = 1.0

        def kl_at(t, m=m):
            x = decode_with_error(b, c + t * delta * m, err)
            lp = patching.last_logprobs(sm, hp, g.clean, x, data.skip)
            return kl_last(g.logp_cf, lp).double().numpy()

        fd = (kl_at(eps) - kl_at(-eps)) / (2 * eps)
        assert a[g.rows, i] == pytest.approx(fd, rel=2e-2, abs=5e-3 * np.abs(fd).max())


def test_grad_x_activation_matches_finite_differences(sm, data):
    """IOI and loss attribution: sum_t c[t, i] dm/dc[t, i] equals d m(c + t c_i) / dt at 0."""
    hp = sm.hookpoint(HP)
    b = neuron_basis(32, k=None)
    a = ioi_attribution(sm, hp, data, b)
    g = data.groups[0]
    c, err = encode_with_error(b, g.x_clean)
    w = (g.clean != sm.bos_token_id).float()[..., None]
    io = torch.tensor([data.pairs[i].io_id for i in g.rows])
    s = torch.tensor([data.pairs[i].s_id for i in g.rows])
    i = int(np.argmax(np.abs(a[g.rows]).sum(0)))
    m = torch.zeros(64)
    m[i] = 1.0

    def ld(t):
        x = decode_with_error(b, c + t * c * m * w, err)
        lp = patching.last_logprobs(sm, hp, g.clean, x, data.skip)
        return (lp[torch.arange(len(io)), io] - lp[torch.arange(len(io)), s]).double().numpy()

    fd = (ld(1e-2) - ld(-1e-2)) / 2e-2
    assert a[g.rows, i] == pytest.approx(fd, rel=2e-2, abs=5e-3 * np.abs(fd).max())
    ids = torch.tensor([list(data.pairs[0].clean_ids)] * 2)
    ids[1, 3] = ids[0, 5]
    ex = torch.zeros_like(ids, dtype=torch.bool)
    ex[:, 0] = True
    from autointerp.causal.intervene import hidden

    x = hidden(sm, hp, ids)
    la = loss_attribution(sm, hp, [b], ids, x, ex, 2, batch_size=1)[b.name]
    cc, e2 = encode_with_error(b, x)
    j = int(np.argmax(np.abs(la).sum(0)))
    mj = torch.zeros(64)
    mj[j] = 1.0

    def loss(t):
        xx = decode_with_error(b, cc + t * cc * mj * (~ex)[..., None], e2)
        with splice(hp, lambda a_, xx=xx: xx.to(a_.dtype)):
            lp = torch.log_softmax(sm.model(input_ids=ids).logits[:, :-1].float(), -1)
        nll = -lp.gather(-1, ids[:, 1:, None]).squeeze(-1)
        return (nll * (~ex[:, :-1])).sum(1).double().numpy()

    fd = (loss(1e-2) - loss(-1e-2)) / 2e-2
    assert la[:, j] == pytest.approx(fd, rel=2e-2, abs=5e-3 * np.abs(fd).max())


def test_half_kl_counting():
    ks = [1, 2, 4, 8]
    kl_clean = np.array([2.0, 4.0])  # half: 1.5
    kl = np.array([[2.0, 3.0], [1.5, 2.0], [0.5, 1.0], [0.0, 0.0]])  # means 2.5 1.75 0.75 0
    assert ks[half_kl_k(kl, kl_clean, ks)] == 4
    assert ks[half_kl_k(kl[:, :1], kl_clean[:1], ks)] == 4  # pair 0: half 1.0; 2, 1.5, 0.5
    assert ks[half_kl_k(kl[:, 1:], kl_clean[1:], ks)] == 2  # pair 1: half 2.0; 3, 2 (<=)
    assert half_kl_k(kl[:2], kl_clean, ks) is None  # never reached: undefined, not 0


def test_concentration_shares_by_hand():
    a = np.zeros((2, 200))
    a[0, :10] = 1.0
    a[1, :10] = 1.0  # pooled |A| = 2 on 10 features
    a[0, 10:] = 0.1  # 190 features x 0.1
    top1, top10 = concentration(a)  # top 1% of 200 = 2 features
    total = 10 * 2 + 190 * 0.1
    assert top1 == pytest.approx(4 / total) and top10 == pytest.approx(20 / total)
    assert concentration(np.zeros((2, 50))) == (None, None)


def test_ioi_prompts_single_token_names_equal_lengths(sm):
    from autointerp.model import load_tokenizer

    tok = load_tokenizer("smollm2-gguf")
    names = single_token_names(tok)
    assert len(names) >= 16 and all(n.startswith(" ") for n, _ in names)
    for n, i in names:
        assert tok.encode(n, add_special_tokens=False) == [i]
    pairs = ioi_pairs(tok, 64, 3, bos=1)
    assert pairs == ioi_pairs(tok, 64, 3, bos=1)  # seeded
    assert {p.order for p in pairs} == {"ABBA", "BABA"}
    assert {p.template for p in pairs} == set(range(len(TEMPLATES)))
    for p in pairs:
        assert len(p.clean_ids) == len(p.cf_ids) and p.clean_ids[0] == 1
        diff = [j for j, (x, y) in enumerate(zip(p.clean_ids, p.cf_ids)) if x != y]
        assert (
            len(diff) == 1 and p.clean_ids[diff[0]] == p.io_id and p.cf_ids[diff[0]] == p.cf_io_id
        )
        assert p.clean_ids.count(p.s_id) == 2 and p.clean_ids.count(p.io_id) == 1
        assert len({p.io, p.s, p.cf_io}) == 3


def test_planted_direction_reaches_half_kl_with_one_feature(sm):
    """Known answer (tiny model, exact construction): at the embedding output
    (blocks.0.hook_resid_pre) the counterfactual differs from the clean prompt only at the IO
    position, by E[C] - E[IO]. With every pair using the same names, a basis whose first
    direction is that difference (centred at E[IO], so only its positive half changes) reaches
    half the unpatched KL (in fact KL ~ 0) at k = 1 under the signed and |a| orders and the
    in-sample, held-out (halves by template) and per-pair rankings; random orthonormal
    directions need more."""
    tok = sm.tokenizer
    ids = dict(single_token_names(tok))
    io, s, c = " Mary", " John", " Tom"
    bos = sm.bos_token_id
    pairs = []
    for t, tpl in enumerate(TEMPLATES):
        for order in ("ABBA", "BABA"):
            a, b = (io, s) if order == "ABBA" else (s, io)
            ca, cb = (c, s) if order == "ABBA" else (s, c)
            clean = (bos, *tok.encode(tpl.format(A=a, B=b, S=s), add_special_tokens=False))
            cf = (bos, *tok.encode(tpl.format(A=ca, B=cb, S=s), add_special_tokens=False))
            pairs.append(IOIPair(t, order, io, s, c, clean, cf, ids[io], ids[s], ids[c], t % 2))
    hp = sm.hookpoint("blocks.0.hook_resid_pre")
    d = patching.prepare(sm, hp, pairs)
    emb = sm.model.get_input_embeddings().weight
    u = (emb[ids[c]] - emb[ids[io]]).float()
    planted = orth_basis(32, u / u.norm(), mu=emb[ids[io]].float())
    rnd = orth_basis(32, seed=1)
    for order in ("signed", "abs"):
        cps = ioi_curves(sm, hp, d, planted, [1, 2, 4, 8, 16], signed=order == "signed")
        crs = ioi_curves(sm, hp, d, rnd, [1, 2, 4, 8, 16], signed=order == "signed")
        assert cps["in_sample"].order[0] == 0  # the planted direction ranks first
        for r in ("in_sample", "held_out", "per_pair"):
            cp, cr = cps[r], crs[r]
            assert cp.kl[0].mean() < 1e-3 * d.kl_clean.mean(), (order, r)
            kp, kr = half_kl_k(cp.kl, d.kl_clean, cp.ks), half_kl_k(cr.kl, d.kl_clean, cr.ks)
            assert cp.ks[kp] == 1 and (kr is None or cr.ks[kr] > 1)
            assert matched.half_k(cp.ks, cp.kl.mean(1), d.kl_clean.mean()) == 1.0


def test_non_residual_hookpoint_uses_spliced_full_forwards(sm):
    """At mlp_out the runs cannot start at the hookpoint: skip = 0, the patched states are
    spliced into full forwards, and the empty patch gives back the unpatched KL."""
    hp = sm.hookpoint("blocks.1.hook_mlp_out")
    d = patching.prepare(sm, hp, ioi_pairs(sm.tokenizer, 4, 1, sm.bos_token_id))
    assert d.skip == 0
    none = torch.zeros(64, dtype=torch.bool)
    r = patching.patched_runs(sm, hp, d, neuron_basis(32, k=4), [none], batch_size=3)
    kl, edit = r.kl, r.edit
    assert kl[0] == pytest.approx(d.kl_clean, rel=1e-3, abs=1e-6) and np.all(edit[0] < 1e-6)


def test_greedy_elimination_is_the_sequential_search(sm, data):
    """Greedy mode: it starts from every feature with a non-zero delta; each point's KL is the
    KL of its recorded set; the batched search gives the sets of a one-trial-at-a-time
    search written here (same seed, same visiting order)."""
    from autointerp.causal.greedy import greedy_curve, moved_features
    from autointerp.config import IOIConfig

    hp = sm.hookpoint(HP)
    b = neuron_basis(32, k=None)
    cfg = IOIConfig(greedy=True, greedy_thresholds=4, batch_size=64)
    c = greedy_curve(sm, hp, data, b, cfg, seed=0)
    moved = moved_features(b, data)
    assert c.info["start"] == int(moved.sum()) and c.ks[-1] == 64
    for size, feats in c.info["sets"].items():
        m = torch.zeros(64, dtype=torch.bool)
        m[feats] = True
        kl = patching.patched_runs(sm, hp, data, b, [m], batch_size=16).kl
        assert c.kl[c.ks.index(int(size))] == pytest.approx(kl[0], rel=1e-5, abs=1e-9)

    def mean_kl(mask):
        return patching.patched_runs(sm, hp, data, b, [torch.from_numpy(mask)], 64).kl[0].mean()

    rng = np.random.default_rng(0)
    cur = moved.copy()
    base = mean_kl(cur)
    want = []
    for thr in np.logspace(-5, 0, 4):
        for f in rng.permutation(np.nonzero(cur)[0]).tolist():
            t = cur.copy()
            t[f] = False
            kt = mean_kl(t)
            if kt - base < thr:
                cur, base = t, kt
        want.append(np.nonzero(cur)[0].tolist())
    got = [v for _k, v in sorted(c.info["sets"].items(), key=lambda kv: -int(kv[0]))]
    assert got == [list(w) for w in dict.fromkeys(map(tuple, want))]


def test_per_pair_sets(sm, data):
    """A [P, F] set equal on every row gives the [F] set's results; the per-pair ranking
    patches each pair's own top-k (k = 1: one feature per pair, chosen by its own |a[p, i]|)."""
    hp = sm.hookpoint(HP)
    b = neuron_basis(32, k=None)
    m = torch.zeros(64, dtype=torch.bool)
    m[[1, 40]] = True
    r1 = patching.patched_runs(sm, hp, data, b, [m], batch_size=8)
    r2 = patching.patched_runs(sm, hp, data, b, [m.expand(10, 64)], batch_size=8)
    np.testing.assert_allclose(r1.kl, r2.kl, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(r1.edit, r2.edit, rtol=1e-6)
    a = patching.attribution(sm, hp, data, b)
    for signed, pick in ((True, a.argmin(1)), (False, np.abs(a).argmax(1))):
        c = ioi_curves(sm, hp, data, b, [1], signed=signed)["per_pair"]
        own = torch.zeros(10, 64, dtype=torch.bool)
        own[torch.arange(10), torch.from_numpy(pick)] = True
        kl = patching.patched_runs(sm, hp, data, b, [own], batch_size=8).kl
        np.testing.assert_allclose(c.kl[0], kl[0], rtol=1e-5, atol=1e-9)
        assert c.info["ranking"] == "per_pair"


def test_held_out_ranking_uses_the_other_half(sm, data):
    """Held out: a pair of half h is patched with the top-1 feature of the order fitted on the
    pairs of the other half (signed: the most negative pooled attribution there)."""
    hp = sm.hookpoint(HP)
    b = neuron_basis(32, k=None)
    halves = np.array([p.half for p in data.pairs])
    assert set(halves.tolist()) == {0, 1}
    a = patching.attribution(sm, hp, data, b)
    own = torch.zeros(10, 64, dtype=torch.bool)
    for p in range(10):
        own[p, int(a[halves != halves[p]].sum(0).argmin())] = True
    c = ioi_curves(sm, hp, data, b, [1])["held_out"]
    kl = patching.patched_runs(sm, hp, data, b, [own], batch_size=8).kl
    np.testing.assert_allclose(c.kl[0], kl[0], rtol=1e-5, atol=1e-9)


def test_split_basis_needs_twice_the_features_for_the_same_edit(sm, data):
    """Known answer for the edit axis: split every direction of an exact basis into two
    half-norm copies (encoder columns repeated, decoder rows halved: the same reconstruction,
    twice the features, each copy's attribution half the original's). Every state of the
    original curve at k is the split curve's state at 2k: the KL and both edits are equal, so
    the split basis needs twice the features (log-k interpolation: exactly 2x) but the same
    edit for the same KL."""
    hp = sm.hookpoint(HP)
    ex = orth_basis(32, seed=3)
    split = SignedLinearBasis(
        "split", "test", torch.cat([ex.E, ex.E], 1), torch.cat([ex.D, ex.D]) / 2, ex.mu, None
    )
    ks = [1, 2, 4, 8, 16, 32, 64]
    co = ioi_curves(sm, hp, data, ex, ks, rankings=("in_sample", "held_out"))
    cs = ioi_curves(sm, hp, data, split, [2 * k for k in ks], rankings=("in_sample", "held_out"))
    kl0 = data.kl_clean.mean()
    for r in ("in_sample", "held_out"):
        o, s = co[r], cs[r]
        assert s.ks == [2 * k for k in o.ks]
        np.testing.assert_allclose(s.kl, o.kl, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(s.edit, o.edit, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(s.edit_abs, o.edit_abs, rtol=1e-4, atol=1e-7)
        ho = matched.half_k(o.ks, o.kl.mean(1), kl0)
        assert ho is not None
        assert matched.half_k(s.ks, s.kl.mean(1), kl0) == pytest.approx(2 * ho, rel=1e-3)
        eo = matched.edit_at_half(o.edit_abs.mean(1), o.kl.mean(1), kl0)
        es = matched.edit_at_half(s.edit_abs.mean(1), s.kl.mean(1), kl0)
        assert es == pytest.approx(eo, rel=1e-3)

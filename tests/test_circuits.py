"""Known-answer tests of the circuit edges and their faithfulness on tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autointerp.bases.linear import SignedLinearBasis, neuron_basis
from autointerp.circuits.edges import edges, mean_codes
from autointerp.circuits.faithfulness import faithfulness, k_grid, pearson
from autointerp.circuits.forward import Pair
from autointerp.errors import AutointerpError
from tests.conftest import SENTENCE, make_tiny_model

HP1, HP2 = "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"


def _ids(sm, text: str, n: int = 2) -> torch.Tensor:
    t = sm.tokenizer(text, return_tensors="pt").input_ids[:, :12]
    return t.repeat(n, 1) if n > 1 else t


OTHER = "A dog ran to 12 red doors. The cat sat on the mat."


def _planted(weight: float = 2.0):
    """Layer 1 writes nothing (residual passes through); upstream: shifted neurons (every
    positive part > 0 on the test texts, every negative part 0); downstream feature ``p``
    reads ``weight`` x upstream direction ``p``: a_p = weight * c_p exactly."""
    sm = make_tiny_model(n_layers=2, d_model=16, seed=1)
    layer = sm.layers[1]
    layer.self_attn.o_proj.weight.zero_()
    layer.mlp.down_proj.weight.zero_()
    d = sm.d_model
    hp1, hp2 = sm.hookpoint(HP1), sm.hookpoint(HP2)
    probe = Pair(sm, hp1, hp2, neuron_basis(d, k=None), neuron_basis(d, k=None))
    x = torch.cat([probe.upstream(_ids(sm, t, 1))[0][0] for t in (SENTENCE * 2, OTHER)])
    x = x[..., :d] - x[..., d:]
    mu = x.reshape(-1, d).min(0).values - 1.0  # x - mu > 0 at every position of the text
    eye = torch.eye(d)
    b1 = SignedLinearBasis("up", "neurons", eye, eye, mu, None)
    b2 = SignedLinearBasis("down", "neurons", weight * eye, eye / weight, mu, None)
    return Pair(sm, hp1, hp2, b1, b2)


def test_planted_edge_has_the_planted_weight_and_k1_is_faithful():
    pair = _planted(weight=2.0)
    ids = _ids(pair.sm, SENTENCE, 2)
    cbar, ebar = mean_codes(pair, _ids(pair.sm, OTHER, 1))
    w = torch.ones(ids.shape)
    c, err = pair.upstream(ids)
    d = pair.sm.d_model
    assert float(c[..., d:].abs().max()) == 0.0 and float(cbar[d:].abs().max()) == 0.0
    p = int((c[..., :d] - cbar[:d]).sum((0, 1)).abs().argmax())
    res = edges(pair, ids, w, cbar, ebar, [p, (p + 1) % d], batch_feats=2)
    planted = 2.0 * float((c[..., p] - cbar[p]).sum())
    assert res.backward_passes == 1
    assert abs(planted) > 0.1  # far above float noise
    assert res.edges[0, p] == pytest.approx(planted, rel=1e-4)
    others = np.delete(res.edges[0], p)
    assert np.abs(others).max() <= 1e-4 * abs(planted)
    assert float(err.abs().max()) < 1e-5 and abs(res.error[0]) < 1e-3
    # the linear edge is the whole change: m(all) - m(none) = 2 * sum(c_p - cbar_p)
    assert res.act[0] - res.base[0] == pytest.approx(planted, rel=1e-4)
    fa = faithfulness(pair, ids, w, cbar, p, res.edges[0])
    assert fa.ks[0] == 1 and fa.f[0] == pytest.approx(1.0, abs=1e-4)
    assert fa.n80 == 1 and fa.f[-1] == pytest.approx(1.0, abs=1e-4)


def _random_pair():
    sm = make_tiny_model(n_layers=3, d_model=16, seed=2)
    g = torch.Generator().manual_seed(0)
    q = torch.linalg.qr(torch.randn(16, 16, generator=g))[0]
    b2 = SignedLinearBasis("rot", "pca", q, q.T, torch.zeros(16), None)
    return Pair(
        sm, sm.hookpoint(HP1), sm.hookpoint("blocks.2.hook_resid_pre"), neuron_basis(16, k=8), b2
    )


def test_edge_matches_a_finite_difference_and_ig_is_complete():
    pair = _random_pair()
    ids = _ids(pair.sm, SENTENCE, 2)
    cbar, ebar = mean_codes(pair, _ids(pair.sm, "A dog ran to 12 red doors.", 1))
    w = torch.zeros(ids.shape)
    w[:, 4:] = 1.0
    feats = [0, 5, 17]
    res = edges(pair, ids, w, cbar, ebar, feats, batch_feats=2, ig_steps=16)
    assert res.backward_passes == 2 * 17  # per batch of features: 1 + ig_steps, not per edge
    c, err = pair.upstream(ids)
    dc = c - cbar
    for r, j in enumerate(feats):
        i = int(np.argmax(np.abs(res.edges[r])))
        assert abs(res.edges[r, i]) > 1e-3
        eps = 1e-3

        def m(t: float, i: int = i, j: int = j) -> float:
            cc = c.clone()
            cc[..., i] = c[..., i] + t * dc[..., i]
            with torch.no_grad():
                return float((pair.down(ids, cc, err)[..., j] * w).sum())

        fd = (m(eps) - m(-eps)) / (2 * eps)
        assert res.edges[r, i] == pytest.approx(fd, rel=2e-2, abs=1e-4)
        # integrated gradients over the codes add up to the actual change (error kept)
        total = res.act[r] - res.base[r]
        assert abs(total) > 1e-2
        assert res.ig[r].sum() == pytest.approx(total, rel=5e-2, abs=1e-4)
        # here the one-step linear sum is far off (the downstream ReLUs); IG is not
        assert abs(res.ig[r].sum() - total) < abs(res.edges[r].sum() - total)
        assert res.ig_gap[r] is None or res.ig_gap[r] >= 0


def test_faithfulness_of_all_features_is_one_and_linear_tracks_actual():
    pair = _random_pair()
    ids = _ids(pair.sm, SENTENCE, 1)
    cbar, ebar = mean_codes(pair, _ids(pair.sm, "A dog ran to 12 red doors.", 1))
    w = torch.ones(ids.shape)
    res = edges(pair, ids, w, cbar, ebar, [1])
    fa = faithfulness(pair, ids, w, cbar, 1, res.edges[0], n_linear=8)
    assert fa.ks == k_grid(32) == [1, 2, 4, 8, 16, 32]
    assert not fa.reason and fa.f[-1] == pytest.approx(1.0, abs=1e-4)
    assert min(fa.f) < 0.8 and fa.n80 is not None and fa.n80 > 1  # not a one-edge circuit
    assert len(fa.linear) == len(fa.actual) >= 3
    assert fa.lin_r is not None and -1.0 <= fa.lin_r <= 1.0


def test_pearson_and_grid_by_hand():
    assert pearson(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 7.0])) == pytest.approx(
        0.9933992677987828
    )
    assert pearson(np.ones(3), np.arange(3.0)) is None
    assert k_grid(1) == [1] and k_grid(5) == [1, 2, 4, 5] and k_grid(4) == [1, 2, 4]


def test_hookpoints_out_of_order_is_one_clear_error():
    sm = make_tiny_model(n_layers=2, d_model=16, seed=1)
    b = neuron_basis(16, k=None)
    with pytest.raises(AutointerpError, match="must come before"):
        Pair(sm, sm.hookpoint(HP2), sm.hookpoint(HP1), b, b)


def test_top_edges_listing_by_hand():
    from autointerp.circuits.edges import Edges
    from autointerp.circuits.listing import top_edges_md

    res = Edges(
        feats=[3],
        edges=np.array([[0.1, -0.5, 0.2]]),
        error=np.array([0.05]),
        act=np.array([1.0]),
        base=np.array([0.5]),
    )
    md = top_edges_md(res, "up", "down", {("up", 1): "a | b", ("down", 3): "cats"}, k=2)
    lines = md.splitlines()
    assert lines[0] == "### down #3: cats"
    assert "| up #1 | -0.5 | -1.00 | a / b |" in lines
    assert "| up #2 | +0.2 | +0.40 | (not explained) |" in lines
    assert "| up error | +0.05 | +0.10 | the upstream error term |" in lines
    assert not any(ln.startswith("| up #0 ") for ln in lines)

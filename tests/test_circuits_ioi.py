"""Known-answer tests of the circuits' IOI logit-difference faithfulness on tiny word models:
a planted feature that writes exactly the logit-difference direction, a finite difference on a
random model, batching, and the columns by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from autointerp.bases.linear import SignedLinearBasis, neuron_basis
from autointerp.causal.intervene import encode_with_error, hidden
from autointerp.causal.ioi_prompts import ioi_pairs
from autointerp.circuits.ioi import ioi_circuit, ioi_edges, logit_diff, prompts
from autointerp.circuits.ioi_summary import ioi_cells, ioi_curve
from tests.causal_tiny import tiny_word_model

OTHER = "The cat sat on the mat . A dog ran to 12 red doors ."


def _prompts(sm, n: int = 8):
    pairs = ioi_pairs(sm.tokenizer, n, seed=0, bos=sm.bos_token_id)
    return pairs, prompts(pairs, sm.tokenizer.eos_token_id)


def _mean(sm, hp, basis):
    ids = sm.tokenizer(OTHER, return_tensors="pt").input_ids
    c, e = encode_with_error(basis, hidden(sm, hp, ids))
    return c[0, 1:].mean(0), e[0, 1:].mean(0)


def _planted():
    """No final norm; every name's unembedding is ``z_n * v``, so the logit difference at the
    last position is ``(z_IO - z_S) v . h``; the upstream basis (at the last residual) is an
    orthonormal rotation whose first direction is ``v``, shifted so its + half is always on."""
    sm = tiny_word_model(n_layers=2, d_model=16, seed=3)
    sm.model.model.norm = torch.nn.Identity()
    g = torch.Generator().manual_seed(1)
    q = torch.linalg.qr(torch.randn(16, 16, generator=g))[0]
    v = 3.0 * q[:, 0]
    pairs, pr = _prompts(sm)
    names = sorted({p.io_id for p in pairs} | {p.s_id for p in pairs})
    z = {t: 1.0 + 0.5 * r for r, t in enumerate(names)}
    for t, zt in z.items():
        sm.model.lm_head.weight[t] = zt * v
    hp = sm.hookpoint("blocks.1.hook_resid_post")
    ids = sm.tokenizer(OTHER, return_tensors="pt").input_ids
    x = torch.cat([hidden(sm, hp, pr.ids).reshape(-1, 16), hidden(sm, hp, ids).reshape(-1, 16)])
    shift = float((x @ q[:, 0]).abs().max()) + 1.0
    basis = SignedLinearBasis("up", "pca", q, q.T, -shift * q[:, 0], None)
    return sm, hp, basis, pairs, pr, z, float(v.norm())


def test_planted_logit_difference_feature_is_found_and_fully_faithful():
    sm, hp, basis, pairs, pr, z, vn = _planted()
    cbar, ebar = _mean(sm, hp, basis)
    c, err = encode_with_error(basis, hidden(sm, hp, pr.ids))
    assert float(err.abs().max()) < 1e-4  # the rotation reconstructs exactly
    assert float(c[..., 16].abs().max()) == 0.0  # the - half of v never fires
    rec = ioi_circuit(sm, hp, basis, pr, cbar, ebar, ks=[1, 2, 4, 32], n_linear=4, top_edges=3)
    # by hand: edge_p0 = (z_IO - z_S) |v| (c_0(last) - cbar_0), every other edge 0
    last = c[torch.arange(len(pr)), pr.last, 0]
    dz = torch.tensor([z[p.io_id] - z[p.s_id] for p in pairs])
    hand = (dz * vn * (last - cbar[0])).double().numpy()
    assert np.abs(hand).min() > 1e-2
    res = ioi_edges(sm, hp, basis, pr, cbar, ebar, batch=3)
    assert res.backward_passes == math.ceil(len(pr) / 3)
    np.testing.assert_allclose(res.edges[:, 0], hand, rtol=1e-4, atol=1e-5)
    assert np.abs(res.edges[:, 1:]).max() < 1e-4 * np.abs(hand).max()
    assert rec["top"][0][0] == 0 and rec["top"][0][1] == pytest.approx(hand.sum(), rel=1e-4)
    # linear: the edge is the whole change, the error node nothing
    np.testing.assert_allclose(np.subtract(rec["act"], rec["base"]), hand, rtol=1e-4, atol=1e-5)
    assert np.abs(rec["error"]).max() < 1e-3
    # the model's own logit difference is m(all) (error kept: no edit)
    with torch.no_grad():
        for r, p in enumerate(pairs):
            lg = sm.model(input_ids=torch.tensor([p.clean_ids])).logits[0, -1]
            assert rec["act"][r] == pytest.approx(float(lg[p.io_id] - lg[p.s_id]), abs=1e-4)
    cells = ioi_cells(rec, 200, 0)
    assert cells["circ_ioi_f1"].value == pytest.approx(1.0, abs=1e-4)
    assert cells["circ_ioi_f4"].value == pytest.approx(1.0, abs=1e-4)
    assert cells["circ_ioi_f1"].ci_low == pytest.approx(1.0, abs=1e-4)
    assert cells["circ_ioi_n80"].value == 1 and cells["circ_ioi_n80"].n == len(pr)
    assert cells["circ_ioi_f16"].value is None and "not on the grid" in cells["circ_ioi_f16"].reason
    # the planted edge against its actual effect, the other top edges ~0 on both sides
    assert rec["lin_features"][0] == 0
    assert cells["circ_ioi_lin_r"].value == pytest.approx(1.0, abs=1e-4)
    assert rec["lin_actual"][0] == pytest.approx(rec["lin_edges"][0], rel=1e-4, abs=1e-5)


def _random():
    sm = tiny_word_model(n_layers=3, d_model=32, seed=0)
    hp = sm.hookpoint("blocks.0.hook_resid_post")
    return sm, hp, neuron_basis(32, k=None)


def test_pooled_edge_matches_a_finite_difference_and_batches_agree():
    sm, hp, basis = _random()
    pairs, pr = _prompts(sm, 8)
    assert len(set(pr.last.tolist())) > 1  # prompts of several lengths, right-padded
    cbar, ebar = _mean(sm, hp, basis)
    one = ioi_edges(sm, hp, basis, pr, cbar, ebar, batch=16)
    three = ioi_edges(sm, hp, basis, pr, cbar, ebar, batch=3)
    assert one.backward_passes == 1 and three.backward_passes == 3
    np.testing.assert_allclose(one.edges, three.edges, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(one.act, three.act, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # padding after a prompt does not change its logit difference
        for r, p in enumerate(pairs):
            lg = sm.model(input_ids=torch.tensor([p.clean_ids])).logits[0, -1]
            assert one.act[r] == pytest.approx(float(lg[p.io_id] - lg[p.s_id]), abs=1e-4)
    c, err = encode_with_error(basis, hidden(sm, hp, pr.ids))
    fx = pr.fixed[..., None]
    dc = c - torch.where(fx, c, cbar.expand_as(c))
    pooled = one.edges.sum(0)
    for i in np.argsort(-np.abs(pooled), kind="stable")[:3]:
        assert abs(pooled[i]) > 1e-2

        def m(t: float, i: int = int(i)) -> float:
            cc = c.clone()
            cc[..., i] += t * dc[..., i]
            with torch.no_grad():
                return float(logit_diff(sm, hp, basis, pr, cc, err).sum())

        eps = 1e-3
        fd = (m(eps) - m(-eps)) / (2 * eps)
        assert pooled[i] == pytest.approx(fd, rel=2e-2, abs=1e-4)


def test_faithfulness_of_all_features_is_one_and_linear_tracks_actual():
    sm, hp, basis = _random()
    _, pr = _prompts(sm, 8)
    cbar, ebar = _mean(sm, hp, basis)
    rec = ioi_circuit(sm, hp, basis, pr, cbar, ebar, ks=[1, 4, 16, 64], n_linear=6, top_edges=5)
    n = rec["n_prompts"]
    assert rec["m_k"][-1] == pytest.approx(rec["act"], abs=1e-5)  # k = all: nothing ablated
    change = (sum(rec["act"]) - sum(rec["base"])) / n
    assert abs(change) > 1e-2
    cells = ioi_cells(rec, 300, 0)
    f = [(sum(row) / n - sum(rec["base"]) / n) / change for row in rec["m_k"]]
    assert cells["circ_ioi_f1"].value == pytest.approx(f[0], rel=1e-6)
    assert cells["circ_ioi_f16"].value == pytest.approx(f[2], rel=1e-6)
    lo, hi = cells["circ_ioi_f1"].ci_low, cells["circ_ioi_f1"].ci_high
    assert lo <= f[0] <= hi and hi > lo
    n80 = next(k for k, v in zip(rec["ks"], f, strict=True) if v >= 0.8)
    assert cells["circ_ioi_n80"].value == n80
    r = cells["circ_ioi_lin_r"]
    assert len(rec["lin_features"]) >= 3 and r.value is not None and -1 <= r.value <= 1
    cv = ioi_curve(rec, [1, 4, 16, 8], 300, 0)
    assert cv["ks"] == [1, 4, 16, 8, "all"] and cv["mean"][3] is None
    assert cv["mean"][0] == pytest.approx(f[0]) and cv["mean"][4] == pytest.approx(1.0)


def test_ioi_cells_by_hand():
    rec = {
        "n_prompts": 2,
        "ks": [1, 4, 10],
        "act": [2.0, 4.0],
        "base": [0.0, 0.0],
        "m_k": [[1.0, 1.0], [2.0, 3.0], [2.0, 4.0]],
        "lin_edges": [[1.0, 1.0], [0.5, 0.5], [0.0, 1.0]],
        "lin_actual": [[1.0, 2.0], [0.0, 1.0], [0.5, 0.0]],
    }
    c = ioi_cells(rec, 500, 0)
    assert c["circ_ioi_f1"].value == pytest.approx(1 / 3)  # (1 - 0) / (3 - 0)
    assert c["circ_ioi_f4"].value == pytest.approx(5 / 6)
    assert c["circ_ioi_n80"].value == 4
    # resamples: prompts (0, 0) f1 = 1/2, (1, 1) f1 = 1/4, mixed 1/3
    assert 0.25 - 1e-9 <= c["circ_ioi_f1"].ci_low <= c["circ_ioi_f1"].ci_high <= 0.5 + 1e-9
    x, y = np.array([2.0, 1.0, 1.0]), np.array([3.0, 1.0, 0.5])
    assert c["circ_ioi_lin_r"].value == pytest.approx(float(np.corrcoef(x, y)[0, 1]))
    flat = dict(rec, act=[1.0, 1.0], base=[1.0, 1.0])
    u = ioi_cells(flat, 100, 0)
    assert u["circ_ioi_f1"].value is None and "unchanged" in u["circ_ioi_f1"].reason
    none = ioi_cells({"reason": "IOI needs names"}, 100, 0)
    assert all(v.value is None and v.reason == "IOI needs names" for v in none.values())


def test_stage_prompts_or_why_not():
    from autointerp.circuits.ioi import Prompts
    from autointerp.circuits.stage import ioi_prompts
    from autointerp.config import suite_from_dict
    from tests.conftest import make_tiny_model

    hps = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    suite = suite_from_dict({"model": {"hookpoints": hps}, "circuits": {"enabled": True}})
    pr = ioi_prompts(tiny_word_model(n_layers=2, d_model=16), suite)
    assert isinstance(pr, Prompts) and len(pr) == suite.circuits.ioi_prompts == 16
    assert pr.fixed[:, 0].all() and not pr.fixed[0, 1 : int(pr.last[0]) + 1].any()
    assert "single-token names" in ioi_prompts(make_tiny_model(n_layers=2, d_model=16), suite)
    off = suite.model_copy(
        update={"circuits": suite.circuits.model_copy(update={"ioi_prompts": 0})}
    )
    assert ioi_prompts(make_tiny_model(n_layers=2, d_model=16), off) == "ioi_prompts = 0 (off)"


def test_report_has_the_ioi_columns_section_and_figure_row(tmp_path):
    from autointerp.circuits.report import plot, render_md
    from autointerp.circuits.summary import stage_columns

    feat = {"feature": 3, "act": 2.0, "base": 1.0, "error": 0.1, "top": [[0, 0.5]],
            "ks": [1, 8], "f": [0.5, 1.0], "n80": 8, "lin_r": None, "ig_gap": None}  # fmt: skip
    ioi = {"n_prompts": 2, "n_up": 8, "ks": [1, 8], "act": [2.0, 4.0], "base": [0.0, 0.0],
           "m_k": [[1.0, 1.0], [2.0, 4.0]], "error": [0.1, 0.3], "edge_sum": [1.5, 2.5],
           "top": [[5, 2.0]], "lin_features": [], "lin_edges": [], "lin_actual": []}  # fmt: skip
    pair = {"up": "L1", "down": "L2", "up_folder": "a", "down_folder": "b",
            "bases": {"sae": {"features": [feat], "n_up": 8, "ioi": ioi},
                      "random": {"features": [feat], "ioi": {"reason": "no names"}}}}  # fmt: skip
    value = {"pairs": [pair], "config": {"ks": [1, 4], "n_bootstrap": 50, "ig_steps": 0}}
    md = render_md(value, {"L1": {("sae", 5): "names"}})
    assert "circ_ioi_f1" in md and "| sae #5 | +1 | +0.33 | names |" in md
    assert "f(1)=0.33" in md and "Not measured: no names" in md
    from autointerp.circuits.graph import render_graph

    page = render_graph(value, {"L1": {("sae", 5): "names"}}, {"random": "random"})
    assert "IOI logit difference" in page and 'href="a/browser/index.html#open=sae%3A5"' in page
    assert "f(k): 1: 0.33, 8: 1.00" in page and "not measured: no names" in page
    cols = stage_columns(pair, 50, 0, ig=False)
    assert cols.rows["sae"]["circ_ioi_f1"].value == pytest.approx(1 / 3)
    assert cols.rows["random"]["circ_ioi_n80"].reason == "no names"
    from PIL import Image

    one = Image.open(plot({**value, "pairs": [{**pair, "bases": {"sae": {"features": [feat]}}}]},
                          tmp_path / "one", {}))  # fmt: skip
    two = Image.open(plot(value, tmp_path / "two", {"random": "random"}))
    assert two.size[1] > 1.8 * one.size[1]  # the IOI row under the features' row

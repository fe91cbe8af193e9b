"""The circuits sweep stage and its parts: per-feature contexts in one backward pass, fixed
positions, top contexts and the columns' statistics by hand, the config, and a tiny sweep with
the stage on end to end (columns in the downstream run, figure, markdown, graph page)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import torch

from autointerp.bases.linear import neuron_basis
from autointerp.circuits.contexts import fixed_mask, top_contexts
from autointerp.circuits.edges import edges, mean_codes
from autointerp.circuits.faithfulness import faithfulness
from autointerp.circuits.summary import basis_cells, curve
from autointerp.config import suite_from_dict
from autointerp.errors import ConfigError
from tests.conftest import SENTENCE
from tests.test_circuits import OTHER, _ids, _planted, _random_pair


def test_per_feature_contexts_in_one_pass_equal_separate_calls():
    pair = _random_pair()
    a = _ids(pair.sm, SENTENCE, 2)
    b = _ids(pair.sm, OTHER, 2)[:, : a.shape[1]]
    ids = torch.stack([a, b, torch.cat([a[:1], b[:1]])])  # [J=3, B=2, T]
    w = torch.zeros(ids.shape)
    w[..., 3:] = 1.0
    w[1, :, 5] = 2.0
    cbar, ebar = mean_codes(pair, _ids(pair.sm, "A dog ran to 12 red doors.", 1))
    feats = [0, 5, 17]
    res = edges(pair, ids, w, cbar, ebar, feats, batch_feats=2)
    assert res.backward_passes == 2  # ceil(3 / 2): one per batch of features
    for k, j in enumerate(feats):
        one = edges(pair, ids[k], w[k], cbar, ebar, [j])
        assert np.abs(one.edges[0]).max() > 1e-3
        np.testing.assert_allclose(res.edges[k], one.edges[0], rtol=1e-4, atol=1e-5)
        assert res.act[k] == pytest.approx(one.act[0], rel=1e-5, abs=1e-6)
        assert res.base[k] == pytest.approx(one.base[0], rel=1e-5, abs=1e-6)
        assert res.error[k] == pytest.approx(one.error[0], rel=1e-4, abs=1e-5)
    with pytest.raises(ValueError, match="contexts of 3 features"):
        edges(pair, ids, w, cbar, ebar, [0, 1])


def test_fixed_positions_carry_no_edge_and_stay_at_their_actual_codes():
    pair = _planted(weight=2.0)
    ids = _ids(pair.sm, SENTENCE, 2)
    cbar, ebar = mean_codes(pair, _ids(pair.sm, OTHER, 1))
    w = torch.ones(ids.shape)
    fixed = torch.zeros(ids.shape, dtype=torch.bool)
    fixed[:, 0] = True
    fixed[1, 4] = True
    c, _ = pair.upstream(ids)
    d = pair.sm.d_model
    p = int((c[..., :d] - cbar[:d]).sum((0, 1)).abs().argmax())
    res = edges(pair, ids, w, cbar, ebar, [p], fixed=fixed)
    free = (~fixed).float()
    planted = 2.0 * float(((c[..., p] - cbar[p]) * free).sum())
    assert abs(planted) > 0.1
    assert res.edges[0, p] == pytest.approx(planted, rel=1e-4)
    # m(none): the fixed positions keep their codes, the rest sit at the mean
    m_none = 2.0 * float((c[..., p] * fixed + cbar[p] * free).sum())
    assert res.base[0] == pytest.approx(m_none, rel=1e-4)
    assert res.act[0] - res.base[0] == pytest.approx(planted, rel=1e-4)
    fa = faithfulness(pair, ids, w, cbar, p, res.edges[0], fixed=fixed)
    assert fa.f[0] == pytest.approx(1.0, abs=1e-4) and fa.n80 == 1


def test_top_contexts_by_hand():
    acts = np.zeros((5, 6, 3), dtype=np.float32)
    tokens = np.arange(30).reshape(5, 6) + 100
    special = np.zeros((5, 6), dtype=bool)
    acts[2, 3, 0] = 5.0
    acts[4, 1, 0] = 3.0
    acts[0, 2, 0] = 1.0
    acts[1, 0, 0] = 100.0  # position 0: the attention sink, never a top token
    acts[3, 2, 0] = 9.0
    special[3, 2] = True  # a special token, never a top token
    acts[0, 4, 1] = 2.0  # feature 1 fires in one row only
    b = neuron_basis(3, k=None)  # codes: relu(x) then relu(-x)
    ctx = top_contexts(b, acts, tokens, special, np.arange(5), [0, 1], 2, chunk=2)
    assert ctx.feats == [0] and "fires in 1 of the 5 pool rows" in ctx.skipped[1]
    assert ctx.rows.tolist() == [[2, 4]] and ctx.pos.tolist() == [[3, 1]]
    assert ctx.top.tolist() == [[5.0, 3.0]]
    assert ctx.ids.shape == (1, 2, 4)  # cropped after the last top token
    assert ctx.ids[0, 0].tolist() == tokens[2, :4].tolist()
    assert ctx.weights[0].tolist() == [[0, 0, 0, 1], [0, 1, 0, 0]]
    assert ctx.fixed[0, :, 0].all() and not ctx.fixed[0, :, 1:].any()
    assert fixed_mask(special)[3].tolist() == [True, False, True, False, False, False]


def _feat(f, n80, lin_r, ks=(1, 4, 16, 100)):
    return {"ks": list(ks), "f": f, "n80": n80, "lin_r": lin_r, "ig_gap": None}


def test_columns_by_hand():
    feats = [
        _feat([0.5, 0.9, 1.0, 1.0], 4, 0.8),
        _feat([0.1, 0.3, 0.85, 1.0], 16, 0.4),
        _feat([0.9, 1.0, 1.0, 1.0], 1, None),
        _feat([None] * 4, None, 0.1),  # undefined: mean ablation changes nothing
    ]
    cells = basis_cells(feats, 200, 0, ig=False)
    assert cells["circ_f1"].value == pytest.approx(0.5) and cells["circ_f1"].n == 3
    assert cells["circ_f1"].ci_low <= 0.5 <= cells["circ_f1"].ci_high
    assert cells["circ_f4"].value == pytest.approx((0.9 + 0.3 + 1.0) / 3)
    assert cells["circ_f16"].value == pytest.approx((1.0 + 0.85 + 1.0) / 3)
    assert cells["circ_n80"].value == 4 and cells["circ_n80"].n == 3  # median of 4, 16, 1
    assert cells["circ_lin_r"].value == pytest.approx((0.8 + 0.4 + 0.1) / 3)
    assert "circ_ig_gap" not in cells
    none = basis_cells([feats[3]], 200, 0, ig=True)
    assert none["circ_f1"].value is None and "no downstream feature" in none["circ_f1"].reason
    assert none["circ_ig_gap"].value is None
    cv = curve(feats, [1, 4, 8], 200, 0)
    assert cv["ks"] == [1, 4, 8, "all"] and cv["mean"][2] is None  # 8 is on no feature's grid
    assert cv["mean"][0] == pytest.approx(0.5) and cv["mean"][3] == pytest.approx(1.0)


def test_circuits_config():
    base = {"model": {"hookpoints": ["blocks.1.hook_resid_post", "blocks.3.hook_resid_post"]}}
    s = suite_from_dict({**base, "circuits": {"enabled": True}})
    assert s.circuits.enabled and s.model_dump()["circuits"]["n_contexts"] == 4
    assert "circuits" not in suite_from_dict(base).model_dump()  # hashes as before
    with pytest.raises(ConfigError, match="needs two or more hookpoints"):
        suite_from_dict({"circuits": {"enabled": True}})
    from autointerp.sweep.members import member_suites

    assert all(not m.circuits.enabled for m in member_suites(s).values())


def test_tiny_sweep_with_circuits(tmp_path, monkeypatch):
    import polars as pl

    from autointerp.pipeline import run_suite
    from tests.test_sweep import HOOKS, _tiny_dict, to_toml

    d = _tiny_dict(tmp_path)
    d["circuits"] = {"enabled": True, "n_features": 5, "n_contexts": 2, "n_pool_rows": 32,
                     "ks": [1, 2], "n_linear": 3, "batch_features": 2, "top_edges": 3,
                     "n_bootstrap": 100}  # fmt: skip
    monkeypatch.setenv("AUTOINTERP_CACHE_DIR", str(tmp_path / "cache"))
    toml = tmp_path / "sweep.toml"
    toml.write_text(to_toml(d))
    kw = {"results_root": tmp_path / "res", "run_name": "r", "work_dir": tmp_path / "w",
          "progress": False}  # fmt: skip
    root = run_suite(toml, **kw)
    sweep = json.loads((root / "sweep.json").read_text())
    status = {r["stage"]: r["status"] for r in sweep["stages"]}
    assert status["circuits"] == "computed"
    value = json.loads(next((root / "stages").glob("circuits-*.json")).read_text())
    (pair,) = value["pairs"]
    assert (pair["up"], pair["down"]) == tuple(HOOKS)
    assert set(pair["bases"]) == {"sae", "pca", "neurons", "random"}
    rec = pair["bases"]["pca"]
    # the 3 explained features first, then 2 more alive ones (or the reason each was skipped)
    got = [f["feature"] for f in rec["features"]] + [int(k) for k in rec["skipped"]]
    explained = (
        pl.read_parquet(root / HOOKS[1] / "features.parquet")
        .filter(pl.col("basis") == "pca")["feature"]
        .to_list()
    )
    assert len(got) == 5 and set(explained) <= set(got)
    assert rec["features"] and rec["backward_passes"] == math.ceil(len(rec["features"]) / 2)
    for f in rec["features"]:
        assert f["ks"][-1] == rec["n_up"] and len(f["top"]) == 3 and len(f["contexts"]) == 2
        assert f["f"][-1] is None or f["f"][-1] == pytest.approx(1.0, abs=1e-3)
    # the columns are in the downstream run's causal table (and not the upstream's)
    down, up = root / HOOKS[1], root / HOOKS[0]
    cols = json.loads((down / "columns" / "circuits.json").read_text())
    assert {"circ_f1", "circ_n80", "circ_lin_r"} <= {c["name"] for c in cols["columns"]}
    assert not (up / "columns" / "circuits.json").exists()
    # the character tokenizer has no one-token names: the IOI columns are undefined, with why
    assert "single-token names" in rec["ioi"]["reason"]
    ioi_cell = cols["rows"]["pca"]["circ_ioi_f1"]
    assert ioi_cell["value"] is None and "single-token names" in ioi_cell["reason"]
    assert "circ_f1" in (down / "leaderboard.md").read_text()
    csv = pl.read_csv(root / "leaderboard.csv").filter(pl.col("table") == "full")
    rows = csv.filter((pl.col("hookpoint") == HOOKS[1]) & (pl.col("basis") == "pca"))
    assert rows["circ_f1"].to_list()[0] == pytest.approx(cols["rows"]["pca"]["circ_f1"]["value"])
    assert rows["circ_f1_ci_low"].to_list()[0] <= rows["circ_f1"].to_list()[0]
    md = (root / "leaderboard.md").read_text()
    assert "[circuits.md](circuits.md)" in md and "circ_f1" in md
    assert (root / "circuits.png").read_bytes()[:4] == b"\x89PNG"
    assert (
        "## blocks.0.hook_resid_post -> blocks.2.hook_resid_post"
        in (root / "circuits.md").read_text()
    )
    page = (root / "circuits.html").read_text()
    j = rec["features"][0]["feature"]
    assert f"{HOOKS[1]}/browser/index.html#open=pca%3A{j}" in page
    assert (down / "browser" / "index.html").exists()
    assert 'href="circuits.html"' in (root / "leaderboard.html").read_text()
    # a rerun takes the stage from its cache
    run_suite(toml, **kw)
    again = {
        r["stage"]: r["status"] for r in json.loads((root / "sweep.json").read_text())["stages"]
    }
    assert again["circuits"] == "cached"
    _attribute_page_links_resolve(root, tmp_path / "w")


def _browser_rows(browser: Path) -> set[tuple[str, int]]:
    rows = set()
    for p in browser.glob("data/list-*.js"):
        text = p.read_text()
        payload = json.loads(text[len("window.AI.add(") : text.rindex(");")])
        rows |= {(r[0], int(r[1])) for r in payload["rows"]}
    return rows


def _attribute_page_links_resolve(root: Path, work_dir: Path) -> None:
    """``attribute`` on the sweep: one page over both hookpoints; every feature link opens an
    existing feature page of its member's browser, and each browser's index links back."""
    import polars as pl

    from autointerp.circuits.command import attribute
    from tests.test_sweep import HOOKS

    md, paths = attribute(
        root, "The cat sat on the", " mat", " dog", top=100_000, work_dir=work_dir, name="cat"
    )
    page = root / "attribute" / "cat.html"
    assert paths[:2] == [root / "attribute" / "cat.md", page]
    assert (root / "attribute" / "cat.md").read_text() == md
    html = page.read_text()
    assert all(f"<h2>{h}</h2>" in html and f"## {h}" in md for h in HOOKS)
    hrefs = re.findall(r'href="([^"#]+)#open=([^"]+)"', html)
    explained = sum(len(pl.read_parquet(root / h / "features.parquet")) for h in HOOKS)
    # every feature is listed: each explained one links, in the top list and the explained one
    assert len(hrefs) == 2 * explained > 0
    assert md.count("Explained features, by rank among all:") == 2 * 4  # hookpoints x bases
    for path, frag in hrefs:
        target = (page.parent / unquote(path)).resolve()
        assert target.name == "index.html" and target.exists()
        basis, fid = unquote(frag).rsplit(":", 1)
        assert (basis, int(fid)) in _browser_rows(target.parent)
    for h in HOOKS:
        index = root / h / "browser" / "index.html"
        assert 'href="../../attribute/cat.html"' in index.read_text()
        assert (index.parent / "../../attribute/cat.html").resolve() == page.resolve()


def test_bundled_circuits_suite():
    from autointerp.config import load_suite

    s = load_suite("evals/circuits.toml")
    assert s.circuits.enabled and s.model.sweep_hookpoints == [
        "blocks.3.hook_resid_post",
        "blocks.6.hook_resid_post",
    ]
    assert [b.kind for b in s.bases] == ["sae", "pca", "ica", "neurons", "random"]
    assert s.records.n_features <= s.circuits.n_features  # explained ones first, then more

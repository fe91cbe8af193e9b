"""Reuse keyed by content (issue 33, item 7), on a tiny word-level model with no LLM:

* a SAELens checkpoint whose ``W_dec`` is scaled x3 in place changes every stage key after
  the bases: nothing is reused, the values are fresh; the finished run made with the old
  weights is left byte-identical and the new one goes to ``<run>-w<hash>``;
* a fitted basis whose cached weights differ (as another CPU fits them) does the same, and
  the bases whose weights match are still reused;
* the same weights: everything cached, in the same directory, nothing computed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from autointerp.config import suite_from_dict
from autointerp.pipeline import SuiteRun
from tests.test_causal_stages import no_llm, tiny_suite  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("no_llm")

HOOK = "blocks.1.hook_resid_post"
AFTER_BASES = ("ioi", "attribution", "metrics", "density", "records", "ablation", "output")
PER_BASIS = ("metrics", "density", "records")  # one item per basis


def write_checkpoint(d: Path, d_in: int = 32, d_sae: int = 64) -> Path:
    """A SAELens TopK checkpoint (random weights, unit-norm decoder rows)."""
    g = torch.Generator().manual_seed(0)
    w_dec = torch.randn(d_sae, d_in, generator=g)
    w_dec = w_dec / w_dec.norm(dim=1, keepdim=True)
    t = {
        "W_enc": w_dec.T.contiguous(),
        "b_enc": torch.zeros(d_sae),
        "W_dec": w_dec,
        "b_dec": torch.zeros(d_in),
    }
    d.mkdir(parents=True, exist_ok=True)
    cfg = {"architecture": "topk", "d_in": d_in, "d_sae": d_sae, "k": 4, "dtype": "float32",
           "apply_b_dec_to_input": True, "normalize_activations": "none",
           "metadata": {"model_name": "tiny-words", "hook_name": HOOK}}  # fmt: skip
    (d / "cfg.json").write_text(json.dumps(cfg))
    save_file(t, str(d / "sae_weights.safetensors"))
    return d


def tree(d: Path) -> dict[str, str]:
    """sha256 of every file under ``d`` but the lock."""
    return {
        p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def run(tmp_path: Path, suite) -> tuple[Path, dict[str, str], dict[str, str | None], SuiteRun]:
    r = SuiteRun(suite, results_root=tmp_path / "res", run_name="r", work_dir=tmp_path / "w",
                 llm_cache=tmp_path / "llm.sqlite", progress=False)  # fmt: skip
    rd = r.run()
    status = {row["stage"]: row["status"] for row in r.summary()}
    return rd, status, dict(r.runner.hashes), r


def metrics_of(rd: Path) -> dict[str, dict]:
    import polars as pl

    return {row["basis"]: row for row in pl.read_parquet(rd / "metrics.parquet").to_dicts()}


def test_scaled_checkpoint_changes_every_key_and_leaves_the_old_run(tmp_path, caplog):
    ck = write_checkpoint(tmp_path / "ck")
    d = tiny_suite(tmp_path).model_dump()
    d["bases"] = [{"kind": "sae", "name": "plug", "path": str(ck), "allow_mismatch": True},
                  {"kind": "pca", "l0": 4}]  # fmt: skip
    d["causal"]["ioi"]["n_pairs"] = 4
    suite = suite_from_dict(d)
    rd1, st1, h1, _ = run(tmp_path, suite)
    files = tree(rd1)
    man = json.loads((rd1 / "manifest.json").read_text())
    assert set(man["weights"]) == {"plug", "pca"} and all(man["weights"].values())
    fvu1 = metrics_of(rd1)["plug"]["fvu"]

    # (c) the same weights: the same directory, every stage cached, nothing computed
    rd2, st2, h2, r2 = run(tmp_path, suite)
    assert rd2 == rd1 and h2 == h1 and not r2.runner.computed_anything(), st2
    assert all(s in ("cached", "ran", "nothing to do") or s.startswith("cached") for s in
               st2.values()), st2  # fmt: skip
    before = tree(rd1)  # a rerun rewrites only the manifest's timings and the tables
    assert before.keys() == files.keys()

    # (a) W_dec x3 in place (same path, same config)
    w = ck / "sae_weights.safetensors"
    t = load_file(str(w))
    t["W_dec"] = t["W_dec"] * 3
    save_file(t, str(w))
    with caplog.at_level(logging.WARNING):
        rd3, st3, h3, r3 = run(tmp_path, suite)
    assert st3["gate"] == "computed", st3
    rows = {r["stage"]: r for r in r3.summary()}
    for s in AFTER_BASES:  # every key changed; only the PCA's own items are reused
        assert h3[s] != h1[s], s
        row = rows[s]
        assert row["computed"] >= 1, row
        assert row["cached"] + row["reused"] == (s in PER_BASIS), row
    assert metrics_of(rd3)["plug"]["fvu"] != pytest.approx(fvu1, rel=1e-3)
    gate = json.loads((rd3 / "manifest.json").read_text())["gate"]["plug"]
    assert gate["l2_ratio"] == pytest.approx(3 * json.loads(
        (rd1 / "manifest.json").read_text())["gate"]["plug"]["l2_ratio"], rel=1e-3)  # fmt: skip

    # (b) the finished run of the old weights is untouched; the new one has its own directory
    assert rd3 != rd1 and rd3.name.startswith(f"{rd1.name}-w") and rd3.parent == rd1.parent
    assert tree(rd1) == before
    line = [r.getMessage() for r in caplog.records if "not rewriting" in r.getMessage()]
    assert len(line) == 1 and "plug" in line[0] and str(rd3) in line[0], line
    assert "pca" not in line[0].split("instead")[0].split("bases")[1].split("had")[0]
    # the rerun of the new weights reuses that directory
    rd4, st4, _, r4 = run(tmp_path, suite)
    assert rd4 == rd3 and not r4.runner.computed_anything(), st4


def test_a_refit_basis_with_other_weights_writes_a_new_run_dir(tmp_path, caplog):
    """Another CPU fits PCA in other float detail: simulated by perturbing the fitted PCA
    cached in the work dir. Its stages are computed again in a new directory; the bases whose
    weights match (neurons) are reused from the first run."""
    d = tiny_suite(tmp_path).model_dump()
    d["bases"] = [{"kind": "pca", "l0": 4}, {"kind": "neurons", "l0": 4}]
    d["causal"]["ioi"]["enabled"] = False
    suite = suite_from_dict(d)
    rd1, _, h1, _ = run(tmp_path, suite)
    before = tree(rd1)
    (folder,) = (tmp_path / "w" / "bases").glob("pca-*")
    w = folder / "weights.safetensors"
    t = load_file(str(w))
    t["D"] = t["D"] * (1 + 1e-6)  # float detail
    save_file(t, str(w))
    with caplog.at_level(logging.WARNING):
        rd2, st2, h2, _ = run(tmp_path, suite)
    assert rd2 != rd1 and tree(rd1) == before
    assert any("not rewriting" in r.getMessage() and "pca" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert st2["metrics"] == "computed 1, reused from another run 1", st2
    assert st2["records"] in ("computed 1, reused from another run 1", "computed 1, cached 1"), st2
    for s in ("attribution", "metrics", "density", "records", "ablation", "output"):
        assert h2[s] != h1[s], s

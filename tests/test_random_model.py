"""The random-model null: seeded re-initialisation of the non-embedding weights, every
model-dependent key salted by it (and unchanged without it), and the trained-minus-random
table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from autointerp import stats
from autointerp.config import Suite, load_suite, suite_from_dict
from autointerp.reinit import reinit_model
from autointerp.report import load_run
from autointerp.report.compare import NO_FEATURE_CI, compare_runs, render_diff_markdown
from autointerp.stages.env import model_salt, protocol_of
from tests.conftest import make_tiny_model
from tests.synthetic_runs import score, write_run

REPO = Path(__file__).resolve().parents[1]


def _params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("tied", [False, True])
def test_reinit_is_seeded_keeps_embeddings_and_redraws_the_rest(tied):
    sm = make_tiny_model()
    if tied:
        sm.model.config.tie_word_embeddings = True
        sm.model.lm_head.weight = sm.model.model.embed_tokens.weight
    with torch.no_grad():  # trained norms are not 1 (a fresh tiny model's are)
        for n, p in sm.model.named_parameters():
            if "norm" in n:
                p.uniform_(0.5, 1.5)
    before = _params(sm.model)
    rep = reinit_model(sm.model, seed=0)
    after = _params(sm.model)
    std = sm.model.config.initializer_range
    emb = "model.embed_tokens.weight"
    assert torch.equal(after[emb], before[emb])
    assert torch.equal(sm.model.lm_head.weight, before["lm_head.weight" if not tied else emb])
    kept = {emb} | ({"lm_head.weight"} if not tied else set())
    assert set(rep.kept) == kept
    for n in after:
        if n in kept:
            continue
        assert not torch.equal(after[n], before[n]), n  # every non-embedding weight changed
        if "norm" in n:  # the final norm included: HF init, weight 1
            assert torch.all(after[n] == 1), n
        else:
            assert after[n].ndim == 2, n
            assert abs(float(after[n].std()) - std) < 0.25 * std, n
            assert abs(float(after[n].mean())) < 0.25 * std, n
    assert "model.norm.weight" in rep.constant
    # the same seed gives the same weights, another seed others
    again = make_tiny_model()
    if tied:
        again.model.lm_head.weight = again.model.model.embed_tokens.weight
    reinit_model(again.model, seed=0)
    assert all(torch.equal(p, after[n]) for n, p in again.model.named_parameters())
    other = make_tiny_model()
    reinit_model(other.model, seed=1)
    q = dict(other.model.named_parameters())["model.layers.0.mlp.up_proj.weight"]
    assert not torch.equal(q, after["model.layers.0.mlp.up_proj.weight"])


def test_keys_salted_by_reinit_and_unchanged_without_it():
    plain = Suite()
    d = plain.model_dump()
    assert "reinit" not in d["model"]  # dumps (and so config / metrics / gate hashes) as before
    assert model_salt(plain) == {} and "reinit" not in protocol_of(plain)
    d["model"]["reinit"] = {"seed": 0}
    rnd = suite_from_dict(d)
    assert rnd.model.reinit is not None and rnd.model.reinit.seed == 0
    assert protocol_of(rnd)["reinit"] == {"seed": 0}
    assert protocol_of(rnd) != protocol_of(plain)
    d["model"]["reinit"] = {"seed": 1}
    assert protocol_of(suite_from_dict(d)) != protocol_of(rnd)
    from autointerp.stages.activations import acts_key

    class Ctx:
        upstream = {"tokens": "t"}

        def __init__(self, s):
            self.env = type("E", (), {"suite": s})()

    assert acts_key(Ctx(plain), {}) == {
        "tokens": "t", "model": plain.model.name, "hook": plain.model.hookpoint, "dt": "float32"
    }  # fmt: skip
    assert acts_key(Ctx(rnd), {}) != acts_key(Ctx(plain), {})


def test_random_model_suite_is_the_default_plus_reinit():
    rnd = load_suite(REPO / "evals" / "random-model.toml")
    base = load_suite(REPO / "evals" / "default.toml")
    assert rnd.model.reinit is not None
    a, b = rnd.model_dump(), base.model_dump()
    a["model"].pop("reinit")
    a.pop("name"), b.pop("name")
    assert a == b  # the same bases, explanations, scores: only the weights differ


def test_tiny_suite_trained_and_random_share_nothing_model_dependent(tmp_path):
    """Both runs in one work dir: the random run reuses only the tokens (same tokenizer);
    its activations differ; a second trained run reuses the first's stages."""
    from autointerp.pipeline import SuiteRun

    sm = make_tiny_model()
    md = tmp_path / "tiny"
    sm.model.save_pretrained(md)
    sm.tokenizer.save_pretrained(md)
    text = tmp_path / "corpus.txt"
    text.write_text("The cat sat on the mat. A dog ran to 12 red doors. " * 200)

    def suite(reinit):
        d = {
            "name": "rm",
            "model": {"name": str(md), "hookpoint": "blocks.1.hook_resid_post"},
            "corpus": {"source": str(text), "context": 16, "n_tokens": 1024},
            "bases": [{"kind": "pca", "l0": 4}, {"kind": "neurons", "l0": 4}],
            "records": {"n_features": 3},
            "metrics": {"n_tokens": 64, "ablations": ["zero"]},
            "explain": {"style": "top_tokens"},
            "scoring": {"scorers": [], "shuffled_null": False},
        }
        if reinit is not None:
            d["model"]["reinit"] = {"seed": reinit}
        return suite_from_dict(d)

    def run(name, reinit):
        kw = {"work_dir": tmp_path / "w", "llm_cache": tmp_path / "llm.sqlite"}
        r = SuiteRun(suite(reinit), results_root=tmp_path / "res", run_name=name,
                     progress=False, **kw)  # fmt: skip
        rd = r.run()
        return rd, {row["stage"]: row["status"] for row in r.summary()}

    rd_t, _ = run("trained", None)
    rd_r, st = run("random", 0)
    assert st["tokens"] == "cached"  # the tokenizer is the trained one
    for stage in ("activations", "metrics", "density", "records", "diagnostics"):
        assert "reused" not in st[stage] and "cached" not in st[stage].split(",")[0], (stage, st)
    acts = sorted((tmp_path / "w").glob("acts-*.npy"))
    assert len(acts) == 2
    a0, a1 = (np.load(p, mmap_mode="r") for p in acts)
    assert not np.allclose(np.asarray(a0[:4]), np.asarray(a1[:4]))
    m_t = json.loads((rd_t / "manifest.json").read_text())
    m_r = json.loads((rd_r / "manifest.json").read_text())
    assert m_t["protocol_id"] != m_r["protocol_id"]
    _, st2 = run("trained2", None)
    assert st2["activations"] == "cached"
    assert st2["records"].startswith("reused from another run")
    # the comparison of the two real runs: one table per basis, fvu differences exact
    diffs = {d.basis: d for d in compare_runs(load_run(rd_t), load_run(rd_r), n_boot=50)}
    # pca-full: the IOI stage's full PCA rotation, a causal-only row both runs have
    assert set(diffs) == {"pca", "neurons", "pca-full"}
    row = diffs["pca"].table.filter(diffs["pca"].table["column"] == "fvu").row(0, named=True)
    assert row["difference"] == pytest.approx(row["trained"] - row["random"])
    assert row["trained"] != row["random"]


def _runs(tmp_path):
    trained = [score("sae", 0, 0.5), score("sae", 1, 0.3), score("sae", 2, None)]
    trained += [score("random", 0, 0.1), score("random", 1, 0.0)]
    random = [score("sae", 0, 0.1), score("sae", 1, 0.2), score("sae", 2, 0.0)]
    random += [score("random", 0, 0.05)]
    bases = [("sae", "sae", 16), ("random", "random", 16)]
    mt = [{"basis": "sae", "fvu": 0.2, "ce_loss_score": 0.9}, {"basis": "random", "fvu": 0.9}]
    mr = [{"basis": "sae", "fvu": 0.5, "ce_loss_score": None}, {"basis": "random", "fvu": 0.95}]
    t = write_run(tmp_path / "t" / "run", bases=bases, scores=trained, metrics=mt)
    r = write_run(tmp_path / "r" / "run", bases=bases, scores=random, metrics=mr,
                  protocol_id="p2")  # fmt: skip
    return t, r


def test_minus_table_hand_computed(tmp_path):
    t, r = _runs(tmp_path)
    diffs = {d.basis: d for d in compare_runs(load_run(t), load_run(r), n_boot=200, seed=3)}
    rows = {x["column"]: x for x in diffs["sae"].table.to_dicts()}
    sim = rows["sim_score"]
    assert sim["trained"] == pytest.approx(0.4) and sim["random"] == pytest.approx(0.1)
    assert sim["difference"] == pytest.approx(0.3)
    want = stats.lift([0.5, 0.3], [0.1, 0.2, 0.0], paired=False, n_boot=200, seed=3)
    assert (sim["ci_low"], sim["ci_high"]) == pytest.approx((want.low, want.high))
    assert sim["note"] == "bootstrap, 2 vs 3 features"
    fvu = rows["fvu"]
    assert fvu["difference"] == pytest.approx(-0.3) and fvu["ci_low"] is None
    assert fvu["note"] == NO_FEATURE_CI
    ce = rows["ce_loss_score"]  # undefined on one side: no difference, with the reason
    assert ce["difference"] is None and ce["note"] == "undefined in the random run"
    assert diffs["random"].table.filter(diffs["random"].table["column"] == "fvu")[
        "difference"
    ].to_list() == pytest.approx([-0.05])
    md = render_diff_markdown(load_run(t), load_run(r), list(diffs.values()))
    assert "## sae" in md and "| sim_score | 0.4 | 0.1 | 0.3 [" in md


def test_leaderboard_minus_command(tmp_path):
    t, r = _runs(tmp_path)
    out = tmp_path / "diff.csv"
    cmd = [sys.executable, "-m", "autointerp", "leaderboard", str(t), "--minus", str(r),
           "--format", "csv", "--out", str(out), "--n-boot", "50"]  # fmt: skip
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    head = out.read_text().splitlines()[0]
    assert head == "basis,method,column,trained,random,difference,ci_low,ci_high,note"
    bad = [*cmd[:4], str(tmp_path), "--minus", str(r)]
    bad = subprocess.run(bad, capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "holds 2 runs" in bad.stderr


def test_minus_lift_vs_shuffled_hand_computed(tmp_path):
    """Lift vs shuffled per feature (real − shuffled explanation), then trained − random: trained
    features lift 0.5 − 0.3 = 0.2 and 0.3 − 0.1 = 0.2, random-model ones 0.2 − 0.1 = 0.1 and
    0.1 − 0.0 = 0.1, so the difference is 0.2 − 0.1 = 0.1."""
    bases = [("sae", "sae", 16), ("random", "random", 16)]

    def rows(real, shuf):
        out = [score("sae", i, v) for i, v in enumerate(real)]
        return out + [score("sae", i, v, null="shuffled") for i, v in enumerate(shuf)]

    t = write_run(tmp_path / "t" / "run", bases=bases, scores=rows([0.5, 0.3], [0.3, 0.1]),
                  metrics=[{"basis": "sae", "fvu": 0.2}])  # fmt: skip
    r = write_run(tmp_path / "r" / "run", bases=bases, scores=rows([0.2, 0.1], [0.1, 0.0]),
                  metrics=[{"basis": "sae", "fvu": 0.5}], protocol_id="p2")  # fmt: skip
    (d,) = [d for d in compare_runs(load_run(t), load_run(r), n_boot=200, seed=1)
            if d.basis == "sae"]  # fmt: skip
    lift = d.table.filter(d.table["column"] == "lift_vs_shuffled").row(0, named=True)
    assert lift["trained"] == pytest.approx(0.2) and lift["random"] == pytest.approx(0.1)
    assert lift["difference"] == pytest.approx(0.1)
    # every resample of two equal per-feature lifts is the same: a degenerate CI at 0.1
    assert (lift["ci_low"], lift["ci_high"]) == pytest.approx((0.1, 0.1))


def test_minus_subtracts_shares_of_the_unpatched_ioi_kl(tmp_path):
    """IOI columns in nats are divided by each run's own unpatched KL before the difference:
    trained KL 1.0 of 4.0 (0.25 left) minus random 0.1 of 0.2 (0.5 left) is -0.25."""
    from autointerp.causal.summary import IOI_COLUMNS
    from autointerp.columns import Cell, StageColumns, save_columns

    t, r = _runs(tmp_path)
    for rd, kl, k0 in ((t, 1.0, 4.0), (r, 0.1, 0.2)):
        cols = StageColumns("ioi", list(IOI_COLUMNS))
        for b in ("sae", "random"):
            cols.set(b, "ioi_kl_k16", Cell(kl, None, None, 8))
            cols.set(b, "ioi_auc_edit", Cell(0.5, None, None, 8))
        cols.extra = {"kl_clean": k0}
        save_columns(rd, cols)
    diffs = {d.basis: d for d in compare_runs(load_run(t), load_run(r), n_boot=50)}
    rows = {x["column"]: x for x in diffs["sae"].table.to_dicts()}
    assert "ioi_kl_k16" not in rows  # never raw nats across models
    share = rows["ioi_kl_k16 (share of unpatched KL)"]
    assert share["trained"] == pytest.approx(0.25) and share["random"] == pytest.approx(0.5)
    assert share["difference"] == pytest.approx(-0.25)
    assert rows["ioi_auc_edit"]["difference"] == pytest.approx(0.0)  # already a share

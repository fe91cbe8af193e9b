"""``autointerp score CKPT`` after an earlier ``score`` on the same model, corpus and
hookpoint: every basis both runs share (PCA, ICA, neurons) has its metrics, densities, records
and diagnostics reused, the new checkpoint's are computed, and the numbers equal those of a
run in a fresh work dir; the command prints the absolute results path at start and end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from autointerp.bases.checkpoints import save_native
from autointerp.cli import main
from autointerp.config import SAETrainConfig
from autointerp.train import train_sae
from tests.conftest import make_tiny_model

HOOK = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The tiny model saved, a corpus, and two topk SAEs (seeds 0, 1) trained on its
    activations at HOOK, saved as native checkpoints."""
    from autointerp.model import run_to_hookpoint

    tmp = tmp_path_factory.mktemp("score")
    sm = make_tiny_model()
    md = tmp / "tiny"
    sm.model.save_pretrained(md)
    sm.tokenizer.save_pretrained(md)
    text = tmp / "corpus.txt"
    text.write_text("The cat sat on the mat. A dog ran to 12 red doors. " * 200)
    ids = sm.tokenizer(text.read_text()[:4000], return_tensors="pt").input_ids[:, :2048]
    acts = run_to_hookpoint(sm, sm.hookpoint(HOOK), ids.reshape(-1, 64)).reshape(-1, 32)
    ckpts = []
    for seed in (0, 1):
        cfg = SAETrainConfig(architecture="topk", expansion=2, k=4, epochs=4, batch_size=256,
                             seed=seed, lr=3e-3)  # fmt: skip
        sae = train_sae(acts, cfg, progress=False, name=f"sae{seed}")
        ckpts.append(save_native(sae, tmp / f"ckpt{seed}", hookpoint=HOOK, model=str(md)))
    return tmp, md, text, ckpts


def score(tmp: Path, md: Path, text: Path, ckpt: Path, work: str, run: str, capsys) -> tuple:
    sets = [
        f"corpus.source={text}", "corpus.context=16", "corpus.n_tokens=1024",
        "records.n_features=3", "metrics.n_tokens=64", 'metrics.ablations=["zero"]',
        "explain.style=top_tokens", "scoring.scorers=[]", "scoring.shuffled_null=false",
    ]  # fmt: skip
    argv = ["score", str(ckpt), "--model", str(md), "--baselines", "--results",
            str(tmp / "res"), "--run", run, "--work-dir", str(tmp / work), "-q"]  # fmt: skip
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0
    out = capsys.readouterr().out
    rd = tmp / "res" / "score" / run
    man = json.loads((rd / "manifest.json").read_text())
    return rd, {s["stage"]: s for s in man["stages"]}, out


def _metrics(rd: Path) -> dict[str, dict]:
    """Rows by basis, NaN (an ablation not run) as None so that rows compare equal."""
    rows = pl.read_parquet(rd / "metrics.parquet").fill_nan(None).to_dicts()
    return {r["basis"]: r for r in rows}


def _board(rd: Path) -> list[dict]:
    from autointerp.report import leaderboard_table, load_run

    t = leaderboard_table([load_run(rd)]).table
    return t.drop("run", "wall_time_s", "protocol_id").sort("basis").to_dicts()


def test_second_score_reuses_the_shared_bases(setup, capsys):
    tmp, md, text, (c0, c1) = setup
    score(tmp, md, text, c0, "w", "first", capsys)
    rd, st, out = score(tmp, md, text, c1, "w", "second", capsys)
    lines = out.splitlines()
    assert lines[0] == f"writing results to {rd.resolve()}"
    assert lines[-1] == f"results in {rd.resolve()}"
    shared = {"pca", "ica", "neurons"}
    # per basis: the shared baselines reused, the new checkpoint and the random null (its
    # densities match the new checkpoint's) computed
    assert set(st["metrics"]["reused_items"]) == {f"metrics-{b}" for b in shared}
    assert st["metrics"]["computed"] == 2 and st["metrics"]["reused"] == 3
    assert set(st["diagnostics"]["reused_items"]) == {f"diagnostics-{b}" for b in shared}
    assert {f"records-{b}" for b in shared} <= set(st["records"]["reused_items"])
    assert "reused from earlier runs (per basis):" in out
    assert "  metrics: pca, ica, neurons" in out
    # the numbers equal those of the same command in a fresh work dir (nothing reusable)
    fresh, st_f, _ = score(tmp, md, text, c1, "fresh", "second-fresh", capsys)
    assert st_f["metrics"]["reused"] == 0 and st_f["metrics"]["computed"] == 5
    assert _metrics(rd) == _metrics(fresh)
    assert _board(rd) == _board(fresh)
    m = _metrics(rd)
    assert np.isfinite(m["ckpt1"]["fvu"]) and m["ckpt1"]["fvu"] != m["pca"]["fvu"]

"""The ioi and attribution stages in a whole suite on a tiny random-weight model with a
word-level tokenizer (names are single tokens): columns/ioi.json and columns/attribution.json
are written, cached on rerun, and the leaderboard shows the causal table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autointerp.columns import load_columns
from autointerp.config import suite_from_dict
from autointerp.explain_styles import EXPLAIN_STYLES, ExplainStyle, register_explain_style
from autointerp.pipeline import SuiteRun
from autointerp.scoring.registry import SCORERS, ScorerResult, register_scorer
from autointerp.types import Score
from tests.causal_tiny import tiny_word_model
from tests.conftest import save_tiny_files


class _Len:
    name = "causal_len"
    roles: tuple[str, ...] = ()
    nulls = False
    floor = False

    async def score(self, record, explanation, env) -> ScorerResult:
        s = Score(record.basis, record.feature, self.name, "chars", float(len(explanation.text)),
                  method="toy", protocol_id=env.protocol_id)  # fmt: skip
        return ScorerResult([s])


@pytest.fixture
def no_llm():
    register_explain_style(ExplainStyle("causal_first", text=lambda ex: "first token"))
    register_scorer(_Len())
    try:
        yield
    finally:
        EXPLAIN_STYLES.unregister("causal_first")
        SCORERS.unregister("causal_len")


def tiny_suite(tmp_path: Path, **causal):
    model_dir, text = save_tiny_files(
        tmp_path, tiny_word_model(), "The cat sat on the mat . A dog ran to 12 red doors . "
    )
    return suite_from_dict(
        {
            "name": "causal",
            "model": {"name": str(model_dir), "hookpoint": "blocks.1.hook_resid_post"},
            "corpus": {"source": str(text), "context": 16, "n_tokens": 1024},
            "bases": [
                {"kind": "pca", "l0": 4},
                {"kind": "neurons", "l0": 4},
                {"kind": "random", "match": "bases", "l0": 4},
            ],  # fmt: skip
            "records": {"n_features": 2},
            "metrics": {"n_tokens": 64, "ablations": ["zero"]},
            "explain": {"style": "causal_first"},
            "scoring": {"scorers": ["causal_len"], "floor": False},
            "causal": {"ioi": {"n_pairs": 12, "ks": [1, 4, 16]}, "attribution": {"n_tokens": 64}}
            | causal,
        }
    )


def _run(tmp_path, suite, name="r"):
    r = SuiteRun(suite, results_root=tmp_path / "res", run_name=name, work_dir=tmp_path / "w",
                 llm_cache=tmp_path / "llm.sqlite", progress=False)  # fmt: skip
    rd = r.run()
    return rd, {row["stage"]: row["status"] for row in r.summary()}


def test_causal_stages_in_a_suite(no_llm, tmp_path):
    suite = tiny_suite(tmp_path)
    rd, st = _run(tmp_path, suite)
    assert st["ioi"] == "computed" and st["attribution"] == "computed"
    cols = {c.stage: c for c in load_columns(rd)}
    assert {"ioi", "attribution"} <= set(cols)
    ioi = cols["ioi"]
    # pca-full: the full rotation of the top-k'd PCA, a causal-only row
    assert set(ioi.rows) == {"pca", "pca-full", "neurons", "random"}
    for row in ioi.rows.values():
        assert row["ioi_kl_k1"].n == 12
        assert row["ioi_kl_k1"].value is not None and row["ioi_kl_k1"].value >= 0
        assert row["ioi_logit_diff"].value == ioi.rows["pca"]["ioi_logit_diff"].value
        hk = row["ioi_half_kl_features"]
        assert (hk.value is not None) or hk.reason  # a count or a reason, never 0 by default
    assert ioi.rows["random"]["ioi_kl_k16_lift"].reason == "the null itself"
    curves = ioi.extra["curves"]
    for r in ("in_sample", "held_out", "per_pair"):  # every ranking's curve is stored
        assert curves["pca"][r]["k"] == [1, 4, 16, 64]  # k = all: 2 x 32 signed directions
        assert len(curves["pca"][r]["edit_abs"]) == 4
    for c in ("ioi_half_kl_features_heldout", "ioi_half_kl_features_per_pair", "ioi_auc_edit"):
        cell = ioi.rows["pca"][c]
        assert cell.value is not None or cell.reason
    assert ioi.extra["seconds"] > 0 and ioi.extra["n_pairs"] == 12
    assert sum(ioi.extra["halves"]) == 12 and min(ioi.extra["halves"]) > 0
    assert (rd / "ioi_panels.png").read_bytes()[:4] == b"\x89PNG"
    attr = cols["attribution"]
    for row in attr.rows.values():
        for c in ("attr_ioi_top1pct", "attr_ioi_top10", "attr_loss_top1pct", "attr_loss_top10",
                  "attr_ioi_zero_top1pct", "attr_loss_zero_top10"):  # fmt: skip
            assert 0 < row[c].value <= 1 and 0 < row[c].ci_low <= row[c].ci_high <= 1
    man = json.loads((rd / "manifest.json").read_text())
    assert {"ioi", "attribution"} <= {s["stage"] for s in man["stages"]}
    md = (rd / "leaderboard.md").read_text()
    assert "Causal and output-side" in md and "| ioi_kl_k1 |" in md
    assert "pca-full" in md  # the causal-only row is in the table
    rd2, st = _run(tmp_path, suite)  # a rerun: cached
    assert st["ioi"] == "cached" and st["attribution"] == "cached"


def test_tokenizer_without_single_token_names_gives_reasons(no_llm, tmp_path, tiny_model):
    """The character-level tiny model has no single-token names: every IOI cell is undefined
    with the reason; the loss attribution is still computed."""
    suite = tiny_suite(tmp_path)
    d = suite.model_dump()
    tiny_model.model.save_pretrained(tmp_path / "char")
    tiny_model.tokenizer.save_pretrained(tmp_path / "char")
    d["model"]["name"] = str(tmp_path / "char")
    d["bases"] = [{"kind": "neurons", "l0": 4}]
    rd, _ = _run(tmp_path, suite_from_dict(d), name="char")
    cols = {c.stage: c for c in load_columns(rd)}
    cell = cols["ioi"].rows["neurons"]["ioi_kl_k1"]
    assert cell.value is None and "single-token names" in cell.reason
    assert cols["attribution"].rows["neurons"]["attr_ioi_top10"].value is None
    assert cols["attribution"].rows["neurons"]["attr_ioi_zero_top10"].value is None
    assert cols["attribution"].rows["neurons"]["attr_loss_top10"].value is not None
    assert cols["attribution"].rows["neurons"]["attr_loss_zero_top10"].value is not None


def test_html_report_has_the_causal_table_and_the_ioi_plot(no_llm, tmp_path):
    from autointerp.report import leaderboard_table, load_run, render_html, render_json

    suite = tiny_suite(tmp_path)
    rd, _ = _run(tmp_path, suite)
    run = load_run(rd)
    board = leaderboard_table([run])
    page = render_html(board, [run], plots=True)
    assert "Causal and output-side" in page and "KL vs features patched and vs edit size" in page
    assert "never reaches half the unpatched KL" in page
    row = board.table.filter(board.table["basis"] == "pca").to_dicts()[0]
    assert row["ioi_kl_k1_n"] == 12 and isinstance(row["ioi_kl_k1_n"], int)
    assert row["ioi_half_kl_features"] is None or row["ioi_half_kl_features"] >= 1
    assert "ioi_kl_k1" in json.loads(render_json(board))["legend"]


def test_greedy_mode_in_the_stage(no_llm, tmp_path):
    ioi = {"n_pairs": 6, "greedy": True, "greedy_thresholds": 2, "full_rotation": False}
    suite = tiny_suite(tmp_path, ioi=ioi, attribution={"enabled": False})
    rd, st = _run(tmp_path, suite)
    cols = {c.stage: c for c in load_columns(rd)}
    assert "attribution" not in cols  # disabled: no columns file
    ioi_cols = cols["ioi"]
    g = ioi_cols.extra["greedy"]["pca"]
    assert g["mode"] == "greedy" and g["seconds"] > 0 and g["k"][-1] == 64
    assert ioi_cols.rows["pca"]["ioi_kl_k1"].value is not None  # the ranked curve is kept

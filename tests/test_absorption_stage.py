"""The absorption stage in a whole suite on a tiny random-weight model: the columns of every
basis are written (undefined, with the reason: a random model does not know first letters),
the per-hookpoint probe data is cached, and a rerun reuses everything."""

from __future__ import annotations

from autointerp.columns import load_columns
from tests.test_causal_stages import _run, no_llm, tiny_suite  # noqa: F401  (fixture)


def test_absorption_stage_in_a_suite(no_llm, tmp_path):  # noqa: F811
    suite = tiny_suite(tmp_path, ioi={"enabled": False}, attribution={"enabled": False})
    suite = suite.model_copy(
        update={"absorption": suite.absorption.model_copy(update={"enabled": True})}
    )
    rd, st = _run(tmp_path, suite)
    assert st["absorption"] == "computed (5)"  # probe data, 3 bases, the columns
    cols = {c.stage: c for c in load_columns(rd)}["absorption"]
    assert set(cols.rows) == {"pca", "neurons", "random"}
    for cells in cols.rows.values():
        assert set(cells) == {"mean_absorption_fraction_score", "mean_full_absorption_score",
                              "mean_num_split_features"}  # fmt: skip
        for c in cells.values():
            assert c.value is None and "letters have a ground-truth probe test F1" in c.reason
    ex = cols.extra
    assert ex["words"]["train"] + ex["words"]["test"] == ex["words"]["vocabulary"]
    assert len(ex["word_token_pos"]) >= 1 and all(p < 0 for p in ex["word_token_pos"])
    assert set(ex["details"]) == {"pca", "neurons", "random"}
    assert (rd / "columns" / "absorption.json").exists()
    board = (rd / "leaderboard.md").read_text()
    assert "mean_absorption_fraction_score" in board and "ground-truth probe test F1" in board
    rd2, st2 = _run(tmp_path, suite, name="r2")
    assert st2["absorption"].startswith("reused")
    assert {c.stage: c for c in load_columns(rd2)}["absorption"].to_dict() == cols.to_dict()


def test_absorption_suite_is_the_default_plus_the_stage():
    """evals/absorption.toml differs from evals/default.toml only in its name and the
    [absorption] section, so its other stages reuse the default run's work (keep it in step)."""
    from pathlib import Path

    from autointerp.config import load_suite

    evals = Path(__file__).resolve().parents[1] / "evals"
    d = load_suite(evals / "default.toml").model_dump()
    a = load_suite(evals / "absorption.toml")
    assert a.absorption.enabled and a.name == "absorption"
    ad = a.model_dump()
    for k in ("name", "absorption"):
        d.pop(k, None)
        ad.pop(k, None)
    assert ad == d

"""The leaderboard shows any stage's ``columns/<stage>.json`` generically (here a hand-made
``ablation`` stage, as another engineer's stage would write it): value [CI] n per cell,
"undefined" with the reason listed, typed csv/json columns; a run without such files keeps its
table unchanged."""

from __future__ import annotations

import json

from synthetic_runs import synth_run

from autointerp.columns import Cell, ColumnDoc, StageColumns, save_columns
from autointerp.report import leaderboard_table, load_run, render_csv, render_json, render_markdown


def test_stage_columns_shown_generically(tmp_path):
    rd = synth_run(tmp_path / "s" / "r", extras=False)
    before = leaderboard_table([load_run(rd)])
    csv_before = render_csv(before)
    assert "stage_undefined" not in csv_before
    cols = StageColumns("ablation", [ColumnDoc("abl_kl", "mean ablation KL", "higher", fmt=".2f")])
    cols.set("sae", "abl_kl", Cell(0.5, 0.25, 0.75, 40))
    cols.set("pca", "abl_kl", Cell.undefined("no scored features"))
    cols.extra = {"notes": ["ablation: 40 features x 8 contexts"]}
    save_columns(rd, cols)
    board = leaderboard_table([load_run(rd)])
    md = render_markdown(board)
    assert "### Causal and output-side" in md
    sae_line = next(x for x in md.splitlines() if x.startswith("| sae |") and "0.50" in x)
    assert "0.50 [0.25, 0.75] n=40" in sae_line
    pca_line = next(x for x in md.splitlines() if x.startswith("| pca | pca | undefined"))
    assert pca_line
    assert "- pca: abl_kl: no scored features" in md
    assert "ablation: 40 features x 8 contexts" in md
    assert "**abl_kl**: mean ablation KL (higher is better)" in md
    t = board.table
    assert t.schema["abl_kl_n"].is_integer() and t.schema["abl_kl"].is_float()
    row = t.filter(t["basis"] == "sae").to_dicts()[0]
    assert (row["abl_kl"], row["abl_kl_ci_low"], row["abl_kl_ci_high"], row["abl_kl_n"]) == (
        0.5, 0.25, 0.75, 40)  # fmt: skip
    js = json.loads(render_json(board))
    assert "abl_kl" in js["legend"]
    # the input-side numbers are unchanged
    cols_before = before.table.columns
    assert before.table.equals(board.table.select(cols_before))

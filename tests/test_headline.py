"""The headline table: one row per basis, at most ten columns, the first table of the markdown,
HTML, CSV and JSON leaderboards; its numbers are the full table's; undefined cells carry a
numbered reason; steering / absorption columns appear only when a run has them; the causal
column is one constant the lead can repoint."""

from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pytest
from synthetic_runs import score, synth_run, write_run

from autointerp import report
from autointerp.columns import Cell, ColumnDoc, StageColumns, save_columns
from autointerp.report import headline


def _ioi(run_dir) -> None:
    cols = StageColumns(
        "ioi",
        [
            ColumnDoc("ioi_kl_k16", "KL at k = 16", "lower"),
            ColumnDoc("ioi_edit_half_kl", "edit size at half KL", "lower"),
        ],
    )
    cols.set("sae", "ioi_edit_half_kl", Cell(0.47, 0.41, 0.52, 64))
    cols.set("pca", "ioi_edit_half_kl", Cell(0.57, 0.50, 0.63, 64))
    cols.set("neurons", "ioi_edit_half_kl", Cell.undefined("never reaches half the KL"))
    cols.set("random", "ioi_edit_half_kl", Cell.undefined("never reaches half the KL"))
    for b, v in (("sae", 2.5), ("pca", 2.3), ("neurons", 2.1), ("random", 2.8)):
        cols.set(b, "ioi_kl_k16", Cell(v, v - 0.3, v + 0.3, 64))
    save_columns(run_dir, cols)


@pytest.fixture()
def run(tmp_path):
    rd = synth_run(tmp_path / "s" / "a", seed=3, n_scored=20, extras=False)
    _ioi(rd)
    return rd


def _head_lines(md: str) -> list[str]:
    """The lines of the first markdown table."""
    lines = md.splitlines()
    start = next(i for i, x in enumerate(lines) if x.startswith("|"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    return lines[start:end]


def test_headline_is_the_first_table_and_matches_the_full_table(run):
    board = report.leaderboard_table([report.load_run(run)], n_boot=50)
    md = report.render_markdown(board)
    head = _head_lines(md)
    heads = [h.strip() for h in head[0].strip("|").split("|")]
    assert len(heads) <= 10
    assert heads[0] == "basis" and heads[1].startswith("interp. lift vs random")
    assert "causal: ioi_edit_half_kl ↓" in heads and "FVU ↓" in heads and "L0" in heads
    assert not any("steering" in h or "absorption" in h for h in heads)  # absent in this run
    rows = {r.strip("|").split("|")[0].strip(): r.strip("|").split("|") for r in head[2:]}
    assert set(rows) == {"sae", "pca", "neurons", "random (null)"}  # one row per basis
    full = board.table
    sae = full.filter(full["basis"] == "sae").to_dicts()[0]
    lift = rows["sae"][1].strip()
    assert lift == (
        f"{sae['lift_vs_random_dirs']:.3f} [{sae['lift_vs_random_dirs_ci_low']:.3f}, "
        f"{sae['lift_vs_random_dirs_ci_high']:.3f}]"
    )
    col = heads.index("causal: ioi_edit_half_kl ↓")
    assert rows["sae"][col].strip() == "0.470 [0.410, 0.520]"
    assert rows["sae"][heads.index("FVU ↓")].strip() == f"{sae['fvu']:.3f}"
    # undefined cells: a numbered mark, the reason listed once under the table with its bases
    assert rows["neurons"][col].strip() == rows["random (null)"][col].strip()
    m = re.fullmatch(r"undefined \((\d)\)", rows["neurons"][col].strip())
    assert m
    assert f"({m[1]}) never reaches half the KL — neurons, random (null)" in md
    null_lift = rows["random (null)"][1].strip()
    assert null_lift.startswith("undefined (")
    n = null_lift[len("undefined (") : -1]
    assert f"({n}) {headline.NULL_ITSELF} — random (null)" in md
    # the null row comes last, the others by lift, descending
    assert head[-1].startswith("| random (null) |")
    # the full table follows under its own title, the legend explains the headline
    assert md.index("### Headline") < md.index("### Full table") < md.index("## Legend")
    assert "headline: interp. lift vs random" in md


def test_headline_csv_and_json_come_first(run):
    board = report.leaderboard_table([report.load_run(run)], n_boot=50)
    rows = list(csv.DictReader(io.StringIO(report.render_csv(board))))
    kinds = [r["table"] for r in rows]
    assert kinds == ["headline"] * 4 + ["full"] * (len(rows) - 4)
    sae = next(r for r in rows if r["table"] == "headline" and r["basis"] == "sae")
    assert float(sae["causal"]) == pytest.approx(0.47)
    assert sae["causal_column"] == "ioi_edit_half_kl"
    nr = next(r for r in rows if r["table"] == "headline" and r["basis"] == "neurons")
    assert nr["causal"] == "" and "causal: never reaches half the KL" in nr["undefined"]
    js = json.loads(report.render_json(board))
    assert list(js)[:2] == ["reference", "headline"]
    h = js["headline"]["p1"]
    assert [c["key"] for c in h["columns"]][:2] == ["basis", "interp_lift"]
    assert {r["basis"] for r in h["rows"]} == {"sae", "pca", "neurons", "random"}
    assert "headline: causal: ioi_edit_half_kl" in js["legend"]


def test_optional_columns_and_repointing_the_causal_headline(run, monkeypatch):
    cols = StageColumns("steering", [ColumnDoc("steer_x", "steering score", "higher")])
    cols.set("sae", "steer_x", Cell(0.3, 0.2, 0.4, 10))  # no known name: the "steer" prefix
    save_columns(run, cols)
    board = report.leaderboard_table([report.load_run(run)], n_boot=50)
    heads = _head_lines(report.render_markdown(board))[0]
    assert "steering: steer_x ↑" in heads and "absorption" not in heads
    docs = [
        ColumnDoc("n_split", "main latents per letter", group="absorption"),
        ColumnDoc("mean_absorption_fraction_score", "absorbed share", "lower", "absorption"),
    ]
    cols = StageColumns("absorption", docs)
    cols.set("sae", "mean_absorption_fraction_score", Cell(0.1, 0.05, 0.2, 26))
    save_columns(run, cols)
    board = report.leaderboard_table([report.load_run(run)], n_boot=50)
    head = _head_lines(report.render_markdown(board))
    heads = [h.strip() for h in head[0].strip("|").split("|")]
    assert heads[-5:] == ["absorption: mean_absorption_fraction_score ↓", "FVU ↓",
                          "CE loss recovered ↑", "L0", "cost"]  # fmt: skip
    assert len(heads) == 9  # every optional column present: still <= 10
    pca = next(r for r in head if r.startswith("| pca |")).strip("|").split("|")
    assert pca[heads.index("steering: steer_x ↑")].strip().startswith("undefined (")
    # HTML: steering with the causal columns, absorption in the structure group
    html = report.render_html(board, [report.load_run(run)], plots=False)
    causal = html.split('id="causal-0"', 1)[1].split("</table>", 1)[0]
    structure = html.split('id="structure-stage-0"', 1)[1].split("</table>", 1)[0]
    assert 'data-key="steer_x"' in causal and "absorption" not in causal
    assert 'data-key="mean_absorption_fraction_score"' in structure
    groups = re.findall(r'<th class="grp" colspan="(\d+)">([^<]*)</th>', html)
    assert groups == [("1", ""), ("1", "input side"), ("2", "causal"), ("4", "structure"),
                      ("1", "cost")]  # fmt: skip
    monkeypatch.setattr(headline, "HEADLINE_CAUSAL", "ioi_kl_k16")
    heads = _head_lines(report.render_markdown(board))[0]
    assert "causal: ioi_kl_k16 ↓" in heads and "ioi_edit_half_kl" not in heads


def test_a_basis_without_the_main_method_says_which_it_shows(tmp_path):
    rng = np.random.default_rng(0)
    scores = [score("sae", f, 0.5 + rng.normal(0, 0.1), method="pmi") for f in range(8)]
    scores += [score("pca", f, 0.3 + rng.normal(0, 0.1), method="token_match") for f in range(8)]
    scores += [score("random", f, 0.1 + rng.normal(0, 0.1), method=m) for m in
               ("pmi", "token_match") for f in range(8)]  # fmt: skip
    dens = [{"basis": b, "feature": f, "density": 0.01} for b in ("sae", "pca", "random")
            for f in range(8)]  # fmt: skip
    p = write_run(tmp_path / "r", bases=[("sae", "sae", 8), ("pca", "pca", 8),
                                         ("random", "random", 8)], scores=scores,
                  density=dens, metrics=[{"basis": b, "kind": b, "n_features": 8, "l0": 5.0}
                                         for b in ("sae", "pca", "random")])  # fmt: skip
    board = report.leaderboard_table([report.load_run(p)], n_boot=20)
    h = headline.build_headline(board.table, board.stage_columns)
    assert h.method == "pmi"
    texts = dict(zip([r["basis"] for r in h.rows], h.texts(), strict=True))
    assert texts["pca"][1].endswith("] (token_match)") and texts["sae"][1].endswith("]")
    # no metrics in this run: FVU undefined with its reason, never empty or 0
    fvu = next(i for i, c in enumerate(h.columns) if c.key == "fvu")
    assert texts["sae"][fvu].startswith("undefined (")
    assert any(n.startswith("no fvu for this basis") for n in h.notes(numbered=False))


def test_lift_without_densities_says_why(tmp_path):
    scores = [score(b, f, v + f / 100, method="pmi") for b, v in (("sae", 0.5), ("random", 0.1))
              for f in range(6)]  # fmt: skip
    p = write_run(tmp_path / "r", bases=[("sae", "sae", 8), ("random", "random", 8)],
                  scores=scores)  # fmt: skip
    board = report.leaderboard_table([report.load_run(p)], n_boot=20)
    h = headline.build_headline(board.table, board.stage_columns)
    h.texts()
    assert h.rows[0]["reasons"]["interp_lift"].startswith("no density decade holds features")

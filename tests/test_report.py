"""Leaderboard tables from run directories written in the results layout."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re

import polars as pl
import pytest
from synthetic_runs import PROTOCOL, score, synth_run, usage, write_run

from autointerp import report, stats
from autointerp.errors import AutointerpError

BASES = [("sae", "sae", 16), ("random", "random", 16)]


def tiny_run(path, **kw):
    """sae: 0.5, 0.6, 0.7 ok + one failed + one undefined; random: 0.1, 0.2, 0.1, 0.2, 0.15;
    shuffled nulls for sae: 0.1, 0.1, 0.2 (feature 4 has no real ok score)."""
    scores = [
        score("sae", 1, 0.5),
        score("sae", 2, 0.6),
        score("sae", 3, 0.7),
        score("sae", 4, None, status="failed"),
        score("sae", 5, None),
        score("sae", 1, 0.1, null="shuffled"),
        score("sae", 2, 0.1, null="shuffled"),
        score("sae", 3, 0.2, null="shuffled"),
        score("sae", 4, 0.3, null="shuffled"),
        score("sae", 1, 0.4, variant="top"),
        score("sae", 2, 0.2, variant="top"),
        score("sae", 1, 0.8, scorer="detection", variant="balanced_accuracy", method="json"),
        score("sae", 2, 0.6, scorer="detection", variant="balanced_accuracy", method="json"),
        score("random", 1, 0.1),
        score("random", 2, 0.2),
        score("random", 3, 0.1),  # 5 null features: a density bin needs 5 to enter the lift
        score("random", 4, 0.2),
        score("random", 5, 0.15),
    ]
    kw.setdefault("by_basis_usage", {"sae": usage(7, 700, 70, 0.01), "random": usage(3)})
    kw.setdefault(  # one density decade for every feature: stratified == plain lift
        "density",
        [{"basis": b, "feature": f, "density": 0.01} for b in ("sae", "random") for f in range(6)],
    )
    return write_run(path, bases=BASES, scores=scores, **kw)


def row(df: pl.DataFrame, basis: str, **eq) -> dict:
    sub = df.filter(pl.col("basis") == basis)
    for k, v in eq.items():
        sub = sub.filter(pl.col(k) == v)
    assert len(sub) == 1, sub
    return sub.row(0, named=True)


def test_tiny_run_values(tmp_path):
    run = report.load_run(tiny_run(tmp_path / "s" / "r1"))
    board = report.leaderboard_table([run], n_boot=300, seed=5)
    assert board.reference == "p1" and not board.set_apart
    df = board.table
    assert df.height == 2
    sae = row(df, "sae")
    assert sae["sim_score"] == pytest.approx(0.6)
    assert sae["features_scored"] == 3
    assert sae["n_failed"] == 1 and sae["n_undefined"] == 1
    ci = stats.bootstrap_mean_ci([0.5, 0.6, 0.7, None, None], n_boot=300, seed=5)
    assert (sae["sim_ci_low"], sae["sim_ci_high"]) == pytest.approx((ci.low, ci.high))
    assert sae["sim_ci_low"] < 0.6 < sae["sim_ci_high"]
    assert sae["sim_top"] == pytest.approx(0.3)
    assert sae["sim_random"] is None
    # lift vs random dirs: 0.6 - mean(0.1, 0.2, 0.1, 0.2, 0.15); one density bin, so the
    # stratified bootstrap draws exactly what the unpaired one does
    assert sae["lift_vs_random_dirs"] == pytest.approx(0.45)
    assert sae["lift_vs_random_dirs_unmatched"] == pytest.approx(0.45)
    lf = stats.lift([0.5, 0.6, 0.7], [0.1, 0.2, 0.1, 0.2, 0.15], paired=False, n_boot=300, seed=5)
    assert sae["lift_vs_random_dirs_ci_low"] == pytest.approx(lf.low)
    assert sae["lift_vs_random_dirs_ci_high"] == pytest.approx(lf.high)
    assert (sae["lift_vs_random_dirs_n"], sae["lift_vs_random_dirs_n_null"]) == (3, 5)
    assert sae["lift_vs_shuffled_n"] == 3 and sae["sim_top_n"] == 2
    # lift vs shuffled: paired on features 1..3 -> mean(0.4, 0.5, 0.5)
    assert sae["lift_vs_shuffled"] == pytest.approx(1.4 / 3)
    assert sae["lift_vs_shuffled_ci_low"] >= 0.4 - 1e-12
    assert sae["lift_vs_shuffled_ci_high"] <= 0.5 + 1e-12
    assert sae["detection_bal_acc"] == pytest.approx(0.7)
    assert sae["fuzzing_bal_acc"] is None
    assert (sae["llm_calls"], sae["prompt_tokens"], sae["completion_tokens"]) == (7, 700, 70)
    assert sae["cost_usd"] == pytest.approx(0.01) and sae["wall_time_s"] == pytest.approx(12.5)
    assert (sae["l0"], sae["fvu"], sae["ce_loss_score"], sae["l1"]) == (10.0, 0.3, 0.8, 5.0)
    assert sae["n_features"] == 16 and sae["method"] == "all_at_once_logprobs"
    rnd = row(df, "random")
    assert rnd["lift_vs_random_dirs"] is None  # the null row has no lift over itself
    assert rnd["sim_score"] == pytest.approx(0.15)
    # default sort: best lift first, the null row last
    assert df["basis"].to_list() == ["sae", "random"]


def test_constant_scores_give_degenerate_ci(tmp_path):
    scores = [score("sae", f, 0.4) for f in range(5)] + [score("random", f, 0.1) for f in range(3)]
    scores += [score("sae", f, 0.1, null="shuffled") for f in range(5)]
    run = report.load_run(write_run(tmp_path / "r", bases=BASES, scores=scores))
    sae = row(report.leaderboard_table([run]).table, "sae")
    assert sae["sim_ci_low"] == sae["sim_ci_high"] == pytest.approx(0.4)
    assert sae["lift_vs_random_dirs_ci_low"] == sae["lift_vs_random_dirs_ci_high"]
    assert sae["lift_vs_shuffled"] == pytest.approx(0.3)
    assert sae["lift_vs_shuffled_ci_low"] == sae["lift_vs_shuffled_ci_high"]


def test_all_failed_basis_has_empty_mean_and_counts(tmp_path):
    scores = [score("sae", f, None, status="failed") for f in range(4)]
    scores += [score("random", 0, 0.1)]
    run = report.load_run(write_run(tmp_path / "r", bases=BASES, scores=scores))
    sae = row(report.leaderboard_table([run]).table, "sae")
    assert sae["sim_score"] is None and sae["features_scored"] == 0 and sae["n_failed"] == 4
    assert sae["lift_vs_random_dirs"] is None
    md = report.render_markdown(report.leaderboard_table([run]))
    assert "nan" not in md.lower()


def test_plugin_scorer_gets_a_mean_column(tmp_path):
    """A scorer the table does not know ("toy", variant "accuracy") gets the column toy_accuracy:
    the mean of its real ok scores; shown in md/html when not empty, always in csv/json."""
    scores = [score("sae", f, 0.5) for f in range(3)] + [score("random", 0, 0.1)]
    scores += [score("sae", f, 0.1, null="shuffled") for f in range(3)]
    toy = {"scorer": "toy", "variant": "accuracy", "method": "toy"}
    scores += [score("sae", f, v, **toy) for f, v in enumerate((0.6, 0.8, 1.0))]
    scores += [score("sae", 3, None, status="failed", **toy)]  # left out of the mean
    scores += [score("sae", 0, 0.0, null="shuffled", **toy)]  # a null: not in the mean
    scores += [score("random", 0, None, status="failed", scorer="bad", variant="only")]
    run = report.load_run(write_run(tmp_path / "r", bases=BASES, scores=scores))
    board = report.leaderboard_table([run], n_boot=20)
    df = board.table
    assert df.schema["toy_accuracy"] == pl.Float64 and df.schema["bad_only"] == pl.Float64
    assert row(df, "sae")["toy_accuracy"] == pytest.approx(0.8)
    assert row(df, "random")["toy_accuracy"] is None
    assert df["bad_only"].null_count() == len(df)  # no ok score: an empty column
    assert board.scorer_columns == {
        "bad_only": ("bad", "only"),
        "toy_accuracy": ("toy", "accuracy"),
    }
    assert "detection_bal_acc" in df.columns and "toy_detection" not in df.columns
    md = report.render_markdown(board)
    full = md.split("### Full table", 1)[1]  # the headline table comes first
    header = next(line for line in full.splitlines() if line.startswith("| basis |"))
    heads = [h.strip() for h in header.strip("|").split("|")]
    assert "toy accuracy" in heads and "bad only" not in heads
    assert heads.index("toy accuracy") < heads.index("l0")
    sae_line = next(line for line in full.splitlines() if line.startswith("| sae |"))
    assert sae_line.strip("|").split("|")[heads.index("toy accuracy")].strip() == "0.800"
    assert "- **toy accuracy**: mean of scorer toy, variant accuracy" in md
    html = report.render_html(board, [run], plots=False)
    assert 'data-key="toy_accuracy"' in html and 'data-key="bad_only"' not in html
    rows = list(csv.DictReader(io.StringIO(report.render_csv(board))))
    assert {"toy_accuracy", "bad_only"} <= set(rows[0])
    js = json.loads(report.render_json(board))
    js_rows = js["groups"]["p1"]["rows"]
    assert all("bad_only" in r for r in js_rows)
    assert next(r for r in js_rows if r["basis"] == "sae")["toy_accuracy"] == pytest.approx(0.8)


def test_plugin_scorer_name_taken_is_noted(tmp_path):
    scores = [score("sae", 0, 0.5), score("random", 0, 0.1)]
    scores += [score("sae", 0, 0.9, scorer="sim", variant="score")]  # would be sim_score
    run = report.load_run(write_run(tmp_path / "r", bases=BASES, scores=scores))
    board = report.leaderboard_table([run], n_boot=20)
    assert row(board.table, "sae")["sim_score"] == pytest.approx(0.5)
    assert not board.scorer_columns
    assert any("sim/score have no column" in n for n in board.notes)


def test_different_protocols_are_set_apart_with_reason(tmp_path):
    proto_b = json.loads(json.dumps(PROTOCOL))
    proto_b["records"]["window"] = 64
    runs = [
        report.load_run(synth_run(tmp_path / "s" / "a1", seed=1, n_scored=10)),
        report.load_run(synth_run(tmp_path / "s" / "a2", seed=2, n_scored=10)),
        report.load_run(
            synth_run(
                tmp_path / "s" / "b1", seed=3, n_scored=10, protocol_id="p2", protocol=proto_b
            )
        ),
    ]
    board = report.leaderboard_table(runs, n_boot=100)
    assert board.reference == "p1" and list(board.groups) == ["p1", "p2"]
    assert set(board.groups["p1"]["run"]) == {"a1", "a2"}
    assert set(board.groups["p2"]["run"]) == {"b1"}
    assert set(board.groups["p2"]["protocol_id"]) == {"p2"}
    [apart] = board.set_apart
    assert apart.run == "suite/b1" and apart.protocol_id == "p2"
    assert "p2" in apart.reason and "p1" in apart.reason
    assert apart.differences == ["records.window: 32 vs 64"]
    md = report.render_markdown(board)
    assert "records.window: 32 vs 64" in md and "Set apart: protocol `p2`" in md
    # the set-apart run never shares the reference table
    ref_table = md.split("## Set apart")[0]
    assert "| b1 |" not in ref_table and "| a1 |" in ref_table


def test_scores_with_another_protocol_id_are_noted(tmp_path):
    scores = [score("sae", 0, 0.5), score("sae", 1, 0.4, protocol_id="old"), score("random", 0, 0)]
    run = report.load_run(write_run(tmp_path / "r", bases=BASES, scores=scores))
    board = report.leaderboard_table([run])
    assert any("['old']" in n and "differ" in n for n in board.notes)


def test_missing_protocol_id_is_set_apart(tmp_path):
    a = report.load_run(tiny_run(tmp_path / "a"))
    b = report.load_run(tiny_run(tmp_path / "b"))
    c = report.load_run(tiny_run(tmp_path / "c", protocol_id=""))
    board = report.leaderboard_table([c, a, b])
    assert board.reference == "p1"
    assert [s.reason for s in board.set_apart] == ["manifest has no protocol_id"]


def test_same_protocol_merges_rows_per_model_hookpoint_basis(tmp_path):
    r1 = synth_run(tmp_path / "s" / "l6", seed=1, n_scored=8)
    r2 = synth_run(
        tmp_path / "s" / "l12", seed=2, n_scored=8, hookpoint="blocks.12.hook_resid_post"
    )
    runs = [report.load_run(p) for p in report.find_runs([tmp_path])]
    assert {r.path for r in runs} == {r1.resolve(), r2.resolve()}
    board = report.leaderboard_table(runs, n_boot=50)
    assert list(board.groups) == ["p1"] and not board.set_apart
    df = board.table
    assert df.height == 8
    keys = df.select("model", "hookpoint", "basis").unique()
    assert keys.height == 8
    assert set(df["hookpoint"]) == {"blocks.6.hook_resid_post", "blocks.12.hook_resid_post"}
    # each run's lift is measured against its own random basis
    for run in runs:
        s = run.scores.filter(
            (pl.col("scorer") == "simulation")
            & (pl.col("variant") == "top_and_random")
            & (pl.col("null") == "")
            & (pl.col("status") == "ok")
        )
        sae = s.filter(pl.col("basis") == "sae")["value"].mean()
        rnd = s.filter(pl.col("basis") == "random")["value"].mean()
        got = row(df, "sae", hookpoint=run.hookpoint)["lift_vs_random_dirs_unmatched"]
        assert got == pytest.approx(sae - rnd)


def test_sort_by_any_column(tmp_path):
    runs = [report.load_run(synth_run(tmp_path / f"r{i}", seed=i, n_scored=6)) for i in range(2)]
    df = report.leaderboard_table(runs, n_boot=20).table
    for col in df.columns:
        for desc in (True, False):
            s = report.sort_table(df, col, desc)
            vals = [v for v in s[col].to_list() if v is not None]
            assert vals == sorted(vals, reverse=desc), col
            n_null = s[col].null_count()
            assert s[col].to_list()[len(vals) :] == [None] * n_null  # nulls last
    board = report.leaderboard_table(runs, sort_by="l0", descending=False, n_boot=20)
    assert board.table["l0"].to_list() == sorted(board.table["l0"].to_list())
    with pytest.raises(AutointerpError, match="no such column"):
        report.leaderboard_table(runs, sort_by="nope")


def test_methods_are_never_mixed(tmp_path):
    scores = [score("sae", f, 0.5) for f in range(3)]
    scores += [score("sae", f, 0.2, method="json") for f in range(3, 6)]
    scores += [score("random", f, 0.1) for f in range(3)]
    scores += [score("random", f, 0.0, method="json") for f in range(3)]
    run = report.load_run(write_run(tmp_path / "r", bases=BASES, scores=scores))
    board = report.leaderboard_table([run])
    df = board.table
    assert df.height == 4
    a = row(df, "sae", method="all_at_once_logprobs")
    j = row(df, "sae", method="json")
    assert a["sim_score"] == pytest.approx(0.5) and a["features_scored"] == 3
    assert j["sim_score"] == pytest.approx(0.2) and j["features_scored"] == 3
    # lift against the random basis scored with the same method; without firing densities
    # the density-matched lift is undefined (and said so), the plain one is not
    assert a["lift_vs_random_dirs_unmatched"] == pytest.approx(0.4)
    assert j["lift_vs_random_dirs_unmatched"] == pytest.approx(0.2)
    assert a["lift_vs_random_dirs"] is None
    assert any("no firing densities" in n for n in board.notes)
    assert any("several methods" in n and "sae" in n for n in board.notes)


def test_outputs_contain_the_rows(tmp_path):
    runs = [
        report.load_run(synth_run(tmp_path / "s" / "a", seed=1, n_scored=6)),
        report.load_run(synth_run(tmp_path / "s" / "b", seed=2, n_scored=6, protocol_id="p9")),
    ]
    board = report.leaderboard_table(runs, n_boot=20)
    md = report.render_markdown(board)
    for basis in ("sae", "pca", "neurons", "random"):
        assert f"| {basis} | {basis} |" in md
    assert "## Legend" in md and "percentile bootstrap" in md and "random = null row" in md
    assert "Protocol id: `p1`" in md and "n_boot=20" in md
    # the density-bin section
    assert "<1e-04" in md and ">=1e-01" in md
    rows = list(csv.DictReader(io.StringIO(report.render_csv(board))))
    assert [r["table"] for r in rows[:8]] == ["headline"] * 8  # one per run and basis, first
    rows = [r for r in rows if r["table"] == "full"]
    assert len(rows) == 8
    assert {r["protocol_id"] for r in rows} == {"p1", "p9"}
    sae_a = next(r for r in rows if r["run"] == "a" and r["basis"] == "sae")
    exp = row(board.groups["p1"], "sae")
    assert float(sae_a["sim_score"]) == pytest.approx(exp["sim_score"])
    js = json.loads(report.render_json(board))
    assert js["reference"] == "p1" and js["set_apart"][0]["run"] == "suite/b"
    assert len(js["groups"]["p1"]["rows"]) == 4 and len(js["groups"]["p9"]["rows"]) == 4
    assert js["groups"]["p1"]["density_bins"]
    html = report.render_html(board, runs, plots=False)
    # one null row in each group's input-side table (and in its headline, structure, cost)
    assert _null_rows(html, "table-") == 2 and "p9" in html
    assert _null_rows(html, "headline-") == 2


def test_optional_files_missing(tmp_path):
    p = synth_run(tmp_path / "r", seed=0, n_scored=5, extras=False)
    (p / "features.parquet").unlink()
    run = report.load_run(p)
    assert run.density is None and run.simulations is None and run.records("sae") == {}
    board = report.leaderboard_table([run], n_boot=20)
    assert board.table.height == 4 and board.density["p1"].is_empty()
    html = report.render_html(board, [run], plots=False)
    assert "feature-data" in html


def test_density_from_density_parquet_when_features_lack_it(tmp_path):
    scores = [score("sae", 0, 0.2), score("sae", 1, 0.4), score("sae", 2, 0.9)]
    dens = [{"basis": "sae", "feature": f, "density": d} for f, d in enumerate([0, 5e-3, 0.5])]
    run = report.load_run(write_run(tmp_path / "r", bases=BASES, scores=scores, density=dens))
    d = report.leaderboard_table([run]).density["p1"]
    got = {r["bin"]: (r["n"], r["mean"]) for r in d.iter_rows(named=True)}
    assert got["<1e-04"] == (1, pytest.approx(0.2))
    assert got["1e-03..1e-02"] == (1, pytest.approx(0.4))
    assert got[">=1e-01"] == (1, pytest.approx(0.9))
    assert got["1e-04..1e-03"][0] == 0


def test_n_boot_comes_from_the_protocol(tmp_path):
    run = report.load_run(synth_run(tmp_path / "r", n_scored=4))
    assert report.leaderboard_table([run]).n_boot == 200  # PROTOCOL scoring.n_bootstrap


def test_load_errors(tmp_path):
    with pytest.raises(AutointerpError, match="no manifest.json"):
        report.load_run(tmp_path)
    with pytest.raises(AutointerpError, match="does not exist"):
        report.find_runs([tmp_path / "missing"])
    with pytest.raises(AutointerpError, match="no run found"):
        report.find_runs([tmp_path])
    p = tiny_run(tmp_path / "r")
    (p / "manifest.json").write_text("{not json")
    with pytest.raises(AutointerpError, match="not valid JSON"):
        report.load_run(p)
    p = tiny_run(tmp_path / "r2")
    (p / "scores.parquet").write_bytes(b"garbage")
    with pytest.raises(AutointerpError, match="scores.parquet.*damaged"):
        report.load_run(p)
    p = tiny_run(tmp_path / "r3")
    pl.DataFrame({"basis": ["sae"], "feature": [1]}).write_parquet(p / "scores.parquet")
    with pytest.raises(AutointerpError, match="lacks columns"):
        report.load_run(p)
    p = tiny_run(tmp_path / "r4")
    (p / "scores.parquet").unlink()
    run = report.load_run(p)
    assert any("scores.parquet missing" in n for n in run.notes)
    assert row(report.leaderboard_table([run]).table, "sae")["features_scored"] == 0


def test_write_run_leaderboard(tmp_path):
    p = synth_run(tmp_path / "r", n_scored=5)
    written = report.write_run_leaderboard(p)
    assert [w.name for w in written] == ["leaderboard.md", "leaderboard.html"]
    md = (p / "leaderboard.md").read_text()
    assert "| sae | sae |" in md
    html = (p / "leaderboard.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and html.count("data:image/png;base64,") == 4


def _cli(argv):
    parser = argparse.ArgumentParser()
    report.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli(tmp_path, capsys):
    synth_run(tmp_path / "res" / "s" / "a", seed=1, n_scored=5)
    synth_run(tmp_path / "res" / "s" / "b", seed=2, n_scored=5)
    out = tmp_path / "lb.csv"
    assert (
        _cli(
            [
                "leaderboard",
                str(tmp_path / "res"),
                "--format",
                "csv",
                "--sort",
                "l0",
                "--asc",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = [r for r in csv.DictReader(out.open()) if r["table"] == "full"]
    assert len(rows) == 8
    l0 = [float(r["l0"]) for r in rows]
    assert l0 == sorted(l0)
    assert _cli(["leaderboard", str(tmp_path / "res" / "s" / "a"), "--format", "json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert [r["run"] for r in js["groups"]["p1"]["rows"]] == ["a"] * 4
    with pytest.raises(AutointerpError, match="no such column"):
        _cli(["leaderboard", str(tmp_path / "res"), "--sort", "bogus"])


def test_markdown_escapes_pipes(tmp_path):
    scores = [score("sae|x", 0, 0.5), score("random", 0, 0.1)]
    bases = [("sae|x", "sae", 4), ("random", "random", 4)]
    run = report.load_run(write_run(tmp_path / "r", bases=bases, scores=scores))
    md = report.render_markdown(report.leaderboard_table([run]))
    assert "| sae\\|x | sae |" in md
    assert not math.isnan(report.leaderboard_table([run]).table["sim_score"][0])


def _null_rows(html: str, table_id: str) -> int:
    """Null rows in the HTML tables whose id starts with ``table_id``."""
    tables = re.findall(r'<table class="[^"]*" id="' + table_id + r'\d+">(.*?)</table>', html, re.S)
    return sum(t.count('<tr class="null-row">') for t in tables)


def test_autointerp_cli_entry_point(tmp_path, capsys):
    from autointerp.cli import main

    synth_run(tmp_path / "s" / "a", seed=1, n_scored=4)
    out = tmp_path / "lb.html"
    assert main(["leaderboard", str(tmp_path), "--format", "html", "--out", str(out)]) == 0
    assert _null_rows(out.read_text(), "table-") == 1
    assert main(["leaderboard", str(tmp_path), "--sort", "bogus"]) == 2
    assert "no such column" in capsys.readouterr().err
    assert main(["leaderboard", str(tmp_path / "nowhere")]) == 2


def test_sanity_flag_when_lift_vs_shuffled_is_not_positive_or_crosses_zero(tmp_path):
    good, flat = "sae", "pca"
    bases = [(good, "sae", 16), (flat, "pca", 16), ("random", "random", 16)]
    scores = []
    for f in range(12):
        scores += [score(good, f, 0.5 + 0.01 * f), score(good, f, 0.1, null="shuffled")]
        # pca: real and shuffled alike (lift ~ 0, CI crossing 0)
        v = 0.2 + (0.05 if f % 2 else -0.05)
        scores += [score(flat, f, v), score(flat, f, 0.2, null="shuffled")]
        scores += [score("random", f, 0.1)]
    scores += [score(flat, 99, None, variant="random"), score(flat, 98, None, null="shuffled")]
    run = report.load_run(write_run(tmp_path / "r", bases=bases, scores=scores))
    board = report.leaderboard_table([run])
    df = board.table
    assert row(df, good)["flag"] == ""
    assert row(df, flat)["flag"] == report.FLAG_TEXT
    assert row(df, flat)["undefined_by_variant"] == (
        "simulation/random/real undefined: 1; simulation/top_and_random/shuffled undefined: 1"
    )
    md = report.render_markdown(board)
    assert f"- **{flat}** (all_at_once_logprobs): {report.FLAG_TEXT}" in md
    assert f"**{good}** (" not in md.split("Sanity flags:")[1].split("\n\n")[1]
    assert "| flag |" in md


def test_lift_vs_random_dirs_is_density_stratified(tmp_path):
    """Defect: the random null was compared as one pool, whatever a basis's densities. Here
    the basis's features are rare (bin 1e-4..1e-3) and common (>= 0.1) 1:3, the null's 15:5;
    the null scores 0.1 on rare and 0.5 on common features, the basis 0.2 / 0.6."""
    rare, common = 5e-4, 0.2
    scores = [score("sae", 0, 0.2)] + [score("sae", f, 0.6) for f in (1, 2, 3)]
    scores += [score("random", f, 0.1) for f in range(15)]
    scores += [score("random", f, 0.5) for f in range(15, 20)]
    dens = [{"basis": "sae", "feature": f, "density": rare if f == 0 else common} for f in range(4)]
    dens += [
        {"basis": "random", "feature": f, "density": common if f >= 15 else rare} for f in range(20)
    ]
    run = report.load_run(write_run(tmp_path / "r", bases=BASES, scores=scores, density=dens))
    sae = row(report.leaderboard_table([run], n_boot=200).table, "sae")
    # by hand: mean(sae) = 0.5; null re-weighted to the sae's 1/4 rare, 3/4 common:
    # 0.25 * 0.1 + 0.75 * 0.5 = 0.4 -> lift 0.1 (the plain means give 0.5 - 0.2 = 0.3)
    assert sae["lift_vs_random_dirs"] == pytest.approx(0.1)
    assert sae["lift_vs_random_dirs_unmatched"] == pytest.approx(0.3)
    assert sae["lift_vs_random_dirs_n_unsupported"] == 0


def test_stratified_lift_merges_bins_the_null_lacks():
    null = [0.1, 0.1, 0.3, 0.3, 0.2]
    st = stats.stratified_lift([0.9, 0.5], [1e-5, 0.05], null, [0.05] * 5, n_boot=100)
    # the 1e-5 feature has no null in its decade: that bin merges with the 0.05 one
    assert st.n_a == 2 and st.n_unsupported == 0 and st.n_merged == 1
    assert st.diff == pytest.approx(0.7 - 0.2) and 0 < st.pvalue <= 1


def test_constant_prediction_counts_and_n_in_markdown(tmp_path):
    scores = [score("sae", f, 0.5) for f in range(3)]
    scores[0]["extra"] = json.dumps({"constant_prediction": True})
    scores[0]["value"] = 0.0
    scores += [score("random", f, 0.1 * f) for f in range(5)]
    scores += [score("sae", f, 0.1, null="shuffled") for f in range(2)]
    dens = [
        {"basis": b, "feature": f, "density": 0.01} for b in ("sae", "random") for f in range(5)
    ]
    run = report.load_run(write_run(tmp_path / "r", bases=BASES, scores=scores, density=dens))
    board = report.leaderboard_table([run], n_boot=100)
    sae = row(board.table, "sae")
    assert sae["n_const_pred"] == 1 and sae["features_scored"] == 3
    md = report.render_markdown(board)
    assert "n=3 vs 5" in md and "n=2" in md  # features behind the random and shuffled lifts


def test_ica_non_convergence_and_shared_top_token_are_table_flags(tmp_path):
    """Defect: ICA non-convergence was only in the manifest; a basis whose scored features
    share one top token was not flagged at all."""
    bases = [("ica", "ica", 16), ("random", "random", 16)]
    scores = [score("ica", f, 0.3) for f in range(4)] + [score("random", f, 0.1) for f in range(4)]
    scores += [score("ica", f, 0.1, null="shuffled") for f in range(4)]
    scores[0]["value"] = 0.5  # a lift CI that excludes 0 -> no judge flag
    diag = [
        {"basis": "random", "n_features": 64, "distinct": 20, "mean_abs_r": 0.4,
         "mode_token": " Lincoln", "mode_count": 24, "n_tokens": 1000, "mode_share": 0.375,
         "features": list(range(64)), "edges": [[0, 1], [2, 3], [3, 40]]},
        {"basis": "ica", "n_features": 64, "distinct": 64, "mean_abs_r": 0.01,
         "mode_token": " the", "mode_count": 3, "n_tokens": 1000, "mode_share": 0.05},
    ]  # fmt: skip
    path = write_run(
        tmp_path / "r", bases=bases, scores=scores, diagnostics=diag,
        infos={"ica": {"converged": False, "n_iter": 100}},
    )  # fmt: skip
    df = report.leaderboard_table([report.load_run(path)], n_boot=100).table
    ica, rnd = row(df, "ica"), row(df, "random")
    assert "ICA did not converge (100 iterations)" in ica["flag"]
    assert "24 of 64 scored features share the top token ' Lincoln'" in rnd["flag"]
    # distinct among the 4 scored features (0-1 and 2-3 duplicates; 40 is not scored); the
    # ica file has no duplicate pairs (an older diagnostics file): undefined, not all 64
    assert ica["distinct_features"] is None and rnd["distinct_features"] == 2
    md = report.render_markdown(report.leaderboard_table([report.load_run(path)], n_boot=100))
    assert "2 of 4" in md

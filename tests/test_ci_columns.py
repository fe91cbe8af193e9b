"""Input-side CIs that do not hide a thin null (hand values), and per-feature CIs of the stage
columns in ``leaderboard --minus``."""

from __future__ import annotations

import math

import numpy as np
import pytest
from synthetic_runs import score, write_run

from autointerp import report, stats
from autointerp.columns import Cell, ColumnDoc, StageColumns, save_columns
from autointerp.diagnostics import distinct_among, duplicate_pairs
from autointerp.report.compare import compare_runs, stratified_draws
from autointerp.stats import _bin_of, merge_bins, stratified_lift

BASES = [("sae", "sae", 16), ("random", "random", 16)]


def test_density_on_a_bin_edge_belongs_to_the_bin_above():
    got = _bin_of(np.array([0.0, 9.99e-5, 1e-4, 1e-2, 0.1, 1.0]), stats.DEFAULT_DENSITY_EDGES)
    assert got.tolist() == [0, 0, 1, 3, 4, 4]


def test_merge_bins_by_hand():
    # 0 | 4 | 1 | 5 | 0 null features: the first three bins reach 5 together; the last, empty,
    # joins the one below
    assert merge_bins([0, 4, 1, 5, 0]) == [[0, 1, 2], [3, 4]]
    assert merge_bins([5, 1]) == [[0, 1]]  # a bin holding one null feature merges
    assert merge_bins([6, 5, 7]) == [[0], [1], [2]]
    assert merge_bins([1, 1, 1]) == []  # fewer than 5 in all
    assert merge_bins([1, 1, 1], min_null=3) == [[0, 1, 2]]


def test_stratified_permutation_p_by_exact_enumeration():
    # one stratum, a = 0.9, 0.8, null = 0.1 .. 0.5: the statistic of a relabelling S (2 of 7)
    # is 1.4 mean(S) - 0.64; |stat| >= 0.55 only for S = {0.9, 0.8}: p = 1 / C(7, 2) = 1/21
    d = 0.05
    st = stratified_lift([0.9, 0.8], [d, d], [0.1, 0.2, 0.3, 0.4, 0.5], [d] * 5, n_boot=200)
    assert st.diff == pytest.approx(0.55) and st.exact
    assert st.pvalue == pytest.approx(1 / 21)
    assert (st.n_a, st.n_null, st.n_merged) == (2, 5, 0)


def test_a_bin_with_one_null_feature_merges():
    # null: 4 at 5e-4 (0.1), 1 at 5e-3 (0.2), 5 at 0.05 (0.5); basis: 0.6 at 5e-3, 0.8 at 0.05.
    # Strata: [1e-4, 1e-2) (null mean 0.6 / 5 = 0.12) and [1e-2, 1e-1) (0.5), weights 1/2:
    # null 0.31, lift 0.7 - 0.31 = 0.39 (without merging, the 5e-3 bin's one null: 0.35)
    nd = [5e-4] * 4 + [5e-3] + [0.05] * 5
    ns = [0.1] * 4 + [0.2] + [0.5] * 5
    st = stratified_lift([0.6, 0.8], [5e-3, 0.05], ns, nd, n_boot=200)
    assert st.diff == pytest.approx(0.39) and st.mean_null == pytest.approx(0.31)
    assert st.strata == ("1e-04..1e-02", "1e-02..1e-01") and st.n_merged == 1
    assert st.n_null == 10 and st.n_unsupported == 0
    # 6 x 6 relabellings: exact; by hand, stat = 0.5 (x1 - m1') + 0.5 (x2 - m2') over the
    # choices of which pooled value of each stratum is the basis's
    s1, s2 = [0.6, *ns[:5]], [0.8, *ns[5:]]
    stat = [
        0.5 * (s1[i] - (sum(s1) - s1[i]) / 5) + 0.5 * (s2[j] - (sum(s2) - s2[j]) / 5)
        for i in range(6)
        for j in range(6)
    ]
    assert st.exact and st.pvalue == pytest.approx(np.mean(np.abs(stat) >= 0.39 - 1e-12))


def test_n_null_counts_only_the_strata_used():
    nd = [5e-4] * 5 + [0.05] * 7
    st = stratified_lift([0.8, 0.7], [0.05, 0.06], [0.1] * 12, nd, n_boot=100)
    assert st.n_null == 7  # the 5 rare null features sit in a stratum the basis does not use


def test_null_too_thin_is_undefined_with_its_reason():
    st = stratified_lift([0.8], [0.05], [0.1] * 4, [0.05] * 4, n_boot=100)
    assert math.isnan(st.diff) and st.n_unsupported == 1 and "fewer than 5" in st.reason


def test_distinct_counts_only_scored_features():
    # 1-2 and 2-3 duplicates: with 2 unscored the chain breaks, 1 and 3 are two groups
    edges = [[1, 2], [2, 3]]
    assert distinct_among([1, 2, 3, 4], edges) == 2
    assert distinct_among([1, 3, 4], edges) == 3
    codes = np.array([[1.0, 1.0, 0.0], [0.0, 0.1, 1.0], [2.0, 2.1, 0.0], [0.0, 0.0, 0.5]])
    assert duplicate_pairs(codes) == [(0, 1)]


def _run(path, n_null=6, **kw):
    scores = [score("sae", f, 0.5 + 0.1 * (f % 3)) for f in range(6)]
    scores += [score("sae", 6, None, status="failed")]
    scores += [score("random", f, 0.1 * (f % 3)) for f in range(n_null)]
    dens = [
        {"basis": b, "feature": f, "density": 0.01} for b in ("sae", "random") for f in range(16)
    ]
    dens[3]["density"] = 0.0  # one sae feature never fires in the corpus: dead 1/16
    metrics = [
        {"basis": "sae", "kind": "sae", "n_features": 16, "l0": 32.0, "fvu": 0.2,
         "explained_variance": 0.8, "ce_loss_score": 0.9, "kl_div_score": 0.9, "dead_frac": 0.5},
        {"basis": "random", "kind": "random", "n_features": 16, "l0": 104.0, "fvu": 0.6,
         "explained_variance": 0.4, "ce_loss_score": 0.1, "kl_div_score": 0.2, "dead_frac": 0.4},
    ]  # fmt: skip
    diag = [{"basis": "sae", "n_features": 7, "distinct": 7, "mean_abs_r": 0.1, "mode_token": "a",
             "mode_count": 1, "n_tokens": 10, "features": list(range(7)),
             "edges": [[0, 1], [1, 6], [6, 2]]}]  # fmt: skip
    return write_run(
        path, bases=BASES, scores=scores, density=dens, metrics=metrics, diagnostics=diag, **kw
    )


def test_leaderboard_input_side_columns(tmp_path):
    run = report.load_run(_run(tmp_path / "s" / "r"))
    board = report.leaderboard_table([run], n_boot=100)
    sae = board.table.filter(board.table["basis"] == "sae").row(0, named=True)
    rnd = board.table.filter(board.table["basis"] == "random").row(0, named=True)
    # distinct among the 6 scored features (6 failed): 0-1 duplicates, the chain 1-6-2 is cut
    assert (sae["distinct_features"], sae["diag_features"]) == (5, 6)
    assert sae["dead_frac_corpus"] == pytest.approx(1 / 16) and sae["dead_frac"] == 0.5
    assert rnd["fvu"] is None and "L0 104" in rnd["recon_na"] and rnd["l0"] == 104.0
    assert sae["fvu"] == 0.2 and not sae.get("recon_na")
    md = report.render_markdown(board)
    p = sae["lift_vs_random_dirs_p"]
    assert p is not None and f"p={p:.2g} n=6 vs 6" in md
    assert "n/a" in md and "dead corpus" in md and "fewer than 5 null features" in md


def test_leaderboard_thin_null_lift_undefined_with_note(tmp_path):
    run = report.load_run(_run(tmp_path / "s" / "r", n_null=3))
    board = report.leaderboard_table([run], n_boot=100)
    sae = board.table.filter(board.table["basis"] == "sae").row(0, named=True)
    assert sae["lift_vs_random_dirs"] is None
    assert any("fewer than 5" in n for n in board.notes)


def _with_stage(path, kl, score_):
    run_dir = _run(path)
    ab = StageColumns("ablation", [ColumnDoc("ablation_kl", "kl")])
    ab.set("sae", "ablation_kl", Cell(float(np.mean(kl)), None, None, len(kl)))
    ab.extra["features"] = {"sae": [{"feature": i, "kl": v} for i, v in enumerate(kl)]}
    out = StageColumns("output", [ColumnDoc("output_score", "gain")])
    out.set("sae", "output_score", Cell(float(np.mean(score_)), None, None, len(score_)))
    out.extra["features"] = {
        "sae": [{"feature": i, "score": v} for i, v in enumerate(score_)] + [{"score": None}]
    }
    save_columns(run_dir, ab)
    save_columns(run_dir, out)
    return run_dir


def test_minus_has_per_feature_cis_for_ablation_and_output(tmp_path):
    t = _with_stage(tmp_path / "t" / "r", [0.3, 0.1, 0.2], [2.0, 1.0])
    r = _with_stage(tmp_path / "r" / "r", [0.05, 0.15], [1.0, 0.5, 0.0])
    diffs = {d.basis: d for d in compare_runs(report.load_run(t), report.load_run(r), n_boot=200)}
    rows = {x["column"]: x for x in diffs["sae"].table.to_dicts()}
    kl = rows["ablation_kl"]
    assert kl["difference"] == pytest.approx(0.2 - 0.1)
    want = stats.lift([0.3, 0.1, 0.2], [0.05, 0.15], paired=False, n_boot=200, seed=0)
    assert (kl["ci_low"], kl["ci_high"]) == pytest.approx((want.low, want.high))
    assert kl["note"] == "bootstrap, 3 vs 2 features"
    out = rows["output_score"]
    assert out["difference"] == pytest.approx(1.5 - 0.5) and out["note"].endswith("2 vs 3 features")


def test_minus_lift_vs_random_dirs_has_a_ci_from_both_runs_strata(tmp_path):
    """The headline lift's difference gets a CI: each run's stratified bootstrap draws (the
    ones behind its own CI) subtracted draw by draw, drawn independently for the two runs."""
    t, r = _run(tmp_path / "t" / "r"), _run(tmp_path / "r" / "r")
    run_t, run_r = report.load_run(t), report.load_run(r)
    diffs = {d.basis: d for d in compare_runs(run_t, run_r, n_boot=2000)}
    row = next(x for x in diffs["sae"].table.to_dicts() if x["column"] == "lift_vs_random_dirs")
    own = report.leaderboard_table([run_t], n_boot=2000).table
    sae = own.filter(own["basis"] == "sae").row(0, named=True)
    # the draws reproduce the run's own cell and CI
    draws = stratified_draws(run_t, "sae", sae["method"], n_boot=2000, seed=0)
    assert np.quantile(draws, [0.025, 0.975]) == pytest.approx(
        [sae["lift_vs_random_dirs_ci_low"], sae["lift_vs_random_dirs_ci_high"]]
    )
    # the same data in both runs: difference 0, a CI around it about sqrt(2) times as wide as
    # one run's (the same draws in both runs would give [0, 0])
    assert row["difference"] == pytest.approx(0.0)
    assert row["note"].startswith("bootstrap within density strata")
    width = sae["lift_vs_random_dirs_ci_high"] - sae["lift_vs_random_dirs_ci_low"]
    assert row["ci_low"] < 0 < row["ci_high"]
    assert 1.2 < (row["ci_high"] - row["ci_low"]) / width < 1.7

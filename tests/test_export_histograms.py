"""Neuronpedia's two histograms (``autointerp.export.histograms``, ``autointerp.export.lens``):
hand-computed cases, the logit lens from a tiny model loaded from the run's model spec, and its
check against the output stage's logits."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import torch
from synthetic_runs import synth_run
from test_export import _rows, add_stage_columns, add_weights, check_round_trip

from autointerp.causal.logit_lens import logit_lens
from autointerp.columns import StageColumns, save_columns
from autointerp.export import export_run
from autointerp.export.histograms import HIST_BINS, activation_histogram, histogram
from autointerp.report import load_run
from autointerp.results import write_parquet
from autointerp.types import Example, FeatureRecord
from tests.conftest import make_tiny_model

A, B = 5, 7  # the tokens the hand-set unembedding gives logits +4 and -3


def ex(acts: list[float], kind: str, q: int = -1) -> Example:
    return Example(["x"] * len(acts), [0] * len(acts), acts, kind, quantile=q)


def test_histogram_bars_by_hand():
    heights, centres = histogram([0.0, 1.0, 2.5, 4.0], bins=4)
    assert heights == [1, 1, 1, 1] and centres == [0.5, 1.5, 2.5, 3.5]
    heights, centres = histogram([1.0, 1.0, 3.0], weights=[2.0, 1.0, 0.5], bins=2)
    assert heights == [3.0, 0.5] and centres == [1.5, 2.5]
    assert histogram([2.0, 2.0]) == ([2.0], [2.0])  # one value: one bar
    assert histogram([]) == ([], [])


def test_activation_histogram_by_hand():
    """Top windows once each; quantile windows weighted ``max(c, n_q) / n_q`` with ``c`` from
    the density: bin 0 gave 2 windows (1 firing token each), bin 1 one window (2 tokens), so
    ``s = 2/2 + 2/1 = 3``; density 0.08 of 100 tokens = 8 firing, 2 in the top windows:
    ``c = (8 - 2) / 3 = 2``: bin-0 tokens weigh 1, bin-1 tokens 2; the heights sum to 8."""
    rec = FeatureRecord(
        "sae", 3, density=0.08, max_act=5.0,
        explain=[ex([0.0, 5.0], "top"), ex([1.0, 0.0], "quantile", 0)],
        test_top=[ex([4.25, 0.0], "top")],
        test_quantile=[ex([0.0, 1.0], "quantile", 0), ex([2.05, 2.05], "quantile", 1)],
        test_random=[ex([0.0, 3.0], "random")],  # not used: a different sample
    )  # fmt: skip
    heights, centres = activation_histogram(rec, n_tokens=100)
    want = [0.0] * HIST_BINS
    want[0], want[10], want[32], want[39] = 2.0, 4.0, 1.0, 1.0  # 1.0, 2.05, 4.25, 5.0 (w 0.1)
    assert heights == pytest.approx(want) and sum(heights) == pytest.approx(0.08 * 100)
    assert centres == pytest.approx([1.0 + 0.1 * (i + 0.5) for i in range(HIST_BINS)])
    # unknown corpus size: c is its floor (max n_q - 1 = 1): every window counts once
    heights, _ = activation_histogram(rec, n_tokens=None)
    want[10] = 2.0
    assert heights == pytest.approx(want)
    # too few firing tokens for the density: floored, never below one per token
    heights, _ = activation_histogram(rec, n_tokens=10)
    assert heights == pytest.approx(want)
    none = FeatureRecord("sae", 4, 0.0, 0.0, test_random=[ex([0.0, 0.0], "random")])
    assert activation_histogram(none, 100) == ([], [])


def _tiny_run(tmp_path: Path, output_stage: bool = False) -> tuple[Path, int, int]:
    """A synthetic run whose manifest names a saved 7-layer width-8 tiny model; the model's
    final norm weight is 2 on axis 0, its unembedding 2 on axis 0 for token A and -1.5 for B, 0
    elsewhere; the first recorded sae feature's decoder row is e_0: its lens is +4 on A, -3 on
    B, 0 on every other token. Returns (run dir, that feature, vocabulary size)."""
    rd = synth_run(tmp_path / "suite" / "run-1", seed=3, n_scored=6)
    add_weights(rd)
    if output_stage:
        add_stage_columns(rd)
    sm = make_tiny_model(n_layers=7, d_model=8)
    with torch.no_grad():
        sm.model.model.norm.weight.fill_(1.0)
        sm.model.model.norm.weight[0] = 2.0
        sm.model.lm_head.weight.zero_()
        sm.model.lm_head.weight[A, 0] = 2.0
        sm.model.lm_head.weight[B, 0] = -1.5
    tiny = tmp_path / "tiny"
    sm.model.save_pretrained(tiny)
    sm.tokenizer.save_pretrained(tiny)
    man = json.loads((rd / "manifest.json").read_text())
    man["config"]["model"] = {"name": str(tiny), "dtype": "float32", "device": "cpu"}
    (rd / "manifest.json").write_text(json.dumps(man))
    w = pl.read_parquet(rd / "weights" / "sae.parquet")
    f0 = w.filter(pl.col("decoder").is_not_null())["index"][0]
    e0 = [1.0] + [0.0] * 7
    dec = [e0 if i == f0 else d for i, d in zip(w["index"], w["decoder"].to_list())]
    write_parquet(w.with_columns(pl.Series("decoder", dec, dtype=pl.List(pl.Float32))),
                  rd / "weights" / "sae.parquet")  # fmt: skip
    return rd, int(f0), sm.model.config.vocab_size


def test_logits_histogram_by_hand_on_a_tiny_model(tmp_path):
    """Without an output stage the export computes the lens itself (top / bottom tokens and
    the histogram, loading the tiny model named by the run's manifest); by hand: 40 bars from
    -3 to 4 (width 0.175): B in bar 0, the V - 2 zeros in bar 17 (3 / 0.175 = 17.1), A in 39."""
    rd, f0, vocab = _tiny_run(tmp_path)
    out = tmp_path / "np"
    _, notes = export_run(rd, "neuronpedia", out)
    man = check_round_trip(rd, out, vocab=vocab)
    sae = next(s for s in man["sources"] if s["basis"] == "sae")
    assert all(s["logits_hist"] == "ok" for s in man["sources"])
    assert any("pos_str/neg_str from the export's lens" in n for n in notes)
    row = next(r for r in _rows(out / sae["source"] / "features") if int(r["index"]) == f0)
    want = [0] * HIST_BINS
    want[0], want[17], want[39] = 1, vocab - 2, 1
    assert row["logits_hist_data_bar_heights"] == want
    w = 7 / 40
    assert row["logits_hist_data_bar_values"] == pytest.approx(
        [-3 + w * (i + 0.5) for i in range(HIST_BINS)], abs=1e-5
    )
    assert row["pos_str"][0] == "2" and row["pos_values"][0] == pytest.approx(4.0)  # id 5: "2"
    assert row["neg_str"][0] == "4" and row["neg_values"][0] == pytest.approx(-3.0)
    assert man["field_notes"]["logits_hist_data_bar_heights/values"].startswith("40 equal")


def test_lens_checked_against_the_output_stage(tmp_path):
    """The output stage's logits (the harness's own logit lens on the same model) agree: the
    histograms are written and pos_str is the stage's; made-up stage logits disagree: the
    basis gets no logits histogram, and the note says why."""
    rd, f0, vocab = _tiny_run(tmp_path, output_stage=True)
    out = tmp_path / "np"
    _, notes = export_run(rd, "neuronpedia", out)
    man = check_round_trip(rd, out, vocab=vocab)
    for s in man["sources"]:
        assert "is not the output stage's" in s["logits_hist"]
        rows = _rows(out / s["source"] / "features")
        assert all(r["logits_hist_data_bar_heights"] == [] for r in rows)
        assert all(r["pos_str"] == [" cat", " dog"] for r in rows)  # the stage's, kept
    assert sum("logits_hist_data_bar_* left empty" in n for n in notes) == 4
    # now the stage holds the true lens of each sae feature (as the output stage computes it)
    from autointerp.bases.sae import SAE
    from autointerp.model import load_model

    run = load_run(rd)
    sm = load_model(run.manifest["config"]["model"]["name"], device="cpu")
    w = pl.read_parquet(rd / "weights" / "sae.parquet").filter(pl.col("decoder").is_not_null())
    feats = w["index"].to_list()
    dec = torch.zeros(max(feats) + 1, 8)
    dec[feats] = torch.tensor(w["decoder"].to_list())
    sae = SAE(torch.zeros(8, len(dec)), torch.zeros(len(dec)), dec, torch.zeros(8))
    hp = sm.hookpoint(run.hookpoint)
    cols = StageColumns("output", [], extra={"features": {
        "sae": [ln.to_dict() for ln in logit_lens(sm, hp, sae, feats, 5)]}})  # fmt: skip
    save_columns(rd, cols)
    out2 = tmp_path / "np2"
    export_run(rd, "neuronpedia", out2)
    man = check_round_trip(rd, out2, vocab=vocab)
    sae_src = next(s for s in man["sources"] if s["basis"] == "sae")
    assert sae_src["logits_hist"] == "ok" and sae_src["has_logit_lens"]
    row = next(r for r in _rows(out2 / sae_src["source"] / "features") if int(r["index"]) == f0)
    assert len(row["pos_str"]) == 5 and row["logits_hist_data_bar_heights"][17] == vocab - 2


def test_run_without_a_model_spec_says_so(tmp_path):
    rd = synth_run(tmp_path / "suite" / "run-1", seed=3, n_scored=4)
    add_weights(rd)
    _, notes = export_run(rd, "neuronpedia", tmp_path / "np")
    assert len(notes) == 4 and all("names no subject model" in n for n in notes)

"""``autointerp export`` (SAEBench, Neuronpedia) and ``autointerp card``: files validated
against SAEBench 0.6.0's published JSON schemas (copies in autointerp/export/schemas/), the
weight statistics checked by hand, a Neuronpedia round trip over every feature and window."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import numpy as np
import polars as pl
import pytest
import torch
from synthetic_runs import synth_run
from test_causal_stages import _run, no_llm, tiny_suite  # noqa: F401 - no_llm: a fixture

from autointerp.bases.linear import RandomDirections, SignedLinearBasis
from autointerp.bases.sae import SAE
from autointerp.bases.weight_stats import weight_stats
from autointerp.causal.summary import IOI_COLUMNS
from autointerp.cli import main
from autointerp.columns import Cell, ColumnDoc, StageColumns, save_columns
from autointerp.export import export_run
from autointerp.export.common import read_jsonl
from autointerp.export.harness_evals import SCHEMA_DIR, builtin_schemas, schema_name
from autointerp.export.histograms import HIST_BINS
from autointerp.report import load_run
from autointerp.results import write_parquet
from autointerp.stages.output_side import OUTPUT_COLUMNS

DEFAULT_RUN = Path(__file__).parent.parent / "results" / "default" / "run-2c069127b7c1"
SMOLLM2_VOCAB = 49152
SAEBENCH_TYPES = ("core", "autointerp", "absorption_first_letter")


# --------------------------------------------------------------------------- helpers


def schema(eval_type: str) -> dict:
    return json.loads((SCHEMA_DIR / schema_name(eval_type)).read_text())


def _resolve(s: dict, node: dict) -> dict:
    ref = node.get("$ref")
    return s["$defs"][ref.rsplit("/", 1)[1]] if ref else node


def validate(path: Path, eval_type: str) -> dict:
    """Validate one result file against its committed schema, and what the JSON schema does
    not check but SAEBench's pydantic models do: the type id, flat metric categories, and no
    field the schema does not name."""
    d = json.loads(path.read_text())  # strict JSON (no NaN)
    s = schema(eval_type)
    jsonschema.validate(d, s)
    assert d["eval_type_id"] == eval_type
    assert path.name.endswith("_eval_results.json") and path.parent.name == eval_type
    cats = _resolve(s, s["properties"]["eval_result_metrics"])
    assert set(d["eval_result_metrics"]) == set(cats["properties"])
    for cat, metrics in d["eval_result_metrics"].items():
        fields = _resolve(s, cats["properties"][cat])["properties"]
        if eval_type in SAEBENCH_TYPES:
            assert set(metrics) == set(fields), cat
        else:  # a harness stage writes the columns it computed, each with CI and n
            assert metrics and set(metrics) <= set(fields), cat
        assert not any(isinstance(v, (dict, list)) for v in metrics.values()), cat
    if eval_type in SAEBENCH_TYPES:
        cfg = _resolve(s, s["properties"]["eval_config"])["properties"]
        assert set(d["eval_config"]) <= set(cfg)
        items = s["properties"]["eval_result_details"].get("items")
        if items and "$ref" in items:
            keys = set(_resolve(s, items)["properties"])
            assert all(set(e) == keys for e in d["eval_result_details"])
    return d


def add_weights(rd: Path, d: int = 8, seed: int = 0) -> None:
    """``weights/<basis>.parquet`` of a random SAE per basis, as the weights stage writes."""
    g = torch.Generator().manual_seed(seed)
    run = load_run(rd)
    for b in run.manifest["bases"]:
        n = b["n_features"]
        sae = SAE(
            torch.randn(d, n, generator=g),
            torch.randn(n, generator=g),
            torch.randn(n, d, generator=g),
            torch.zeros(d),
        )
        df = weight_stats(sae, sorted(run.records(b["name"])))
        write_parquet(df, rd / "weights" / f"{b['name']}.parquet")


def add_stage_columns(rd: Path) -> None:
    """An IOI stage (one undefined cell) and an output stage with logit-lens tokens."""
    run = load_run(rd)
    ioi = StageColumns("ioi", list(IOI_COLUMNS), extra={"curves": {}})
    out = StageColumns("output", list(OUTPUT_COLUMNS), extra={"features": {}})
    for i, (b, _) in enumerate(run.bases):
        for c in IOI_COLUMNS:
            cell = Cell(0.1 * i, 0.05 * i, 0.2 * i, 64)
            if c.name == "ioi_half_kl_features" and b == "pca":
                cell = Cell.undefined("never reaches half the unpatched KL within k = all", 64)
            ioi.set(b, c.name, cell)
        for c in OUTPUT_COLUMNS:
            out.set(b, c.name, Cell(1.0 + i, 0.5, 1.5 + i, 40))
        ioi.extra["curves"][b] = {"k": [1, 4], "kl": [2.0, 1.5 - 0.1 * i]}
        out.extra["features"][b] = [
            {"feature": f, "top": [[" cat", 2.5], [" dog", 1.0]], "bottom": [["xyz", -3.0]]}
            for f in sorted(run.records(b))
        ]
    save_columns(rd, ioi)
    save_columns(rd, out)


@pytest.fixture
def full_run(tmp_path):
    rd = synth_run(tmp_path / "suite" / "run-1", seed=3, n_scored=12)
    add_weights(rd)
    add_stage_columns(rd)
    return rd


# --------------------------------------------------------------------------- weight statistics


def test_weight_stats_by_hand_sae():
    # 3 features in 2 dims: encoder columns e0=(1,0), e1=(0,2), e2=(1,1); decoder rows
    # d0=(2,0), d1=(1,1), d2=(0,-1)
    w_enc = torch.tensor([[1.0, 0.0, 1.0], [0.0, 2.0, 1.0]])
    w_dec = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
    sae = SAE(w_enc, torch.tensor([0.5, -1.0, 0.0]), w_dec, torch.zeros(2))
    df = weight_stats(sae, [1])
    r = df.to_dicts()
    s2 = 1 / math.sqrt(2)
    assert [x["encoder_norm"] for x in r] == pytest.approx([1.0, 2.0, math.sqrt(2)])
    assert [x["encoder_bias"] for x in r] == pytest.approx([0.5, -1.0, 0.0])
    # cos(e_i, d_i): (1,0).(1,0)=1; (0,1).(s2,s2)=s2; (s2,s2).(0,-1)=-s2
    assert [x["encoder_decoder_cosine_sim"] for x in r] == pytest.approx([1.0, s2, -s2])
    # encoder: e0 vs e2 = s2, e1 vs e2 = s2, e2 vs e0/e1 = s2
    assert [x["max_encoder_cosine_sim"] for x in r] == pytest.approx([s2, s2, s2])
    # decoder: d0.d1 = s2, d0.d2 = 0, d1.d2 = -s2 -> max: s2, s2, 0
    assert [x["max_decoder_cosine_sim"] for x in r] == pytest.approx([s2, s2, 0.0], abs=1e-6)
    assert r[1]["decoder"] == pytest.approx([1.0, 1.0])
    assert r[1]["topk_cos_indices"] == [0, 2] and r[0]["decoder"] is None
    assert r[1]["topk_cos_values"] == pytest.approx([s2, -s2])


def test_weight_stats_signed_linear_and_random():
    e = torch.eye(2)
    mu = torch.tensor([1.0, 2.0])
    pca = SignedLinearBasis("pca", "pca", e, e, mu, k=None)
    r = weight_stats(pca, [0, 3]).to_dicts()
    # features: +dir0, +dir1, -dir0, -dir1; bias of +j is -(mu @ E)_j
    assert [x["encoder_bias"] for x in r] == pytest.approx([-1.0, -2.0, 1.0, 2.0])
    assert [x["encoder_decoder_cosine_sim"] for x in r] == pytest.approx([1.0] * 4)
    # orthogonal directions: the nearest other column is orthogonal (its negation is -1)
    assert [x["max_decoder_cosine_sim"] for x in r] == pytest.approx([0.0] * 4, abs=1e-6)
    assert r[3]["decoder"] == pytest.approx([0.0, -1.0])
    rnd = RandomDirections("random", torch.eye(2), torch.tensor([0.5, 0.25]), mu, scale=2.0)
    r = weight_stats(rnd, [1]).to_dicts()
    assert [x["encoder_bias"] for x in r] == pytest.approx([-1.5, -2.25])
    assert r[1]["decoder"] == pytest.approx([0.0, 2.0])


# --------------------------------------------------------------------------- SAEBench


def test_saebench_export_validates_and_fills_every_field(full_run, tmp_path):
    out = tmp_path / "sb"
    paths, notes = export_run(full_run, "saebench", out)
    run = load_run(full_run)
    names = [b for b, _ in run.bases]
    by_type: dict[str, list[Path]] = {}
    for p in paths:
        by_type.setdefault(p.parent.name, []).append(p)
    assert sorted(p.name for p in by_type["core"]) == sorted(
        f"autointerp-suite-run-1_{b}_eval_results.json" for b in names
    )
    assert any("absorption_first_letter" in n for n in notes)  # no absorption stage: skipped
    for t in ("core", "autointerp", "autointerp_ioi", "autointerp_output"):
        assert len([p for p in by_type[t] if p.name.endswith("_eval_results.json")]) == 4, t
    for p in paths:
        if p.name.startswith("eval_output_schema_"):
            # the schema written next to the files is the committed one
            assert json.loads(p.read_text()) == schema(p.parent.name)
            continue
        d = validate(p, p.parent.name)
        b = d["sae_lens_id"]
        if p.parent.name == "core":
            w = pl.read_parquet(full_run / "weights" / f"{b}.parquet").sort("index")
            det = d["eval_result_details"]
            assert len(det) == len(w)
            assert [e["encoder_norm"] for e in det] == pytest.approx(w["encoder_norm"].to_list())
            misc = d["eval_result_metrics"]["misc_metrics"]
            assert misc["average_max_decoder_cosine_sim"] == pytest.approx(
                float(np.mean(w["max_decoder_cosine_sim"].to_numpy()))
            )
            dens = run.density.filter(pl.col("basis") == b).sort("feature")["density"]
            assert misc["freq_over_1_percent"] == pytest.approx(float((dens > 0.01).mean()))
            assert [e["feature_density"] for e in det] == pytest.approx(dens.to_list())
            # every weight field is computed; the per-prompt heuristic is -1 and named
            un = d["eval_result_unstructured"]
            assert not any("encoder" in f or "cosine" in f for f in un["nan_fields"])
            assert any("consistent_activation_heuristic" in f for f in un["nan_fields"])
            assert all(e["consistent_activation_heuristic"] == -1 for e in det)
        if p.parent.name == "autointerp":
            s = run.scores.filter(
                (pl.col("basis") == b)
                & (pl.col("null") == "")
                & (pl.col("status") == "ok")
                & (pl.col("scorer") == "detection")
            )["value"]
            m = d["eval_result_metrics"]["autointerp"]
            assert m["autointerp_score"] == pytest.approx(float(s.mean()))
            assert m["autointerp_std_dev"] == pytest.approx(float(s.std()))  # ddof=1, as torch
            assert "detection" in d["eval_result_unstructured"]["protocol_difference"]
        if p.parent.name == "autointerp_ioi" and b == "pca":
            m = d["eval_result_metrics"]["ioi"]
            assert m["ioi_half_kl_features"] == -1 and m["ioi_half_kl_features_n"] == 64
            assert (
                "never reaches" in d["eval_result_unstructured"]["reasons"]["ioi_half_kl_features"]
            )


def test_saebench_absorption_from_the_absorption_stage(full_run, tmp_path):
    names = (
        "mean_absorption_fraction_score",
        "mean_full_absorption_score",
        "mean_num_split_features",
    )
    cols = StageColumns("absorption", [ColumnDoc(n, n, "lower") for n in names])
    for b in ("sae", "pca"):
        for i, n in enumerate(names):
            cols.set(b, n, Cell(0.1 * (i + 1), 0.0, 0.5, 26))
    cols.extra = {
        "letters": {
            "sae": [
                {
                    "first_letter": "a",
                    "mean_absorption_fraction": 0.2,
                    "full_absorption_rate": 0.1,
                    "num_full_absorption": 3,
                    "num_probe_true_positives": 30,
                    "num_split_features": 1,
                }
            ]
        }
    }
    save_columns(full_run, cols)
    paths, notes = export_run(full_run, "saebench", tmp_path / "sb")
    ab = [p for p in paths if p.parent.name == "absorption_first_letter"]
    assert len(ab) == 2 and not any("absorption" in n for n in notes)
    assert not any(p.parent.name == "autointerp_absorption" for p in paths)
    d = validate(next(p for p in ab if "_sae_" in p.name), "absorption_first_letter")
    mean = d["eval_result_metrics"]["mean"]
    assert mean["mean_full_absorption_score"] == pytest.approx(0.2)
    assert mean["std_dev_num_split_features"] == -1  # not in the stage: -1, named
    assert d["eval_result_details"][0]["first_letter"] == "a"


def test_builtin_harness_schemas_are_committed():
    for t, s in builtin_schemas().items():
        assert json.loads((SCHEMA_DIR / schema_name(t)).read_text()) == s, (
            f"{t}: regenerate with python -m autointerp.export.harness_evals"
        )


def test_committed_default_run_validates(tmp_path):
    """The committed default run (read-only) exports to files SAEBench's schemas accept."""
    if not DEFAULT_RUN.is_dir():
        pytest.fail(f"{DEFAULT_RUN} is missing: the committed default run is part of the repo")
    paths, _ = export_run(DEFAULT_RUN, "saebench", tmp_path / "sb")
    types = {p.parent.name for p in paths}
    assert {"core", "autointerp", "autointerp_ioi", "autointerp_output"} <= types
    for p in paths:
        if not p.name.startswith("eval_output_schema_"):
            validate(p, p.parent.name)
    core = json.loads(next(p for p in paths if p.parent.name == "core").read_text())
    if not (DEFAULT_RUN / "weights").is_dir():  # run predates the weights stage: said so
        assert any("weights/" in n for n in core["eval_result_unstructured"]["not_computed"])


# --------------------------------------------------------------------------- Neuronpedia


FEATURE_FIELDS = {  # Neuronpedia's Feature dataclass (neuronpedia-utils db_models/feature.py)
    "modelId",
    "layer",
    "index",
    "creatorId",
    "createdAt",
    "maxActApprox",
    "hasVector",
    "vector",
    "vectorLabel",
    "vectorDefaultSteerStrength",
    "hookName",
    "topkCosSimIndices",
    "topkCosSimValues",
    "neuron_alignment_indices",
    "neuron_alignment_values",
    "neuron_alignment_l1",
    "correlated_neurons_indices",
    "correlated_neurons_pearson",
    "correlated_neurons_l1",
    "correlated_features_indices",
    "correlated_features_pearson",
    "correlated_features_l1",
    "neg_str",
    "neg_values",
    "pos_str",
    "pos_values",
    "frac_nonzero",
    "freq_hist_data_bar_heights",
    "freq_hist_data_bar_values",
    "logits_hist_data_bar_heights",
    "logits_hist_data_bar_values",
    "decoder_weights_dist",
}
ACTIVATION_FIELDS = {
    "id",
    "tokens",
    "index",
    "layer",
    "modelId",
    "maxValue",
    "maxValueTokenIndex",
    "minValue",
    "values",
    "creatorId",
    "dataSource",
    "dataIndex",
    "dfaValues",
    "dfaTargetIndex",
    "dfaMaxValue",
    "createdAt",
    "lossValues",
    "logitContributions",
    "binMin",
    "binMax",
    "binContains",
    "qualifyingTokenIndex",
}
EXPLANATION_FIELDS = {
    "id",
    "modelId",
    "layer",
    "index",
    "description",
    "authorId",
    "embedding",
    "triggeredById",
    "typeName",
    "explanationModelName",
    "notes",
    "createdAt",
}


def _rows(folder: Path) -> list[dict]:
    return [r for p in sorted(folder.glob("batch-*.jsonl.gz")) for r in read_jsonl(p)]


def check_histograms(row: dict, rec, n_tokens: int | None, vocab: int | None) -> None:
    """A feature row's two histograms agree with the record and with its top logits."""
    h, v = row["freq_hist_data_bar_heights"], row["freq_hist_data_bar_values"]
    wins = [e for k in ("explain", "test_top", "test_quantile") for e in getattr(rec, k)]
    nz = [a for e in wins for a in e.acts if a > 0]
    assert len(h) == len(v) and len(h) in ((0,) if not nz else (1, HIST_BINS))
    if len(h) == HIST_BINS:
        w = v[1] - v[0]
        assert v[0] - w / 2 == pytest.approx(min(nz), rel=1e-4, abs=1e-4)
        assert v[-1] + w / 2 == pytest.approx(max(nz), rel=1e-4, abs=1e-4)
    assert min(h, default=0) >= 0 and sum(h) >= len(nz) - 0.01 * len(h)  # each at least once
    if n_tokens and any(e.kind == "quantile" and max(e.acts) > 0 for e in wins):
        assert sum(h) >= rec.density * n_tokens - 0.01 * len(h)
    lh, lv = row["logits_hist_data_bar_heights"], row["logits_hist_data_bar_values"]
    assert len(lh) == len(lv) and all(isinstance(x, int) and x >= 0 for x in lh)
    if lh and vocab is not None:
        assert sum(lh) == vocab
    if len(lh) == HIST_BINS and row["pos_values"]:  # the bars span the lens's bottom to top
        w = lv[1] - lv[0]
        assert lv[-1] + w / 2 == pytest.approx(row["pos_values"][0], abs=2e-3)
        assert lv[0] - w / 2 == pytest.approx(row["neg_values"][0], abs=2e-3)


def check_round_trip(rd: Path, out: Path, vocab: int | None = None) -> dict:
    """Every feature and window of the run is in the export, with its values; the histograms
    agree with the records and the top logits (heights sum to ``vocab`` when given)."""
    run = load_run(rd)
    n_tokens = ((run.manifest.get("config") or {}).get("corpus") or {}).get("n_tokens")
    man = json.loads((out / "autointerp-export.json").read_text())
    assert {s["basis"] for s in man["sources"]} == {b for b, _ in run.bases}
    for s in man["sources"]:
        root = out / s["source"]
        for f in ("release", "model", "sourceset", "source"):
            assert len(read_jsonl(root / f"{f}.jsonl")) == 1, f
        src = read_jsonl(root / "source.jsonl")[0]
        assert root.name == src["id"] and src["setName"] in src["id"]
        recs = run.records(s["basis"])
        feats = _rows(root / "features")
        assert sorted(int(r["index"]) for r in feats) == sorted(recs)
        assert all(set(r) == FEATURE_FIELDS for r in feats)
        acts = _rows(root / "activations")
        assert all(set(r) == ACTIVATION_FIELDS for r in acts)
        got: dict[int, list] = {}
        for a in acts:
            got.setdefault(int(a["index"]), []).append((a["tokens"], a["values"]))
        for f, rec in recs.items():
            want = [
                (e.tokens, e.acts)
                for k in ("explain", "test_top", "test_quantile", "test_random")
                for e in getattr(rec, k)
            ]
            assert len(got.get(f, [])) == len(want), (s["basis"], f)
            for (tk, vs), (tw, vw) in zip(got[f], want):
                assert tk == tw and vs == pytest.approx(vw)
        fr = {int(r["index"]): r for r in feats}
        for f, rec in recs.items():
            assert fr[f]["maxActApprox"] == pytest.approx(rec.max_act)
            assert fr[f]["frac_nonzero"] == pytest.approx(rec.density)
            check_histograms(fr[f], rec, n_tokens, vocab)
        exps = _rows(root / "explanations")
        assert all(set(r) == EXPLANATION_FIELDS for r in exps)
        if run.features is not None:
            want_e = run.features.filter(
                (pl.col("basis") == s["basis"])
                & pl.col("explanation_status").is_in(["ok", "truncated"])
                & (pl.col("explanation") != "")
            )
            assert {int(r["index"]): r["description"] for r in exps} == dict(
                zip(want_e["feature"].to_list(), want_e["explanation"].to_list())
            )
        scores = _rows(root / "explanation_scores")
        ids = {e["id"] for e in exps}
        assert all(r["explanationId"] in ids and math.isfinite(r["value"]) for r in scores)
        assert len(scores) == s["scores"]
    return man


def test_neuronpedia_round_trip(full_run, tmp_path):
    out = tmp_path / "np"
    export_run(full_run, "neuronpedia", out)
    man = check_round_trip(full_run, out)
    sae = next(s for s in man["sources"] if s["basis"] == "sae")
    assert sae["source"] == "smollm2-gguf/6-autointerp-sae" and sae["has_vectors"]
    feats = _rows(out / sae["source"] / "features")
    w = pl.read_parquet(full_run / "weights" / "sae.parquet")
    wr = {r["index"]: r for r in w.to_dicts()}
    for r in feats:
        f = int(r["index"])
        assert r["vector"] == pytest.approx(wr[f]["decoder"]) and r["hasVector"]
        assert r["topkCosSimIndices"] == wr[f]["topk_cos_indices"]
        assert r["pos_str"] == [" cat", " dog"] and r["neg_values"] == [-3.0]
        top = int(np.argmax(np.abs(wr[f]["decoder"])))
        assert r["neuron_alignment_indices"][0] == top
    # scores: one row per ok real score of an explained feature
    run = load_run(full_run)
    explained = set(run.features.filter(pl.col("basis") == "sae")["feature"].to_list())
    ok = run.scores.filter(
        (pl.col("basis") == "sae")
        & (pl.col("null") == "")
        & (pl.col("status") == "ok")
        & pl.col("feature").is_in(explained)
    )
    assert sae["scores"] == len(ok)


def test_neuronpedia_committed_default_run_round_trips():
    """The committed export (``results/default/<run>/export/neuronpedia``): every feature and
    window, and both histograms of every feature (SmolLM2's vocabulary: 49,152 tokens)."""
    out = DEFAULT_RUN / "export" / "neuronpedia"
    man = check_round_trip(DEFAULT_RUN, out, vocab=SMOLLM2_VOCAB)
    assert len(man["sources"]) == 5 and all(s["features"] == 64 for s in man["sources"])
    assert all(s["logits_hist"] == "ok" for s in man["sources"]) and not man["notes"]
    for s in man["sources"]:
        for r in _rows(out / s["source"] / "features"):
            assert len(r["logits_hist_data_bar_heights"]) == HIST_BINS
            assert len(r["freq_hist_data_bar_heights"]) == HIST_BINS


@pytest.mark.slow
def test_neuronpedia_committed_export_is_current(tmp_path):
    """Regenerating the committed run's export (loads SmolLM2 for its unembedding) gives the
    committed features: the same histograms (heights within a token or two of a kernel's
    rounding at a bar edge) and top logits."""
    out = tmp_path / "np"
    export_run(DEFAULT_RUN, "neuronpedia", out)
    man = check_round_trip(DEFAULT_RUN, out, vocab=SMOLLM2_VOCAB)
    old = DEFAULT_RUN / "export" / "neuronpedia"
    for s in man["sources"]:
        new_f = {r["index"]: r for r in _rows(out / s["source"] / "features")}
        for r in _rows(old / s["source"] / "features"):
            n = new_f[r["index"]]
            assert n["freq_hist_data_bar_heights"] == r["freq_hist_data_bar_heights"]
            assert n["logits_hist_data_bar_values"] == pytest.approx(
                r["logits_hist_data_bar_values"], abs=1e-3
            )
            d = np.abs(np.subtract(n["logits_hist_data_bar_heights"],
                                   r["logits_hist_data_bar_heights"]))  # fmt: skip
            assert d.sum() <= 4 and n["pos_values"] == r["pos_values"]


# --------------------------------------------------------------------------- card and CLI


def test_card_sections_figures_and_reproduce(full_run, tmp_path):
    out = tmp_path / "card" / "card.md"
    assert main(["card", str(full_run), "--out", str(out)]) == 0
    text = out.read_text()
    for h in ("## Setup", "## Headline", "## Figures", "## Caveats", "## Reproduce"):
        assert h in text
    assert "| model | smollm2-gguf |" in text and "`blocks.6.hook_resid_post`" in text
    for b in ("sae", "pca", "neurons", "random (null)"):  # the headline marks the null row
        assert f"| {b} |" in text
    figs = list((out.parent / "card_figures").glob("*.png"))
    assert figs and all(f"card_figures/{f.name}" in text for f in figs)
    assert "autointerp run evals/suite.toml --run run-1" in text
    assert "no suite file found" in text  # the synthetic run has no suite file: said so


def test_cli_export_and_errors(full_run, tmp_path, capsys):
    assert main(["export", str(full_run), str(tmp_path / "o"), "--to", "saebench"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["export", str(tmp_path), str(tmp_path / "o2"), "--to", "neuronpedia"]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert main(["export", str(full_run), str(full_run), "--to", "saebench"]) == 2
    assert "folder of its own" in capsys.readouterr().err


# --------------------------------------------------------------------------- in a real run


@pytest.mark.usefixtures("no_llm")
def test_weights_stage_in_a_suite_then_both_exports(tmp_path):
    """A tiny-model suite writes weights/<basis>.parquet; its exports validate and round-trip;
    a rerun finds the weights cached."""
    suite = tiny_suite(tmp_path, ioi={"enabled": False}, attribution={"enabled": False})
    rd, st = _run(tmp_path, suite)
    assert st["weights"] == "computed (3)"
    for b in ("pca", "neurons", "random"):
        w = pl.read_parquet(rd / "weights" / f"{b}.parquet")
        recorded = sorted(load_run(rd).records(b))
        assert w.filter(pl.col("decoder").is_not_null())["index"].to_list() == recorded
        assert w["encoder_norm"].is_finite().all()
    paths, _ = export_run(rd, "saebench", tmp_path / "sb")
    for p in paths:
        if not p.name.startswith("eval_output_schema_"):
            d = validate(p, p.parent.name)
            if p.parent.name == "core":
                assert not any("cosine" in f for f in d["eval_result_unstructured"]["nan_fields"])
    export_run(rd, "neuronpedia", tmp_path / "np")
    vocab = json.loads((Path(suite.model.name) / "config.json").read_text())["vocab_size"]
    man = check_round_trip(rd, tmp_path / "np", vocab=vocab)
    # the export's lens (tiny model loaded from the run's manifest) is the output stage's
    assert [(s["has_logit_lens"], s["logits_hist"]) for s in man["sources"]] == [(True, "ok")] * 3
    _, st = _run(tmp_path, suite)
    assert st["weights"] == "cached (3)"


def test_weight_stats_of_a_basis_without_encoder_matrix():
    """A plug-in basis: decoder rows from decode(e_i) - decode(0); encoder fields NaN."""
    from autointerp.bases.base import Basis

    class Doubler(Basis):
        def __init__(self) -> None:
            super().__init__("dbl", "plugin")

        @property
        def d_in(self) -> int:
            return 2

        @property
        def n_features(self) -> int:
            return 3

        def encode(self, x):
            return torch.relu(torch.cat([x, x[:, :1]], 1))

        def decode(self, c):
            return torch.stack([2 * c[:, 0] + c[:, 2], 2 * c[:, 1]], 1) + 1.0

    r = weight_stats(Doubler(), [0, 2]).to_dicts()
    assert r[0]["decoder"] == pytest.approx([2.0, 0.0]) and r[2]["decoder"] == pytest.approx([1, 0])
    assert all(math.isnan(x["encoder_norm"]) for x in r)
    assert [x["max_decoder_cosine_sim"] for x in r] == pytest.approx([1.0, 0.0, 1.0], abs=1e-6)

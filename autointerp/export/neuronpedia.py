"""A run as Neuronpedia's export layout, one source per basis (baselines and the random null
included, so the comparison survives the upload):

```
<out>/<modelId>/<layer>-<setName>/release.jsonl, model.jsonl, sourceset.jsonl, source.jsonl
    features/batch-N.jsonl.gz       one row per recorded feature (Neuronpedia's Feature)
    activations/batch-N.jsonl.gz    one row per recorded window (Activation)
    explanations/batch-N.jsonl.gz   one row per explanation (Explanation)
    explanation_scores/batch-N.jsonl.gz  sidecar: one row per ok score (ExplanationScore)
<out>/autointerp-export.json        what was exported, counts, and the fields left empty
```

Field names follow the dataclasses of Neuronpedia's ``neuronpedia-utils`` converters; where
the run holds the data, the fields are filled from it (docs/publishing.md lists the sources
and the fields left empty). The logits histogram needs the subject model's unembedding: the
export loads the run's model for its weights (:mod:`autointerp.export.lens`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from autointerp.export.common import (
    basis_info,
    basis_names,
    slug,
    weights,
    write_json,
    write_jsonl,
)
from autointerp.export.histograms import HIST_BINS, activation_histogram
from autointerp.export.lens import Lens, SubjectLens, basis_lens
from autointerp.export.neuronpedia_source import model_id, source_files, source_id
from autointerp.report.runs import Run
from autointerp.types import Example, FeatureRecord

BATCH = 1024
WINDOW_SETS = ("explain", "test_top", "test_quantile", "test_random")
N_ALIGN = 3
MANIFEST = "autointerp-export.json"
EMPTY_FIELDS = {
    "correlated_neurons_* / correlated_features_*": "not computed by this harness",
    "decoder_weights_dist": "not computed by this harness",
}
#: what the histograms are drawn from (written into autointerp-export.json)
FIELD_NOTES = {
    "freq_hist_data_bar_heights/values": f"{HIST_BINS} equal-width bars over the feature's "
    "non-zero activations: heights are estimated corpus token counts, from the record's top "
    "windows (each once) and its quantile windows (a stratified sample of the other firing "
    "windows, each weighted by the windows its activation bin holds, so that the heights sum "
    "to density x corpus tokens); values are bar centres",
    "logits_hist_data_bar_heights/values": f"{HIST_BINS} equal-width bars over the feature's "
    "logit-lens row over the full vocabulary (W_U (g * r), the output stage's logit lens, "
    "from the decoder row and the subject model's final norm and unembedding): heights count "
    "tokens and sum to the vocabulary size; values are bar centres",
}


def _windows(rec: FeatureRecord) -> list[tuple[str, Example]]:
    return [(k, e) for k in WINDOW_SETS for e in getattr(rec, k)]


def neuron_alignment(vec: list[float] | None) -> dict[str, list]:
    """The ``N_ALIGN`` activation dimensions with the largest |decoder| weight: indices,
    values, and each one's share of the decoder's L1 norm."""
    if not vec:
        return {
            "neuron_alignment_indices": [],
            "neuron_alignment_values": [],
            "neuron_alignment_l1": [],
        }
    v = np.asarray(vec, dtype=np.float64)
    idx = np.argsort(-np.abs(v), kind="stable")[:N_ALIGN]
    l1 = float(np.abs(v).sum())
    return {
        "neuron_alignment_indices": idx.tolist(),
        "neuron_alignment_values": v[idx].tolist(),
        "neuron_alignment_l1": (np.abs(v[idx]) / l1).tolist() if l1 > 0 else [],
    }


def _output_side(run: Run, basis: str) -> dict[int, dict[str, Any]]:
    for sc in run.columns:
        feats = (sc.extra.get("features") or {}) if sc.stage == "output" else {}
        if basis in feats:
            return {int(f["feature"]): f for f in feats[basis] if "feature" in f}
    return {}


def _finite(x: Any) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def feature_row(
    run: Run,
    sid: str,
    rec: FeatureRecord,
    w: dict[str, Any] | None,
    out: dict[str, Any] | None,
    lens: Lens,
    n_tokens: int | None,
    creator: str,
    created: str,
) -> dict[str, Any]:
    vec = list((w or {}).get("decoder") or [])
    f = rec.feature
    top = (out or {}).get("top") or lens.top.get(f) or []
    bottom = (out or {}).get("bottom") or lens.bottom.get(f) or []
    heights, values = activation_histogram(rec, n_tokens)
    lh, lv = lens.hist.get(f, ([], []))
    max_act = _finite(rec.max_act) or 0.0
    return {
        "modelId": model_id(run),
        "layer": sid,
        "index": str(rec.feature),
        "creatorId": creator,
        "createdAt": created,
        "maxActApprox": max_act,
        "hasVector": bool(vec),
        "vector": [float(x) for x in vec],
        "vectorLabel": None,
        "vectorDefaultSteerStrength": max_act,
        "hookName": run.hookpoint,
        "topkCosSimIndices": list((w or {}).get("topk_cos_indices") or []),
        "topkCosSimValues": [float(x) for x in (w or {}).get("topk_cos_values") or []],
        **neuron_alignment(vec),
        "correlated_neurons_indices": [],
        "correlated_neurons_pearson": [],
        "correlated_neurons_l1": [],
        "correlated_features_indices": [],
        "correlated_features_pearson": [],
        "correlated_features_l1": [],
        "neg_str": [str(t) for t, _ in bottom],
        "neg_values": [float(v) for _, v in bottom],
        "pos_str": [str(t) for t, _ in top],
        "pos_values": [float(v) for _, v in top],
        "frac_nonzero": float(rec.density),
        "freq_hist_data_bar_heights": heights,
        "freq_hist_data_bar_values": values,
        "logits_hist_data_bar_heights": lh,
        "logits_hist_data_bar_values": lv,
        "decoder_weights_dist": [],
    }


def activation_rows(
    run: Run, sid: str, rec: FeatureRecord, creator: str, created: str
) -> list[dict[str, Any]]:
    rows = []
    for j, (kind, e) in enumerate(_windows(rec)):
        vals = [float(a) for a in e.acts]
        top = int(np.argmax(vals)) if vals else 0
        rows.append(
            {
                "id": f"{sid}-{rec.feature}-{j}",
                "modelId": model_id(run),
                "layer": sid,
                "index": str(rec.feature),
                "creatorId": creator,
                "createdAt": created,
                "dataSource": f"autointerp:{kind}:{e.kind}",
                "dataIndex": f"{e.seq}:{e.start}",
                "tokens": list(e.tokens),
                "values": vals,
                "maxValue": max(vals) if vals else 0.0,
                "maxValueTokenIndex": top,
                "minValue": min(vals) if vals else 0.0,
                "dfaValues": [],
                "dfaTargetIndex": None,
                "dfaMaxValue": None,
                "lossValues": [],
                "logitContributions": None,
                "binMin": None,
                "binMax": None,
                "binContains": float(e.quantile) if e.quantile >= 0 else None,
                "qualifyingTokenIndex": top,
            }
        )
    return rows


def _write_batches(
    folder: Path, rows: list[dict[str, Any]], feature: Callable[[dict[str, Any]], int]
) -> list[Path]:
    """``batch-N.jsonl.gz`` holding the rows of ``BATCH`` features each."""
    feats = sorted({feature(r) for r in rows})
    groups = [set(feats[i : i + BATCH]) for i in range(0, len(feats), BATCH)]
    return [
        write_jsonl(folder / f"batch-{n}.jsonl.gz", [r for r in rows if feature(r) in g], gz=True)
        for n, g in enumerate(groups)
    ]


def export_basis(
    run: Run, basis: str, out: Path, creator: str, created: str, subject: SubjectLens
) -> tuple[list[Path], dict[str, Any]]:
    """One basis as one Neuronpedia source; returns (paths, counts)."""
    sid, _ = source_id(run, basis)
    mid = model_id(run)
    root = Path(out) / mid / sid
    info = basis_info(run, basis)
    kind = str(info.get("kind") or "")
    recs = run.records(basis)
    wdf = weights(run, basis)
    wrows = {int(r["index"]): r for r in wdf.to_dicts()} if wdf is not None else {}
    outside = _output_side(run, basis)
    decoders = {f: list(r["decoder"]) for f, r in wrows.items() if f in recs and r.get("decoder")}
    lens = basis_lens(subject, decoders, outside)
    corpus = (run.manifest.get("config") or {}).get("corpus") or {}
    n_tokens = int(corpus["n_tokens"]) if corpus.get("n_tokens") else None
    llm = run.manifest.get("llm") or {}
    dim = len(next(iter(decoders.values()), [])) or None
    paths = source_files(run, basis, root, info, dim, creator, created)
    feats = [
        feature_row(run, sid, r, wrows.get(f), outside.get(f), lens, n_tokens, creator, created)
        for f, r in sorted(recs.items())
    ]
    acts = [
        a for _, r in sorted(recs.items()) for a in activation_rows(run, sid, r, creator, created)
    ]
    style = str((run.protocol.get("explain") or {}).get("style") or "")
    expl_model = str((llm.get("explainer") or {}).get("model") or "")
    exps, exp_ids = [], {}
    fdf = run.features if run.features is not None else pl.DataFrame()
    if "basis" in fdf.columns:
        for r in fdf.filter(pl.col("basis") == basis).sort("feature").to_dicts():
            if r.get("explanation_status") not in ("ok", "truncated") or not r.get("explanation"):
                continue
            eid = f"{sid}-{r['feature']}-{slug(style)}"
            exp_ids[int(r["feature"])] = eid
            exps.append(
                {
                    "id": eid,
                    "modelId": mid,
                    "layer": sid,
                    "index": str(r["feature"]),
                    "description": str(r["explanation"]),
                    "authorId": creator,
                    "embedding": None,
                    "triggeredById": None,
                    "typeName": f"autointerp-{slug(style)}",
                    "explanationModelName": expl_model,
                    "notes": None,
                    "createdAt": created,
                }
            )
    scores = score_rows(run, basis, exp_ids, creator, created)
    by_index: Callable[[dict[str, Any]], int] = lambda r: int(r["index"])  # noqa: E731
    feature_of = {e["id"]: int(e["index"]) for e in exps}
    paths += _write_batches(root / "features", feats, by_index)
    paths += _write_batches(root / "activations", acts, by_index)
    paths += _write_batches(root / "explanations", exps, by_index)
    paths += _write_batches(
        root / "explanation_scores", scores, lambda r: feature_of[r["explanationId"]]
    )
    return paths, {
        "basis": basis,
        "kind": kind,
        "source": f"{mid}/{sid}",
        "features": len(feats),
        "windows": len(acts),
        "explanations": len(exps),
        "scores": len(scores),
        "has_vectors": bool(wrows),
        "has_logit_lens": bool(outside),
        "logits_hist": lens.reason or "ok",
    }


def _obj(row: dict[str, Any]) -> Any:
    """A score row's ``extra`` (a JSON string in scores.parquet) as an object."""
    x = row.get("extra")
    try:
        return json.loads(x) if isinstance(x, str) and x else x
    except json.JSONDecodeError:
        return x


def score_rows(
    run: Run, basis: str, exp_ids: dict[int, str], creator: str, created: str
) -> list[dict[str, Any]]:
    """ExplanationScore rows of the ok scores of real (not null) explanations."""
    llm = run.manifest.get("llm") or {}
    s = run.scores.filter(
        (pl.col("basis") == basis) & (pl.col("null") == "") & (pl.col("status") == "ok")
    )
    rows = []
    for r in s.to_dicts():
        f = int(r["feature"])
        if f not in exp_ids or r["value"] is None or not math.isfinite(float(r["value"])):
            continue
        role = "scorer" if r["scorer"] == "detection" else "simulator"
        name = f"autointerp-{r['scorer']}-{r['variant']}-{r['method']}"
        rows.append(
            {
                "id": f"{exp_ids[f]}-{slug(name)}",
                "value": float(r["value"]),
                "explanationId": exp_ids[f],
                "explanationScoreTypeName": name,
                "explanationScoreModelName": str((llm.get(role) or {}).get("model") or ""),
                "initiatedByUserId": creator,
                "jsonDetails": json.dumps(
                    {"method": r["method"], "protocol_id": run.protocol_id, "extra": _obj(r)}
                ),
                "createdAt": created,
            }
        )
    return rows


def export_neuronpedia(
    run: Run, out: str | Path, creator: str = "autointerp", sm: Any = None
) -> tuple[list[Path], list[str]]:
    """Every basis of ``run`` as a Neuronpedia source under ``out`` (module docstring); ``sm``
    the subject model when the caller has it loaded (else the run's is loaded when needed)."""
    out = Path(out)
    created = datetime.now(timezone.utc).isoformat()
    subject = SubjectLens(run, sm)
    paths, sources, notes = [], [], []
    for basis in basis_names(run):
        p, counts = export_basis(run, basis, out, creator, created, subject)
        paths += p
        sources.append(counts)
        if not counts["features"]:
            notes.append(f"{basis}: no records/{basis}.jsonl in the run: no features exported")
        if not counts["has_vectors"]:
            notes.append(
                f"{basis}: no weights/{basis}.parquet (run predates the weights "
                "stage): vector, topkCosSim and neuron_alignment left empty"
            )
        if counts["logits_hist"] != "ok":
            notes.append(
                f"{basis}: logits_hist_data_bar_* left empty"
                + ("" if counts["has_logit_lens"] else ", and pos_str/neg_str (no output stage)")
                + f": {counts['logits_hist']}"
            )
        elif not counts["has_logit_lens"]:
            notes.append(f"{basis}: no output-side stage: pos_str/neg_str from the export's lens")
    paths.append(
        write_json(
            out / MANIFEST,
            {
                "run": run.label,
                "protocol_id": run.protocol_id,
                "model": run.model,
                "hookpoint": run.hookpoint,
                "sources": sources,
                "empty_fields": EMPTY_FIELDS,
                "field_notes": FIELD_NOTES,
                "notes": notes,
            },
        )
    )
    return paths, notes

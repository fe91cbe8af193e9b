"""This harness's own stages as SAEBench-shaped eval results with eval types of their own.

Every stage that adds leaderboard columns (``columns/<stage>.json``: IOI patching, latent
attribution, ablation, output side, steering, ...) becomes eval type ``autointerp_<stage>``:
``eval_result_metrics = {<stage>: {c, c_ci_low, c_ci_high, c_n for each column c}}`` (one flat
category, as SAEBench requires; an undefined cell is -1 with its reason in
``eval_result_unstructured.reasons``), ``eval_result_details = []`` and the stage's per-basis
extra data (IOI curves, per-feature output scores) in ``eval_result_unstructured.extra``.

The JSON schema of each type (:func:`stage_schema`) is written next to the files, and the
schemas of the built-in stages are committed in ``autointerp/export/schemas/``
(:func:`builtin_schemas` regenerates them). The absorption stage maps onto SAEBench's own
``absorption_first_letter`` instead (:mod:`autointerp.export.saebench`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autointerp.columns import ColumnDoc, StageColumns
from autointerp.export.common import number, write_json
from autointerp.report.runs import Run

SCHEMA_DIR = Path(__file__).parent / "schemas"
ABSORPTION_MARK = "mean_absorption_fraction_score"
SUFFIXES = (("", "value"), ("_ci_low", "CI low"), ("_ci_high", "CI high"), ("_n", "n"))


def eval_type_id(stage: str) -> str:
    return f"autointerp_{stage}"


def find_absorption(run: Run) -> StageColumns | None:
    """The run's absorption stage columns (a stage with ``mean_absorption_fraction_score``)."""
    for sc in run.columns:
        if ABSORPTION_MARK in {c.name for c in sc.columns}:
            return sc
    return None


def harness_stages(run: Run) -> list[StageColumns]:
    return [sc for sc in run.columns if ABSORPTION_MARK not in {c.name for c in sc.columns}]


def stage_metrics(sc: StageColumns, basis: str) -> tuple[dict[str, float], dict[str, str]]:
    """The flat metrics of ``basis`` (NaN where undefined) and the reasons of undefined cells."""
    cells = sc.rows.get(basis, {})
    out: dict[str, float] = {}
    reasons: dict[str, str] = {}
    for c in sc.columns:
        cell = cells.get(c.name)
        out[c.name] = number(cell.value) if cell else float("nan")
        out[f"{c.name}_ci_low"] = number(cell.ci_low) if cell else float("nan")
        out[f"{c.name}_ci_high"] = number(cell.ci_high) if cell else float("nan")
        out[f"{c.name}_n"] = number(cell.n) if cell else float("nan")
        if cell is None:
            reasons[c.name] = f"the {sc.stage} stage has no cell for this basis"
        elif cell.reason:
            reasons[c.name] = cell.reason
    return out, reasons


def _basis_extra(extra: dict[str, Any], basis: str) -> dict[str, Any]:
    """The entries of a stage's ``extra`` that are keyed by basis, for ``basis``."""
    out = {}
    for k, v in extra.items():
        if isinstance(v, dict) and basis in v:
            out[k] = v[basis]
    return out


def harness_dicts(run: Run, basis: str) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """``{eval_type_id: (result without unstructured, unstructured)}`` for every harness stage
    of the run that has a row for ``basis``."""
    from autointerp.export.saebench_envelope import envelope

    out = {}
    for sc in harness_stages(run):
        if basis not in sc.rows:
            continue
        metrics, reasons = stage_metrics(sc, basis)
        d = envelope(run, basis, eval_type_id(sc.stage), {"stage": sc.stage, **run.protocol})
        d["eval_result_metrics"] = {sc.stage: metrics}
        d["eval_result_details"] = []
        out[eval_type_id(sc.stage)] = (
            d,
            {
                "basis": basis,
                "run": run.label,
                "protocol_id": run.protocol_id,
                "columns": {c.name: {"doc": c.doc, "better": c.better} for c in sc.columns},
                "reasons": reasons,
                "extra": _basis_extra(sc.extra, basis),
            },
        )
    return out


# --------------------------------------------------------------------------- schemas


def stage_schema(stage: str, columns: list[ColumnDoc]) -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of eval type ``autointerp_<stage>``."""
    fields: dict[str, Any] = {}
    for c in columns:
        for suffix, what in SUFFIXES:
            fields[f"{c.name}{suffix}"] = {
                "type": "number",
                "title": f"{c.name} ({what})",
                "description": c.doc + ("" if not suffix else f" — {what}") + "; -1: undefined",
            }
    null_str = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"autointerp {stage}",
        "description": f"autointerp's {stage} stage as a SAEBench-shaped eval result "
        "(docs/publishing.md)",
        "type": "object",
        "required": [
            "eval_type_id",
            "eval_config",
            "eval_id",
            "datetime_epoch_millis",
            "eval_result_metrics",
            "eval_result_details",
            "sae_bench_commit_hash",
            "sae_lens_id",
            "sae_lens_release_id",
            "sae_lens_version",
            "sae_cfg_dict",
            "eval_result_unstructured",
        ],
        "properties": {
            "eval_type_id": {"const": eval_type_id(stage)},
            "eval_config": {"type": "object"},
            "eval_id": {"type": "string"},
            "datetime_epoch_millis": {"type": "integer", "minimum": 0},
            "eval_result_metrics": {
                "type": "object",
                "required": [stage],
                "additionalProperties": False,
                "properties": {
                    stage: {
                        "type": "object",
                        "minProperties": 1,
                        "additionalProperties": False,
                        "properties": fields,
                        # a stage may leave a declared column out (e.g. one it computes only
                        # when enabled); a column it writes comes with its CI and n
                        "dependentRequired": {
                            c.name: [f"{c.name}{x}" for x, _ in SUFFIXES[1:]] for c in columns
                        },
                    }
                },
            },
            "eval_result_details": {"type": "array"},
            "sae_bench_commit_hash": {"type": "string"},
            "sae_lens_id": null_str,
            "sae_lens_release_id": null_str,
            "sae_lens_version": null_str,
            "sae_cfg_dict": {"anyOf": [{"type": "object"}, {"type": "null"}]},
            "eval_result_unstructured": {},
        },
    }


def schema_name(eval_type: str) -> str:
    return f"eval_output_schema_{eval_type}.json"


def write_harness_schemas(run: Run, out: Path) -> list[Path]:
    """``<out>/<type>/eval_output_schema_<type>.json`` for every harness stage of the run: the
    committed schema of a built-in stage, else one generated from the run's columns."""
    paths = []
    for sc in harness_stages(run):
        t = eval_type_id(sc.stage)
        committed = SCHEMA_DIR / schema_name(t)
        s = json.loads(committed.read_text()) if committed.is_file() else None
        paths.append(
            write_json(Path(out) / t / schema_name(t), s or stage_schema(sc.stage, sc.columns))
        )
    return paths


def builtin_stage_columns() -> dict[str, list[ColumnDoc]]:
    """The columns each built-in harness stage declares (a new stage: one line here)."""
    from autointerp.causal.summary import IOI_COLUMNS
    from autointerp.stages.attribution import COLUMNS as ATTRIBUTION_COLUMNS
    from autointerp.stages.output_side import ABLATION_COLUMNS, OUTPUT_COLUMNS
    from autointerp.stages.steering import STEERING_COLUMNS

    return {
        "ioi": IOI_COLUMNS,
        "attribution": ATTRIBUTION_COLUMNS,
        "ablation": ABLATION_COLUMNS,
        "output": OUTPUT_COLUMNS,
        "steering": STEERING_COLUMNS,
    }


def builtin_schemas(write: bool = False) -> dict[str, dict[str, Any]]:
    """The committed schemas of the built-in stages (``write``: regenerate the files)."""
    out = {}
    for stage, cols in builtin_stage_columns().items():
        t = eval_type_id(stage)
        out[t] = stage_schema(stage, cols)
        if write:
            (SCHEMA_DIR / schema_name(t)).write_text(json.dumps(out[t], indent=2) + "\n")
    return out


if __name__ == "__main__":  # python -m autointerp.export.harness_evals: regenerate the schemas
    builtin_schemas(write=True)

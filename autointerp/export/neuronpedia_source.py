"""The four metadata files of a Neuronpedia source (``release``, ``model``, ``sourceset``,
``source`` ``.jsonl``, one row each; :mod:`autointerp.export.neuronpedia` writes the rest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autointerp.export.common import basis_names, layer_of, slug, write_jsonl
from autointerp.report.runs import Run


def model_id(run: Run) -> str:
    return slug(run.model)


def source_id(run: Run, basis: str) -> tuple[str, str]:
    """(source id ``<layer>-<setName>``, set name) of ``basis``."""
    layer = layer_of(run.hookpoint)
    set_name = slug(f"autointerp-{basis}")
    return f"{layer if layer is not None else 0}-{set_name}", set_name


def source_files(
    run: Run, basis: str, root: Path, info: dict[str, Any], dimension: int | None,
    creator: str, created: str,
) -> list[Path]:  # fmt: skip
    """``release.jsonl``, ``model.jsonl``, ``sourceset.jsonl`` and ``source.jsonl`` of
    ``basis`` under ``root``."""
    sid, set_name = source_id(run, basis)
    mid = model_id(run)
    kind = str(info.get("kind") or "")
    corpus = (run.manifest.get("config") or {}).get("corpus") or {}
    rel = f"autointerp-{slug(run.suite)}-{slug(run.name)}"
    null = " (null: random directions)" if kind == "random" else ""
    return [
        write_jsonl(
            root / "release.jsonl",
            [
                {
                    "name": rel,
                    "description": f"autointerp run {run.label}: {run.model} at "
                    f"{run.hookpoint}, protocol {run.protocol_id}",
                    "descriptionShort": run.label,
                    "creatorName": creator,
                    "creatorNameShort": creator,
                    "creatorId": creator,
                    "visibility": "PUBLIC",
                    "isNewUi": False,
                    "featured": False,
                    "urls": [],
                    "creatorEmail": None,
                    "defaultSourceSetName": source_id(run, basis_names(run)[0])[1],
                    "defaultSourceId": source_id(run, basis_names(run)[0])[0],
                    "defaultUmapSourceIds": [],
                    "createdAt": created,
                }
            ],
        ),
        write_jsonl(
            root / "model.jsonl",
            [
                {
                    "id": mid,
                    "instruct": "instruct" in run.model.lower(),
                    "creatorId": creator,
                    "displayNameShort": run.model,
                    "displayName": run.model,
                    "tlensId": None,
                    "dimension": dimension,
                    "visibility": "PUBLIC",
                    "defaultSourceSetName": None,
                    "defaultSourceId": None,
                    "inferenceEnabled": False,
                    "layers": 0,
                    "neuronsPerLayer": 0,
                    "createdAt": created,
                    "owner": "",
                    "updatedAt": created,
                    "website": None,
                }
            ],
        ),
        write_jsonl(
            root / "sourceset.jsonl",
            [
                {
                    "modelId": mid,
                    "name": set_name,
                    "creatorId": creator,
                    "hasDashboards": True,
                    "visibility": "PUBLIC",
                    "description": f"{kind} basis {basis}{null}, "
                    f"{info.get('n_features')} features, {run.hookpoint}",
                    "type": kind,
                    "creatorName": creator,
                    "urls": [],
                    "creatorEmail": None,
                    "releaseName": rel,
                    "defaultOfModelId": None,
                    "defaultRange": 1,
                    "defaultShowBreaks": True,
                    "showDfa": False,
                    "showCorrelated": False,
                    "showHeadAttribution": False,
                    "showUmap": False,
                    "createdAt": created,
                }
            ],
        ),
        write_jsonl(
            root / "source.jsonl",
            [
                {
                    "id": sid,
                    "modelId": mid,
                    "setName": set_name,
                    "creatorId": creator,
                    "hasDashboards": True,
                    "inferenceEnabled": False,
                    "inferenceHosts": [],
                    "saelensConfig": None,
                    "saelensRelease": None,
                    "saelensSaeId": None,
                    "hfRepoId": None,
                    "hfFolderId": None,
                    "visibility": "PUBLIC",
                    "defaultOfModelId": None,
                    "hasUmap": False,
                    "hasUmapLogSparsity": False,
                    "hasUmapClusters": False,
                    "num_prompts": int(corpus.get("n_tokens") or 0)
                    // max(1, int(corpus.get("context") or 1)),
                    "num_tokens_in_prompt": corpus.get("context"),
                    "dataset": corpus.get("source"),
                    "notes": f"autointerp run {run.label}, basis {basis}",
                    "createdAt": created,
                }
            ],
        ),
    ]

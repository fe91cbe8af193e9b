"""Run directories (see the results layout in ``autointerp.results``) read for the leaderboard:
``Run``, ``load_run``, ``find_runs``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import polars as pl

from autointerp.columns import StageColumns, load_columns
from autointerp.errors import AutointerpError
from autointerp.types import FeatureRecord

_FEATURE_RE = re.compile(r'"feature":\s*(-?\d+)')
SCORE_COLUMNS = ("basis", "feature", "scorer", "variant", "value", "status", "null", "method")
_STR, _F, _I = pl.Utf8, pl.Float64, pl.Int64


def _read_parquet(path: Path, required: bool = False) -> pl.DataFrame | None:
    if not path.exists():
        if required:
            raise AutointerpError(f"{path} is missing; re-run the pipeline for this run")
        return None
    try:
        return pl.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - any decode error becomes one clear message
        raise AutointerpError(
            f"cannot read {path}: {e}; the file is damaged — re-run the pipeline for this run "
            "or delete the run directory"
        ) from e


@dataclass
class Run:
    """One run directory (see the results layout in ``autointerp.results``)."""

    path: Path
    manifest: dict[str, Any]
    metrics: pl.DataFrame
    scores: pl.DataFrame
    features: pl.DataFrame | None = None
    density: pl.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    diagnostics: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the stage-contributed columns (``columns/<stage>.json``: causal, output-side, ...)
    columns: list[StageColumns] = field(default_factory=list)

    @property
    def suite(self) -> str:
        return str(self.manifest.get("suite", self.path.parent.name))

    @property
    def name(self) -> str:
        return str(self.manifest.get("run", self.path.name))

    @property
    def label(self) -> str:
        return f"{self.suite}/{self.name}"

    @property
    def protocol_id(self) -> str:
        return str(self.manifest.get("protocol_id") or "")

    @property
    def protocol(self) -> dict[str, Any]:
        return dict(self.manifest.get("protocol") or {})

    @property
    def model(self) -> str:
        return str(self.manifest.get("model", ""))

    @property
    def hookpoint(self) -> str:
        return str(self.manifest.get("hookpoint", ""))

    @cached_property
    def bases(self) -> list[tuple[str, str]]:
        """(name, kind) of every basis, manifest order first, then any only found in files."""
        out: dict[str, str] = {}
        for b in self.manifest.get("bases") or []:
            out[str(b["name"])] = str(b.get("kind", ""))
        for df in (self.metrics, self.scores):
            if "basis" in df.columns:
                kinds = df["kind"].to_list() if "kind" in df.columns else [""] * len(df)
                for name, kind in zip(df["basis"].to_list(), kinds):
                    if name not in out or not out[name]:
                        out[name] = kind or ""
        return list(out.items())

    @cached_property
    def simulations(self) -> pl.DataFrame | None:
        """``simulations.parquet`` (per-token true vs simulated activations) or None."""
        return _read_parquet(self.path / "simulations.parquet")

    def records(self, basis: str, features: set[int] | None = None) -> dict[int, FeatureRecord]:
        """FeatureRecords of ``records/<basis>.jsonl`` (only ``features`` if given); {} if none."""
        p = self.path / "records" / f"{basis}.jsonl"
        if not p.exists():
            return {}
        out: dict[int, FeatureRecord] = {}
        with p.open() as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                if features is not None:  # skip unwanted lines without parsing them
                    m = _FEATURE_RE.search(line, 0, 400)
                    if m is not None and int(m.group(1)) not in features:
                        continue
                try:
                    d = json.loads(line)
                except json.JSONDecodeError as e:
                    raise AutointerpError(f"{p} line {i} is not JSON ({e}); re-run records") from e
                if features is None or int(d["feature"]) in features:
                    out[int(d["feature"])] = FeatureRecord.from_dict(d)
        return out


def load_run(run_dir: str | Path) -> Run:
    """Read a run directory. ``manifest.json`` is required; metrics/scores/features parquet
    files are read when present (a missing one is noted in ``Run.notes``); density, simulations
    and records are optional."""
    path = Path(run_dir)
    mpath = path / "manifest.json"
    if not mpath.is_file():
        raise AutointerpError(
            f"{path} is not a run directory (no manifest.json); pass a run directory or a "
            "folder that contains run directories"
        )
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        raise AutointerpError(f"{mpath} is not valid JSON ({e}); re-run the pipeline") from e
    if not isinstance(manifest, dict):
        raise AutointerpError(f"{mpath} must hold a JSON object, found {type(manifest).__name__}")
    notes = []
    metrics = _read_parquet(path / "metrics.parquet")
    if metrics is None:
        notes.append("metrics.parquet missing: no reconstruction metrics")
        metrics = pl.DataFrame({"basis": [], "kind": []}, schema={"basis": _STR, "kind": _STR})
    scores = _read_parquet(path / "scores.parquet")
    if scores is None:
        notes.append("scores.parquet missing: no scores")
        scores = pl.DataFrame(
            schema={
                "basis": _STR,
                "feature": _I,
                "scorer": _STR,
                "variant": _STR,
                "value": _F,
                "status": _STR,
                "null": _STR,
                "method": _STR,
            }
        )
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise AutointerpError(
            f"{path / 'scores.parquet'} lacks columns {missing}; it must hold the fields of "
            "autointerp.types.Score — re-run scoring"
        )
    features = _read_parquet(path / "features.parquet")
    density = _read_parquet(path / "density.parquet")
    diag = {}
    if (path / "diagnostics.json").is_file():
        diag = {d["basis"]: d for d in json.loads((path / "diagnostics.json").read_text())}
    notes += gate_notes(manifest.get("gate") or {})
    try:
        columns = load_columns(path)
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise AutointerpError(
            f"{path / 'columns'} holds a damaged stage-columns file ({e}); re-run the report "
            "stage for this run (--force report) or delete the file"
        ) from e
    return Run(path, manifest, metrics, scores, features, density, notes, diag, columns)


def gate_notes(gate: dict[str, Any]) -> list[str]:
    """One note per plugged-in checkpoint: the sanity gate's figures and verdict."""
    out = []
    for basis, g in gate.items():

        def f(k: str, g: dict[str, Any] = g) -> str:
            v = g.get(k)
            return "undefined" if v is None else f"{v:.3g}"

        verdict = (
            "passed"
            if g.get("passed")
            else ("FAILED, used anyway (allow_mismatch)" if g.get("allowed_mismatch") else "FAILED")
        )
        out.append(
            f"sanity gate {verdict} for {basis} at {g.get('hookpoint')} on {g.get('n_tokens')} "
            f"tokens: FVU {f('fvu')}, L0 {f('l0')}, norm ratio {f('l2_ratio')}, CE recovered "
            f"{f('ce_loss_score')}" + (f"; {g['cause']}" if g.get("cause") else "")
        )
    return out


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Run directories under ``paths``: each is a run dir or a folder searched recursively for
    ``manifest.json``. Sorted, without duplicates."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise AutointerpError(f"{p} does not exist; pass a run directory or a results folder")
        if (p / "manifest.json").is_file():
            found.append(p)
            continue
        sub = sorted(m.parent for m in p.rglob("manifest.json"))
        if not sub:
            raise AutointerpError(f"no run found under {p} (no manifest.json); run the pipeline")
        found.extend(sub)
    return sorted(dict.fromkeys(x.resolve() for x in found))

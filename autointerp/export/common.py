"""What every export reads from a run directory (and only from there), and how it writes.

A run is read with :func:`autointerp.report.load_run`; the per-feature weight statistics come
from ``weights/<basis>.parquet`` (the ``weights`` stage, :mod:`autointerp.stages.weights`);
a run written before that stage existed has none, and the fields that need them say so.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from pathlib import Path
from typing import Any

import polars as pl

from autointerp.errors import AutointerpError
from autointerp.report.runs import Run
from autointerp.results import atomic_write_bytes

#: SAEBench writes a value it could not compute as -1 (``replace_nans_with_negative_one``)
NAN_VALUE = -1
#: simulation methods in order of preference when a basis has scores from several (the order
#: of the leaderboard's headline)
METHODS = ("pmi", "all_at_once", "top_logprobs", "json", "token_match")


def nan_to_neg_one(obj: Any, path: str, nan_paths: list[str]) -> Any:
    """``obj`` with every non-finite float (and ``None`` inside a metrics dict) replaced by -1;
    the dotted path of each replacement appended to ``nan_paths``."""
    if isinstance(obj, dict):
        return {
            k: nan_to_neg_one(v, f"{path}.{k}" if path else str(k), nan_paths)
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [nan_to_neg_one(v, f"{path}[{i}]", nan_paths) for i, v in enumerate(obj)]
    if isinstance(obj, float) and not math.isfinite(obj):
        nan_paths.append(path)
        return NAN_VALUE
    return obj


def number(v: Any) -> float:
    """A float (NaN for ``None`` or anything non-numeric)."""
    if v is None:
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def basis_names(run: Run) -> list[str]:
    names = [b for b, _ in run.bases]
    if not names:
        raise AutointerpError(
            f"{run.path} names no basis (manifest.json has no 'bases'): nothing to export; "
            "re-run the suite"
        )
    return names


def basis_info(run: Run, basis: str) -> dict[str, Any]:
    """The manifest's entry for ``basis`` (name, kind, n_features, info) or ``{}``."""
    for b in run.manifest.get("bases") or []:
        if b.get("name") == basis:
            return dict(b)
    return {}


def weights(run: Run, basis: str) -> pl.DataFrame | None:
    """``weights/<basis>.parquet`` of the run, or None when the run has none."""
    p = run.path / "weights" / f"{basis}.parquet"
    if not p.is_file():
        return None
    try:
        return pl.read_parquet(p)
    except Exception as e:  # noqa: BLE001 - any decode error becomes one clear message
        raise AutointerpError(f"cannot read {p}: {e}; re-run the suite with --force weights") from e


def density(run: Run, basis: str) -> list[float]:
    """Per-feature firing density over the corpus (``density.parquet``), feature order."""
    if run.density is None or "basis" not in run.density.columns:
        raise AutointerpError(
            f"{run.path / 'density.parquet'} is missing: the export needs each feature's "
            "density; re-run the suite (--force report)"
        )
    d = run.density.filter(pl.col("basis") == basis).sort("feature")
    return [float(x) for x in d["density"].to_list()]


def layer_of(hookpoint: str) -> int | None:
    """The block index in a hookpoint name (``blocks.6.hook_resid_post`` -> 6)."""
    m = re.search(r"(?:blocks|layers|h)\.(\d+)\.", hookpoint + ".")
    return int(m.group(1)) if m else None


def slug(s: str) -> str:
    """Lower-case letters, digits and dashes (ids for other tools)."""
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-") or "x"


def write_json(path: Path, obj: Any, compact: bool = False) -> Path:
    """JSON (indented unless ``compact``), written atomically; NaN is refused (callers
    replace it first)."""
    text = json.dumps(obj, indent=None if compact else 2, allow_nan=False)
    atomic_write_bytes(path, text.encode())
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]], gz: bool = False) -> Path:
    """One JSON object per line (gzip-compressed when ``gz``), written atomically."""
    data = "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows).encode()
    atomic_write_bytes(path, gzip.compress(data, compresslevel=5, mtime=0) if gz else data)
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``.jsonl`` or ``.jsonl.gz`` file."""
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]

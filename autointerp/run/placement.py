"""Which run directory a run writes: a finished run is reused only for the same weights.

A run directory is named by the suite's config hash, but a config does not fix the weights:
an SAE trained, or an ICA fitted, on another CPU differs in float detail. Once the bases are
built, :func:`other_weights` compares their content hashes (``info["weights_hash"]``) with
those the directory's manifest records; where they differ (or the manifest records none),
the run goes on in ``<run>-w<hash of the weights>`` (:func:`weights_dir`) and the finished
run is left byte-identical. Files this invocation had already added to the old directory
(e.g. a new gate verdict) move with it (:func:`added_since`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autointerp.results import stable_hash
from autointerp.run.store import RunStore

LOCK = ".lock"


def weights_of(bases: list[Any]) -> dict[str, str]:
    """``{basis name: weights hash}`` of built bases (see :mod:`autointerp.bases.fingerprint`)."""
    return {b.name: str(b.info.get("weights_hash", "")) for b in bases}


def snapshot(run_dir: Path) -> set[str]:
    """The files a run directory holds now (relative POSIX paths)."""
    if not run_dir.is_dir():
        return set()
    return {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}


def added_since(run_dir: Path, before: set[str]) -> list[str]:
    """Files of ``run_dir`` not in ``before`` (the lock file aside)."""
    return sorted(f for f in snapshot(run_dir) - before if f != LOCK)


def other_weights(store: RunStore, weights: dict[str, str]) -> str | None:
    """Why ``store``'s finished run must not take this run's results (it was made with other
    weights), or ``None`` when it may: no finished run there, or the same weights."""
    manifest = store.read_manifest()
    if not manifest:
        return None  # a new or unfinished run: its stage files are keyed by the weights
    recorded = manifest.get("weights")
    if recorded == weights:
        return None
    if not isinstance(recorded, dict):
        return "it records no weights hashes (written by an older autointerp)"
    differ = sorted(n for n in weights if recorded.get(n) != weights[n])
    differ += sorted(n for n in recorded if n not in weights)
    return (
        f"its bases {', '.join(differ)} had other weights (trained or fitted on another CPU or "
        "library version, or a checkpoint changed)"
    )


def weights_dir(run_dir: Path, weights: dict[str, str]) -> Path:
    """``<run>-w<8 hex digits of the weights' hashes>`` beside ``run_dir``."""
    return run_dir.with_name(f"{run_dir.name}-w{stable_hash(weights, 8)}")

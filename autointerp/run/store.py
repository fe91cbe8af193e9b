"""THE owner of a run directory and of the stage cache in the work dir.

Layout of one run: ``results/<suite>/<run>/``
  manifest.json           suite config, versions, seeds, protocol id, timings, LLM usage, the
                          stage summary, and ``schema_version`` (:data:`SCHEMA_VERSION`)
  suite.json              the suite as run
  .lock                   exclusive lock held by the run writing this directory (:meth:`lock`)
  stages/<stage>-<hash>.* stage outputs keyed by the hash of their config slice and inputs
                          (``metrics-<h>.json``, ``density-<h>.npy``, ``diagnostics-<h>.json``);
                          ``explain-<h>.jsonl`` / ``score-<h>.jsonl`` / ``llm_calls.jsonl`` are
                          checksummed append-only journals (:mod:`autointerp.journal`)
  stages/records-<basis>.hash  the hash ``records/<basis>.jsonl`` was built with
  records/<basis>.jsonl   one FeatureRecord per line
  features.parquet, scores.parquet, metrics.parquet, density.parquet, simulations.parquet,
  diagnostics.json, weights/<basis>.parquet (per-feature weight statistics), leaderboard.md
  columns/<stage>.json    the columns a stage adds to the leaderboard (causal, output side, ...)

Work dir (``$AUTOINTERP_CACHE_DIR/work``): heavy artifacts shared by every run
(``tokens-<h>.npy``, ``acts-<h>.npy``, ``bases/<label>-<h>/``, ``sae/<label>-<acts hash>/``) and
``stages/<stage>-<hash>.*``: a copy of each small stage output, so that another run (another
``--run``, another ``--set records.n_features=...``) whose stage has the same hash reuses it.

Every file is written atomically (a unique temp name in the same folder, fsync, rename).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from autointerp.errors import AutointerpError
from autointerp.journal import Journal, RunLock
from autointerp.results import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    atomic_write_with,
    write_parquet,
)

#: version of the run-directory layout; a run dir written by a newer layout is refused
SCHEMA_VERSION = 1


def save_npy(path: str | Path, arr: np.ndarray) -> None:
    """np.save to a unique temp name in the same folder, then rename (atomic, no clashes)."""

    def write(p: Path) -> None:
        with p.open("wb") as f:
            np.save(f, arr)

    atomic_write_with(path, write)


class RunStore:
    """Paths, atomic writes, journals, the lock and the manifest of one run directory, and
    the shared stage cache of the work dir."""

    def __init__(self, run_dir: str | Path, work_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.work_dir = Path(work_dir)

    # ------------------------------------------------------------------ paths

    @property
    def stages(self) -> Path:
        """``<run>/stages``: this run's stage outputs and journals."""
        return self.run_dir / "stages"

    @property
    def shared(self) -> Path:
        """``<work>/stages``: stage outputs any run may reuse (keyed by hash only)."""
        return self.work_dir / "stages"

    def stage_file(self, name: str, h: str, suffix: str) -> Path:
        return self.stages / f"{name}-{h}{suffix}"

    def shared_file(self, name: str, h: str, suffix: str) -> Path:
        return self.shared / f"{name}-{h}{suffix}"

    def work(self, *parts: str) -> Path:
        return self.work_dir.joinpath(*parts)

    def out(self, *parts: str) -> Path:
        """A published output of the run (``features.parquet``, ``weights/x.parquet``...)."""
        return self.run_dir.joinpath(*parts)

    # ------------------------------------------------------------------ writing

    write_bytes = staticmethod(atomic_write_bytes)
    write_text = staticmethod(atomic_write_text)
    write_json = staticmethod(atomic_write_json)
    write_npy = staticmethod(save_npy)
    write_parquet = staticmethod(write_parquet)

    @staticmethod
    def copy(src: Path, dst: Path) -> None:
        """Atomic copy of one file."""
        atomic_write_bytes(dst, Path(src).read_bytes())

    # ------------------------------------------------------------------ journals, lock

    def journal(self, name: str, stage: str = "") -> Journal:
        """The checksummed append-only journal ``stages/<name>`` (``stage`` names the
        ``--force`` that redoes it, for the corrupt-line message)."""
        return Journal(self.stages / name, stage)

    def lock(self) -> RunLock:
        """The exclusive lock on the run directory (a second writer gets one clear error)."""
        return RunLock(self.run_dir)

    # ------------------------------------------------------------------ manifest

    def read_manifest(self) -> dict[str, Any]:
        """The manifest, or ``{}`` when the run has none yet."""
        p = self.run_dir / "manifest.json"
        if not p.exists():
            return {}
        return json.loads(p.read_text())

    def check_schema(self) -> None:
        """Refuse a run directory written by a newer layout than this code knows."""
        v = self.read_manifest().get("schema_version", 0)
        if isinstance(v, int) and v > SCHEMA_VERSION:
            raise AutointerpError(
                f"{self.run_dir} was written by a newer autointerp (run-directory schema {v}, "
                f"this one reads up to {SCHEMA_VERSION}); upgrade, or give this run its own "
                "--run NAME or --results DIR"
            )

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_json(
            self.run_dir / "manifest.json", {**manifest, "schema_version": SCHEMA_VERSION}
        )

"""Atomic writes, stable hashes and the scores table's schema.

The run directory's layout belongs to :mod:`autointerp.run.store` (``RunStore``), which writes
through these functions."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def score_schema() -> dict:
    """Column types of ``scores.parquet`` (the fields of ``autointerp.types.Score``)."""
    import polars as pl

    return {
        "basis": pl.Utf8,
        "feature": pl.Int64,
        "scorer": pl.Utf8,
        "variant": pl.Utf8,
        "value": pl.Float64,
        "method": pl.Utf8,
        "protocol_id": pl.Utf8,
        "status": pl.Utf8,
        "error": pl.Utf8,
        "null": pl.Utf8,
        "extra": pl.Utf8,
    }


def stable_hash(obj: Any, n: int = 12) -> str:
    """Short sha256 of a JSON-serialisable object (sorted keys)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # once, at import: os.umask is process-wide


def _publishable(path: str | Path) -> None:
    """mkstemp creates 0600 files; results are meant to be read by others (0666 & ~umask)."""
    os.chmod(path, 0o666 & ~_UMASK)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _publishable(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_with(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` (e.g. ``df.write_parquet``) then rename onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        writer(Path(tmp))
        _publishable(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_parquet(df: Any, path: str | Path) -> None:
    """Atomically write a polars DataFrame."""
    atomic_write_with(path, lambda p: df.write_parquet(p))

"""Content hash of a file, read once: kept in memory and in the cache dir, keyed by the file's
absolute path, size and mtime, so a large checkpoint or GGUF is hashed once per change (any
module may ask: only :mod:`autointerp.paths` and :mod:`autointerp.results` are imported)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from autointerp.paths import cache_dir
from autointerp.results import atomic_write_text, stable_hash

N_HEX = 16  # hex digits kept
_CHUNK = 1 << 22
_FILES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> content hash


def _file_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()[:N_HEX]


def _disk_cache() -> Path | None:
    try:
        return cache_dir() / "file-hashes"
    except Exception:  # no writable cache dir: hash every time
        return None


def file_hash(path: str | Path) -> str:
    """Content hash of one file, cached by (absolute path, size, mtime_ns)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key in _FILES:
        return _FILES[key]
    cache = _disk_cache()
    entry = cache / f"{stable_hash(list(key), 24)}.txt" if cache is not None else None
    if entry is not None and entry.is_file():
        _FILES[key] = entry.read_text().strip()
        return _FILES[key]
    h = _file_hash(p)
    _FILES[key] = h
    if entry is not None:
        try:
            atomic_write_text(entry, h)
        except OSError:  # the cache is an optimisation only
            pass
    return h

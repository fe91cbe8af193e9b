"""Content hashes of a basis: its tensors' bytes (a fitted or trained basis) or its
checkpoint files' bytes (a plugged-in one), so stage keys follow the weights, not the config
or the path (``docs/runner.md``, "Reuse keyed by content").

A basis is hashed once when built or loaded (blake2b over the tensors' names, dtypes, shapes
and bytes: ~20 ms for a 576 x 4608 SAE); a checkpoint's file hash is kept in memory and in
the cache dir, keyed by path, size and mtime, so a large checkpoint is read once.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from autointerp.results import atomic_write_text, stable_hash

_N = 16  # hex digits kept
_CHUNK = 1 << 22
_FILES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> content hash


def tensors_of(basis: Any) -> dict[str, torch.Tensor]:
    """The tensors that define ``basis``: its ``tensors()`` (SAEs) or ``state()`` (linear
    bases), else its ``state_dict()``."""
    for attr in ("tensors", "state"):
        fn = getattr(basis, attr, None)
        if callable(fn):
            return dict(fn())
    return dict(basis.state_dict())


def tensor_hash(tensors: dict[str, torch.Tensor]) -> str:
    """blake2b of every tensor's name, dtype, shape and bytes (sorted by name)."""
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:_N]


def weights_hash(basis: Any) -> str:
    """The content hash of a basis's tensors (see :func:`tensor_hash`)."""
    return tensor_hash(tensors_of(basis))


def _file_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()[:_N]


def _disk_cache() -> Path | None:
    try:
        from autointerp.paths import cache_dir

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


def files_hash(path: str | Path) -> str:
    """Content hash of a checkpoint: one file, or every file under a folder (relative names
    and contents; hidden files and ``__pycache__`` skipped). Independent of where it lies."""
    p = Path(path)
    if p.is_file():
        return file_hash(p)
    if not p.is_dir():
        raise FileNotFoundError(f"{p} does not exist")
    entries = []
    for root, dirs, names in os.walk(p):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        for n in sorted(names):
            if n.startswith("."):
                continue
            f = Path(root) / n
            entries.append([f.relative_to(p).as_posix(), file_hash(f)])
    return stable_hash(sorted(entries), _N)

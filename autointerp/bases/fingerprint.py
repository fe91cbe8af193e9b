"""Content hashes of a basis: its tensors' bytes (a fitted or trained basis) or its
checkpoint files' bytes (a plugged-in one), so stage keys follow the weights, not the config
or the path (``docs/runner.md``, "Reuse keyed by content").

A basis is hashed once when built or loaded (blake2b over the tensors' names, dtypes, shapes
and bytes: ~20 ms for a 576 x 4608 SAE); a checkpoint's file hash is kept in memory and in
the cache dir (:mod:`autointerp.file_hash`), so a large checkpoint is read once.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from autointerp.file_hash import N_HEX, file_hash
from autointerp.results import stable_hash


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
    return h.hexdigest()[:N_HEX]


def weights_hash(basis: Any) -> str:
    """The content hash of a basis's tensors (see :func:`tensor_hash`)."""
    return tensor_hash(tensors_of(basis))


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
    return stable_hash(sorted(entries), N_HEX)

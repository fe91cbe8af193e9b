"""Activation caching: tokens ``[n_rows, T]`` -> activations ``[n_rows, T, d]`` on disk.

Stored as a ``.npy`` file (float32) and memory-mapped, so later stages stream over it without
holding it in RAM: the map drops the pages it has read from this process (they stay in the OS
page cache) whenever it hands out a copy, so a pass over the file does not leave the whole file
resident in the process (:class:`PagedActs`). The forward pass stops right after the hooked
layer. Written to a temp file and renamed when complete, so a killed run never leaves a
half-written cache behind.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from autointerp.errors import AutointerpError
from autointerp.journal import disk_error
from autointerp.model import Hookpoint, SubjectModel, run_to_hookpoint


def drop_pages(a: np.ndarray) -> None:
    """Unmap the pages of ``a``'s memory map from this process (``MADV_DONTNEED``): on a
    shared file mapping the data stays in the page cache (dirty pages are still written back),
    so a later read faults the page in again from there. No-op for an array without a map or
    where the platform lacks ``madvise``."""
    mm = getattr(a, "_mmap", None)
    if isinstance(mm, mmap.mmap) and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        mm.madvise(mmap.MADV_DONTNEED)


class PagedActs(np.memmap):
    """A read-only activations map that does not keep what it has read resident: each index
    that returns a copy (fancy indexing: ``acts[rows]``, ``acts[r, p]``) first drops the map's
    pages from this process, so a stage streaming over the file holds about one batch of it
    instead of all of it (the whole file counted in the run's peak memory otherwise). Slices
    are views, as for any memmap."""

    def __getitem__(self, idx: Any) -> Any:
        out = super().__getitem__(idx)
        if isinstance(out, np.memmap) and out._mmap is None:  # a copy: a plain array
            out = out.view(np.ndarray)
            if out.nbytes >= 2**20:
                drop_pages(self)
        return out


def load_activations(path: str | Path, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Memory-map a cached activations file, checking it is whole (a truncated or foreign file
    gives one clear error naming it, instead of a crash or a SIGBUS later)."""
    path = Path(path)
    fix = f"delete {path} (or rerun with --force activations) to recompute it"
    try:
        acts = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as e:
        raise AutointerpError(f"activation cache {path} is unreadable ({e}); {fix}") from None
    acts = acts.view(PagedActs)
    if shape is not None and tuple(acts.shape[: len(shape)]) != tuple(shape):
        raise AutointerpError(
            f"activation cache {path} has shape {acts.shape}, expected {shape} + (d,); {fix}"
        )
    return acts


def special_mask(tokens: np.ndarray, special_ids: set[int]) -> np.ndarray:
    """True where a token is BOS/EOS/another special token (kept out of metrics and records)."""
    if not special_ids:
        return np.zeros(tokens.shape, dtype=bool)
    return np.isin(tokens, np.fromiter(special_ids, dtype=np.int64))


def cache_activations(
    sm: SubjectModel,
    hp: Hookpoint,
    tokens: np.ndarray,
    path: str | Path,
    *,
    batch_size: int = 16,
    progress: bool = True,
) -> np.ndarray:
    """Run the model up to ``hp`` over ``tokens`` and store activations at ``path`` (.npy)."""
    path = Path(path)
    n, t = tokens.shape
    if path.exists():
        return load_activations(path, (n, t))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".partial.npy")
    os.close(fd)
    tmp = Path(name)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, t, hp.width))
        _reserve(tmp)
        _fill(out, sm, hp, tokens, batch_size, progress)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return load_activations(path, (n, t))


def _reserve(path: Path) -> None:
    """Allocate the memmap's blocks now: a full disk is then an ENOSPC error here instead of a
    SIGBUS when a page is first written."""
    size = path.stat().st_size
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        raise disk_error(e, path) from e
    finally:
        os.close(fd)


def _fill(out, sm, hp, tokens, batch_size: int, progress: bool) -> None:
    n = len(tokens)
    it = range(0, n, batch_size)
    for i in tqdm(it, desc="activations", unit="batch", disable=not progress):
        ids = torch.from_numpy(tokens[i : i + batch_size].astype(np.int64))
        acts = run_to_hookpoint(sm, hp, ids)
        out[i : i + len(ids)] = acts.float().cpu().numpy()
        drop_pages(out)  # written pages go to the page cache, not this process's peak
    out.flush()


def iter_token_batches(
    acts: np.ndarray,
    mask: np.ndarray,
    rows: np.ndarray | None = None,
    *,
    batch_rows: int = 64,
    device: torch.device | str = "cpu",
):
    """Yield ``(x [n_valid, d], row_idx, pos_idx)`` over the non-special tokens of ``rows``."""
    rows = np.arange(acts.shape[0]) if rows is None else rows
    for i in range(0, len(rows), batch_rows):
        r = rows[i : i + batch_rows]
        a = np.asarray(acts[r])  # [b, T, d]
        keep = ~mask[r]
        rr, pp = np.nonzero(keep)
        x = torch.from_numpy(a[rr, pp]).to(device)
        yield x, r[rr], pp

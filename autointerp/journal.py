"""Append-only per-item result files whose every line is checked.

A line is ``<crc32 hex>\\t<json>\\n``: the checksum covers the JSON text. Reading a journal:

- a last line with no newline is a *torn* write (the process was killed or the disk filled up
  mid-append): it is reported (a warning naming the file and the bytes dropped), cut off the
  file before anything is appended (so no row is ever glued onto a fragment), and its item is
  recomputed;
- any other line whose checksum or JSON does not verify is *corrupt*: :class:`JournalError`
  names the file and line and the fix; nothing is skipped silently.

One ``os.write`` per item with ``O_APPEND``: an item is either wholly in the file or recomputed.
A killed process loses nothing written (the kernel holds it); ``fsync`` (against a machine
crash) runs at most every ``SYNC_INTERVAL_S`` per file (group commit: an fsync per item cost
10 ms, more than an instant LLM call) and for every file still unsynced when a stage ends
(:func:`sync_pending`). Writers of one run directory are serialised by :class:`RunLock`.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
import zlib
from pathlib import Path
from typing import Any

from autointerp.errors import AutointerpError

log = logging.getLogger(__name__)

SYNC_INTERVAL_S = 0.5
_last_sync: dict[Path, float] = {}
_unsynced: set[Path] = set()


def sync_pending() -> None:
    """fsync every journal appended to since its last fsync."""
    for path in list(_unsynced):
        _unsynced.discard(path)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _last_sync[path] = time.monotonic()


class JournalError(AutointerpError):
    """A results file with a corrupt line (names the file, the line and the fix)."""


def encode_line(row: dict[str, Any]) -> bytes:
    body = json.dumps(row, default=str, ensure_ascii=False, separators=(",", ":"))
    crc = zlib.crc32(body.encode()) & 0xFFFFFFFF
    return f"{crc:08x}\t{body}\n".encode()


def _decode(line: bytes) -> dict[str, Any] | None:
    try:
        crc, body = line.decode().split("\t", 1)
        if int(crc, 16) != zlib.crc32(body.encode()) & 0xFFFFFFFF:
            return None
        row = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None
    return row if isinstance(row, dict) else None


class Journal:
    """One append-only JSONL results file (see the module docstring)."""

    def __init__(self, path: str | Path, stage: str = ""):
        self.path = Path(path)
        self.stage = stage
        self.torn_bytes = 0

    def read(self) -> list[dict[str, Any]]:
        """Every verified row; repairs a torn last line (reported), raises on a corrupt one."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        good_end = data.rfind(b"\n") + 1
        if good_end < len(data):
            self.torn_bytes = len(data) - good_end
            log.warning(
                "%s: the last line is torn (%d bytes of an interrupted write); dropped, its item "
                "is recomputed",
                self.path,
                self.torn_bytes,
            )
            with self.path.open("r+b") as f:
                f.truncate(good_end)
                f.flush()
                os.fsync(f.fileno())
        rows = []
        for n, line in enumerate(data[:good_end].splitlines(), 1):
            row = _decode(line)
            if row is None:
                redo = f" or rerun with --force {self.stage}" if self.stage else ""
                raise JournalError(
                    f"{self.path}: line {n} is corrupt (checksum or JSON does not verify); "
                    f"delete that line to recompute its item{redo}"
                )
            rows.append(row)
        return rows

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Append ``rows`` in one write (fsynced at most every ``SYNC_INTERVAL_S``, see the
        module docstring). A full disk raises a clear error."""
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = b"".join(encode_line(r) for r in rows)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            try:
                n = os.write(fd, data)
                if n != len(data):
                    raise OSError(errno.ENOSPC, "short write")
                now = time.monotonic()
                if now - _last_sync.get(self.path, 0.0) >= SYNC_INTERVAL_S:
                    os.fsync(fd)
                    _last_sync[self.path] = now
                    _unsynced.discard(self.path)
                else:
                    _unsynced.add(self.path)
            except OSError as e:
                os.ftruncate(fd, size)  # leave no fragment behind
                raise disk_error(e, self.path) from e
        finally:
            os.close(fd)


def disk_error(e: OSError, path: str | Path) -> AutointerpError:
    """One clear message for a failed write (full disk, quota, permissions)."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return AutointerpError(
            f"no space left on the device holding {path}; free some space (or point "
            "--results / AUTOINTERP_CACHE_DIR elsewhere) and rerun: finished items are kept"
        )
    return AutointerpError(f"cannot write {path}: {e.strerror or e}; check the folder and rerun")


def drop_stale_temps(run_dir: Path) -> list[Path]:
    """Remove the temporary files of atomic writes (``.<name>.<random>.tmp``) that a process
    killed mid-write left in ``run_dir`` and its folders; called by the lock's new holder, so no
    writer of this directory is alive. Folders holding their own ``.lock`` (another run, e.g. a
    sweep's member) are left to their own runs."""
    gone: list[Path] = []
    stack = [Path(run_dir)]
    while stack:
        d = stack.pop()
        try:
            entries = list(d.iterdir())
        except OSError:
            continue
        for e in entries:
            if e.is_dir() and not e.is_symlink():
                if not (e / ".lock").exists():
                    stack.append(e)
            elif e.name.startswith(".") and e.name.endswith(".tmp") and e.is_file():
                e.unlink(missing_ok=True)
                gone.append(e)
    return gone


class RunLock:
    """An exclusive lock on a run directory (``fcntl.flock`` on ``<dir>/.lock``): a second
    ``autointerp run`` on the same results gets one clear error instead of paying every LLM call
    again and doubling rows. Released when the process exits, however it exits."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / ".lock"
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AutointerpError(
                f"{self.path.parent} is in use by another autointerp run (pid {holder}); wait "
                "for it to finish, or give this run its own --run NAME or --results DIR"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        drop_stale_temps(self.path.parent)
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

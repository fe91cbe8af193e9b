"""Peak resident memory of this process and of its waited-for children, from
``resource.getrusage`` (``ru_maxrss``: KiB on Linux, bytes on macOS), in MiB.

The runner records the process's high-water mark after every stage (``StageReport.peak_rss_mib``:
the first stage whose value jumps is the one that raised the peak) and the manifest holds the
run's peak (``peak_rss_mib``). File pages of memory-mapped arrays that were read count too (they
are resident while mapped).

Each stage's own peak (``StageReport.stage_peak_rss_mib``) comes from Linux's ``VmHWM``, reset
when the stage starts (:func:`start_window`; ``/proc/self/clear_refs``): unlike the running
high-water mark it says which stage needs the memory, not only which one first reached it.

:func:`release_free_memory` runs between stages: what a stage freed goes back to the OS instead
of staying in the C allocator's heap, where it would add to the next stage's peak."""

from __future__ import annotations

import ctypes
import gc
import sys
from functools import cache
from pathlib import Path


def _mib(maxrss: int) -> float:
    scale = 1.0 if sys.platform == "darwin" else 1024.0  # bytes on macOS, KiB elsewhere
    return round(maxrss * scale / 2**20, 1)


def peak_rss_mib() -> dict[str, float | None]:
    """``{"self": MiB, "children": MiB}``: the high-water marks so far (None where the
    platform has no ``resource`` module, e.g. Windows)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return {"self": None, "children": None}
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"self": max(_mib(own), _BEFORE[0]), "children": _mib(kids)}


@cache
def _malloc_trim():
    """glibc's ``malloc_trim`` from the symbols already loaded in this process (None on other
    C libraries: musl, macOS, Windows). Not ``ctypes.util.find_library``: it forks helper
    processes, and a fork of a large process shows up as the children's peak memory."""
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except (OSError, TypeError):  # pragma: no cover - Windows: no global symbol table
        return None


def release_free_memory() -> bool:
    """Collect cycles and hand the C heap's free pages back to the OS (glibc
    ``malloc_trim(0)``): freed tensors below glibc's mmap threshold (up to 32 MiB once large
    blocks have been freed) otherwise stay in the heap. True where the trim ran."""
    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


#: the highest mark of the windows before the current one (the reset lowers ``ru_maxrss`` too)
_BEFORE = [0.0]


def start_window() -> bool:
    """Reset this process's resident high-water mark (``VmHWM``) to its current size (Linux
    ``/proc/self/clear_refs``, value 5). The reset lowers ``ru_maxrss`` as well, so the mark
    reached so far is kept here first and :func:`peak_rss_mib` still gives the process's peak.
    False where the platform has no such file."""
    _BEFORE[0] = max(_BEFORE[0], window_peak_mib() or 0.0)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def window_peak_mib() -> float | None:
    """The resident high-water mark since :func:`start_window` (``VmHWM``), in MiB; None where
    ``/proc`` is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def mapped_rss_mib(path: str | Path) -> float:
    """Resident MiB of this process's mappings of the file ``path`` (Linux
    ``/proc/self/smaps``)."""
    total, cur = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            parts = line.split()
            if parts and "-" in parts[0] and not parts[0].endswith(":"):
                cur = len(parts) > 5 and parts[5] == str(path)
            elif cur and parts[0] == "Rss:":
                total += int(parts[1])
    return total / 1024

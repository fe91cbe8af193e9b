"""Peak resident memory of this process and of its waited-for children, from
``resource.getrusage`` (``ru_maxrss``: KiB on Linux, bytes on macOS), in MiB.

The runner records the process's high-water mark after every stage (``StageReport.peak_rss_mib``:
the first stage whose value jumps is the one that raised the peak) and the manifest holds the
run's peak (``peak_rss_mib``). File pages of memory-mapped arrays that were read count too (they
are resident while mapped)."""

from __future__ import annotations

import sys


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
    return {"self": _mib(own), "children": _mib(kids)}

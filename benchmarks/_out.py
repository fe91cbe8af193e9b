"""A benchmark's printed output, committed: ``with recorded("bench_x"): main()`` shows the
output as usual and, when the benchmark finishes, also writes it to
``benchmarks/results/bench_x.txt`` under a header naming the command, the host's CPU model and
core count, the date (UTC) and the git commit. The README cites figures from these files
(``autointerp docs`` embeds one with ``<!-- autointerp:table bench bench_x -->``).

Set ``AUTOINTERP_BENCH_RECORD=0`` to print only (a trial run that should not replace the file),
``AUTOINTERP_BENCH_AS=NAME`` to write ``results/NAME.txt`` instead (another configuration of the
same benchmark, kept beside the first; the header's command names it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; else what the platform module knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _commit() -> str:
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        p = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        return p.stdout.strip()

    try:
        rev = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev or "unknown") + (" (uncommitted changes)" if dirty else "")


def header(argv: list[str] | None = None) -> str:
    """The lines that head a recorded output."""
    argv = sys.argv if argv is None else argv
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd = " ".join(["python", f"benchmarks/{Path(argv[0]).name}", *argv[1:]])
    if os.environ.get("AUTOINTERP_BENCH_AS"):
        cmd = f"AUTOINTERP_BENCH_AS={os.environ['AUTOINTERP_BENCH_AS']} {cmd}"
    return (
        f"# command: {cmd}\n"
        f"# host: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, python {platform.python_version()}\n"
        f"# date: {now}\n"
        f"# commit: {_commit()}\n"
    )


class _Tee(io.TextIOBase):
    def __init__(self, *streams: io.TextIOBase) -> None:
        self.streams = streams

    def write(self, s: str) -> int:
        for st in self.streams:
            st.write(s)
        return len(s)

    def flush(self) -> None:
        for st in self.streams:
            st.flush()


@contextlib.contextmanager
def recorded(name: str, results: Path = RESULTS) -> Iterator[Path]:
    """Print as usual; when the block finishes without an error, write what was printed to
    ``results/<name>.txt`` (atomically) under :func:`header`."""
    buf = io.StringIO()
    out = results / f"{os.environ.get('AUTOINTERP_BENCH_AS') or name}.txt"
    with contextlib.redirect_stdout(_Tee(sys.stdout, buf)):
        yield out
    if os.environ.get("AUTOINTERP_BENCH_RECORD", "1") == "0":
        return
    results.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".txt.tmp")
    tmp.write_text(header() + buf.getvalue())
    os.replace(tmp, out)
    print(f"(recorded in {out})", file=sys.stderr)

"""One progress view for a job: each run directory's ``progress.json``, and ``autointerp status``.

A run's runner (in the driver, or in a sweep member's worker) is the only writer of its own
``progress.json``: the stage it is in, each stage's status once done, the tasks it sent out
(per-basis items under ``--executor ray``) as they report, and how the run ended (``done`` or
``failed`` with the stage and the error). Every write is atomic, so a reader never sees half a
file. A sweep's root holds one too (its members are its tasks), and each member's folder its
own: :func:`job_status` reads them all and :func:`format_status` prints one table."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from autointerp.results import atomic_write_json

PROGRESS_FILE = "progress.json"


class Progress:
    """The ``progress.json`` of one run directory (``unit``: how the job names this run)."""

    def __init__(self, run_dir: Path, unit: str, stages: list[str]) -> None:
        self.path = Path(run_dir) / PROGRESS_FILE
        try:  # an earlier invocation's, put back if this run moves elsewhere (see move)
            self._before: bytes | None = self.path.read_bytes()
        except OSError:
            self._before = None
        self.state: dict[str, Any] = {
            "unit": unit,
            "state": "running",
            "stage": None,
            "stages": {s: "pending" for s in stages},
            "tasks": {},
            "started": time.time(),
        }

    def move(self, run_dir: Path) -> None:
        """The run went on in another directory (a finished run made with other weights): the
        old directory gets its earlier progress back, byte for byte (it is left as it was)."""
        from autointerp.results import atomic_write_bytes

        if self._before is not None:
            atomic_write_bytes(self.path, self._before)
        else:
            self.path.unlink(missing_ok=True)
        self.path = Path(run_dir) / PROGRESS_FILE
        try:
            self._before = self.path.read_bytes()
        except OSError:
            self._before = None
        self.write()

    def stage(self, name: str, status: str | None = None) -> None:
        """``name`` started (``status`` None) or ended with ``status``."""
        self.state["stage"] = name
        self.state["stages"][name] = status or "running"
        self.write()

    def task(self, label: str, status: str, seconds: float | None = None) -> None:
        """A task this run sent out reported (``queued`` / ``done`` / ``failed: ...``)."""
        self.state["tasks"][label] = status if seconds is None else f"{status} ({seconds:.1f} s)"
        self.write()

    def end(self, error: BaseException | None = None) -> None:
        if error is None:
            self.state.update(state="done", stage=None)
        else:
            msg = " ".join(str(error).split())
            self.state.update(state="failed", error=f"{type(error).__name__}: {msg}"[:2000])
        self.write()

    def write(self) -> None:
        self.state["updated"] = time.time()
        try:
            atomic_write_json(self.path, self.state)
        except OSError:  # progress is a view: never fail a run for it
            pass


def read_progress(run_dir: Path) -> dict[str, Any] | None:
    p = Path(run_dir) / PROGRESS_FILE
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def job_status(root: Path) -> list[dict[str, Any]]:
    """The progress of ``root`` and of every run directory below it (a sweep's members), root
    first, each with its ``dir``; empty when no run under ``root`` wrote progress."""
    root = Path(root)
    out = []
    for p in [root / PROGRESS_FILE, *sorted(root.glob(f"*/{PROGRESS_FILE}"))]:
        got = read_progress(p.parent)
        if got is not None:
            out.append({**got, "dir": str(p.parent)})
    return out


def _line(st: dict[str, Any], now: float) -> str:
    stages = st.get("stages") or {}
    done = sum(1 for v in stages.values() if v not in ("pending", "running"))
    age = now - float(st.get("updated") or now)
    where = f"in {st['stage']}" if st.get("state") == "running" and st.get("stage") else ""
    head = f"{st.get('unit', '?')}: {st.get('state')} {where}".rstrip()
    return f"{head}, {done}/{len(stages)} stages, updated {age:.0f} s ago"


def format_status(root: Path) -> str:
    """One line per run (the root, then each member), the tasks each sent out, the error of
    each run that failed."""
    runs = job_status(root)
    if not runs:
        return f"{root}: no progress.json here or in its sub-folders (not a run directory?)"
    now = time.time()
    lines = []
    for st in runs:
        lines.append(_line(st, now))
        for label, s in (st.get("tasks") or {}).items():
            lines.append(f"    {label}: {s}")
        if st.get("error"):
            lines.append(f"    error in stage {st.get('stage')}: {st['error']}")
    return "\n".join(lines)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "status", help="progress of a run or sweep (per member, stage and task), even while it runs"
    )
    p.add_argument("run_dir", help="a run directory, or a sweep's root")
    p.set_defaults(func=lambda a: print(format_status(Path(a.run_dir))) or 0)

"""Tasks and the local executor (:mod:`autointerp.run.executor` chooses an executor).

A unit is a :class:`Task`: a picklable function and its arguments. It writes its results
through the run store (atomic files, journals, its run directory's lock), so a worker killed
mid-task loses at most its items in flight and a rerun of the job resumes. :meth:`run_all`
waits for every task and returns each one's value or its :class:`TaskFailed`, so one unit
that fails for good never discards the others' results."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autointerp.errors import AutointerpError


@dataclass(frozen=True)
class Task:
    """One independent unit: ``fn(*args)``; ``label`` names it in progress and errors."""

    label: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    num_cpus: float = 1.0
    num_gpus: float = 0.0


#: ``report(label, outcome, seconds)``: a task ended with ``outcome`` (its value or failure)
Reporter = Callable[[str, Any, float], Any]


class TaskFailed(RuntimeError):
    """A task that failed for good: its unit (``label``), the stage it was in, the error."""

    def __init__(self, label: str, stage: str | None, message: str, retriable: bool = True):
        self.label, self.stage, self.message, self.retriable = label, stage, message, retriable
        where = f" in stage {stage}" if stage else " (stage unknown: its worker was lost)"
        super().__init__(f"{label}: failed{where}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across processes and nodes
        return (TaskFailed, (self.label, self.stage, self.message, self.retriable))


class JobFailed(AutointerpError):
    """Some tasks of a job failed for good; the others finished and their results are kept."""

    def __init__(self, failed: Sequence[TaskFailed], n_tasks: int):
        self.failed = list(failed)
        lines = [f"{len(failed)} of {n_tasks} tasks failed for good:"]
        lines += [f"  {f}" for f in failed]
        lines.append("the other tasks finished and their results are kept; rerun to resume")
        super().__init__("\n".join(lines))


@dataclass
class Executor:
    """Runs :class:`Task` lists. The base class is the ``local`` executor."""

    name: str = "local"
    outcomes: dict[str, Any] = field(default_factory=dict)

    @property
    def parallel(self) -> bool:
        """False: the caller runs its units inline, in order (today's path)."""
        return False

    def run_all(self, tasks: Sequence[Task], report: Reporter | None = None) -> dict[str, Any]:
        """label -> the task's value, or its :class:`TaskFailed` (every task is waited for);
        ``report(label, outcome, seconds)`` as each task ends (the job's progress view)."""
        out: dict[str, Any] = {}
        for t in tasks:
            t0 = time.perf_counter()
            try:
                out[t.label] = t.fn(*t.args)
            except TaskFailed as e:
                out[t.label] = e
            if report is not None:
                report(t.label, out[t.label], time.perf_counter() - t0)
        return out

    def model_gpus(self, requested: float, device: str) -> float:
        """The GPUs a subject-model task asks for: ``requested`` when set, else one when the
        suite's device is not the CPU and the executor has GPUs (locally: none to ask for)."""
        return requested

    def share(self, value: Any) -> Any:
        """A handle on ``value`` for many tasks' arguments (sent once; locally: ``value``)."""
        return value

    def check_shared(self, paths: Sequence[Path]) -> None:
        """Every worker sees ``paths`` (trivially true in this process)."""

    def close(self) -> None:
        """Release what the executor started."""


def probe_files(paths: Sequence[Path], token: str) -> list[Path]:
    """Write a probe file holding ``token`` into each folder of ``paths`` (atomically)."""
    from autointerp.results import atomic_write_text

    out = []
    for p in paths:
        p.mkdir(parents=True, exist_ok=True)
        f = p / f".executor-probe-{token}"
        atomic_write_text(f, token)
        out.append(f)
    return out


def check_probes(probes: Sequence[str], token: str) -> list[str]:
    """The probe files this process cannot read back with ``token`` (run on each worker)."""
    bad = []
    for f in probes:
        try:
            ok = Path(f).read_text() == token
        except OSError:
            ok = False
        if not ok:
            bad.append(os.path.dirname(f))
    return bad


def failed_stage(runner: Any) -> str | None:
    """The stage a runner was in when it stopped (the first stage with no value)."""
    if runner is None:
        return None
    return next((s.name for s in runner.stages if s.name not in runner.values), None)

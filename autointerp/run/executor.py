"""Executors: where a job's independent units (a sweep's members, a family's checkpoints) run.

* ``local`` (the default): in this process, one after another, exactly as before; nothing on
  that path imports Ray.
* ``ray``: each unit is a Ray task with a resource request (``num_cpus``, ``num_gpus``) on a
  local or remote Ray cluster (:mod:`autointerp.run.ray_executor`).

Units are :class:`~autointerp.run.tasks.Task` objects; see :mod:`autointerp.run.tasks` for
how failures are kept and reported."""

from __future__ import annotations

from typing import Any

from autointerp.errors import ConfigError
from autointerp.run.tasks import Executor, JobFailed, Task, TaskFailed, failed_stage

__all__ = ["EXECUTORS", "Executor", "JobFailed", "Task", "TaskFailed", "failed_stage",
           "make_executor"]  # fmt: skip

EXECUTORS = ("local", "ray")


def make_executor(name: str = "local", address: str | None = None, **kw: Any) -> Executor:
    """The executor called ``name`` (``local`` or ``ray``; ``address``: a Ray cluster's)."""
    if name == "local":
        if address:
            raise ConfigError("--address is for --executor ray; drop it or add --executor ray")
        return Executor()
    if name == "ray":
        from autointerp.run.ray_executor import RayExecutor

        return RayExecutor(address=address, **kw)
    raise ConfigError(f"executor {name!r} is unknown; use one of {', '.join(EXECUTORS)}")

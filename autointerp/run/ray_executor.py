"""The ``ray`` executor: each :class:`~autointerp.run.tasks.Task` is a Ray task.

Imported only when ``--executor ray`` (or ``[run] executor = "ray"``) is asked for. Ray is an
optional extra (``pip install 'autointerp[ray]'``). Tasks that raise a retriable
:class:`~autointerp.run.tasks.TaskFailed`, and tasks whose worker died, are retried by Ray
(``max_retries``); a retry resumes from what the run store already holds. Bad input (an
:class:`~autointerp.errors.AutointerpError`) fails its task at once, without retries."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autointerp.errors import ConfigError
from autointerp.run.tasks import (
    Executor,
    Reporter,
    Task,
    TaskFailed,
    check_probes,
    probe_files,
)

log = logging.getLogger(__name__)


def _call(fn: Any, args: tuple[Any, ...], env: dict[str, str]) -> Any:
    """The body of every Ray task: the driver's cache settings, then ``fn(*args)``; a
    non-retriable :class:`TaskFailed` comes back as the task's value (Ray does not retry it).
    An argument that is an object reference (:meth:`RayExecutor.share`) is fetched first."""
    import ray

    os.environ.update(env)
    args = tuple(ray.get(a) if isinstance(a, ray.ObjectRef) else a for a in args)
    try:
        return fn(*args)
    except TaskFailed as e:
        if e.retriable:
            raise
        return e


#: environment the driver hands to every task (where caches live; never credentials)
FORWARD_ENV = ("AUTOINTERP_CACHE_DIR", "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


class RayExecutor(Executor):
    """Tasks on a Ray cluster: ``address`` (``auto``, ``ray://host:10001``, ``host:6379``) or,
    when None and no cluster is running, a local one started here (``num_cpus`` workers)."""

    def __init__(
        self, address: str | None = None, *, max_retries: int = 2, num_cpus: int | None = None
    ) -> None:
        super().__init__(name="ray")
        try:
            import ray
        except ImportError:
            raise ConfigError(
                "--executor ray needs Ray, an optional extra: pip install 'autointerp[ray]'"
            ) from None
        self.ray = ray
        self.max_retries = max_retries
        self._owns = False
        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
            if address is None:
                kw["num_cpus"] = num_cpus
            ray.init(address=address, **kw)
            self._owns = True
        from autointerp.model import cache_dir

        self.env = {k: os.environ[k] for k in FORWARD_ENV if k in os.environ}
        self.env["AUTOINTERP_CACHE_DIR"] = str(cache_dir().resolve())

    @property
    def parallel(self) -> bool:
        return True

    def model_gpus(self, requested: float, device: str) -> float:
        if requested > 0 or device == "cpu":
            return requested
        return 1.0 if self.ray.cluster_resources().get("GPU", 0) >= 1 else 0.0

    def share(self, value: Any) -> Any:
        """``value`` in Ray's object store, once for every task that takes it."""
        return self.ray.put(value)

    def run_all(self, tasks: Sequence[Task], report: Reporter | None = None) -> dict[str, Any]:
        ray = self.ray
        remote = ray.remote(_call)
        refs = {
            remote.options(
                num_cpus=t.num_cpus,
                num_gpus=t.num_gpus,
                max_retries=self.max_retries,
                retry_exceptions=[TaskFailed],
                name=t.label,
            ).remote(t.fn, t.args, self.env): t.label
            for t in tasks
        }
        out: dict[str, Any] = {}
        pending, t0 = list(refs), time.perf_counter()
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            label = refs[ready[0]]
            out[label] = got = self._get(label, ready[0])
            secs = time.perf_counter() - t0
            status = "done"
            if isinstance(got, TaskFailed):
                status = f"FAILED in stage {got.stage}" if got.stage else "FAILED (worker lost)"
            log.info("[ray %d/%d] %s: %s (%.1f s)", len(out), len(tasks), label, status, secs)
            if report is not None:
                report(label, got, secs)
        return {t.label: out[t.label] for t in tasks}

    def _get(self, label: str, ref: Any) -> Any:
        exc = self.ray.exceptions
        try:
            return self.ray.get(ref)
        except exc.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, TaskFailed):
                return cause
            return TaskFailed(label, None, f"{type(cause or e).__name__}: {cause or e}")
        except exc.RayError as e:  # the worker or its node died past the retries
            return TaskFailed(label, None, f"{type(e).__name__}: {e}")

    def check_shared(self, paths: Sequence[Path]) -> None:
        """A probe file in each folder of ``paths``, read back by a task pinned to every live
        node; a :class:`ConfigError` naming the nodes and folders that do not see them."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray = self.ray
        token = uuid.uuid4().hex
        probes = probe_files([Path(p).resolve() for p in paths], token)
        try:
            check = ray.remote(check_probes)
            nodes = [n for n in ray.nodes() if n.get("Alive")]
            refs = [
                check.options(
                    num_cpus=0,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False),
                ).remote([str(p) for p in probes], token)
                for n in nodes
            ]
            bad = {
                n.get("NodeManagerAddress", n["NodeID"]): b
                for n, b in zip(nodes, ray.get(refs), strict=True)
                if b
            }
        finally:
            for p in probes:
                p.unlink(missing_ok=True)
        if bad:
            lines = [f"  node {node}: cannot see {', '.join(b)}" for node, b in bad.items()]
            raise ConfigError(
                "some Ray workers cannot see the results / cache folders:\n"
                + "\n".join(lines)
                + "\nput --results, --work-dir and AUTOINTERP_CACHE_DIR on a filesystem every "
                "node mounts at the same path (NFS, a cluster filesystem)"
            )

    def close(self) -> None:
        if self._owns and self.ray.is_initialized():
            self.ray.shutdown()
        self._owns = False

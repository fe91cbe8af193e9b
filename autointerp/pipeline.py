"""The suite runner: corpus -> activations -> bases -> metrics -> records -> explain -> score.

A thin driver: the stages are small modules in :mod:`autointerp.stages`, the generic runner
(:mod:`autointerp.run.runner`) hashes, caches, resumes and times them, and the run directory
belongs to :class:`autointerp.run.store.RunStore`. Heavy artifacts (tokens, activations,
trained/fitted bases) live in the work dir (``$AUTOINTERP_CACHE_DIR/work``), with a copy of
every small stage output any later run may reuse; small results live in
``results/<suite>/<run>/``, written by one process at a time. Per-item LLM results are
appended to checksummed journals named by the stage's protocol hash as each item finishes, so
a killed run loses at most the items in flight, a rerun resumes, a changed protocol
recomputes, and a rerun of a finished suite makes zero LLM calls.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from autointerp.bases.kinds import FIT_VERSION
from autointerp.config import Suite, load_suite
from autointerp.errors import ConfigError
from autointerp.results import stable_hash
from autointerp.run.placement import added_since, other_weights, snapshot, weights_dir, weights_of
from autointerp.run.runner import Runner
from autointerp.run.store import RunStore
from autointerp.stages import FORCE_NAMES, suite_stages
from autointerp.stages.env import SuiteEnv, llm_cache_path, protocol_of, suite_store
from autointerp.stages.tokens import held_out_rows

log = logging.getLogger(__name__)

STAGES = FORCE_NAMES  # the --force names of the built-in stages

__all__ = [
    "FIT_VERSION",
    "STAGES",
    "RunPaths",
    "SuiteRun",
    "held_out_rows",
    "protocol_of",
    "run_suite",
]


class RunPaths:
    """The run directory and the work dir of one run (see :class:`RunStore`)."""

    def __init__(self, store: RunStore) -> None:
        self.run_dir = store.run_dir
        self.work_dir = store.work_dir

    @property
    def stages(self) -> Path:
        return self.run_dir / "stages"


class SuiteRun:
    """One execution of a suite; ``run()`` does every stage, skipping finished ones."""

    def __init__(
        self,
        suite: Suite,
        *,
        results_root: str | Path = "results",
        run_name: str | None = None,
        work_dir: str | Path | None = None,
        force: tuple[str, ...] = (),
        progress: bool = True,
        llm_cache: str | Path | None = None,
        retry_failed: bool = False,
        max_cost: float | None = None,
        run_dir: str | Path | None = None,
        subject_model: Any = None,
        executor: Any = None,
    ) -> None:
        """``run_dir``: this exact directory instead of ``results_root/<suite>/<run>`` (a
        sweep's sub-run); ``subject_model``: an already loaded model to use (not reloaded);
        ``executor``: a parallel one (``ray``) makes the stages' per-basis items as tasks
        (:mod:`autointerp.run.remote`); default: everything here, in order."""

        if suite.model.hookpoints is not None:
            raise ConfigError(
                f"suite {suite.name!r} names several hookpoints (model.hookpoints): run it with "
                "run_suite() or autointerp.sweep.SweepRun, not SuiteRun"
            )
        self.suite = suite
        self.protocol = protocol_of(suite)
        self.protocol_id = stable_hash(self.protocol)
        self.config_hash, self.store = suite_store(
            suite, results_root=results_root, run_name=run_name, work_dir=work_dir, run_dir=run_dir
        )
        self.subject_model = subject_model
        self.paths = RunPaths(self.store)
        self.force = tuple(force)
        self.progress = progress
        self.retry_failed = retry_failed
        self.max_cost = max_cost  # USD: no new LLM request once spent (autointerp.llm.budget)
        self.llm_cache = llm_cache_path(llm_cache)
        self.stages = suite_stages()
        self.runner: Runner | None = None
        self.executor = executor
        Runner(self.stages, self.store, force=self.force)  # an unknown --force fails here

    def _worker(self) -> Any:
        """What a worker needs to make this run's per-basis items (None: run them here)."""
        ex = self.executor
        if ex is None or not ex.parallel:
            return None
        from autointerp.run.remote import WorkerSpec

        rc = self.suite.run
        return WorkerSpec(
            suite=self.suite, work_dir=self.store.work_dir.resolve(),
            llm_cache=self.llm_cache.resolve(), retry_failed=self.retry_failed,
            max_cost=self.max_cost, force=self.force, cpus=rc.cpus_per_task,
            gpus=ex.model_gpus(rc.gpus_per_task, self.suite.model.device),
        )  # fmt: skip

    def run(self) -> Path:
        """Every stage, skipping finished ones, under an exclusive lock on the run dir."""
        t0 = time.perf_counter()
        env = SuiteEnv(
            self.suite,
            self.store,
            progress=self.progress,
            retry_failed=self.retry_failed,
            llm_cache=self.llm_cache,
            max_cost=self.max_cost,
        )
        if self.subject_model is not None:
            env._sm = self.subject_model
        worker = self._worker()
        self.runner = Runner(
            self.stages, self.store, env, force=self.force, progress=self.progress,
            executor=self.executor if worker is not None else None, worker=worker,
        )  # fmt: skip

        def finish(runner: Runner) -> None:
            from autointerp.stages.outputs import write_manifest

            bases = runner.values["bases"]
            write_manifest(env, runner, bases, self.config_hash, time.perf_counter() - t0)

        before = snapshot(self.store.run_dir)

        def start(runner: Runner) -> None:
            p, suite = self.store.out("suite.json"), self.suite.model_dump()
            if not (p.is_file() and json.loads(p.read_text()) == suite):
                self.store.write_json(p, suite)
            if worker is not None:  # every worker must see the results and the caches
                dirs = [self.store.run_dir, self.store.work_dir, self.llm_cache.parent]
                self.executor.check_shared(dirs)

        def place(runner: Runner, st: Any) -> None:
            """After the bases: a finished run made with other weights is left as it is."""
            if st.name != "bases":
                return
            weights = weights_of(runner.values["bases"])
            why = other_weights(self.store, weights)
            if why is None:
                return
            new = RunStore(weights_dir(self.store.run_dir, weights), self.store.work_dir)
            log.warning(
                "not rewriting %s: %s; writing this run to %s instead",
                self.store.run_dir, why, new.run_dir,
            )  # fmt: skip
            runner.move_to(new, added_since(self.store.run_dir, before))
            self.store = env.store = new
            self.paths = RunPaths(new)

        self.runner.run(prepare=start, finalize=finish, after_stage=place)
        return self.store.run_dir

    def summary(self) -> list[dict[str, Any]]:
        """The last run's per-stage rows (stage, seconds, status, counts)."""
        return self.runner.summary() if self.runner else []


def run_suite(
    suite: Suite | str | Path,
    *,
    executor: str | None = None,
    address: str | None = None,
    **kwargs: Any,
) -> Path:
    """Run a suite (a ``Suite`` or a TOML path); returns the run directory (a sweep's root
    when the suite names several hookpoints). ``executor`` (default: the suite's ``[run]``,
    else ``local``) runs a sweep's members, or a single suite's per-basis items, here or as
    Ray tasks on ``address`` (:mod:`autointerp.run.executor`)."""
    if not isinstance(suite, Suite):
        suite = load_suite(suite)
    executor = executor or suite.run.executor
    address = address or suite.run.address
    from autointerp.run.executor import make_executor

    ex = make_executor(executor, address)
    try:
        if suite.model.hookpoints is None:
            return SuiteRun(suite, executor=ex, **kwargs).run()
        from autointerp.sweep.run import SweepRun

        return SweepRun(suite, member_run=SuiteRun, executor=ex, **kwargs).run()
    finally:
        ex.close()

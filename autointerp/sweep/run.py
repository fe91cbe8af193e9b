"""Run a sweep: the graph ``tokens -> sweep-activations -> member:<hp> ... -> sweep-report`` at
the sweep's root ``results/<suite>/<run>/``; each member is a whole single-hookpoint run of
the suite in ``<root>/<hookpoint>/`` (:mod:`autointerp.sweep.members`). The subject model is
loaded once and handed to every member; in-process LLMs are loaded once per process anyway."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from autointerp.config import Suite
from autointerp.errors import AutointerpError
from autointerp.results import stable_hash
from autointerp.run.executor import Executor, JobFailed, Task, TaskFailed, failed_stage
from autointerp.run.runner import Runner
from autointerp.run.stage import Stage, StageContext, registered_stages
from autointerp.run.store import RunStore
from autointerp.stages import FORCE_NAMES
from autointerp.stages.activations import ACTIVATIONS, acts_key
from autointerp.stages.env import SuiteEnv, llm_cache_path, suite_store
from autointerp.stages.tokens import TOKENS
from autointerp.sweep.members import hookpoint_folder, member_suites

log = logging.getLogger(__name__)

#: the sweep's own stages (each member run has the suite's stages)
SWEEP_ACTIVATIONS, SWEEP_REPORT = "sweep-activations", "sweep-report"


def acts_path(store: RunStore, member: Suite, tokens_hash: str) -> Path:
    """Where the member's ``activations`` stage keeps its activations (same key, same hash)."""
    ctx = SimpleNamespace(env=SimpleNamespace(suite=member), upstream={"tokens": tokens_hash})
    return store.work(f"acts-{ACTIVATIONS.hash(acts_key(ctx, {}))}.npy")  # type: ignore[arg-type]


class SweepEnv(SuiteEnv):
    """The root's environment: a :class:`SuiteEnv` of the first member (the corpus, the model)
    plus the members and how to run one."""

    def __init__(self, sweep: Suite, members: dict[str, Suite], store: RunStore, **kw: Any):
        super().__init__(next(iter(members.values())), store, **kw)
        self.sweep = sweep
        self.members = members


def compute_sweep_acts(ctx: StageContext, inputs: dict[str, Any]) -> dict[str, Path]:
    from autointerp.sweep.activations import sweep_activations

    env: SweepEnv = ctx.env
    paths = {h: acts_path(env.store, s, ctx.upstream["tokens"]) for h, s in env.members.items()}
    if ctx.forced:
        for p in paths.values():
            p.unlink(missing_ok=True)
    todo = [h for h, p in paths.items() if not p.exists()]
    if todo:
        sm = env.sm
        done = sweep_activations(
            sm,
            [sm.hookpoint(h) for h in todo],
            inputs["tokens"].ids,
            [paths[h] for h in todo],
            batch_size=env.sweep.model.batch_size,
            progress=ctx.progress,
        )
        ctx.report.computed = sum(done)
    ctx.report.cached = len(paths) - len(todo)
    return paths


def run_member(label: str, member_run: Callable[..., Any], suite: Suite, kw: dict) -> dict:
    """One member's whole run (an executor task, in any process): its stage rows and whether
    it computed anything; a failure is a :class:`TaskFailed` naming the member and stage."""
    run = member_run(suite, **kw)
    try:
        run.run()
    except AutointerpError as e:  # bad input: a retry would fail the same way
        raise TaskFailed(label, failed_stage(run.runner), str(e), retriable=False) from None
    except Exception as e:
        raise TaskFailed(label, failed_stage(run.runner), f"{type(e).__name__}: {e}") from None
    return {
        "summary": run.summary(),
        "computed": run.runner.computed_anything(),
        "run_dir": str(run.store.run_dir),
    }


class SweepRun:
    """One execution of a sweep suite; ``run()`` does every stage, skipping finished ones.
    ``member_run`` makes one member's run (``autointerp.pipeline.SuiteRun``'s signature).
    ``executor``: where the members run (default: here, one after another, sharing the loaded
    subject model); a parallel one (``ray``) runs them all as tasks once the shared
    activations are written."""

    def __init__(
        self,
        suite: Suite,
        *,
        member_run: Callable[..., Any],
        results_root: str | Path = "results",
        run_name: str | None = None,
        work_dir: str | Path | None = None,
        force: tuple[str, ...] = (),
        progress: bool = True,
        llm_cache: str | Path | None = None,
        retry_failed: bool = False,
        max_cost: float | None = None,
        executor: Executor | None = None,
    ) -> None:
        """``max_cost`` (USD) applies to each member run on its own."""

        self.suite = suite
        self.members = member_suites(suite)
        self.config_hash, self.store = suite_store(
            suite, results_root=results_root, run_name=run_name, work_dir=work_dir
        )
        self.member_run = member_run
        self.force = tuple(force)
        self.progress = progress
        self.retry_failed = retry_failed
        self.max_cost = max_cost
        self.llm_cache = llm_cache_path(llm_cache)
        self.member_dirs = {h: self.store.out(hookpoint_folder(h)) for h in self.members}
        self._default_dirs = dict(self.member_dirs)
        self._report_dir: Path | None = None
        self.member_summaries: dict[str, list[dict[str, Any]]] = {}
        self.stages = self._graph()
        self.runner: Runner | None = None
        self.executor = executor or Executor()
        self._outcomes: dict[str, Any] | None = None
        Runner(self.stages, self.store, force=self.force)  # an unknown --force fails here

    def _graph(self) -> list[Stage]:
        names = tuple(FORCE_NAMES) + tuple(s.name for s in registered_stages())
        member_force = tuple(n for n in names if n not in ("tokens", "activations"))
        acts = Stage(
            SWEEP_ACTIVATIONS,
            compute_sweep_acts,
            deps=("tokens",),
            forced_by=("activations",),
            doc="token rows -> activations at every hookpoint, one forward pass",
        )
        members = [
            Stage(
                f"member:{h}",
                self._member_stage(h),
                deps=(SWEEP_ACTIVATIONS,),
                forced_by=member_force,
                doc=f"the suite's run at {h}",
            )
            for h in self.members
        ]
        extra: list[Stage] = []
        if self.suite.circuits.enabled:
            from autointerp.circuits.stage import make_circuits_stage

            extra.append(
                make_circuits_stage(self.members, self.member_dirs, tuple(s.name for s in members))
            )
        report = Stage(
            SWEEP_REPORT,
            self._report_stage,
            deps=tuple(s.name for s in [*members, *extra]),
            forced_by=("report",),
            doc="members' leaderboards -> one grouped by hookpoint, the layer figure",
        )
        return [TOKENS, acts, *members, *extra, report]

    def _member_stage(self, h: str) -> Callable[[StageContext, dict[str, Any]], Path]:
        def compute(ctx: StageContext, inputs: dict[str, Any]) -> Path:
            env: SweepEnv = ctx.env
            if self.executor.parallel:
                return self._parallel_member(ctx, h)
            force = tuple(f for f in self.force if f not in ("tokens", "activations", "circuits"))
            run = self.member_run(
                self.members[h],
                run_dir=self.member_dirs[h],
                work_dir=self.store.work_dir,
                force=force,
                progress=self.progress,
                llm_cache=self.llm_cache,
                retry_failed=self.retry_failed,
                max_cost=self.max_cost,
                subject_model=env._sm,
            )
            rd = run.run()
            if env._sm is None:  # the member loaded it: the next members reuse it
                env._sm = run.runner.env._sm
            self.member_summaries[h] = run.summary()
            self.member_dirs[h] = Path(rd)  # another directory where its weights differ
            if run.runner.computed_anything():
                ctx.report.computed = 1
            else:
                ctx.report.cached = 1
            return rd

        return compute

    def _member_kwargs(self, h: str) -> dict[str, Any]:
        """A member run's arguments, every path absolute (a worker's cwd may differ)."""
        return {
            "run_dir": self.member_dirs[h].resolve(),
            "work_dir": self.store.work_dir.resolve(),
            "force": tuple(f for f in self.force if f not in ("tokens", "activations", "circuits")),
            "progress": False,
            "llm_cache": self.llm_cache.resolve(),
            "retry_failed": self.retry_failed,
            "max_cost": self.max_cost,
        }

    def _parallel_member(self, ctx: StageContext, h: str) -> Path:
        """The first member stage runs every member as a task and waits for all of them; each
        member stage then takes its own outcome (a failure: :class:`JobFailed`, naming every
        member that failed and its stage; the finished members are kept)."""
        if self._outcomes is None:
            rc = self.suite.run
            tasks = [
                Task(
                    f"member:{m}",
                    run_member,
                    (f"member:{m}", self.member_run, self.members[m], self._member_kwargs(m)),
                    num_cpus=rc.cpus_per_task,
                    num_gpus=rc.gpus_per_task,
                )
                for m in self.members
            ]
            board = ctx.runner.board
            for t in tasks:
                board.task(t.label, "queued")

            def report(label: str, out: Any, secs: float) -> None:
                failed = isinstance(out, TaskFailed)
                board.task(label, f"failed: {out}" if failed else "done", secs)

            self._outcomes = self.executor.run_all(tasks, report=report)
        out = self._outcomes[f"member:{h}"]
        if isinstance(out, TaskFailed):
            failed = [o for o in self._outcomes.values() if isinstance(o, TaskFailed)]
            raise JobFailed(failed, len(self._outcomes))
        self.member_summaries[h] = out["summary"]
        self.member_dirs[h] = Path(out["run_dir"])  # another directory where its weights differ
        if out["computed"]:
            ctx.report.computed = 1
        else:
            ctx.report.cached = 1
        return self.member_dirs[h]

    def _report_stage(self, ctx: StageContext, inputs: dict[str, Any]) -> list[Path]:
        from autointerp.sweep.report import write_sweep_report

        ctx.report.ran = True
        root = self.report_dir()
        written = []
        if inputs.get("circuits") is not None:
            from autointerp.circuits.report import write_circuits

            written = write_circuits(root, dict(self.member_dirs), inputs["circuits"])
        return [*written, *write_sweep_report(root, dict(self.member_dirs))]

    def report_dir(self) -> Path:
        """Where the sweep's own files go: its root, unless a member ran in another directory
        (its bases' weights differ from the finished member's there, see
        :mod:`autointerp.run.placement`); then ``<root>-w<hash of the members' folders>``
        beside it, so a finished sweep's report is never rewritten with other members."""
        root = self.store.run_dir
        if all(d == self._default_dirs[h] for h, d in self.member_dirs.items()):
            return root
        moved = {h: d.name for h, d in self.member_dirs.items()}
        new = root.with_name(f"{root.name}-w{stable_hash(moved, 8)}")
        if new != self._report_dir:
            log.warning(
                "not rewriting the sweep report in %s: members %s ran with other weights; "
                "writing the report to %s instead",
                root,
                ", ".join(h for h, d in self.member_dirs.items() if d != self._default_dirs[h]),
                new,
            )
            self._report_dir = new
        new.mkdir(parents=True, exist_ok=True)
        return new

    def run(self) -> Path:
        """Every stage, skipping finished ones, under an exclusive lock on the sweep's root."""
        t0 = time.perf_counter()
        env = SweepEnv(
            self.suite,
            self.members,
            self.store,
            progress=self.progress,
            retry_failed=self.retry_failed,
            llm_cache=self.llm_cache,
        )
        self.runner = Runner(self.stages, self.store, env, force=self.force, progress=self.progress)
        self._outcomes = None

        def start(runner: Runner) -> None:
            p, suite = self.store.out("suite.json"), self.suite.model_dump()
            if not (p.is_file() and json.loads(p.read_text()) == suite):
                self.store.write_json(p, suite)
            if self.executor.parallel:  # every worker must see the results and the caches
                dirs = [self.store.run_dir, self.store.work_dir, self.llm_cache.parent]
                self.executor.check_shared(dirs)

        def finish(runner: Runner) -> None:
            root = self.report_dir()
            self.store.write_json(
                root / "sweep.json",
                {
                    "suite": self.suite.name,
                    "config_hash": self.config_hash,
                    "hookpoints": list(self.members),
                    "members": {
                        h: Path(os.path.relpath(d, root)).as_posix()
                        for h, d in self.member_dirs.items()
                    },
                    "stages": runner.summary(),
                    "member_stages": self.member_summaries,
                    "timings": {**env.timings},
                    "this_invocation_s": round(time.perf_counter() - t0, 3),
                },
            )

        self.runner.run(prepare=start, finalize=finish)
        return self.report_dir()

    def summary(self) -> list[dict[str, Any]]:
        """The last run's per-stage rows at the sweep's root (stage, seconds, status)."""
        return self.runner.summary() if self.runner else []

"""Per-basis items of one suite as executor tasks (:meth:`StageContext.prefetch`).

A stage that loops over bases (fitting them, their metrics, their records, ...) names the
items no run has made yet and a module-level function ``fn(ctx, inputs, item)`` that makes
one of them through ``ctx.cached`` (so it is written to the run store atomically, keyed by
its hash). Under a parallel executor (``--executor ray``) each item is a task: the worker
rebuilds the stage's inputs from the run store (the stages upstream of it, which the driver
has computed, load from their files), runs ``fn`` and returns its counts and the files it
wrote; the stage's own loop then runs on the driver as always and finds every item cached.
Under the local executor :func:`prefetch` does nothing and the loop computes the items in
order, in this process: local results are those of a run without this module.

A stage that keeps one value for every basis (the causal stages' columns) maps instead
(:meth:`StageContext.map`, :func:`map_items`): it computes the part every basis shares once on
the driver (e.g. IOI's clean and counterfactual states), and each basis's item is a task that
takes that part (sent once through the executor's object store) and returns its value; the
stage assembles its one value from them in the bases' order, as its local loop does. Those
items write nothing: a killed one is recomputed by the rerun, the stage's file is only
written once every item is back.

A killed worker loses its item only (the others are in the run store); a task failing for
good stops the stage with a :class:`~autointerp.run.tasks.JobFailed` naming each item and
stage, once the other items have finished (they are kept: a rerun resumes from them)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autointerp.run.tasks import JobFailed, Task, TaskFailed

if TYPE_CHECKING:
    from autointerp.run.runner import Runner
    from autointerp.run.stage import Stage, StageContext


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to rebuild a suite's stages in a run directory (picklable; every
    path absolute). ``gpus``: the GPUs a subject-model item asks for (fits ask for none)."""

    suite: Any
    work_dir: Path
    llm_cache: Path
    retry_failed: bool = False
    max_cost: float | None = None
    force: tuple[str, ...] = ()
    cpus: float = 1.0
    gpus: float = 0.0

    def prefetch(self, ctx: StageContext, fn: Callable[..., Any], items: list, gpu: bool) -> None:
        """:meth:`StageContext.prefetch` under a parallel executor (see :func:`prefetch`)."""
        prefetch(ctx, fn, items, gpu)

    def map(
        self, ctx: StageContext, fn: Callable[..., Any], items: list, shared: Any, gpu: bool,
        each: Callable[[Any, Any], Any] | None = None,
    ) -> list:  # fmt: skip
        """:meth:`StageContext.map` under a parallel executor (see :func:`map_items`)."""
        return map_items(ctx, fn, items, shared, gpu, each)


def upstream_of(stages: Sequence[Stage], name: str) -> list[Stage]:
    """``name`` and every stage it reads, directly or not, in the given order."""
    by = {s.name: s for s in stages}
    need, todo = set(), [name]
    while todo:
        n = todo.pop()
        if n not in need:
            need.add(n)
            todo.extend(by[n].deps)
    return [s for s in stages if s.name in need]


def worker_runner(spec: WorkerSpec, run_dir: str, stage: str, redone: Sequence[str]) -> Runner:
    """A runner of ``stage`` and its upstream stages in ``run_dir``, in a worker. ``redone``:
    what the driver recomputed under ``--force`` in this invocation (loaded, not redone)."""
    from autointerp.run.runner import Runner
    from autointerp.run.store import RunStore
    from autointerp.stages import suite_stages
    from autointerp.stages.env import SuiteEnv

    stages = upstream_of(suite_stages(), stage)
    store = RunStore(run_dir, spec.work_dir)
    env = SuiteEnv(
        spec.suite, store, progress=False, retry_failed=spec.retry_failed,
        llm_cache=spec.llm_cache, max_cost=spec.max_cost,
    )  # fmt: skip
    known = {n for s in stages for n in s.forced_by}
    runner = Runner(stages, store, env, force=[f for f in spec.force if f in known], progress=False)
    runner._redone = {Path(p) for p in redone}
    return runner


class _NotMapped:
    """The ``shared`` of an item that is not a map item (its function takes three arguments);
    one object in every process (it unpickles as the module's)."""

    def __reduce__(self) -> str:
        return "NOT_MAPPED"


NOT_MAPPED = _NotMapped()


def run_item(
    runner: Runner, stage: str, fn: Callable[..., Any], item: Any, shared: Any = NOT_MAPPED
) -> dict[str, Any]:
    """In a worker: ``runner``'s stages up to ``stage`` (loaded: the driver computed them),
    then ``fn(ctx, inputs, item)`` for ``stage`` (it writes its item through the run store),
    or, for a map item (:func:`map_items`), ``fn(ctx, inputs, item, shared)`` (its value comes
    back). No lock: the driver holds the run directory's lock for the job. Returns the item's
    counts, the paths it wrote (the driver loads them and counts them computed), its value
    (map items) and where it ran (:func:`where_ran`)."""
    from autointerp.journal import sync_pending

    runner.log_stages = False
    before = set(runner._redone)
    ctx = value = None
    try:
        for i, st in enumerate(runner.stages, 1):
            if st.name == stage:
                ctx = runner._context(st)
                if shared is NOT_MAPPED:
                    fn(ctx, ctx.inputs, item)
                else:
                    value = fn(ctx, ctx.inputs, item, shared)
                break
            runner._run_stage(i, st)
    finally:
        sync_pending()
        runner._close()
    if ctx is None:
        raise KeyError(f"no stage {stage!r} in this graph")
    r = ctx.report
    out = {
        "computed": r.computed,
        "reused": r.reused,
        "reused_items": list(r.reused_items),
        "written": [str(p) for p in runner._redone - before],
        "where": where_ran(ctx.env),
    }
    if shared is not NOT_MAPPED:
        out["value"] = value
    return out


def where_ran(env: Any) -> dict[str, Any]:
    """The torch device the task's stage chose (``model.device`` resolved in the worker:
    ``auto`` is CUDA only where torch sees one) and the GPU ids Ray gave the task."""
    import sys

    ray = sys.modules.get("ray")
    gpus = [str(g) for g in ray.get_gpu_ids()] if ray is not None and ray.is_initialized() else []
    return {"device": str(getattr(env, "device", "cpu")), "gpus": gpus}


def item_task(
    spec: WorkerSpec, run_dir: str, stage: str, fn: Callable[..., Any], item: Any,
    label: str, redone: Sequence[str], shared: Any = NOT_MAPPED,
) -> dict[str, Any]:  # fmt: skip
    """The body of one item's task (any process): its counts and the files it wrote; a
    failure is a :class:`TaskFailed` naming the item and its stage."""
    from autointerp.errors import AutointerpError

    try:
        return run_item(worker_runner(spec, run_dir, stage, redone), stage, fn, item, shared)
    except AutointerpError as e:  # bad input: a retry would fail the same way
        raise TaskFailed(label, stage, str(e), retriable=False) from None
    except Exception as e:
        raise TaskFailed(label, stage, f"{type(e).__name__}: {e}") from None


def _done(out: dict[str, Any]) -> str:
    """``done on cpu`` / ``done on cuda:0 (GPU 0)``: a finished task's progress status."""
    w = out.get("where") or {}
    gpus = w.get("gpus") or []
    return f"done on {w.get('device', '?')}" + (f" (GPU {','.join(gpus)})" if gpus else "")


def _send(
    ctx: StageContext, fn: Callable[..., Any], items: Sequence[Any], gpu: bool,
    shared: Any = NOT_MAPPED, each: Callable[[Any, dict[str, Any]], Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Each of ``items`` as a task of ``ctx``'s stage: label -> its output (or its
    :class:`TaskFailed`); the run's progress view follows them; ``each(item, output)`` as
    each task succeeds."""
    runner = ctx.runner
    spec: WorkerSpec = runner.worker
    stage = ctx.stage.name
    run_dir = str(runner.store.run_dir.resolve())
    redone = sorted(str(p) for p in runner._redone)
    gpus = spec.gpus if gpu else 0.0
    if shared is not NOT_MAPPED:
        shared = runner.executor.share(shared)  # sent once, whatever the number of items
    tasks = [
        Task(
            f"{stage}:{it}",
            item_task,
            (spec, run_dir, stage, fn, it, f"{stage}:{it}", redone, shared),
            num_cpus=spec.cpus,
            num_gpus=gpus,
        )  # fmt: skip
        for it in items
    ]
    board = runner.board
    for t in tasks:
        if board is not None:
            board.task(t.label, "queued")
    item_of = {f"{stage}:{it}": it for it in items}

    def report(label: str, out: Any, seconds: float) -> None:
        ok = not isinstance(out, TaskFailed)
        if ok and each is not None:
            each(item_of[label], out)
        if board is not None:
            board.task(label, _done(out) if ok else f"failed: {out.message}", seconds)

    return runner.executor.run_all(tasks, report=report)


def _failures(outs: dict[str, Any], stage: str, n: int) -> None:
    """A :class:`JobFailed` naming the items that failed for good, if any."""
    failed = [  # a worker lost mid-item: its stage is this one
        o if o.stage else TaskFailed(o.label, stage, o.message, o.retriable)
        for o in outs.values()
        if isinstance(o, TaskFailed)
    ]
    if failed:
        raise JobFailed(failed, n)


def map_items(
    ctx: StageContext, fn: Callable[..., Any], items: Sequence[Any], shared: Any = None,
    gpu: bool = False, each: Callable[[Any, Any], Any] | None = None,
) -> list[Any]:  # fmt: skip
    """:meth:`StageContext.map` under a parallel executor: ``fn(ctx, inputs, item, shared)``
    of each item as a task (``shared`` sent once), their values in ``items``' order
    (``each(item, value)`` on the driver as each one comes back, before any failure is
    raised). The items write nothing: the stage keeps what they return on the driver."""

    def one(it: Any, out: dict[str, Any]) -> None:
        if each is not None:
            each(it, out["value"])

    outs = _send(ctx, fn, items, gpu, shared, one)
    _failures(outs, ctx.stage.name, len(items))
    return [outs[f"{ctx.stage.name}:{it}"]["value"] for it in items]


def prefetch(
    ctx: StageContext, fn: Callable[..., Any], items: Sequence[Any], gpu: bool = False
) -> None:
    """Make ``items`` of ``ctx``'s stage as executor tasks (see the module docstring); a
    no-op unless the run has a parallel executor."""
    runner = ctx.runner
    if not items or not ctx.parallel:
        return
    outs = _send(ctx, fn, items, gpu)
    for o in outs.values():
        if isinstance(o, TaskFailed):
            continue
        written = {Path(p) for p in o["written"]}
        runner._prefetched |= written
        runner._redone |= written
        ctx.report.computed += o["computed"]
        ctx.report.reused += o["reused"]
        ctx.report.reused_items += o["reused_items"]
    _failures(outs, ctx.stage.name, len(items))

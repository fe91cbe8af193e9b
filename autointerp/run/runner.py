"""The runner: a graph of stages -> values, with hashing, caching, resume, journals, the lock,
progress and a time summary written once, here.

For each stage in dependency order the runner hashes the stage's key (its config slice and
its inputs' hashes), then

1. this run's output with that hash -> loaded (``cached``);
2. else the shared stage cache of the work dir has it (another run computed it) -> copied into
   this run and loaded (``reused from another run``);
3. else ``compute`` runs and its value is saved (and published to the shared cache).

A journaled stage reads its journal (items done so far), and compute appends the rest one by
one; ``--force NAME`` redoes the stages whose ``forced_by`` names it. Everything runs under the
run directory's exclusive lock, on one asyncio event loop (async computes share LLM clients).
Each stage logs one progress line; :func:`format_summary` prints the per-stage time summary.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from autointerp.errors import ConfigError
from autointerp.journal import RunLock, sync_pending
from autointerp.results import stable_hash
from autointerp.run.memory import (
    peak_rss_mib,
    release_free_memory,
    start_window,
    window_peak_mib,
)
from autointerp.run.stage import Artifact, Stage, StageContext, StageReport
from autointerp.run.store import RunStore

log = logging.getLogger(__name__)


def order_stages(stages: Iterable[Stage]) -> list[Stage]:
    """Dependency order, keeping the given order where the graph allows (Kahn's algorithm).
    Duplicate names, unknown dependencies and cycles are one :class:`ConfigError`."""
    stages = list(stages)
    by_name: dict[str, Stage] = {}
    for s in stages:
        if s.name in by_name:
            raise ConfigError(f"two stages are named {s.name!r}; give each stage its own name")
        by_name[s.name] = s
    for s in stages:
        for d in s.deps:
            if d not in by_name:
                raise ConfigError(
                    f"stage {s.name!r} needs stage {d!r}, which no stage provides; "
                    f"stages: {', '.join(by_name)}"
                )
    done: set[str] = set()
    out: list[Stage] = []
    while len(out) < len(stages):
        ready = next((s for s in stages if s.name not in done and set(s.deps) <= done), None)
        if ready is None:
            left = [s.name for s in stages if s.name not in done]
            raise ConfigError(f"the stages {', '.join(left)} depend on each other in a cycle")
        out.append(ready)
        done.add(ready.name)
    return out


def format_summary(
    rows: list[dict[str, Any]], total: float, peak: dict[str, Any] | None = None
) -> str:
    """The per-stage time summary: stage, seconds, the process's peak resident memory after
    it (MiB, a high-water mark), the stage's own peak (where the platform can tell), what
    happened (computed / cached / ...); the total line ends with the run's peak memory
    (``peak``: :func:`~autointerp.run.memory.peak_rss_mib`)."""
    w = max([len("stage"), *(len(r["stage"]) for r in rows)]) + 2
    lines = [
        "stage times (this invocation):",
        f"  {'stage':<{w}}{'seconds':>8}{'peak MiB':>10}{'own MiB':>9}  status",
    ]
    for r in rows:
        mem, own = r.get("peak_rss_mib"), r.get("stage_peak_rss_mib")
        cell = f"{mem:>10.0f}" if mem is not None else f"{'':>10}"
        cell += f"{own:>9.0f}" if own is not None else f"{'':>9}"
        lines.append(f"  {r['stage']:<{w}}{r['seconds']:>8.1f}{cell}  {r['status']}")
    tail = f"  {'total':<{w}}{total:>8.1f}"
    if peak and peak.get("self") is not None:
        tail += f"  peak RSS {peak['self']:.0f} MiB (children {peak.get('children') or 0:.0f} MiB)"
    lines.append(tail)
    return "\n".join(lines)


class Runner:
    """Runs ``stages`` for one run directory (``store``); ``env`` is passed to every stage."""

    def __init__(
        self,
        stages: Iterable[Stage],
        store: RunStore,
        env: Any = None,
        *,
        force: Iterable[str] = (),
        progress: bool = True,
        executor: Any = None,
        worker: Any = None,
    ) -> None:
        """``executor`` (:mod:`autointerp.run.executor`) and ``worker`` (a
        :class:`~autointerp.run.remote.WorkerSpec`): where :meth:`StageContext.prefetch` sends
        a stage's per-basis items; without both, stages run everything here."""
        self.stages = order_stages(stages)
        self.store = store
        self.env = env
        self.progress = progress
        self.executor = executor
        self.worker = worker
        self.board: Any = None  # the run's progress.json (autointerp.run.progress)
        self.log_stages = True
        self._prefetched: set[Path] = set()  # items written by tasks in this invocation
        known = {n for s in self.stages for n in s.forced_by}
        self.force = set(force)
        bad = self.force - known
        if bad:
            raise ConfigError(f"--force {sorted(bad)}: unknown stage; use one of {sorted(known)}")
        self.values: dict[str, Any] = {}
        self.hashes: dict[str, str | None] = {}
        self.reports: list[StageReport] = []
        self._memo: dict[Path, Any] = {}
        self._redone: set[Path] = set()  # recomputed under --force in this invocation
        self._closers: list[Callable[[], Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: RunLock | None = None

    # ------------------------------------------------------------------ running

    def run(
        self,
        prepare: Callable[[Runner], Any] | None = None,
        finalize: Callable[[Runner], Any] | None = None,
        after_stage: Callable[[Runner, Stage], Any] | None = None,
    ) -> dict[str, Any]:
        """Every stage under the run directory's lock; ``prepare(self)`` runs first and
        ``finalize(self)`` last, both under the lock (e.g. to write the suite and the
        manifest); ``after_stage(self, stage)`` after each stage (it may :meth:`move_to`
        another run directory). Returns the stages' values. The run's ``progress.json``
        (:mod:`autointerp.run.progress`) follows every stage."""
        from autointerp.run.progress import Progress

        self._lock = self.store.lock().acquire()
        try:
            self.store.check_schema()
            self.board = Progress(
                self.store.run_dir, self.store.run_dir.name, [s.name for s in self.stages]
            )
            self.board.write()
            try:
                if prepare is not None:
                    prepare(self)
                for i, st in enumerate(self.stages, 1):
                    self.board.stage(st.name)
                    try:
                        self._run_stage(i, st)
                    finally:
                        sync_pending()  # journals' group commit (autointerp.journal)
                    self.board.stage(st.name, self._status(st))
                    if after_stage is not None:
                        after_stage(self, st)
                if finalize is not None:
                    finalize(self)
            except BaseException as e:
                self.board.end(e)
                raise
            finally:
                self._close()
            self.board.end()
        finally:
            if self._lock is not None:
                self._lock.release()
        return self.values

    def _status(self, st: Stage) -> str:
        r = next((r for r in reversed(self.reports) if r.name == st.name), None)
        return r.status if r is not None else "done"

    def move_to(self, store: RunStore, files: Iterable[str] = ()) -> None:
        """Go on in ``store``'s run directory: take its lock, move ``files`` (paths relative to
        the current run directory, written by this invocation) there, let the old one go."""
        import os

        lock = store.lock().acquire()
        try:
            store.check_schema()
        except Exception:
            lock.release()
            raise
        old = self.store.run_dir
        for rel in files:
            src, dst = old / rel, store.run_dir / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)

        def moved(p: Path) -> Path:
            return store.run_dir / p.relative_to(old) if p.is_relative_to(old) else p

        self._memo = {moved(p): v for p, v in self._memo.items()}
        self._redone = {moved(p) for p in self._redone}
        self._prefetched = {moved(p) for p in self._prefetched}
        if self.board is not None:
            self.board.move(store.run_dir)
        if self._lock is not None:
            self._lock.release()
        self._lock, self.store = lock, store

    def _context(self, st: Stage) -> StageContext:
        """A stage's context: its inputs, its upstream hashes and (keyed) its hash."""
        inputs = {d: self.values[d] for d in st.deps}
        report = StageReport(st.name)
        ctx = StageContext(self, st, self.env, {d: self.hashes[d] for d in st.deps}, report)
        ctx.inputs = inputs
        if st.key is not None:
            ctx.hash = st.hash(st.key(ctx, inputs))
        return ctx

    def _run_stage(self, i: int, st: Stage) -> None:
        own = start_window()
        t0 = time.perf_counter()
        ctx = self._context(st)
        inputs, report = ctx.inputs, ctx.report
        if st.journal:
            value = self._journaled(st, ctx, inputs)
        elif st.key is not None and st.artifact is not None:
            art = st.artifact if isinstance(st.artifact, Artifact) else st.artifact(ctx, inputs)

            def compute(path: Path | None = None) -> Any:
                ctx.path = path
                return self._call(st.compute, ctx, inputs)

            value = self.cached(ctx, st.name, ctx.hash, compute, art, st.forced_by, False)
            ctx.item_hashes.clear()
        else:
            value = self._call(st.compute, ctx, inputs)
            report.ran = True
        report.seconds = time.perf_counter() - t0
        report.peak_rss_mib = peak_rss_mib()["self"]
        report.stage_peak_rss_mib = window_peak_mib() if own else None
        release_free_memory()
        self.values[st.name] = value
        if ctx.hash is not None:
            self.hashes[st.name] = ctx.hash
        elif ctx.item_hashes:
            self.hashes[st.name] = stable_hash(ctx.item_hashes)
        else:
            self.hashes[st.name] = stable_hash({"deps": ctx.upstream})
        if st.summary:
            self.reports.append(report)
        if st.summary and self.log_stages:
            log.info(
                "[%d/%d] %s: %s (%.1f s)", i, len(self.stages), st.name, report.status,
                report.seconds,
            )  # fmt: skip

    def _call(self, fn: Callable[..., Any], ctx: StageContext, inputs: dict[str, Any]) -> Any:
        out = fn(ctx, inputs)
        if inspect.isawaitable(out):
            out = self.run_async(out)
        return out

    def _journaled(self, st: Stage, ctx: StageContext, inputs: dict[str, Any]) -> Any:
        j = self.store.journal(f"{st.name}-{ctx.hash}.jsonl", st.name)
        if ctx.forced and j.path not in self._redone:
            j.path.unlink(missing_ok=True)
            self._redone.add(j.path)
        ctx.journal = j
        ctx.done = {tuple(r["key"]): r for r in j.read()}
        before = set(ctx.done)
        value = self._call(st.compute, ctx, inputs)
        ctx.report.cached = len(before - ctx.appended)
        return value

    # ------------------------------------------------------------------ caching

    def is_forced(self, forced_by: Iterable[str]) -> bool:
        return bool(self.force & set(forced_by))

    def _have(self, art: Artifact, path: Path, h: str) -> bool:
        if not art.codec.exists(path):
            return False
        if art.marker is None:
            return True
        m = art.marker(self.store)
        return m.exists() and m.read_text() == h

    def _path(self, art: Artifact, name: str, h: str) -> Path:
        suffix = art.codec.suffix
        return art.place(self.store, h) if art.place else self.store.stage_file(name, h, suffix)

    def available(self, name: str, h: str, art: Artifact, forced_by: tuple[str, ...]) -> bool:
        """See :meth:`StageContext.available`."""
        path = self._path(art, name, h)
        if path in self._memo:
            return True
        if self.is_forced(forced_by) and path not in self._redone:
            return False
        if self._have(art, path, h):
            return True
        shared = self.store.shared_file(name, h, art.codec.suffix) if art.shared else None
        return shared is not None and art.codec.exists(shared)

    def cached(
        self,
        ctx: StageContext,
        name: str,
        h: str,
        compute: Callable[..., Any],
        art: Artifact,
        forced_by: tuple[str, ...],
        memo: bool,
    ) -> Any:
        """See :meth:`StageContext.cached`."""
        codec = art.codec
        path = (
            art.place(self.store, h) if art.place else self.store.stage_file(name, h, codec.suffix)
        )
        if memo and path in self._memo:
            ctx.report.cached += 1
            return self._memo[path]
        forced = self.is_forced(forced_by) and path not in self._redone
        shared = self.store.shared_file(name, h, codec.suffix) if art.shared else None
        if not forced and self._have(art, path, h):
            value = codec.load(path)
            if path in self._prefetched:  # a task computed it in this invocation
                self._prefetched.discard(path)
            else:
                ctx.report.cached += 1
            if shared is not None and not codec.exists(shared):
                self._publish(codec, path, shared)  # a run written before the shared cache
        elif not forced and shared is not None and codec.exists(shared):
            codec.copy(shared, path)
            self._mark(art, h)
            value = codec.load(path)
            ctx.report.reused += 1
            ctx.report.reused_items.append(name)
        else:
            if forced and codec.streams:
                codec.discard(path)
            value = compute(path) if codec.streams else compute()
            if not codec.streams:
                codec.save(path, value)
            self._mark(art, h)
            if shared is not None:
                self._publish(codec, path, shared)
            ctx.report.computed += 1
            self._redone.add(path)
        if memo:
            self._memo[path] = value
        return value

    def _mark(self, art: Artifact, h: str) -> None:
        if art.marker is not None:
            self.store.write_text(art.marker(self.store), h)

    @staticmethod
    def _publish(codec: Any, path: Path, shared: Path) -> None:
        try:
            codec.copy(path, shared)
        except OSError as e:  # the shared cache is an optimisation: never fail a run for it
            log.warning("cannot publish %s to the shared stage cache: %s", path.name, e)

    # ------------------------------------------------------------------ event loop, teardown

    def run_async(self, coro: Any) -> Any:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

    def on_close(self, fn: Callable[[], Any]) -> None:
        self._closers.append(fn)

    def _close(self) -> None:
        while self._closers:
            fn = self._closers.pop()
            try:
                out = fn()
                if inspect.isawaitable(out):
                    self.run_async(out)
            except Exception as e:  # teardown must not hide the run's own error
                log.warning("closing %r failed: %s", fn, e)
        loop, self._loop = self._loop, None
        if loop is not None:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

    # ------------------------------------------------------------------ summary

    def summary(self) -> list[dict[str, Any]]:
        """One row per stage: stage, seconds, status, computed / cached / reused counts."""
        return [r.to_dict() for r in self.reports]

    def computed_anything(self) -> bool:
        """True when some stage computed (not just loaded) something in this invocation."""
        return any(r.computed for r in self.reports)

"""A stage: a name, the stages it reads, a key (its config slice and inputs), a compute.

A :class:`Stage` does not know about files: ``compute(ctx, inputs)`` takes the values of its
upstream stages (``inputs[name]``) and returns one value; the runner
(:mod:`autointerp.run.runner`) hashes ``key(ctx, inputs)``, finds an earlier output with that
hash (this run's, or any run's in the shared cache), or calls ``compute`` and stores the
value through the stage's :class:`Artifact` (a :class:`Codec` and a place). Three shapes:

* a *keyed* stage (``key`` and ``artifact``): one value, cached whole;
* a *journaled* stage (``key`` and ``journal=True``): many items, each appended to the
  checksummed journal ``stages/<name>-<hash>.jsonl`` as it finishes (``ctx.append``), so a
  killed run loses at most the items in flight; ``ctx.done`` holds the items already there;
* any other stage computes every time; it may cache per-item values itself with
  :meth:`StageContext.cached` (e.g. one per basis).

Stages are registered by name (:func:`register_stage`, or the entry-point group
``autointerp.stages``); the suite's graph includes every registered stage.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from autointerp.registry import Registry
from autointerp.results import stable_hash
from autointerp.run.store import RunStore, save_npy

if TYPE_CHECKING:
    from autointerp.journal import Journal
    from autointerp.run.runner import Runner


# --------------------------------------------------------------------------- codecs


class Codec(Protocol):
    """How a value is written to and read from one path."""

    suffix: str
    #: True when compute writes the file itself (it receives the path: ``ctx.path``)
    streams: bool

    def exists(self, path: Path) -> bool: ...
    def save(self, path: Path, value: Any) -> None: ...
    def load(self, path: Path) -> Any: ...
    def copy(self, src: Path, dst: Path) -> None: ...


class FileCodec:
    """Base: one file; ``copy`` is an atomic byte copy."""

    suffix = ""
    streams = False

    def exists(self, path: Path) -> bool:
        return path.is_file()

    def copy(self, src: Path, dst: Path) -> None:
        RunStore.copy(src, dst)

    def discard(self, path: Path) -> None:
        path.unlink(missing_ok=True)


class JsonCodec(FileCodec):
    suffix = ".json"

    def save(self, path: Path, value: Any) -> None:
        RunStore.write_json(path, value)

    def load(self, path: Path) -> Any:
        return json.loads(path.read_text())


class NpyCodec(FileCodec):
    suffix = ".npy"

    def save(self, path: Path, value: Any) -> None:
        save_npy(path, np.asarray(value))

    def load(self, path: Path) -> Any:
        return np.load(path)


class ColumnsCodec(FileCodec):
    """A stage's leaderboard columns (:class:`autointerp.columns.StageColumns`) as the JSON of
    ``to_dict()``; ``None`` (a disabled stage) as ``null``."""

    suffix = ".json"

    def save(self, path: Path, value: Any) -> None:
        RunStore.write_json(path, None if value is None else value.to_dict())

    def load(self, path: Path) -> Any:
        from autointerp.columns import StageColumns

        d = json.loads(path.read_text())
        return None if d is None else StageColumns.from_dict(d)


JSON = JsonCodec()
NPY = NpyCodec()
STAGE_COLUMNS = ColumnsCodec()


@dataclass(frozen=True)
class Artifact:
    """Where and how a stage (or one item of it) keeps its value.

    ``place(store, hash)``: the path in the run directory (default
    ``stages/<name>-<hash><suffix>``). ``marker(store)``: for a file whose name holds no hash
    (``records/<basis>.jsonl``), a file holding the hash it was made with. ``shared``: also
    keep a copy in the work dir's ``stages/<name>-<hash><suffix>`` for other runs.
    """

    codec: Codec
    place: Callable[[RunStore, str], Path] | None = None
    marker: Callable[[RunStore], Path] | None = None
    shared: bool = True


# --------------------------------------------------------------------------- stages


@dataclass(frozen=True)
class Stage:
    """One stage of a run (see the module docstring).

    ``forced_by``: the ``--force`` names that redo it (default: its own name).
    ``summary``: shown in the time summary (off for trivial glue stages).
    """

    name: str
    compute: Callable[..., Any]
    deps: tuple[str, ...] = ()
    key: Callable[[StageContext, dict[str, Any]], Any] | None = None
    artifact: Artifact | Callable[[StageContext, dict[str, Any]], Artifact] | None = None
    journal: bool = False
    forced_by: tuple[str, ...] = ()
    hash: Callable[[Any], str] = stable_hash
    summary: bool = True
    doc: str = ""

    def __post_init__(self) -> None:
        if not self.forced_by:
            object.__setattr__(self, "forced_by", (self.name,))
        if self.journal and self.key is None:
            raise ValueError(f"stage {self.name!r}: a journaled stage needs a key")


@dataclass
class StageReport:
    """What one stage did in this invocation (one line of the time summary)."""

    name: str
    seconds: float = 0.0
    computed: int = 0  # items (or the whole value) computed now
    cached: int = 0  # found in this run's directory (or the work dir's heavy artifacts)
    reused: int = 0  # found in the shared stage cache, written by another run
    ran: bool = False  # computed without a cache (glue, outputs)
    reused_items: list[str] = field(default_factory=list)  # items' names, when reused
    peak_rss_mib: float | None = None  # the process's resident high-water mark after the stage
    stage_peak_rss_mib: float | None = None  # the highest resident size during this stage

    @property
    def status(self) -> str:
        """``computed`` / ``cached`` / ``reused from another run`` (with a count when the stage
        has several items), ``computed 2, cached 3`` when mixed."""
        parts = [
            (n, what)
            for n, what in (
                (self.computed, "computed"),
                (self.cached, "cached"),
                (self.reused, "reused from another run"),
            )
            if n
        ]
        if not parts:
            return "ran" if self.ran else "nothing to do"
        if len(parts) == 1:
            n, what = parts[0]
            return what if n == 1 else f"{what} ({n})"
        return ", ".join(f"{what} {n}" for n, what in parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.name,
            "seconds": round(self.seconds, 3),
            "status": self.status,
            "computed": self.computed,
            "cached": self.cached,
            "reused": self.reused,
            **({"reused_items": list(self.reused_items)} if self.reused_items else {}),
            **({"peak_rss_mib": self.peak_rss_mib} if self.peak_rss_mib is not None else {}),
            **(
                {"stage_peak_rss_mib": self.stage_peak_rss_mib}
                if self.stage_peak_rss_mib is not None
                else {}
            ),
        }


@dataclass
class StageContext:
    """What a stage's ``key`` and ``compute`` see besides their inputs.

    ``env``: the run's environment (for a suite: :class:`autointerp.stages.env.SuiteEnv`).
    ``upstream``: the hash (fingerprint) of each upstream stage. ``hash``: this stage's.
    ``path``: where a streaming codec's compute writes. ``done`` / :meth:`append`: a journaled
    stage's items (the latest row per ``key``) and how to add one.
    """

    runner: Runner
    stage: Stage
    env: Any
    upstream: dict[str, str | None]
    report: StageReport
    hash: str | None = None
    path: Path | None = None
    journal: Journal | None = None
    done: dict[tuple, dict[str, Any]] = field(default_factory=dict)
    item_hashes: list[str] = field(default_factory=list)
    appended: set[tuple] = field(default_factory=set)
    inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def parallel(self) -> bool:
        """True when :meth:`prefetch` sends items out (``--executor ray``)."""
        ex = self.runner.executor
        return ex is not None and ex.parallel and self.runner.worker is not None

    def prefetch(self, fn: Callable[..., Any], items: Any, *, gpu: bool = False) -> None:
        """Under a parallel executor, make each of ``items`` (those no run has yet) as a task:
        ``fn(ctx, inputs, item)``, a module-level function that writes the item through
        :meth:`cached`; the stage's own loop then finds them cached. Locally: nothing (the
        loop computes them here, in order). ``gpu``: the item runs the subject model
        (:mod:`autointerp.run.remote`)."""
        if self.parallel:
            self.runner.worker.prefetch(self, fn, list(items), gpu)

    def map(
        self, fn: Callable[..., Any], items: Any, *, shared: Any = None, gpu: bool = False,
        each: Callable[[Any, Any], Any] | None = None,
    ) -> list[Any]:  # fmt: skip
        """``[fn(ctx, inputs, item, shared) for item in items]``: here, in order, locally;
        under a parallel executor each item is a task (``shared`` sent once, the values come
        back; ``fn`` module-level and writing nothing), for a stage that keeps one value for
        every basis and assembles it from the items' values. ``each(item, value)``: as each
        item's value is back (a journaled stage appends its rows there)."""
        items = list(items)
        if self.parallel and items:
            return self.runner.worker.map(self, fn, items, shared, gpu, each)
        out = []
        for it in items:
            out.append(v := fn(self, self.inputs, it, shared))
            if each is not None:
                each(it, v)
        return out

    @property
    def forced(self) -> bool:
        return self.runner.is_forced(self.stage.forced_by)

    @property
    def progress(self) -> bool:
        return self.runner.progress

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Append finished items to this stage's journal (one write; fsync by group commit)."""
        assert self.journal is not None, f"stage {self.stage.name} is not journaled"
        self.journal.append(rows)
        for r in rows:
            self.done[tuple(r["key"])] = r
            self.appended.add(tuple(r["key"]))
        self.report.computed += len(rows)

    def cached(
        self,
        name: str,
        h: str,
        compute: Callable[..., Any],
        artifact: Artifact,
        *,
        forced_by: tuple[str, ...] | None = None,
        memo: bool = False,
    ) -> Any:
        """One item's value, cached like a keyed stage: this run's file, the shared cache,
        else ``compute()`` (``compute(path)`` for a streaming codec) saved through
        ``artifact``. ``memo``: keep the value in memory for later asks in this invocation."""
        self.item_hashes.append(h)
        return self.runner.cached(
            self, name, h, compute, artifact, forced_by or self.stage.forced_by, memo
        )

    def available(self, name: str, h: str, artifact: Artifact) -> bool:
        """Whether :meth:`cached` would find this item (this run, the shared cache or this
        invocation's memo) without computing it: lets a stage compute its missing items
        together (one batched pass) and load the others."""
        return self.runner.available(name, h, artifact, self.stage.forced_by)

    def run_async(self, coro: Any) -> Any:
        """Run a coroutine on the run's event loop (one loop for the whole run)."""
        return self.runner.run_async(coro)

    def on_close(self, fn: Callable[[], Any]) -> None:
        """Call ``fn`` (sync or async) when the run ends, however it ends."""
        self.runner.on_close(fn)


# --------------------------------------------------------------------------- registry


def _check_stage(name: str, obj: Any) -> None:
    if not isinstance(obj, Stage):
        raise TypeError(f"stage {name!r}: {obj!r} is not an autointerp.run.Stage")
    if obj.name != name:
        raise ValueError(f"stage registered as {name!r} is named {obj.name!r}")


#: plug-in stages added to every suite's graph (they run after their deps, before the outputs)
STAGES: Registry[Stage] = Registry("stage", "autointerp.stages", {}, check=_check_stage)


def register_stage(stage: Stage, *, replace: bool = False) -> Stage:
    """Add ``stage`` to every suite's graph (from any package; no edit to autointerp)."""
    return STAGES.register(stage.name, stage, replace=replace)  # type: ignore[return-value]


def unregister_stage(name: str) -> None:
    STAGES.unregister(name)


def registered_stages() -> list[Stage]:
    return list(STAGES.loaded().values())

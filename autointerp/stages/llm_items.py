"""The LLM stages' items (explain, score) per basis as executor tasks, when that is safe.

Under ``--executor ray`` a stage whose every LLM role is an HTTP endpoint (``openai`` /
``litellm`` backends: a server or an endpoint pool) sends each basis's items as one task
(:func:`by_basis`). The worker makes them with the stage's own code and the same clients
(the endpoint, the shared response cache, retries, the role's concurrency) but writes
nothing to the run directory: its journal rows and its LLM call records come back, and the
driver appends them to the stage's journal and ``llm_calls.jsonl`` as each basis's task
ends, so the driver stays the one writer of both files and a basis that finished is kept
when another fails. A killed worker loses its basis's rows; the calls it had made are in the
response cache, so the rerun makes them again without new requests.

Kept on the driver: an in-process LLM (``transformers``, ``llamacpp``: each worker would load
the model), and any run with ``--max-cost`` (one ledger must count every request against the
cap before it is sent; per-worker ledgers would each spend up to it)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from autointerp.run.stage import StageContext

#: backends that talk HTTP to a server (no model in the worker's memory)
HTTP_BACKENDS = ("openai", "litellm")


def by_basis(ctx: StageContext, roles: Iterable[str]) -> bool:
    """Whether this stage sends each basis's LLM items as a task (module docstring)."""
    env = ctx.env
    if not ctx.parallel or env.max_cost is not None:
        return False
    cfgs = [getattr(env.suite.llm, r, None) for r in roles]
    return all(c is None or c.backend in HTTP_BACKENDS for c in cfgs)


def run_by_basis(ctx: StageContext, fn: Callable[..., Any], jobs: dict[str, list]) -> None:
    """``fn(ctx, inputs, basis, jobs)`` for each basis of ``jobs`` as a task (a worker:
    :func:`collect`); the rows and calls each returns are journaled here as it ends."""

    def keep(_basis: str, value: tuple[list, list]) -> None:
        rows, calls = value
        if rows:
            ctx.append(rows)
        if calls:
            ctx.env.store.journal("llm_calls.jsonl").append(calls)

    ctx.map(fn, list(jobs), shared=jobs, each=keep)


class _Rows:
    """A worker's stand-in for the stage's journal: the rows, for the driver."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def append(self, rows: list[dict[str, Any]]) -> None:
        self.rows += rows


def collect(ctx: StageContext, coro: Callable[[], Any]) -> tuple[list, list]:
    """In a worker: run ``coro()`` (the stage's items, appending through ``ctx.append``) and
    return the journal rows and LLM call records it made instead of writing them."""
    rows = _Rows()
    ctx.journal = rows  # type: ignore[assignment]
    ctx.env.llm.collected = calls = []
    ctx.run_async(coro())
    ctx.env.llm.flush()
    return rows.rows, calls

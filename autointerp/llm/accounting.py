"""Token, cost and latency accounting per call, totalled per basis and per stage.

``Ledger.totals()`` returns ``{"total": U, "by_basis": {basis: U}, "by_stage": {stage: U}}``
with ``U = {calls, cache_hits, prompt_tokens, cached_tokens, completion_tokens, cost_usd,
latency_s}`` (the ``llm_usage`` block of manifest.json). ``calls`` counts every answered request
including cache hits; ``cache_hits`` those served from autointerp's disk cache (or shared with
an identical request in flight), which add no tokens, cost or latency. ``work_tokens`` counts
the prompt and completion tokens of every answered call, cache hits included: the LLM work the
results need, what a cold run spends (the leaderboard's cost column), whichever invocation paid
for it. Failed requests are not in the totals; they are listed in ``failures``.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

from autointerp.errors import FatalLLMError
from autointerp.llm.types import Tag, Usage


class BudgetExceeded(FatalLLMError):
    """The run's LLM spending reached ``--max-cost`` (``autointerp.llm.budget``)."""


FIELDS = (
    "calls",
    "cache_hits",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "cost_usd",
    "latency_s",
    "work_tokens",
)


def empty_usage() -> dict[str, float]:
    return {k: 0.0 if k in ("cost_usd", "latency_s") else 0 for k in FIELDS}  # type: ignore[return-value]


@dataclass
class CallRecord:
    stage: str
    basis: str
    feature: int
    backend: str
    model: str
    kind: str
    cache_hit: bool
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    work_tokens: int = 0  # prompt + completion tokens, cache hits included


class Ledger:
    """Thread-safe record of every LLM call (shared by all clients of a run). With
    ``max_cost_usd``, :meth:`check_budget` raises :class:`BudgetExceeded` once the spending
    (``spent_before``, from earlier invocations of the run, plus this ledger's) reaches it."""

    def __init__(self, max_cost_usd: float | None = None, spent_before: float = 0.0) -> None:
        self.records: list[CallRecord] = []
        self.failures: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.max_cost_usd = max_cost_usd
        self.spent = spent_before

    def check_budget(self) -> None:
        if self.max_cost_usd is not None and self.spent >= self.max_cost_usd:
            raise BudgetExceeded(
                f"--max-cost reached: this run has spent ${self.spent:.4f} of "
                f"${self.max_cost_usd:.4f} on LLM calls; finished items are kept, rerun with "
                "a higher --max-cost to continue"
            )

    def record(self, tag: Tag, usage: Usage, *, backend: str, model: str, kind: str) -> None:
        hit = usage.cache_hit
        rec = CallRecord(
            stage=tag.stage,
            basis=tag.basis,
            feature=tag.feature,
            backend=backend,
            model=model,
            kind=kind,
            cache_hit=hit,
            prompt_tokens=0 if hit else usage.prompt_tokens,
            cached_tokens=0 if hit else usage.cached_tokens,
            completion_tokens=0 if hit else usage.completion_tokens,
            cost_usd=0.0 if hit else usage.cost_usd,
            latency_s=0.0 if hit else usage.latency_s,
            work_tokens=int(usage.prompt_tokens or 0) + int(usage.completion_tokens or 0),
        )
        with self._lock:
            self.records.append(rec)
            self.spent += rec.cost_usd

    def record_failure(self, tag: Tag, reason: str, *, backend: str, model: str, kind: str):
        with self._lock:
            self.failures.append(
                {**asdict(tag), "backend": backend, "model": model, "kind": kind, "reason": reason}
            )

    @staticmethod
    def _add(u: dict[str, Any], r: CallRecord) -> None:
        u["calls"] += 1
        u["cache_hits"] += int(r.cache_hit)
        u["prompt_tokens"] += r.prompt_tokens
        u["cached_tokens"] += r.cached_tokens
        u["completion_tokens"] += r.completion_tokens
        u["cost_usd"] += r.cost_usd
        u["latency_s"] += r.latency_s
        u["work_tokens"] += r.work_tokens

    def totals(self) -> dict[str, Any]:
        with self._lock:
            recs = list(self.records)
        total = empty_usage()
        by_basis: dict[str, dict[str, Any]] = {}
        by_stage: dict[str, dict[str, Any]] = {}
        for r in recs:
            self._add(total, r)
            self._add(by_basis.setdefault(r.basis, empty_usage()), r)
            self._add(by_stage.setdefault(r.stage, empty_usage()), r)
        return {"total": total, "by_basis": by_basis, "by_stage": by_stage}

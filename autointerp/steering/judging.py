"""The LLM judge over a steering experiment's held-out continuations (docs/steering.md).

Per feature with an explanation (the concept), on the report instructions: the feature's own
direction at its chosen factor, the DiffMean direction at its chosen factor, the prompting arm
and the unsteered answer; and AxBench's own protocol: every factor > 0 of the feature's direction
judged on the selection instructions, the factor with the highest mean harmonic mean kept
(ties: the smallest), and its report-instruction continuations judged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from autointerp.llm.base import LLMClient, Tag
from autointerp.steering.judge import ASPECTS, Job, judge_many

#: text_of(target, arm, factor, prompt): the continuation (factor 0 = the unsteered answer)
TextOf = Callable[[int, str, float, int], str]
SLOTS = ("feature", "diffmean", "prompting", "unsteered")


def _summary(ratings: list[dict[str, Any]], factor: float) -> dict[str, Any]:
    """Per-aspect and harmonic-mean means over the prompts where each is defined."""
    out: dict[str, Any] = {"factor": factor, "ratings": ratings}
    for k in (*ASPECTS, "hmean"):
        v = [r[k] for r in ratings if r[k] is not None]
        out[k] = float(np.mean(v)) if v else None
    out["n_unparsable"] = sum(1 for r in ratings if r["hmean"] is None)
    return out


async def judge_targets(
    client: LLMClient,
    out: list[dict[str, Any]],
    text_of: TextOf,
    instr: Sequence[str],
    select: Sequence[int],
    report: Sequence[int],
    factors: Sequence[float],
    max_tokens: int,
) -> None:
    """Add ``judge`` to every target dict of ``out`` (see the module docstring)."""
    jobs: list[Job] = []
    where: list[tuple[int, str, float, int]] = []  # (target, slot, factor, prompt)

    def add(ti: int, slot: str, arm: str, a: float, p: int) -> None:
        d = out[ti]
        tag = Tag("steering", d["basis"], d["feature"])
        jobs.append(Job(d["explanation"], instr[p], text_of(ti, arm, a, p), tag))
        where.append((ti, slot, a, p))

    for ti, d in enumerate(out):
        if not d.get("explanation"):
            d["judge"] = {"reason": "no explanation (the concept) for this feature"}
            continue
        for arm in SLOTS[:3]:
            if arm in d["arms"]:
                for p in report:
                    add(ti, arm, arm, d["arms"][arm]["factor"], p)
        for p in report:
            add(ti, "unsteered", "feature", 0.0, p)
        for a in factors:
            for p in select if a > 0 else ():
                add(ti, "select", "feature", a, p)
    got = await judge_many(client, jobs, max_tokens=max_tokens)
    by: dict[tuple[int, str, float], list[dict[str, Any]]] = {}
    for (ti, slot, a, p), r in zip(where, got, strict=True):
        by.setdefault((ti, slot, a), []).append({"prompt": p, **r})
    best: dict[int, float] = {}
    for ti, d in enumerate(out):
        if "judge" in d:
            continue
        j: dict[str, Any] = {}
        for (t, slot, a), rs in by.items():
            if t == ti and slot in SLOTS:
                j[slot] = _summary(rs, a)
        sel = {a: _summary(by[(ti, "select", a)], a)["hmean"] for a in factors if a > 0}
        j["axbench"] = {"select": {str(a): v for a, v in sel.items()}}
        ok = [(v, -a) for a, v in sel.items() if v is not None]
        if ok:
            best[ti] = -max(ok)[1]
        else:
            j["axbench"]["reason"] = "no defined judge rating on the selection instructions"
        d["judge"] = j
    jobs, where = [], []
    for ti, a in best.items():
        for p in report:
            add(ti, "axbench", "feature", a, p)
    got = await judge_many(client, jobs, max_tokens=max_tokens)
    for ti, a in best.items():
        rs = [{"prompt": p, **r} for (t, _, _, p), r in zip(where, got, strict=True) if t == ti]
        out[ti]["judge"]["axbench"].update(_summary(rs, a))

"""Stage ``explain`` (journaled): one explanation per feature and style, each appended to
``stages/explain-<h>.jsonl`` as it finishes. The hash covers the records, the explain config,
the explainer's identity, the prompt templates and whether the floor row is on."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from tqdm.auto import tqdm

from autointerp.config import Suite
from autointerp.errors import AutointerpError, FatalLLMError
from autointerp.run.stage import Stage, StageContext
from autointerp.stages.llm_items import by_basis, run_by_basis
from autointerp.types import FeatureRecord


def styles_of(suite: Suite) -> list[str]:
    """The suite's explain style, plus ``top_tokens`` for the floor row."""
    style = suite.explain.style
    floor = suite.scoring.floor and style != "top_tokens"
    return [style] + (["top_tokens"] if floor else [])


async def gather_fatal(coros) -> None:
    """Run coroutines concurrently; a FatalLLMError cancels the rest and propagates."""
    import asyncio

    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        for fut in asyncio.as_completed(tasks):
            await fut
    except FatalLLMError:
        for t in tasks:
            t.cancel()
        # retrieve every outcome: a sibling that failed too would otherwise be logged at exit
        # as "Task exception was never retrieved" with its traceback
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def print_cost_estimate(env: Any, records: dict[str, list[FeatureRecord]]) -> None:
    """Before the first paid call: the plan's estimated calls, tokens and dollars
    (``autointerp.llm.budget``); nothing when no role is paid."""
    from autointerp.llm.budget import estimate_cost, is_paid

    llm = env.suite.llm
    if not any(is_paid(getattr(llm, r)) for r in ("explainer", "simulator", "scorer")):
        return
    est = estimate_cost(env.suite, records, styles_of(env.suite))
    print(est.format(env.max_cost), flush=True)
    if env.max_cost is not None and est.usd is not None and est.usd > env.max_cost:
        print(f"  the estimate exceeds --max-cost: the run will stop at ${env.max_cost:.2f}")


def explain_key(ctx: StageContext, inputs: dict[str, Any]) -> dict[str, Any]:
    p = ctx.env.protocol
    return {
        "records": inputs["records"].hashes,
        "explain": p["explain"],
        "llm": p["llm"]["explainer"],
        "templates": p["templates"],
        "floor": ctx.env.suite.scoring.floor,
    }


async def compute_explain(ctx: StageContext, inputs: dict[str, Any]) -> dict[tuple, dict]:
    """Explain every (feature, style) not in the journal yet (``--retry-failed``: nor those
    whose explanation failed); returns the latest journal row per (basis, feature, style)."""
    from autointerp.explain_styles import get_explain_style

    env = ctx.env
    print_cost_estimate(env, inputs["records"].records)
    have = dict(ctx.done)
    if env.retry_failed:
        have = {k: v for k, v in have.items() if v["exp"]["status"] == "ok"}
    styles = {s: get_explain_style(s) for s in styles_of(env.suite)}
    todo = [
        (r, s)
        for rs in inputs["records"].records.values()
        for r in rs
        for s in styles
        if (r.basis, r.feature, s) not in have
    ]
    if not todo:
        return dict(ctx.done)
    if any(styles[s].uses_llm for _, s in todo) and by_basis(ctx, ("explainer",)):
        jobs: dict[str, list] = {}
        for job in todo:  # --executor ray, HTTP explainer: a task per basis
            jobs.setdefault(job[0].basis, []).append(job)
        run_by_basis(ctx, explain_basis, jobs)
        return dict(ctx.done)
    await explain_jobs(ctx, todo)
    return dict(ctx.done)


def explain_basis(ctx: StageContext, inputs: dict[str, Any], basis: str, jobs: dict) -> tuple:
    """One basis's explanations in a worker (:mod:`autointerp.stages.llm_items`)."""
    from autointerp.stages.llm_items import collect

    return collect(ctx, lambda: explain_jobs(ctx, jobs[basis]))


async def explain_jobs(ctx: StageContext, todo: list[tuple[FeatureRecord, str]]) -> None:
    """Explain each (record, style) of ``todo``, appending each to the journal as it ends."""
    from autointerp.explain import build_messages, explain_feature
    from autointerp.explain_styles import get_explain_style
    from autointerp.llm.base import Tag

    env = ctx.env
    ec = env.suite.explain
    styles = {s: get_explain_style(s) for s in {s for _, s in todo}}
    clients = env.llm.clients(ctx) if any(styles[s].uses_llm for _, s in todo) else {}
    bar = tqdm(total=len(todo), desc="explain", disable=not ctx.progress)

    async def one(r: FeatureRecord, style: str) -> None:
        e = await explain_feature(
            r,
            clients.get("explainer"),
            style=style,
            max_examples=ec.max_examples,
            max_tokens=ec.max_tokens,
            max_parse_retries=env.suite.llm.explainer.max_parse_retries,
            tag=Tag("explain", r.basis, r.feature),
        )
        ctx.append([{"key": [r.basis, r.feature, style], "exp": asdict(e)}])
        env.llm.flush()
        bar.update()

    # Shortest prompts first: a model that falls back to ``model.generate`` pads each batch
    # to its longest prompt (0-163 tokens here); llm/greedy.py does not pad its prefill.
    def prompt_chars(job: tuple[FeatureRecord, str]) -> tuple[bool, int]:
        r, style = job
        if not styles[style].uses_llm:
            return (False, 0)
        try:
            msgs = build_messages(r, style, ec.max_examples)
        except AutointerpError:  # explain_feature reports it
            return (True, 0)
        return (True, sum(len(m["content"]) for m in msgs))

    todo = sorted(todo, key=prompt_chars)
    await gather_fatal([one(r, s) for r, s in todo])
    bar.close()


EXPLAIN = Stage(
    "explain",
    compute_explain,
    deps=("records",),
    key=explain_key,
    journal=True,
    doc="records -> one explanation per feature (and the top_tokens floor)",
)

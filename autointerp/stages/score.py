"""Stage ``score`` (journaled): every scorer the suite lists, for every feature, appended to
``stages/score-<h>.jsonl`` one item per (basis, feature, null, kind) as it finishes.

Items: ``kind`` ``llm`` scores the suite-style explanation, ``floor`` the ``top_tokens`` one
(scorers with ``floor``); ``null`` ``""`` is the real score, ``shuffled`` another feature's
explanation of the same basis (scorers with ``nulls``; the donor is recorded, and a journaled
null whose donor differs from today's assignment is scored again). The hash covers the
explain hash, the scoring config, the simulator's and scorer's identities, the templates and
the seed."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from tqdm.auto import tqdm

from autointerp.run.stage import Stage, StageContext
from autointerp.scoring.registry import Scorer, ScoringEnv, scorers_in_order
from autointerp.stages.explain import gather_fatal, styles_of
from autointerp.stages.llm_items import by_basis, run_by_basis
from autointerp.types import Explanation, FeatureRecord, Score


def score_key(ctx: StageContext, inputs: dict[str, Any]) -> dict[str, Any]:
    p = ctx.env.protocol
    return {
        "explain": ctx.upstream["explain"],
        "scoring": p["scoring"],
        "llm": [p["llm"]["simulator"], p["llm"]["scorer"]],
        "templates": p["templates"],
        "seed": p["seed"],
    }


def score_row(s: Score) -> dict[str, Any]:
    d = asdict(s)
    d["extra"] = json.dumps(d["extra"], default=float)
    return d


def plan(
    env: Any, records: dict[str, list[FeatureRecord]], have_exp: dict, have_score: dict
) -> tuple[list[tuple], list[str], list[str]]:
    """(jobs, nulls, kinds): the (record, explanation, null, kind, donor) still to score."""
    from autointerp.scoring.shuffled import assign_donors

    sc = env.suite.scoring
    scorers = scorers_in_order(sc.scorers)
    nulls = [""] + (["shuffled"] if sc.shuffled_null and any(s.nulls for s in scorers) else [])
    kinds = ["llm"] + (["floor"] if sc.floor and any(s.floor for s in scorers) else [])
    kind_style = dict(zip(kinds, styles_of(env.suite), strict=False))  # llm -> style, floor
    exps = {k: Explanation(**v["exp"]) for k, v in have_exp.items()}
    jobs = []
    for rs in records.values():
        for kind, style in kind_style.items():
            own = [exps[(r.basis, r.feature, style)] for r in rs]
            texts = [e.text if e.status == "ok" else None for e in own]
            donors = assign_donors(texts, env.suite.seed) if "shuffled" in nulls else []
            for j, r in enumerate(rs):
                for null in nulls:
                    d = None if not null else donors[j]
                    if null and d is None:
                        e, donor = own[j], None  # no valid null: an undefined row
                    else:
                        e = own[j] if not null else own[d]
                        donor = None if not null else rs[d].feature
                    got = have_score.get((r.basis, r.feature, null, kind))
                    if got is None or got.get("donor") != donor:
                        jobs.append((r, e, null, kind, donor))
    return jobs, nulls, kinds


def active(scorers: list[Scorer], null: str, kind: str) -> list[Scorer]:
    """The scorers of one job: every listed one for the real LLM explanation; those with
    ``nulls`` / ``floor`` for the shuffled null / the floor."""
    return [s for s in scorers if (not null or s.nulls) and (kind == "llm" or s.floor)]


def needs_llm(scorers: list[Scorer], job: tuple) -> bool:
    _, _, null, kind, donor = job
    if kind != "llm" or (null and donor is None):
        return False
    return any(s.roles for s in active(scorers, null, kind))


async def compute_score(ctx: StageContext, inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """Score every job not in the journal yet (``--retry-failed``: nor those with a failed
    row); returns the latest journal item per key."""
    env = ctx.env
    sc = env.suite.scoring
    have = dict(ctx.done)
    if env.retry_failed:
        have = {
            k: v for k, v in have.items() if not any(r["status"] == "failed" for r in v["rows"])
        }
    scorers = scorers_in_order(sc.scorers)
    jobs, _, _ = plan(env, inputs["records"].records, inputs["explain"], have)
    if not jobs:
        return list(ctx.done.values())
    roles = {r for s in scorers for r in s.roles}
    if any(needs_llm(scorers, j) for j in jobs) and by_basis(ctx, roles):
        by: dict[str, list] = {}
        for j in jobs:  # --executor ray, HTTP simulator / scorer: a task per basis
            by.setdefault(j[0].basis, []).append(j)
        run_by_basis(ctx, score_basis, by)
        return list(ctx.done.values())
    await score_jobs(ctx, jobs)
    return list(ctx.done.values())


def score_basis(ctx: StageContext, inputs: dict[str, Any], basis: str, jobs: dict) -> tuple:
    """One basis's score items in a worker (:mod:`autointerp.stages.llm_items`)."""
    from autointerp.stages.llm_items import collect

    return collect(ctx, lambda: score_jobs(ctx, jobs[basis]))


async def score_jobs(ctx: StageContext, jobs: list[tuple]) -> None:
    """Score each job of :func:`plan`, appending each item to the journal as it ends."""
    env = ctx.env
    sc = env.suite.scoring
    scorers = scorers_in_order(sc.scorers)
    if any(needs_llm(scorers, j) for j in jobs) or env.llm.started:
        clients = env.llm.clients(ctx)
    else:
        clients = {}
    bar = tqdm(total=len(jobs), desc="score", disable=not ctx.progress)

    async def one(r: FeatureRecord, e: Explanation, null: str, kind: str, donor: int | None):
        senv = ScoringEnv(sc, env.suite, clients, env.protocol_id, null=null, kind=kind)
        explanation = None if (null and donor is None) else e
        rows, sims = [], []
        for s in active(scorers, null, kind):
            res = await s.score(r, explanation, senv)
            rows += [score_row(x) for x in res.scores]
            sims += res.sims
        if null:
            for row in rows:
                row["extra"] = json.dumps({**json.loads(row["extra"]), "donor": donor})
        key = [r.basis, r.feature, null, kind]
        ctx.append([{"key": key, "rows": rows, "sims": sims, "donor": donor}])
        env.llm.flush()
        bar.update()

    await gather_fatal([one(*j) for j in jobs])
    bar.close()


SCORE = Stage(
    "score",
    compute_score,
    deps=("records", "explain"),
    key=score_key,
    journal=True,
    forced_by=("explain", "score"),
    doc="records + explanations -> scores of every listed scorer, with nulls and the floor",
)

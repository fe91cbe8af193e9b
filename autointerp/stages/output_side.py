"""Stages ``ablation`` and ``output`` (docs/output.md): the causal and output-side columns of
every basis, computed on the scored features (the records stage's), each a
:class:`~autointerp.columns.StageColumns` (``stages/<name>-<h>.json``; the report copies it to
``columns/<name>.json``).

``ablation``: each feature removed on its top contexts (error term kept): next-token KL and CE
change, the tokens whose log-probabilities fall / rise most. ``output``: the logit-lens tokens
of each feature direction, an output explanation from them (``top_tokens``; opt-in an LLM
summary), and the output score (amplify the feature on neutral prompts: do the explanation's
tokens gain probability, against another feature's tokens)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from autointerp.columns import Cell, ColumnDoc, StageColumns
from autointerp.errors import AutointerpError
from autointerp.run.stage import STAGE_COLUMNS, Artifact, Stage, StageContext
from autointerp.stages.output_tc import _num, _token_change, tc_rows

__all__ = ["ABLATION", "ABLATION_COLUMNS", "OUTPUT", "OUTPUT_COLUMNS", "mean_cell", "tc_rows"]

ABLATION_COLUMNS = [
    ColumnDoc(
        "ablation_kl",
        "mean over scored features of KL(P_orig || P_ablated) of the next token when the "
        "feature is removed on its top contexts (error term kept); nats",
        better="higher",
    ),
    ColumnDoc(
        "ablation_ce_delta",
        "mean over scored features of the change in CE loss of the actual next tokens when "
        "the feature is removed on its top contexts; nats, > 0: the feature helped",
        better="higher",
    ),
]
OUTPUT_COLUMNS = [
    ColumnDoc(
        "output_score",
        "logit-lens output score (its explanation is read off the direction it scores, so "
        "random directions score too; see output_tc_score): mean over scored features of the "
        "log-probability gain (nats) of the feature's logit-lens tokens when it is amplified "
        "on neutral prompts",
        better="higher",
    ),
    ColumnDoc(
        "output_score_lift",
        "output_score minus the same gain for another feature's logit-lens tokens "
        "(shuffled-tokens null), mean over features",
        better="higher",
    ),
    ColumnDoc(
        "output_tc_score",
        "held-out output score: mean over scored features of the log-probability gain (nats) of "
        "the feature's TokenChange tokens (the tokens its addition raised most on other prompts, "
        "at the basis's target-KL strength s) when it is added at another strength "
        "(score_ratio x s) on held-out neutral prompts",
        better="higher",
    ),
    ColumnDoc(
        "output_tc_lift",
        "output_tc_score minus the same gain for another feature's TokenChange tokens "
        "(shuffled-tokens null), mean over features",
        better="higher",
    ),
    ColumnDoc(
        "output_tc_vs_random",
        "output_tc_score minus the random-directions row's, both at their own target-KL "
        "strength (unpaired bootstrap over features): the comparison that means something, "
        "since any direction moved to the target KL raises its own TokenChange tokens",
        better="higher",
    ),
    ColumnDoc(
        "output_arad",
        "Arad et al. (2025)'s output score (opt-in, output.arad): the feature added at 10x its "
        "max activation on the held-out prompts; per prompt (1 - min rank of its logit-lens "
        "tokens / |V|) x their max probability; mean over features",
        better="higher",
    ),
    ColumnDoc(
        "output_arad_lift",
        "output_arad minus the same score for another feature's logit-lens tokens",
        better="higher",
    ),
    ColumnDoc(
        "output_strength",
        "the basis's strength s at the target KL, in units of the prompts' mean ||x|| (n: "
        "calibration features); CI: none (one tuned number)",
        better="none",
    ),
    ColumnDoc(
        "output_score_llm",
        "output_score of the LLM summaries of the logit-lens tokens (their words' tokens)",
        better="higher",
    ),
]


def mean_cell(values: list[float | None], ctx: StageContext, what: str) -> Cell:
    """Mean over features with a bootstrap CI; undefined (with the reason) when none."""
    from autointerp.stats import bootstrap_mean_ci

    s = ctx.env.suite
    ci = bootstrap_mean_ci(values, n_boot=s.scoring.n_bootstrap, seed=s.seed)
    if ci.n == 0:
        return Cell.undefined(f"no feature with a defined {what}", n=0)
    return Cell(ci.mean, ci.low, ci.high, ci.n)


def _key(ctx: StageContext, inputs: dict[str, Any], section: str) -> dict[str, Any]:
    s = ctx.env.suite
    return {
        "records": inputs["records"].hashes,
        "acts": ctx.upstream.get("activations"),
        "cfg": getattr(s.causal, section).model_dump(exclude={"batch_size"}),
        "seed": s.seed,
        "n_boot": s.scoring.n_bootstrap,
        "v": 1,
    }


def _data(inputs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return inputs["tokens"].ids, inputs["activations"].acts, inputs["split"].mask


# --------------------------------------------------------------------------- ablation


def compute_ablation(ctx: StageContext, inputs: dict[str, Any]) -> StageColumns:
    from autointerp.causal.ablation import ablation_effects_many
    from autointerp.causal.hook_forward import HookForward

    env = ctx.env
    cfg = env.suite.causal.ablation
    cols = StageColumns("ablation", list(ABLATION_COLUMNS))
    if not cfg.enabled:
        cols.extra["disabled"] = "suite.causal.ablation.enabled = false"
        return cols
    ids, acts, mask = _data(inputs)
    fwd = HookForward(env.sm, env.sm.hookpoint(env.suite.model.hookpoint))
    bases = inputs["bases"]
    recs = {b.name: (b, inputs["records"].records.get(b.name) or []) for b in bases}
    t = time.perf_counter()
    effects = ablation_effects_many(
        fwd, recs, ids, acts, mask, n_contexts=cfg.n_contexts, n_positions=cfg.n_positions,
        n_logit_tokens=cfg.n_logit_tokens, batch_size=cfg.batch_size,
    )  # fmt: skip
    cols.extra.update(
        resumed_at_hookpoint=fwd.resumes,
        seconds=round(time.perf_counter() - t, 3),
        features={n: [e.to_dict() for e in eff] for n, eff in effects.items()},
    )
    for b in bases:
        eff = effects[b.name]
        cols.set(b.name, "ablation_kl", mean_cell([e.kl for e in eff], ctx, "ablation KL"))
        cols.set(
            b.name, "ablation_ce_delta", mean_cell([e.ce_delta for e in eff], ctx, "CE change")
        )
    return cols


ABLATION = Stage(
    "ablation",
    compute_ablation,
    deps=("tokens", "activations", "split", "bases", "records"),
    key=lambda ctx, inputs: _key(ctx, inputs, "ablation"),
    artifact=Artifact(STAGE_COLUMNS),
    doc="records -> each scored feature ablated on its top contexts: KL, CE change, logit shifts",
)


# --------------------------------------------------------------------------- output


def output_key(ctx: StageContext, inputs: dict[str, Any]) -> dict[str, Any]:
    k = {**_key(ctx, inputs, "output"), "v": 2}
    if ctx.env.suite.causal.output.llm_explanations:
        p = ctx.env.protocol
        k.update(llm=p["llm"]["explainer"], max_tokens=ctx.env.suite.explain.max_tokens)
    return k


async def _llm_texts(ctx: StageContext, basis: str, lens: list, n: int) -> list[dict]:
    from autointerp.causal.output_explain import llm_explanation
    from autointerp.llm.types import Tag
    from autointerp.stages.explain import gather_fatal

    env = ctx.env
    client = env.llm.clients(ctx)["explainer"]
    out: list[dict] = [{} for _ in lens]

    async def one(i: int) -> None:
        out[i] = await llm_explanation(
            client, lens[i], n, max_tokens=env.suite.explain.max_tokens,
            max_parse_retries=env.suite.llm.explainer.max_parse_retries,
            tag=Tag("output", basis, lens[i].feature),
        )  # fmt: skip

    await gather_fatal([one(i) for i in range(len(lens))])
    env.llm.flush()
    return out


async def compute_output(ctx: StageContext, inputs: dict[str, Any]) -> StageColumns:
    from autointerp.causal.output_score import neutral_rows

    env = ctx.env
    cfg = env.suite.causal.output
    declared = _declared(cfg)
    cols = StageColumns("output", [c for c in OUTPUT_COLUMNS if c.name in declared])
    if not cfg.enabled:
        cols.extra["disabled"] = "suite.causal.output.enabled = false"
        return cols
    rows = neutral_rows(inputs["split"].metric_rows, cfg.n_prompts)
    cols.extra.update(
        prompts={"rows": rows.tolist(), "prompt_len": cfg.prompt_len, "strength": cfg.strength},
        features={},
        seconds={},
    )
    names = [b.name for b in inputs["bases"]]
    if ctx.parallel and not cfg.llm_explanations:  # --executor ray: a task per basis
        parts = ctx.map(output_basis_sync, names, gpu=True)
    else:  # here, in order (LLM explanations: the explainer's clients live here)
        parts = [await output_basis(ctx, inputs, n) for n in names]
    tc_scores: dict[str, list] = {}
    for name, part in zip(names, parts, strict=True):
        if "token_change" in part:
            cols.extra.setdefault("token_change", {})[name] = part["token_change"]
        for c, cell in part["cells"]:
            cols.set(name, c, cell)
        if "tc_scores" in part:
            tc_scores[name] = part["tc_scores"]
            cols.extra["features"][name] = part["features"]
            cols.extra["seconds"][name] = part["seconds"]
        for c, cell in part.get("cells_after", []):
            cols.set(name, c, cell)
    _vs_random(ctx, cols, inputs["bases"], tc_scores)
    return cols


def output_basis_sync(ctx: StageContext, inputs: dict[str, Any], name: str, _: Any) -> dict:
    """:func:`output_basis` as a :meth:`StageContext.map` item (no LLM explanations)."""
    return ctx.run_async(output_basis(ctx, inputs, name))


async def output_basis(ctx: StageContext, inputs: dict[str, Any], name: str) -> dict:
    """One basis's output-side work: its cells (in the order the stage sets them), its
    per-feature rows, TokenChange info, seconds and held-out scores."""
    from autointerp.causal.hook_forward import HookForward
    from autointerp.causal.logit_lens import logit_lens
    from autointerp.causal.output_explain import token_sets_for, top_tokens_explanation
    from autointerp.causal.output_score import amplification_gains, derangement, neutral_rows

    env = ctx.env
    cfg = env.suite.causal.output
    ids, acts, mask = _data(inputs)
    sm = env.sm
    hp = sm.hookpoint(env.suite.model.hookpoint)
    fwd = HookForward(sm, hp)
    rows = neutral_rows(inputs["split"].metric_rows, cfg.n_prompts)
    b = next(b for b in inputs["bases"] if b.name == name)
    recs = inputs["records"].records.get(b.name) or []
    t = time.perf_counter()
    feats = [r.feature for r in recs]
    try:
        lens = logit_lens(sm, hp, b, feats, cfg.n_tokens)
    except AutointerpError as e:  # a hookpoint outside the residual stream's reach
        declared = _declared(cfg)
        return {"cells": [(c.name, Cell.undefined(str(e))) for c in OUTPUT_COLUMNS
                          if c.name in declared]}  # fmt: skip
    expl = [top_tokens_explanation(ln, cfg.n_tokens) for ln in lens]
    own = [e[1] for e in expl]
    perm = derangement(len(feats), env.suite.seed)
    sets = [own, [own[j] for j in perm]]
    llm = await _llm_texts(ctx, b.name, lens, cfg.n_tokens) if cfg.llm_explanations else []
    if llm:
        sets.append(token_sets_for([d.get("text", "") for d in llm], sm.tokenizer))
    gains, alpha = amplification_gains(
        fwd, b, feats, sets, ids, acts, mask, rows, prompt_len=cfg.prompt_len,
        strength=cfg.strength, batch_size=cfg.batch_size,
    )  # fmt: skip
    score = [_num(v) for v in gains[0]] if feats else []
    lift = [_num(gains[0, i] - gains[1, i]) if len(feats) > 1 else None for i in range(len(feats))]
    per = []
    for i, ln in enumerate(lens):
        d = {**ln.to_dict(), "explanation": expl[i][0], "alpha": float(alpha[i]),
             "score": score[i], "null": _num(gains[1, i]), "lift": lift[i]}  # fmt: skip
        if llm:
            d.update(llm_explanation=llm[i], llm_score=_num(gains[2, i]))
        per.append(d)
    own_ids = [np.asarray(e[1]) for e in expl]
    maxes = [r.max_act for r in recs]
    tc = _token_change(
        ctx, fwd, b, feats, ids, acts, mask, inputs["split"].metric_rows, own_ids, maxes
    )
    for i, d in enumerate(per):
        d.update({k: v[i] for k, v in tc["features"].items()})
    cells = [
        ("output_tc_score", mean_cell(tc["features"]["tc_score"], ctx, "held-out score")),
        ("output_tc_lift", mean_cell(tc["features"]["tc_lift"], ctx, "held-out lift")),
        ("output_strength", tc["strength"]),
    ]
    if cfg.arad:
        for c, k in (("output_arad", "arad"), ("output_arad_lift", "arad_lift")):
            cells.append((c, mean_cell(tc["features"][k], ctx, "Arad output score")))
    after = [
        ("output_score", mean_cell(score, ctx, "output score")),
        ("output_score_lift", mean_cell(lift, ctx, "output score lift")),
    ]
    if llm:
        llm_cell = mean_cell([_num(v) for v in gains[2]], ctx, "LLM output score")
        after.append(("output_score_llm", llm_cell))
    return {
        "token_change": tc["info"],
        "cells": cells,
        "tc_scores": tc["features"]["tc_score"],
        "features": per,
        "seconds": round(time.perf_counter() - t, 3),
        "cells_after": after,
    }


def _declared(cfg: Any) -> set[str]:
    """The output columns a suite's stage declares (LLM and Arad columns when asked for)."""
    return {
        c.name for c in OUTPUT_COLUMNS
        if (cfg.llm_explanations or c.name != "output_score_llm")
        and (cfg.arad or not c.name.startswith("output_arad"))
    }  # fmt: skip


def _vs_random(ctx: StageContext, cols: StageColumns, bases: list, tc: dict[str, list]) -> None:
    """``output_tc_vs_random``: each basis's mean held-out TokenChange score minus the random
    directions' (both at their own target-KL strength), unpaired bootstrap over features."""
    from autointerp.stats import lift

    rnd = next((b.name for b in bases if b.kind == "random" and tc.get(b.name)), None)
    s = ctx.env.suite
    for b in bases:
        if b.name not in tc:
            continue
        if rnd is None or b.name == rnd:
            why = (
                "this is the random-directions null"
                if b.name == rnd
                else ("no random-directions basis with TokenChange scores in the run")
            )
            cols.set(b.name, "output_tc_vs_random", Cell.undefined(why))
            continue
        lf = lift(tc[b.name], tc[rnd], paired=False, n_boot=s.scoring.n_bootstrap, seed=s.seed)
        cols.set(b.name, "output_tc_vs_random", Cell(lf.diff, lf.low, lf.high, lf.n_a))


OUTPUT = Stage(
    "output",
    compute_output,
    deps=("tokens", "activations", "split", "bases", "records"),
    key=output_key,
    artifact=Artifact(STAGE_COLUMNS),
    doc="records -> logit-lens tokens, output explanations and output scores per feature",
)

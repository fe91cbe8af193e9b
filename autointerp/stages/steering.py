"""Stage ``steering`` (docs/steering.md): turn each scored feature up at the hookpoint and see
whether the model writes about its explanation, for every basis (random directions are the null
row), with the DiffMean and prompting baselines in the same row, and the rank correlation of
steerability with the simulation score, output score and ablation KL. A
:class:`~autointerp.columns.StageColumns` (``columns/steering.json``); the per-feature numbers
and texts go to its ``extra`` (the feature browser reads them)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from autointerp.columns import Cell, ColumnDoc, StageColumns
from autointerp.run.stage import STAGE_COLUMNS, Artifact, Stage, StageContext
from autointerp.stages.env import template_hashes
from autointerp.stages.output_side import mean_cell


def _doc(name: str, doc: str, better: str = "higher") -> ColumnDoc:
    return ColumnDoc(name, doc, better=better, group="steering")  # type: ignore[arg-type]


STEERING_COLUMNS = [
    _doc("steer_act", "steering score, judge-free: held-out gain in the feature's own mean "
         "activation (/ its max) on the steered text over the unsteered, at the factor chosen "
         "on the selection prompts under the NLL budget; mean over features"),
    _doc("steer_pmi", "steering score by explanation-PMI: held-out gain in per-token log "
         "P(text | explanation prompt) - log P(text | neutral prompt), steered minus unsteered"),
    _doc("steer_factor", "mean chosen factor (0 = no factor within the fluency budget)", "none"),
    _doc("steer_nll_rise", "held-out NLL rise (nats/token, unsteered model) at the chosen "
         "factor", "lower"),
    _doc("steer_repeat", "held-out share of repeated bigrams at the chosen factor", "lower"),
    _doc("steer_diffmean_act", "steer_act of each feature's DiffMean direction (baseline)"),
    _doc("steer_diffmean_pmi", "steer_pmi of each feature's DiffMean direction (baseline)"),
    _doc("steer_prompting_act", "concept gain (own activation) of 'Write about <explanation>.' "
         "prepended to the instruction, unsteered (prompting baseline)"),
    _doc("steer_prompting_pmi", "explanation-PMI gain of the prompting baseline"),
    _doc("steer_rho_sim", "Spearman rho across features: steer_act vs simulation score"),
    _doc("steer_rho_output", "Spearman rho across features: steer_act vs output score"),
    _doc("steer_rho_ablation", "Spearman rho across features: steer_act vs ablation KL"),
    _doc("steer_topq_output", "steer_act of the top quartile by output score minus the rest "
         "(Arad et al.'s filter)"),
]  # fmt: skip

_J = "LLM judge ([llm.judge]), held-out instructions: "
JUDGE_COLUMNS = [
    _doc("judge_concept", _J + "concept rating 0-2 of the steered text at steer_act's factor"),
    _doc("judge_instruction", _J + "instruction-relevance rating 0-2, same texts"),
    _doc("judge_fluency", _J + "fluency rating 0-2, same texts"),
    _doc("judge_hmean", _J + "harmonic mean of the three ratings, same texts"),
    _doc("judge_axbench", _J + "AxBench score: harmonic mean at the factor the judge's harmonic "
         "mean picks on the selection instructions"),
    _doc("judge_diffmean_hmean", _J + "harmonic mean, DiffMean direction at its factor"),
    _doc("judge_prompting_hmean", _J + "harmonic mean, prompting baseline"),
    _doc("judge_unsteered_hmean", _J + "harmonic mean, unsteered answers"),
]  # fmt: skip
STEERING_COLUMNS += JUDGE_COLUMNS
#: (column, judge slot, key)
_JUDGE_CELLS = [("judge_concept", "feature", "concept"),
                ("judge_instruction", "feature", "instruction"),
                ("judge_fluency", "feature", "fluency"), ("judge_hmean", "feature", "hmean"),
                ("judge_axbench", "axbench", "hmean"),
                ("judge_diffmean_hmean", "diffmean", "hmean"),
                ("judge_prompting_hmean", "prompting", "hmean"),
                ("judge_unsteered_hmean", "unsteered", "hmean")]  # fmt: skip


def steering_key(ctx: StageContext, inputs: dict[str, Any]) -> dict[str, Any]:
    s = ctx.env.suite
    cfg = s.causal.steering
    k = {
        "records": inputs["records"].hashes,
        "acts": ctx.upstream.get("activations"),
        "cfg": cfg.model_dump(exclude={"batch_size"}),
        "explain": ctx.upstream.get("explain"),
        "score": ctx.upstream.get("score"),
        "output": ctx.upstream.get("output"),
        "ablation": ctx.upstream.get("ablation"),
        "seed": s.seed,
        "n_boot": s.scoring.n_bootstrap,
        "templates": template_hashes(("steer_",)),
        "v": 2,
    }
    if cfg.pmi:
        k["llm"] = ctx.env.protocol["llm"]["simulator"]
    if (j := s.llm.judge) is not None:
        k["judge"] = {"backend": j.backend, "model": j.model, "temperature": j.temperature}
    return k


def _explanations(inputs: dict[str, Any], style: str) -> dict[tuple[str, int], str]:
    out = {}
    for (b, f, st), row in (inputs.get("explain") or {}).items():
        e = row.get("exp") or {}
        if st == style and e.get("status") == "ok" and e.get("text"):
            out[(b, int(f))] = e["text"]
    return out


def _sim_scores(items: list[dict] | None) -> dict[tuple[str, int], float]:
    out = {}
    for it in items or []:
        b, f, null, kind = it["key"]
        if null or kind != "llm":
            continue
        for r in it["rows"]:
            if r["scorer"] == "simulation" and r["variant"] == "top_and_random":
                if r["status"] == "ok" and r["value"] is not None:
                    out[(b, int(f))] = float(r["value"])
    return out


def _per_feature(cols: Any, basis: str, field: str) -> dict[int, float]:
    if cols is None:
        return {}
    feats = (cols.extra.get("features") or {}).get(basis) or []
    return {int(d["feature"]): d[field] for d in feats if d.get(field) is not None}


def _targets(ctx: StageContext, inputs: dict[str, Any], expl: dict, m: float) -> list:
    from autointerp.causal.logit_lens import feature_directions
    from autointerp.steering.experiment import Target
    from autointerp.steering.interventions import diffmean_direction, random_tokens, unit_scale

    s = ctx.env.suite
    cfg = s.causal.steering
    acts, split = inputs["activations"].acts, inputs["split"]
    neg = random_tokens(split.mask, split.all_rows, cfg.n_random_tokens, s.seed)
    out = []
    for b in inputs["bases"]:
        recs = (inputs["records"].records.get(b.name) or [])[: cfg.n_features]
        if not recs:
            continue
        dirs = feature_directions(b, [r.feature for r in recs]).cpu()
        scale = unit_scale(dirs, m)
        for r, d, sc in zip(recs, dirs, scale, strict=True):
            dm = None
            if cfg.diffmean:
                v = diffmean_direction(r, acts, split.mask, neg, cfg.n_random_tokens)
                dm = v * (m / float(v.norm())) if float(v.norm()) > 0 else None
            out.append(Target(b, r.feature, d, float(sc), float(r.max_act),
                              expl.get((b.name, r.feature)), dm))  # fmt: skip
    return out


async def compute_steering(ctx: StageContext, inputs: dict[str, Any]) -> StageColumns:
    from autointerp.steering.experiment import Settings, run_experiment
    from autointerp.steering.interventions import mean_norm
    from autointerp.steering.prompts import split_prompts

    env = ctx.env
    s = env.suite
    cfg = s.causal.steering
    cols = StageColumns("steering", list(STEERING_COLUMNS))
    if not cfg.enabled:
        cols.extra["disabled"] = "suite.causal.steering.enabled = false"
        return cols
    t0 = time.perf_counter()
    sm = env.sm
    hp = sm.hookpoint(s.model.hookpoint)
    split = inputs["split"]
    m = mean_norm(inputs["activations"].acts, split.mask, split.metric_rows)
    expl = _explanations(inputs, s.explain.style)
    targets = _targets(ctx, inputs, expl, m)
    select, report = split_prompts(cfg.n_prompts, s.seed)
    clamp = cfg.mode == "clamp"
    client = env.llm.clients(ctx)["simulator"] if cfg.pmi else None
    if client is not None:
        from autointerp.scoring.methods import pick_method

        pick_method(client, "pmi")  # one clear error for a simulator without prompt logprobs
    judge = env.llm.clients(ctx)["judge"] if s.llm.judge is not None else None
    settings = Settings(cfg.factors, cfg.max_new_tokens, cfg.nll_budget, cfg.repeat_budget,
                        clamp, cfg.batch_size, cfg.prompting, cfg.pmi,
                        cfg.judge_max_tokens)  # fmt: skip
    try:
        res = await run_experiment(sm, hp, targets, select, report, settings, client, judge)
    finally:
        if client is not None or judge is not None:
            env.llm.flush()
    feats: dict[str, list[dict]] = {}
    for d in res.pop("targets"):
        feats.setdefault(d["basis"], []).append(d)
    cols.extra.update(res, mean_norm=m, factors=cfg.factors, features=feats)
    _fill(ctx, inputs, cols, feats)
    cols.extra["seconds"] = round(time.perf_counter() - t0, 3)
    return cols


def _arm(d: dict, arm: str, key: str) -> float | None:
    return (d["arms"].get(arm) or {}).get(key)


def _fill(ctx: StageContext, inputs: dict, cols: StageColumns, feats: dict) -> None:
    from autointerp.steering.judge import NO_JUDGE
    from autointerp.steering.summary import spearman, top_quartile

    s = ctx.env.suite
    sims = _sim_scores(inputs.get("score"))
    nb, seed = s.scoring.n_bootstrap, s.seed
    for b in inputs["bases"]:
        ds = feats.get(b.name) or []
        if not ds:
            for c in cols.columns:
                cols.set(b.name, c.name, Cell.undefined("no scored feature in this basis"))
            continue
        for col, arm, key in [
            ("steer_act", "feature", "act"), ("steer_pmi", "feature", "pmi"),
            ("steer_factor", "feature", "factor"), ("steer_nll_rise", "feature", "nll_rise"),
            ("steer_repeat", "feature", "repeat"), ("steer_diffmean_act", "diffmean", "act"),
            ("steer_diffmean_pmi", "diffmean", "pmi"), ("steer_prompting_act", "prompting", "act"),
            ("steer_prompting_pmi", "prompting", "pmi"),
        ]:  # fmt: skip
            off = _off(s.causal.steering, arm, key)
            cell = Cell.undefined(off) if off else None
            cols.set(b.name, col, cell or mean_cell([_arm(d, arm, key) for d in ds], ctx, col))
        act = [_arm(d, "feature", "act") for d in ds]
        fs = [d["feature"] for d in ds]
        out = _per_feature(inputs.get("output"), b.name, "score")
        abl = _per_feature(inputs.get("ablation"), b.name, "kl")
        others = {
            "steer_rho_sim": [sims.get((b.name, f)) for f in fs],
            "steer_rho_output": [out.get(f) for f in fs],
            "steer_rho_ablation": [abl.get(f) for f in fs],
        }
        for col, other in others.items():
            cols.set(b.name, col, _cell(spearman(act, other, n_boot=nb, seed=seed)))
        q = top_quartile(act, others["steer_rho_output"], n_boot=nb, seed=seed)
        cols.set(b.name, "steer_topq_output", _cell(q))
        for col, slot, key in _JUDGE_CELLS:
            off = _off(s.causal.steering, slot, key)
            if s.llm.judge is None or off:
                cols.set(b.name, col, Cell.undefined(off or NO_JUDGE))
                continue
            vals = [((d.get("judge") or {}).get(slot) or {}).get(key) for d in ds]
            cols.set(b.name, col, mean_cell(vals, ctx, col))
        for d, so, ab in zip(ds, others["steer_rho_output"], others["steer_rho_ablation"],
                             strict=True):  # fmt: skip
            d.update(simulation=sims.get((b.name, d["feature"])), output_score=so, ablation_kl=ab)


def _off(cfg: Any, arm: str, key: str) -> str:
    """Why a column is not computed in this suite ('' when it is)."""
    if key == "pmi" and not cfg.pmi:
        return "explanation-PMI off in this suite (causal.steering.pmi = false)"
    if arm in ("diffmean", "prompting") and not getattr(cfg, arm):
        return f"{arm} baseline off in this suite (causal.steering.{arm} = false)"
    return ""


def _cell(e: Any) -> Cell:
    if e.value is None or not np.isfinite(e.value):
        return Cell.undefined(e.reason or "not computable", n=e.n)
    return Cell(e.value, e.low, e.high, e.n)


STEERING = Stage(
    "steering",
    compute_steering,
    deps=(
        "tokens",
        "activations",
        "split",
        "bases",
        "records",
        "explain",
        "score",
        "output",
        "ablation",
    ),  # fmt: skip
    key=steering_key,
    artifact=Artifact(STAGE_COLUMNS),
    doc="records + explanations -> steered generations: concept / fluency, DiffMean, prompting",
)

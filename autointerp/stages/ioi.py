"""Stage ``ioi``: the IOI activation-patching curve of every basis (docs/causal.md) ->
the leaderboard columns ``ioi_*`` (a :class:`autointerp.columns.StageColumns` dict, saved by
the report as ``columns/ioi.json``)."""

from __future__ import annotations

import logging
import time
from typing import Any

from autointerp.columns import StageColumns
from autointerp.run.stage import STAGE_COLUMNS, Artifact, Stage, StageContext

log = logging.getLogger(__name__)

#: bump when the computation changes (invalidates cached values)
IOI_VERSION = 2


def ioi_key(ctx: StageContext, inputs: dict[str, Any]) -> dict[str, Any]:
    s = ctx.env.suite
    bases = inputs["bases"]
    return {
        "bases": [b.info.get("stage_hash", b.name) for b in bases],
        "names": [b.name for b in bases],
        "ioi": s.causal.ioi.model_dump(),
        "model": s.model.model_dump(exclude={"batch_size"}),
        "bos": s.corpus.prepend_bos,
        "seed": s.seed,
        "v": IOI_VERSION,
    }


def ioi_data(env: Any) -> tuple[Any, str | None]:
    """The IOI pairs and their cached states (prepared once per run environment), or None and
    why they cannot be built for this tokenizer."""
    from autointerp.causal import patching
    from autointerp.causal.ioi_prompts import NoIOINames, ioi_pairs

    got = getattr(env, "_ioi_data", None)
    if got is None:
        suite = env.suite
        sm = env.sm
        hp = sm.hookpoint(suite.model.hookpoint)
        bos = sm.bos_token_id if suite.corpus.prepend_bos else None
        try:
            pairs = ioi_pairs(sm.tokenizer, suite.causal.ioi.n_pairs, suite.seed, bos)
            got = (patching.prepare(sm, hp, pairs, suite.causal.ioi.ig_steps), None)
        except NoIOINames as e:
            got = (None, str(e))
        env._ioi_data = got
    return got


def undefined_columns(cols: Any, bases: list, reason: str) -> Any:
    """Every column of ``cols`` undefined for every basis, with ``reason``."""
    from autointerp.columns import Cell

    for b in bases:
        for c in cols.columns:
            if not c.name.startswith("attr_loss"):
                cols.set(b.name, c.name, Cell.undefined(reason))
    return cols


def full_rotations(bases: list) -> list:
    """For each top-k'd PCA basis, the same rotation with every code kept (exact: all d
    directions), named ``<name>-full``: the paper's PCA, a causal-only row."""
    from autointerp.bases.linear import SignedLinearBasis

    out = []
    for b in bases:
        if b.kind == "pca" and isinstance(b, SignedLinearBasis) and b.k is not None:
            full = SignedLinearBasis(f"{b.name}-full", "pca", b.E, b.D, b.mu, None)
            full.info["full_rotation_of"] = b.name
            out.append(full)
    return out


def ranking_replicates(ctx: StageContext, data: Any, bases: list, curves: dict) -> tuple:
    """The re-ranked bootstrap replicates of every basis (``ranking_bootstrap`` of them; None
    when 0) and their cost (seconds and new patched states per basis)."""
    from autointerp.causal.rerank import ranking_bootstrap

    suite = ctx.env.suite
    cfg = suite.causal.ioi
    if not cfg.ranking_bootstrap:
        return None, None
    hp = ctx.env.sm.hookpoint(suite.model.hookpoint)
    out, secs, states = {}, {}, {}
    for b in bases:
        t = time.perf_counter()
        out[b.name], states[b.name] = ranking_bootstrap(
            ctx.env.sm, hp, data, b, curves[b.name], cfg.ranking_bootstrap, suite.seed,
            cfg.order == "signed", cfg.batch_size,
        )  # fmt: skip
        secs[b.name] = round(time.perf_counter() - t, 2)
        log.info("ioi ranking bootstrap: %s, %d new states in %.1f s", b.name, states[b.name],
                 secs[b.name])  # fmt: skip
    info = {"replicates": cfg.ranking_bootstrap, "seconds": secs, "states": states}
    return out, info


def compute_ioi(ctx: StageContext, inputs: dict[str, Any]) -> StageColumns | None:
    from autointerp.causal.ranking import ioi_curves
    from autointerp.causal.summary import ioi_columns

    env = ctx.env
    suite = env.suite
    cfg = suite.causal.ioi
    if not cfg.enabled:
        return None
    t0 = time.perf_counter()
    sm = env.sm
    hp = sm.hookpoint(suite.model.hookpoint)
    bases = list(inputs["bases"])
    if cfg.full_rotation:
        bases += full_rotations(bases)
    data, why = ioi_data(env)
    t_prep = time.perf_counter() - t0
    if data is None:
        from autointerp.causal.summary import IOI_COLUMNS

        cols = StageColumns("ioi", list(IOI_COLUMNS))
        return undefined_columns(cols, bases, f"no IOI prompts: {why}")
    curves, greedy, secs_b = {}, {}, {}
    for b in bases:
        tb = time.perf_counter()
        curves[b.name] = ioi_curves(
            sm, hp, data, b, cfg.ks, cfg.batch_size, signed=cfg.order == "signed"
        )
        secs_b[b.name] = round(time.perf_counter() - tb, 2)
        log.info("ioi: %s done in %.1f s", b.name, secs_b[b.name])
        if cfg.greedy:
            from autointerp.causal.greedy import greedy_curve

            greedy[b.name] = g = greedy_curve(sm, hp, data, b, cfg, suite.seed)
            log.info(
                "ioi greedy: %s from %d features, %d trials in %.1f s",
                b.name, g.info["start"], g.info["trials"], g.info["seconds"],
            )  # fmt: skip
            print(f"ioi greedy elimination, {b.name}: {g.info['seconds']:.1f} s", flush=True)
    reranked, rr_info = ranking_replicates(ctx, data, bases, curves)
    kinds = {b.name: b.kind for b in bases}
    cols = ioi_columns(data, curves, kinds, suite.seed, greedy or None, reranked)
    secs = time.perf_counter() - t0
    cols.extra.update(
        seconds=round(secs, 2),
        seconds_prepare=round(t_prep, 2),
        seconds_per_basis=secs_b,
        resumed_at_layer=data.skip,
        order=cfg.order,
        rankings=["in_sample", "held_out", "per_pair"],
        greedy=cols.extra.get("greedy"),
        n_pairs=len(data.pairs),
        halves=[int(sum(p.half == h for p in data.pairs)) for h in (0, 1)],
    )
    if rr_info:
        cols.extra["ranking_bootstrap_cost"] = rr_info
    if not greedy:
        cols.extra.pop("greedy")
    log.info("ioi: %d pairs x %d bases in %.1f s", len(data.pairs), len(curves), secs)
    return cols


IOI = Stage(
    "ioi",
    compute_ioi,
    deps=("bases",),
    key=ioi_key,
    artifact=Artifact(STAGE_COLUMNS),
    doc="bases + subject model -> IOI patching curve and columns (docs/causal.md)",
)

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
IOI_VERSION = 1


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
            got = (patching.prepare(sm, hp, pairs), None)
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


def compute_ioi(ctx: StageContext, inputs: dict[str, Any]) -> StageColumns | None:
    from autointerp.causal import patching
    from autointerp.causal.summary import ioi_columns

    env = ctx.env
    suite = env.suite
    cfg = suite.causal.ioi
    if not cfg.enabled:
        return None
    t0 = time.perf_counter()
    sm = env.sm
    hp = sm.hookpoint(suite.model.hookpoint)
    data, why = ioi_data(env)
    if data is None:
        from autointerp.causal.summary import IOI_COLUMNS
        from autointerp.columns import StageColumns

        cols = StageColumns("ioi", list(IOI_COLUMNS))
        return undefined_columns(cols, inputs["bases"], f"no IOI prompts: {why}")
    pairs = data.pairs
    curves = []
    for b in inputs["bases"]:
        tb = time.perf_counter()
        if cfg.greedy:
            from autointerp.causal.greedy import greedy_curve

            c = greedy_curve(sm, hp, data, b, cfg, suite.seed)
        else:
            c = patching.ioi_curve(sm, hp, data, b, list(cfg.ks), cfg.batch_size, cfg.ranking)
        c.info["seconds"] = round(time.perf_counter() - tb, 2)
        curves.append(c)
        log.info("ioi: %s done in %.1f s", b.name, c.info["seconds"])
    kinds = {b.name: b.kind for b in inputs["bases"]}
    cols = ioi_columns(data, curves, kinds, suite.seed)
    secs = time.perf_counter() - t0
    cols.extra.update(
        seconds=round(secs, 2),
        resumed_at_layer=data.skip,
        mode="greedy" if cfg.greedy else f"attribution, {cfg.ranking} ranking",
        n_pairs=len(pairs),
    )
    log.info("ioi: %d pairs x %d bases in %.1f s", len(pairs), len(curves), secs)
    return cols


IOI = Stage(
    "ioi",
    compute_ioi,
    deps=("bases",),
    key=ioi_key,
    artifact=Artifact(STAGE_COLUMNS),
    doc="bases + subject model -> IOI patching curve and columns (docs/causal.md)",
)

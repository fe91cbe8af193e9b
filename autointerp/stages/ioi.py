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


def ioi_basis(ctx: StageContext, inputs: dict[str, Any], name: str, data: Any) -> dict:
    """One basis's IOI work (:meth:`StageContext.map`: a task under ``--executor ray``): its
    curves, greedy curve (opt-in) and re-ranked bootstrap replicates (``ranking_bootstrap``),
    on ``data``, the IOI states every basis shares (:func:`ioi_data`, made once)."""
    from autointerp.causal.ranking import ioi_curves

    suite = ctx.env.suite
    cfg = suite.causal.ioi
    sm = ctx.env.sm
    hp = sm.hookpoint(suite.model.hookpoint)
    if isinstance(data, tuple):  # shipped to this worker (to_host)
        data = from_host(data, sm.device)
    b = next(b for b in ioi_bases(inputs, cfg) if b.name == name)
    out: dict[str, Any] = {}
    tb = time.perf_counter()
    out["curve"] = curve = ioi_curves(
        sm, hp, data, b, cfg.ks, cfg.batch_size, signed=cfg.order == "signed"
    )
    out["seconds"] = round(time.perf_counter() - tb, 2)
    log.info("ioi: %s done in %.1f s", name, out["seconds"])
    if cfg.greedy:
        from autointerp.causal.greedy import greedy_curve

        out["greedy"] = g = greedy_curve(sm, hp, data, b, cfg, suite.seed)
        log.info(
            "ioi greedy: %s from %d features, %d trials in %.1f s",
            name, g.info["start"], g.info["trials"], g.info["seconds"],
        )  # fmt: skip
        print(f"ioi greedy elimination, {name}: {g.info['seconds']:.1f} s", flush=True)
    if cfg.ranking_bootstrap:
        from autointerp.causal.rerank import ranking_bootstrap

        t = time.perf_counter()
        out["reranked"], out["states"] = ranking_bootstrap(
            sm, hp, data, b, curve, cfg.ranking_bootstrap, suite.seed, cfg.order == "signed",
            cfg.batch_size,
        )  # fmt: skip
        out["rr_seconds"] = round(time.perf_counter() - t, 2)
        log.info("ioi ranking bootstrap: %s, %d new states in %.1f s", name, out["states"],
                 out["rr_seconds"])  # fmt: skip
    return out


def ioi_bases(inputs: dict[str, Any], cfg: Any) -> list:
    """The suite's bases, then (``full_rotation``) each top-k PCA's full rotation."""
    bases = list(inputs["bases"])
    return bases + full_rotations(bases) if cfg.full_rotation else bases


def _moved(data: Any, move: Any) -> Any:
    """``data`` with ``move(group index, field, tensor)`` applied to its groups' tensors (the
    same objects where nothing changes)."""
    import dataclasses

    import torch

    groups = []
    for i, g in enumerate(data.groups):
        kw = {f.name: getattr(g, f.name) for f in dataclasses.fields(g)}
        new = {k: move(i, k, v) if isinstance(v, torch.Tensor) else v for k, v in kw.items()}
        groups.append(g if all(new[k] is kw[k] for k in kw) else type(g)(**new))
    if all(x is y for x, y in zip(groups, data.groups, strict=True)):
        return data
    return dataclasses.replace(data, groups=groups)


def to_host(data: Any) -> tuple[Any, set]:
    """The IOI states for shipping to workers: every tensor on the CPU (exact copies; a worker
    may have no GPU, or another), and which ones were on the subject model's device."""
    moved: set = set()

    def move(i: int, k: str, t: Any) -> Any:
        if t.device.type == "cpu":
            return t
        moved.add((i, k))
        return t.cpu()

    return _moved(data, move), moved


def from_host(shipped: tuple[Any, set], device: Any) -> Any:
    """:func:`to_host`'s states in a worker: those that were on the model's device moved to
    this worker's (the layout a local run on it has); the others stay on the CPU."""
    data, moved = shipped
    return _moved(data, lambda i, k, t: t.to(device) if (i, k) in moved else t)


def compute_ioi(ctx: StageContext, inputs: dict[str, Any]) -> StageColumns | None:
    from autointerp.causal.summary import ioi_columns

    env = ctx.env
    suite = env.suite
    cfg = suite.causal.ioi
    if not cfg.enabled:
        return None
    t0 = time.perf_counter()
    bases = ioi_bases(inputs, cfg)
    data, why = ioi_data(env)
    t_prep = time.perf_counter() - t0
    if data is None:
        from autointerp.causal.summary import IOI_COLUMNS

        cols = StageColumns("ioi", list(IOI_COLUMNS))
        return undefined_columns(cols, bases, f"no IOI prompts: {why}")
    # each basis on the shared states, here in order (--executor ray: a task per basis)
    names = [b.name for b in bases]
    if ctx.parallel:  # a task per basis: the shared states sent once, from the CPU
        got = dict(zip(names, ctx.map(ioi_basis, names, shared=to_host(data), gpu=True),
                       strict=True))  # fmt: skip
    else:
        got = {n: ioi_basis(ctx, inputs, n, data) for n in names}
    curves = {n: g["curve"] for n, g in got.items()}
    secs_b = {n: g["seconds"] for n, g in got.items()}
    greedy = {n: g["greedy"] for n, g in got.items() if "greedy" in g}
    reranked, rr_info = None, None
    if cfg.ranking_bootstrap:
        reranked = {n: g["reranked"] for n, g in got.items()}
        rr_info = {
            "replicates": cfg.ranking_bootstrap,
            "seconds": {n: g["rr_seconds"] for n, g in got.items()},
            "states": {n: g["states"] for n, g in got.items()},
        }
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

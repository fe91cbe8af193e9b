"""The sweep stage ``circuits``: for every pair of consecutive hookpoints of a sweep and every
basis name fitted at both, the edges from the upstream basis's features into the downstream
basis's explained features, and their faithfulness (docs/circuits.md). It runs after the
member runs and reads their bases, activations and explanations through the stage cache; the
value (every feature's record, JSON) is cached like any keyed stage. The sweep report turns it
into each downstream run's ``columns/circuits.json``, ``circuits.png`` and ``circuits.html``
(:mod:`autointerp.circuits.report`)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from autointerp.config import Suite
from autointerp.results import stable_hash
from autointerp.run.stage import JSON, Artifact, Stage, StageContext

log = logging.getLogger(__name__)
CIRCUITS = "circuits"
VERSION = 3


def _evenly(rows: np.ndarray, n: int) -> np.ndarray:
    if len(rows) <= n:
        return np.asarray(rows)
    return np.asarray(rows)[np.linspace(0, len(rows) - 1, n).round().astype(np.int64)]


def downstream_features(
    loaded: dict[str, Any], run_dir: Path, basis: str, n: int, seed: int
) -> list[int]:
    """``n`` features of ``basis``: the run's explained ones first (its features table, a
    seeded sample of the alive features), then a seeded sample of its other alive features
    (firing density > 0 over the corpus, ``density.parquet``)."""
    out = [f for (b, f) in loaded["features"] if b == basis][:n]
    p = run_dir / "density.parquet"
    if len(out) < n and p.exists():
        import polars as pl

        d = pl.read_parquet(p).filter((pl.col("basis") == basis) & (pl.col("density") > 0))
        rest = np.setdiff1d(np.asarray(d["feature"].to_list(), dtype=np.int64), out)
        rng = np.random.default_rng([seed, len(basis), *basis.encode()])
        out += [int(i) for i in rng.permutation(rest)[: n - len(out)]]
    return out


def ioi_prompts(sm: Any, suite: Suite) -> Any:
    """The clean IOI prompts of the circuits' logit-difference measurement
    (:class:`autointerp.circuits.ioi.Prompts`), or why there are none (a string)."""
    from autointerp.causal.ioi_prompts import NoIOINames, ioi_pairs
    from autointerp.circuits.ioi import prompts

    n = suite.circuits.ioi_prompts
    if n == 0:
        return "ioi_prompts = 0 (off)"
    bos = sm.bos_token_id if suite.corpus.prepend_bos else None
    try:
        pairs = ioi_pairs(sm.tokenizer, n, suite.seed, bos)
    except NoIOINames as e:
        return str(e)
    tok = sm.tokenizer
    pad = next((t for t in (tok.pad_token_id, tok.eos_token_id) if t is not None), 0)
    return prompts(pairs, pad)


def run_pair(
    up: dict[str, Any], down: dict[str, Any], suite: Suite, down_dir: Path, ioi: Any = None
) -> dict[str, Any]:
    """Every basis name at both hookpoints: its ``pair_circuits`` record, with the IOI
    record of the upstream basis (``ioi``: the prompts, or why there are none)."""
    from autointerp.circuits.contexts import mean_codes_from_acts, top_contexts
    from autointerp.circuits.forward import Pair
    from autointerp.circuits.study import pair_circuits

    cfg = suite.circuits
    split = down["split"]
    pool = _evenly(split.fit_rows, cfg.n_pool_rows)
    ups = {b.name: b for b in up["bases"]}
    out: dict[str, Any] = {}
    for b2 in down["bases"]:
        b1 = ups.get(b2.name)
        if b1 is None:
            continue
        t0 = time.perf_counter()
        pair = Pair(down["sm"], up["hp"], down["hp"], b1, b2)
        feats = downstream_features(down, down_dir, b2.name, cfg.n_features, suite.seed)
        ctx = top_contexts(
            b2, down["acts"], down["tokens"], split.mask, pool, feats, cfg.n_contexts
        )
        cbar, ebar = mean_codes_from_acts(b1, up["acts"], split.mask, split.metric_rows)
        rec = pair_circuits(
            pair,
            ctx,
            cbar,
            ebar,
            ks=cfg.ks,
            n_linear=cfg.n_linear,
            batch_features=cfg.batch_features,
            ig_steps=cfg.ig_steps,
            top_edges=cfg.top_edges,
        )
        for r, f in enumerate(rec["features"]):
            f["contexts"] = [[int(a), int(p)] for a, p in zip(ctx.rows[r], ctx.pos[r], strict=True)]
        rec["skipped"] = {str(k): v for k, v in ctx.skipped.items()}
        rec["ioi"] = _ioi(up, b1, ioi, cbar, ebar, cfg)
        rec["seconds"] = round(time.perf_counter() - t0, 2)
        log.info("circuits %s %s: %d features in %.1f s", up["hp"].name, b2.name,
                 len(rec["features"]), rec["seconds"])  # fmt: skip
        out[b2.name] = rec
    return out


def _ioi(up: dict[str, Any], b1: Any, ioi: Any, cbar: Any, ebar: Any, cfg: Any) -> dict:
    from autointerp.circuits.ioi import ioi_circuit
    from autointerp.circuits.study import kept_sizes

    if ioi is None or isinstance(ioi, str):
        return {"reason": ioi or "ioi_prompts = 0 (off)"}
    t0 = time.perf_counter()
    rec = ioi_circuit(
        up["sm"],
        up["hp"],
        b1,
        ioi,
        cbar,
        ebar,
        ks=kept_sizes(cfg.ks, b1.n_features),
        n_linear=cfg.n_linear,
        top_edges=cfg.top_edges,
        batch=cfg.batch_prompts,
    )
    rec["seconds"] = round(time.perf_counter() - t0, 2)
    return rec


def make_circuits_stage(
    members: dict[str, Suite], member_dirs: dict[str, Path], deps: tuple[str, ...]
) -> Stage:
    """The ``circuits`` stage of a sweep with these member suites and run folders."""
    hps = list(members)

    def key(ctx: StageContext, inputs: dict[str, Any]) -> dict[str, Any]:
        return {
            "circuits": ctx.env.sweep.circuits.model_dump(),
            "members": {h: stable_hash(s.model_dump()) for h, s in members.items()},
            "v": VERSION,
        }

    def compute(ctx: StageContext, inputs: dict[str, Any]) -> dict[str, Any]:
        from autointerp.circuits.command import load_run_bases

        env = ctx.env
        t0 = time.perf_counter()
        loaded: dict[str, dict[str, Any]] = {}

        def get(h: str) -> dict[str, Any]:
            if h not in loaded:
                loaded[h] = load_run_bases(member_dirs[h], env.store.work_dir, env.sm)
            return loaded[h]

        pairs = []
        ioi = ioi_prompts(env.sm, env.sweep)
        for h1, h2 in zip(hps, hps[1:], strict=False):
            pairs.append(
                {
                    "up": h1,
                    "down": h2,
                    "up_folder": member_dirs[h1].name,
                    "down_folder": member_dirs[h2].name,
                    "bases": run_pair(get(h1), get(h2), env.sweep, member_dirs[h2], ioi),
                }
            )
            loaded.pop(h1, None)  # keep at most two members' bases in memory
        return {
            "pairs": pairs,
            "config": env.sweep.circuits.model_dump(),
            "seed": env.sweep.seed,
            "seconds": round(time.perf_counter() - t0, 2),
        }

    return Stage(
        CIRCUITS,
        compute,
        deps=deps,
        key=key,
        artifact=Artifact(JSON),
        doc="member runs' bases -> edges and faithfulness between consecutive hookpoints",
    )

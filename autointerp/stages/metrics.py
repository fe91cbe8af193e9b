"""Stage ``metrics``: reconstruction, sparsity and downstream (CE / KL) metrics of every basis
on the held-out rows, one cached item per basis (``stages/metrics-<basis>-<h>.json``)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from autointerp.results import stable_hash
from autointerp.run.stage import JSON, Artifact, Stage, StageContext
from autointerp.stages.density import iter_x

log = logging.getLogger(__name__)


#: one basis's row, ``stages/metrics-<basis>-<h>.json`` (and the work dir's shared copy)
METRICS_ITEM = Artifact(JSON)


def basis_metrics_hash(ctx: StageContext, inputs: dict[str, Any], basis: Any) -> str:
    """What one basis's metrics depend on: the basis, the activations (so the corpus, the
    model, its weights and the hookpoint), the held-out rows, the metric settings and the
    model settings. No other basis: adding a basis to a suite reuses the others' rows."""
    s = ctx.env.suite
    return stable_hash(
        {
            "basis": basis.info.get("stage_hash", basis.name),
            "name": basis.name,
            "acts": ctx.upstream["activations"],
            "metrics": s.metrics.model_dump(),
            "rows": stable_hash(inputs["split"].metric_rows.tolist()),
            "model": s.model.model_dump(),
            "v": 1,
        }
    )


def compute_metrics(ctx: StageContext, inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per basis, each cached on its own (:func:`basis_metrics_hash`): the bases no
    run has measured yet are measured together (one clean and one ablated pass per batch
    serve them all), the others are loaded."""
    bases = inputs["bases"]
    hashes = {b.name: basis_metrics_hash(ctx, inputs, b) for b in bases}

    def missing_now() -> list:
        return [
            b for b in bases
            if not ctx.available(f"metrics-{b.name}", hashes[b.name], METRICS_ITEM)
        ]  # fmt: skip

    missing = missing_now()
    if missing and ctx.parallel:  # one task per basis, each with its own clean pass
        ctx.prefetch(metrics_one, [b.name for b in missing], gpu=True)
        missing = missing_now()
    fresh = {r["basis"]: r for r in measure_bases(ctx, inputs, missing)} if missing else {}
    return [
        ctx.cached(f"metrics-{b.name}", hashes[b.name], lambda b=b: fresh[b.name], METRICS_ITEM)
        for b in bases
    ]


def metrics_one(ctx: StageContext, inputs: dict[str, Any], name: str) -> None:
    """One basis's metrics row (an executor task)."""
    b = next(b for b in inputs["bases"] if b.name == name)
    h = basis_metrics_hash(ctx, inputs, b)
    ctx.cached(f"metrics-{name}", h, lambda: measure_bases(ctx, inputs, [b])[0], METRICS_ITEM)


def measure_bases(ctx: StageContext, inputs: dict[str, Any], bases: list) -> list[dict[str, Any]]:
    """The metrics of ``bases`` on the held-out rows (a basis's row does not depend on which
    other bases are measured with it: the clean and ablation passes are the same)."""
    from autointerp.metrics import downstream_metrics, reconstruction_metrics

    env = ctx.env
    mc = env.suite.metrics
    acts, split, tokens = inputs["activations"].acts, inputs["split"], inputs["tokens"].ids
    mask, metric_rows = split.mask, split.metric_rows
    rows_out = []
    for b in tqdm(bases, desc="metrics: reconstruction", disable=not ctx.progress):
        r = reconstruction_metrics(iter_x(acts, mask, metric_rows), b, batch_size=4096)
        r.pop("density", None)
        rows_out.append(
            {
                "basis": b.name,
                "kind": b.kind,
                "n_features": b.n_features,
                **{k: float(v) for k, v in r.items()},
            }
        )
    hp = env.sm.hookpoint(env.suite.model.hookpoint)
    mean_act = None
    if "mean" in mc.ablations:
        s = torch.zeros(hp.width, dtype=torch.float64)
        n = 0
        for x, ex in iter_x(acts, mask, split.fit_rows):
            x = x[~ex]
            s += x.double().sum(0)
            n += len(x)
        mean_act = (s / max(n, 1)).float().to(env.device)
    ids = torch.from_numpy(tokens[metric_rows].astype(np.int64))
    ex = torch.from_numpy(mask[metric_rows])
    log.info("downstream metrics on %d tokens x %d bases", int((~ex).sum()), len(bases))
    down = downstream_metrics(
        env.sm,
        hp,
        ids,
        bases,
        ablations=tuple(mc.ablations),
        mean_act=mean_act,
        exclude_mask=ex,
        batch_size=mc.batch_size,
        acts=torch.from_numpy(np.array(acts[metric_rows])),
    )
    for row in rows_out:
        row.update({k: float(v) for k, v in down[row["basis"]].items()})
    return rows_out


METRICS = Stage(
    "metrics",
    compute_metrics,
    deps=("tokens", "activations", "split", "bases"),
    doc="bases -> reconstruction, sparsity, CE / KL metrics on held-out rows",
)

"""Stage ``metrics``: reconstruction, sparsity and downstream (CE / KL) metrics of every basis
on the held-out rows (``stages/metrics-<h>.json``)."""

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


def metrics_key(ctx: StageContext, inputs: dict[str, Any]) -> dict[str, Any]:
    bases = inputs["bases"]
    s = ctx.env.suite
    return {
        "bases": [b.info.get("stage_hash", b.name) for b in bases],
        "names": [b.name for b in bases],
        "metrics": s.metrics.model_dump(),
        "rows": stable_hash(inputs["split"].metric_rows.tolist()),
        "model": s.model.model_dump(),
    }


def compute_metrics(ctx: StageContext, inputs: dict[str, Any]) -> list[dict[str, Any]]:
    from autointerp.metrics import downstream_metrics, reconstruction_metrics

    env = ctx.env
    mc = env.suite.metrics
    bases = inputs["bases"]
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
    key=metrics_key,
    artifact=Artifact(JSON),
    doc="bases -> reconstruction, sparsity, CE / KL metrics on held-out rows",
)

"""Stage ``attribution``: latent attribution (gradient x activation) of every basis's features
to the IOI logit difference and to next-token loss on held-out corpus rows, reported as
concentration (docs/causal.md) -> the columns ``attr_*`` (``columns/attribution.json``)."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
import torch

from autointerp.columns import Cell, ColumnDoc, StageColumns
from autointerp.run.stage import STAGE_COLUMNS, Artifact, Stage, StageContext

log = logging.getLogger(__name__)
ATTR_VERSION = 1

_WHAT = {
    "ioi": "the IOI logit difference logit(IO) - logit(S) (CI over prompts)",
    "loss": "next-token loss on held-out corpus rows (CI over rows)",
}
COLUMNS = [
    ColumnDoc(
        f"attr_{m}_{t}",
        f"share of the total |pooled gradient x activation attribution| to {_WHAT[m]} held by "
        + ("the top 1% of features" if t == "top1pct" else "the 10 top features"),
        "none",
    )
    for m in ("ioi", "loss")
    for t in ("top1pct", "top10")
]


def attribution_key(ctx: StageContext, inputs: dict[str, Any]) -> dict[str, Any]:
    s = ctx.env.suite
    bases = inputs["bases"]
    return {
        "bases": [b.info.get("stage_hash", b.name) for b in bases],
        "names": [b.name for b in bases],
        "attribution": s.causal.attribution.model_dump(),
        "ioi_pairs": s.causal.ioi.n_pairs,
        "acts": ctx.upstream["activations"],
        "model": s.model.model_dump(exclude={"batch_size"}),
        "bos": s.corpus.prepend_bos,
        "seed": s.seed,
        "v": ATTR_VERSION,
    }


def _cells(a: np.ndarray, idx: np.ndarray, n: int, unit: str) -> tuple[Cell, Cell]:
    from autointerp.causal.attribution import boot_concentration, concentration
    from autointerp.causal.summary import _ci

    point = concentration(a)
    boot = boot_concentration(a, idx)
    out = []
    for j in range(2):
        if point[j] is None:
            out.append(Cell.undefined(f"every feature's attribution is 0 over the {unit}", n))
        else:
            col = boot[:, j]
            lo, hi = _ci(np.where(np.isnan(col), np.inf, col))
            out.append(Cell(point[j], lo, hi, n))
    return out[0], out[1]


def compute_attribution(ctx: StageContext, inputs: dict[str, Any]) -> StageColumns | None:
    from autointerp.causal.attribution import ioi_attribution, loss_attribution
    from autointerp.causal.summary import boot_idx
    from autointerp.stages.ioi import ioi_data, undefined_columns
    from autointerp.stages.tokens import held_out_rows

    env = ctx.env
    suite = env.suite
    cfg = suite.causal.attribution
    if not cfg.enabled:
        return None
    t0 = time.perf_counter()
    sm = env.sm
    hp = sm.hookpoint(suite.model.hookpoint)
    tokens, split, acts = inputs["tokens"].ids, inputs["split"], inputs["activations"].acts
    rows = held_out_rows(len(tokens), min(len(tokens), math.ceil(cfg.n_tokens / tokens.shape[1])))
    ids = torch.from_numpy(tokens[rows].astype(np.int64))
    ex = torch.from_numpy(split.mask[rows])
    x = torch.from_numpy(np.array(acts[rows])).float()
    from autointerp.metrics import _n_skippable

    skip = _n_skippable(sm, hp)
    cols = StageColumns("attribution", list(COLUMNS))
    data, why = ioi_data(env)
    if data is None:
        undefined_columns(cols, inputs["bases"], f"no IOI prompts: {why}")
    else:
        idx_ioi = boot_idx(len(data.pairs), suite.seed)
    idx_loss = boot_idx(len(rows), suite.seed)
    loss = loss_attribution(sm, hp, inputs["bases"], ids, x, ex, skip, suite.metrics.batch_size)
    for b in inputs["bases"]:
        if data is not None:
            a = ioi_attribution(sm, hp, data, b)
            t1, t10 = _cells(a, idx_ioi, len(data.pairs), "IOI prompts")
            cols.set(b.name, "attr_ioi_top1pct", t1)
            cols.set(b.name, "attr_ioi_top10", t10)
        t1, t10 = _cells(loss[b.name], idx_loss, len(rows), "corpus rows")
        cols.set(b.name, "attr_loss_top1pct", t1)
        cols.set(b.name, "attr_loss_top10", t10)
    n_tok = int((~ex[:, :-1]).sum())
    secs = time.perf_counter() - t0
    cols.extra = {
        "seconds": round(secs, 2),
        "notes": [
            f"attribution: IOI over {len(data.pairs) if data else 0} prompts; loss over "
            f"{len(rows)} held-out rows ({n_tok} predicted tokens); top 1% = ceil(0.01 x features)"
        ],
    }
    log.info("attribution: %d bases in %.1f s", len(inputs["bases"]), secs)
    return cols


ATTRIBUTION = Stage(
    "attribution",
    compute_attribution,
    deps=("tokens", "activations", "split", "bases"),
    key=attribution_key,
    artifact=Artifact(STAGE_COLUMNS),
    doc="bases + subject model -> gradient x activation concentration (docs/causal.md)",
)

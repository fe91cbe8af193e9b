"""Stage ``attribution``: latent attribution (gradient x Δ) of every basis's features to the IOI
logit difference (Δ against the counterfactual prompt's codes) and to next-token loss on
held-out corpus rows (Δ against each feature's mean code), reported as concentration
(docs/attribution.md) -> the columns ``attr_*`` (``columns/attribution.json``); the
zero-baseline (gradient x activation) columns ``attr_*_zero_*`` beside them."""

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
ATTR_VERSION = 2
#: rows spread over the fit rows whose tokens give each feature's mean code (mean baseline)
MEAN_ROWS = 256

_WHAT = {
    "ioi": "the IOI logit difference logit(IO) - logit(S) (CI over prompts)",
    "loss": "next-token loss on held-out corpus rows (CI over rows)",
}
#: (metric, baseline, column infix): the Δ versions first (the default columns), then zero
VARIANTS = (("ioi", "cf", ""), ("loss", "mean", ""), ("ioi", "zero", "_zero"),
            ("loss", "zero", "_zero"))  # fmt: skip
_HOW = {
    "cf": "gradient x (clean - counterfactual code) attribution (attribution patching)",
    "mean": "gradient x (code - mean code) attribution (OpenAI 2025's latent attribution)",
    "zero": "gradient x activation attribution (zero baseline: zero-ablation)",
}
COLUMNS = [
    ColumnDoc(
        f"attr_{m}{infix}_{t}",
        f"share of the total |pooled {_HOW[base]}| to {_WHAT[m]} held by "
        + ("the top 1% of features" if t == "top1pct" else "the 10 top features"),
        "none",
    )
    for m, base, infix in VARIANTS
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
    from autointerp.causal.attribution import ioi_attributions, loss_attributions, mean_codes
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
    fit = split.fit_rows
    mrows = fit[np.unique(np.linspace(0, len(fit) - 1, min(MEAN_ROWS, len(fit))).round())
                .astype(np.int64)]  # fmt: skip
    means = {b.name: mean_codes(b, acts, split.mask, mrows) for b in inputs["bases"]}
    loss = loss_attributions(
        sm, hp, inputs["bases"], ids, x, ex, skip, suite.metrics.batch_size,
        baselines=("mean", "zero"), means=means,
    )  # fmt: skip
    for b in inputs["bases"]:
        got = {("loss", k): v for k, v in loss[b.name].items()}
        if data is not None:
            ioi = ioi_attributions(sm, hp, data, b, ("cf", "zero"))
            got.update({("ioi", k): v for k, v in ioi.items()})
        for m, base, infix in VARIANTS:
            if (m, base) not in got:
                continue
            n, unit, idx = (
                (len(data.pairs), "IOI prompts", idx_ioi) if m == "ioi" and data is not None
                else (len(rows), "corpus rows", idx_loss)
            )  # fmt: skip
            t1, t10 = _cells(got[(m, base)], idx, n, unit)
            cols.set(b.name, f"attr_{m}{infix}_top1pct", t1)
            cols.set(b.name, f"attr_{m}{infix}_top10", t10)
    n_tok = int((~ex[:, :-1]).sum())
    secs = time.perf_counter() - t0
    cols.extra = {
        "seconds": round(secs, 2),
        "notes": [
            f"attribution: IOI over {len(data.pairs) if data else 0} prompts; loss over "
            f"{len(rows)} held-out rows ({n_tok} predicted tokens); top 1% = ceil(0.01 x "
            f"features); attr_ioi_*: Δ = clean - counterfactual codes, attr_loss_*: Δ = code - "
            f"mean code (over {len(mrows)} fit rows), attr_*_zero_*: Δ = code (zero baseline)"
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
    doc="bases + subject model -> gradient x Δ attribution concentration (docs/attribution.md)",
)

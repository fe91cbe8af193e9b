"""The output stage's held-out TokenChange score of one basis (docs/output.md): explanations
from the tokens a feature's addition raises on one prompt set, scored on another
(:mod:`autointerp.causal.token_change`); Arad et al.'s output score beside it (opt-in)."""

from __future__ import annotations

from typing import Any

import numpy as np

from autointerp.columns import Cell
from autointerp.run.stage import StageContext


def tc_rows(metric_rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint explain and score prompt rows: ``2n`` rows spread over the held-out rows,
    alternately to each set."""
    from autointerp.causal.output_score import neutral_rows

    both = neutral_rows(metric_rows, 2 * n)
    return both[0::2], both[1::2]


def _token_change(
    ctx: StageContext, fwd, basis, feats: list[int], ids, acts, mask, metric_rows, lens_ids,
    max_acts,
) -> dict[str, Any]:  # fmt: skip
    """TokenChange explanations and their held-out scores (autointerp.causal.token_change)."""
    import torch

    from autointerp.causal.logit_lens import feature_directions
    from autointerp.causal.output_score import derangement
    from autointerp.causal.token_change import (
        Prompts,
        arad_scores,
        calibrate_strength,
        set_gains,
        token_change,
        unit_shifts,
    )

    cfg = ctx.env.suite.causal.output
    ex_rows, sc_rows = tc_rows(metric_rows, cfg.tc_prompts)
    empty = {k: [] for k in ("tc_tokens", "tc_score", "tc_null", "tc_lift", "arad", "arad_lift")}
    if not feats or len(sc_rows) == 0:
        why = "no scored features" if not feats else "too few held-out rows for two prompt sets"
        return {"features": empty, "info": {"reason": why}, "strength": Cell.undefined(why)}
    L = cfg.prompt_len
    pa = Prompts(fwd, ids[ex_rows], acts[ex_rows], mask[ex_rows], L)
    pb = Prompts(fwd, ids[sc_rows], acts[sc_rows], mask[sc_rows], L)
    dirs = feature_directions(basis, feats).cpu()
    unit_a, unit_b = unit_shifts(dirs, pa.m), unit_shifts(dirs, pb.m)
    cal = np.unique(np.linspace(0, len(feats) - 1, min(cfg.n_calibration, len(feats))).round())
    cal = torch.from_numpy(cal.astype(np.int64))
    s, kl = calibrate_strength(pa, unit_a[cal], cfg.target_kl, cfg.batch_size)
    toks = token_change(pa, s * unit_a, cfg.n_tokens, cfg.batch_size)
    perm = derangement(len(feats), ctx.env.suite.seed)
    gains = set_gains(pb, cfg.score_ratio * s * unit_b, [toks, toks[perm]], cfg.batch_size)
    tok = ctx.env.sm.tokenizer
    from autointerp.causal.logit_lens import token_strings

    lift = gains[0] - gains[1] if len(feats) > 1 else np.full(len(feats), np.nan)
    per = {
        "tc_tokens": [token_strings(tok, t.tolist()) for t in toks],
        "tc_score": [_num(v) for v in gains[0]],
        "tc_null": [_num(v) for v in gains[1]],
        "tc_lift": [_num(v) for v in lift],
    }
    if cfg.arad:  # the feature added at 10x its max activation (Arad et al. 2025)
        mx = torch.tensor([float(m or 0.0) for m in max_acts])[:, None]
        own = [lens_ids[i] for i in range(len(feats))]
        ar = arad_scores(pb, 10.0 * mx * dirs, [own, [own[j] for j in perm]], cfg.batch_size)
        per["arad"] = [_num(v) for v in ar[0]]
        per["arad_lift"] = [_num(v) for v in ar[0] - ar[1]] if len(feats) > 1 else [None]
    return {
        "features": per,
        "info": {
            "strength": s,
            "kl_at_strength": kl,
            "explain_rows": ex_rows.tolist(),
            "score_rows": sc_rows.tolist(),
            "score_strength": cfg.score_ratio * s,
            "calibration_features": [feats[int(i)] for i in cal],
        },  # fmt: skip
        "strength": Cell(float(s), None, None, len(cal)),
    }


def _num(v: float) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)

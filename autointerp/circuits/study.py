"""One basis pair's circuits: edges into each downstream feature (one backward pass per batch
of features), each feature's faithfulness curve, and the per-feature record kept in the run
(its top edges, the error node, f(k), n80, lin_r)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from autointerp.circuits.contexts import Contexts
from autointerp.circuits.edges import edges
from autointerp.circuits.faithfulness import faithfulness
from autointerp.circuits.forward import Pair


def kept_sizes(ks: list[int], n_up: int) -> list[int]:
    """The configured kept-set sizes below ``n_up``, then ``n_up`` (every upstream feature)."""
    return sorted({k for k in ks if 0 < k < n_up}) + [n_up]


def _r(v: float | None, nd: int = 5) -> float | None:
    return None if v is None or not np.isfinite(v) else float(f"{v:.{nd}g}")


def pair_circuits(
    pair: Pair,
    ctx: Contexts,
    cbar: torch.Tensor,
    ebar: torch.Tensor,
    *,
    ks: list[int],
    n_linear: int,
    batch_features: int,
    ig_steps: int,
    top_edges: int,
) -> dict[str, Any]:
    """Per downstream feature of ``ctx``: ``{"feature", "act", "base", "error", "top":
    [[upstream, edge], ...], "ks", "f", "n80", "lin_r", "ig_gap", "reason"}``, and the
    backward-pass count."""
    if not ctx.feats:
        return {"features": [], "backward_passes": 0, "n_up": pair.b1.n_features}
    res = edges(
        pair,
        ctx.ids,
        ctx.weights,
        cbar,
        ebar,
        ctx.feats,
        batch_feats=batch_features,
        ig_steps=ig_steps,
        fixed=ctx.fixed,
    )
    n_up = pair.b1.n_features
    grid = kept_sizes(ks, n_up)
    out = []
    for r, j in enumerate(ctx.feats):
        fa = faithfulness(
            pair,
            ctx.ids[r],
            ctx.weights[r],
            cbar,
            j,
            res.edges[r],
            ks=grid,
            n_linear=n_linear,
            fixed=ctx.fixed[r],
        )
        order = np.argsort(-np.abs(res.edges[r]), kind="stable")[:top_edges]
        out.append(
            {
                "feature": int(j),
                "act": _r(float(res.act[r])),
                "base": _r(float(res.base[r])),
                "error": _r(float(res.error[r])),
                "edge_sum": _r(float(res.edges[r].sum())),
                "top": [[int(i), _r(float(res.edges[r, i]))] for i in order],
                "ks": fa.ks,
                "f": [_r(v) for v in fa.f],
                "n80": fa.n80,
                "lin_r": _r(fa.lin_r),
                "ig_gap": None if res.ig_gap is None else _r(res.ig_gap[r]),
                "reason": fa.reason,
            }
        )
    return {"features": out, "backward_passes": res.backward_passes, "n_up": n_up}

"""Steering directions and the edits that add them (docs/steering.md).

Additive steering adds ``α · s_i · d_i`` to the activation at the hookpoint at every position
(prompt and generated), where ``d_i`` is feature ``i``'s decoder direction
(``decode(e_i) − decode(0)``) and ``s_i = m / ‖d_i‖`` with ``m`` the mean residual norm ``‖x_t‖``
over corpus tokens (special tokens excluded). So ``‖α s_i d_i‖ = α · m`` for every feature of
every basis: a factor means the same edit size everywhere, and a random direction gets exactly
the edit size an SAE latent gets (neither favoured nor handicapped by its norm).

Clamping (SAEs, opt-in): the feature's code is set to ``α · max_i`` at every position with the
error term kept, ``x' = x + (α · max_i − c_i(x)) · d_i`` (exact for a linear decoder).

DiffMean (a baseline direction per feature): the mean activation at the max-activating token
of its top windows minus the mean activation over random corpus tokens, then the same scale rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from autointerp.bases.base import Basis
from autointerp.errors import AutointerpError
from autointerp.types import FeatureRecord


def mean_norm(acts: np.ndarray, exclude: np.ndarray, rows: np.ndarray) -> float:
    """``m``: mean ``‖x_t‖`` over the non-excluded tokens of ``rows``."""
    x = np.asarray(acts[np.asarray(rows)], dtype=np.float32)
    keep = ~np.asarray(exclude[np.asarray(rows)])
    n = np.linalg.norm(x, axis=-1)[keep]
    if n.size == 0:
        raise AutointerpError("steering: no non-special token to measure the residual norm on")
    return float(n.mean())


def unit_scale(dirs: torch.Tensor, m: float) -> torch.Tensor:
    """``s_i = m / ‖d_i‖`` per direction (0 for a zero direction)."""
    dn = dirs.norm(dim=-1)
    return torch.where(dn > 0, m / dn.clamp_min(1e-30), torch.zeros_like(dn))


def diffmean_direction(
    rec: FeatureRecord, acts: np.ndarray, exclude: np.ndarray, random_rows: np.ndarray, n: int
) -> torch.Tensor:
    """DiffMean of one feature: mean ``x`` at the max-activating token of each top window
    (explain and test-top windows) minus the mean ``x`` over ``n`` seeded random corpus tokens
    given as ``random_rows`` (a ``[k, 2]`` array of (row, position))."""
    pos = []
    for ex in [*rec.explain, *rec.test_top]:
        if ex.kind != "top" or ex.seq < 0 or not ex.acts:
            continue
        pos.append((ex.seq, ex.start + int(np.argmax(ex.acts))))
    if not pos:
        raise AutointerpError(
            f"{rec.basis}/{rec.feature}: no top window to make a DiffMean direction from"
        )
    p = np.asarray(pos)
    top = np.asarray(acts[p[:, 0], p[:, 1]], dtype=np.float64).mean(0)
    rr = np.asarray(random_rows)[:n]
    neg = np.asarray(acts[rr[:, 0], rr[:, 1]], dtype=np.float64).mean(0)
    return torch.from_numpy(top - neg).float()


def random_tokens(exclude: np.ndarray, rows: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``[n, 2]`` seeded (row, position) pairs of non-special tokens in ``rows``."""
    rows = np.asarray(rows)
    cand = np.argwhere(~np.asarray(exclude[rows]))
    if len(cand) == 0:
        raise AutointerpError("steering: no non-special token to sample random windows from")
    pick = np.random.default_rng(seed).choice(len(cand), size=min(n, len(cand)), replace=False)
    out = cand[pick]
    out[:, 0] = rows[out[:, 0]]
    return out


@dataclass(frozen=True)
class Steer:
    """One row's edit: add ``vec`` (``α s_i d_i``) at every position, or (``clamp``) set the
    code of ``feature`` of ``basis`` to ``target`` along ``vec``'s unit direction ``d_i``."""

    vec: torch.Tensor  # [d]
    clamp: tuple[Basis, int, float, torch.Tensor] | None = None  # basis, feature, target, d_i


def steer_vectors(dirs: torch.Tensor, scale: torch.Tensor, factors: Sequence[float]):
    """``[len(factors), k, d]``: ``α · s_i · d_i`` for every factor and direction."""
    f = torch.tensor(list(factors), dtype=torch.float32)
    return f[:, None, None] * (scale[:, None] * dirs)[None]


def apply_edits(x: torch.Tensor, edits: Sequence[Steer]) -> torch.Tensor:
    """``x [B, T, d]`` with row ``b``'s edit applied at every position. An additive edit with
    ``vec == 0`` returns the row bit-for-bit (``x + 0 == x``)."""
    vec = torch.stack([e.vec for e in edits]).to(x.device, x.dtype)
    out = x + vec[:, None, :]
    for b, e in enumerate(edits):
        if e.clamp is None:
            continue
        basis, feat, target, d = e.clamp
        flat = x[b].reshape(-1, x.shape[-1]).to(basis.device, torch.float32)
        c = basis.encode(flat)[:, feat]
        delta = (target - c)[:, None] * d.to(c.device)[None]
        out[b] = x[b] + delta.reshape(x[b].shape).to(x.device, x.dtype)
    return out

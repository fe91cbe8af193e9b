"""Each downstream feature's top-activating contexts, and the upstream mean codes.

A downstream feature ``j`` is measured on the ``n`` rows of a pool where its largest
activation (over the row's positions that are not fixed) is highest; in each such row only its
top token counts (weight 1), so ``m_j`` is the feature's activation summed over its ``n`` top
tokens. Fixed positions (special tokens and position 0, the attention sink whose residual is
orders of magnitude larger than the rest) are never edited by the circuit measurements and are
not picked as top tokens. Rows are cropped after the last top token (the model is causal).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from autointerp.bases.base import Basis
from autointerp.causal.intervene import encode_with_error


def fixed_mask(special: np.ndarray) -> np.ndarray:
    """``[R, T]``: special tokens and position 0."""
    out = np.array(special, dtype=bool, copy=True)
    out[:, 0] = True
    return out


@dataclass
class Contexts:
    """``ids``, ``weights``, ``fixed`` ``[J, n, T]`` of the features ``feats`` that have ``n``
    contexts; ``rows`` / ``pos`` / ``top`` ``[J, n]``: each context's row, top token and the
    feature's activation there; ``skipped``: feature -> why it has no contexts."""

    feats: list[int]
    ids: torch.Tensor
    weights: torch.Tensor
    fixed: torch.Tensor
    rows: np.ndarray
    pos: np.ndarray
    top: np.ndarray
    skipped: dict[int, str] = field(default_factory=dict)


@torch.no_grad()
def top_contexts(
    basis: Basis,
    acts: np.ndarray,
    tokens: np.ndarray,
    special: np.ndarray,
    pool: np.ndarray,
    feats: list[int],
    n: int,
    chunk: int = 32,
) -> Contexts:
    """Top contexts of ``feats`` of ``basis`` among the rows ``pool`` of ``acts [R, T, d]``
    (``tokens [R, T]``, ``special [R, T]`` True at special tokens)."""
    fx = fixed_mask(special)
    J, P = len(feats), len(pool)
    best = np.full((J, P), -np.inf)
    arg = np.zeros((J, P), dtype=np.int64)
    fidx = torch.tensor(feats, dtype=torch.long)
    for s in range(0, P, chunk):
        rows = pool[s : s + chunk]
        x = torch.from_numpy(np.asarray(acts[rows], dtype=np.float32))
        c = basis.encode(x.reshape(-1, x.shape[-1]).to(basis.device)).cpu()
        c = c.reshape(*x.shape[:2], -1)[..., fidx].double()  # [r, T, J]
        c[torch.from_numpy(fx[rows])] = -np.inf
        v, a = c.max(1)  # [r, J]
        best[:, s : s + len(rows)] = v.T.numpy()
        arg[:, s : s + len(rows)] = a.T.numpy()
    keep, skipped = [], {}
    sel_rows, sel_pos, sel_top = [], [], []
    for k, j in enumerate(feats):
        order = np.argsort(-best[k], kind="stable")[:n]
        if len(order) < n or not np.all(best[k, order] > 0):
            fired = int((best[k] > 0).sum())
            skipped[j] = f"fires in {fired} of the {P} pool rows, fewer than the {n} contexts"
            continue
        keep.append(j)
        sel_rows.append(pool[order])
        sel_pos.append(arg[k, order])
        sel_top.append(best[k, order])
    if not keep:
        e = torch.zeros((0, n, 1))
        z = np.zeros((0, n))
        return Contexts([], e.long(), e, e.bool(), z.astype(int), z.astype(int), z, skipped)
    rows_a, pos_a = np.stack(sel_rows), np.stack(sel_pos)
    T = int(pos_a.max()) + 1
    ids = torch.from_numpy(tokens[rows_a][..., :T].astype(np.int64))
    w = torch.zeros(ids.shape)
    w.scatter_(-1, torch.from_numpy(pos_a)[..., None], 1.0)
    fixed = torch.from_numpy(fx[rows_a][..., :T])
    return Contexts(keep, ids, w, fixed, rows_a, pos_a, np.stack(sel_top), skipped)


@torch.no_grad()
def mean_codes_from_acts(
    basis: Basis, acts: np.ndarray, special: np.ndarray, rows: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean codes ``[F]`` and mean error ``[d]`` of ``basis`` over the positions of ``rows``
    that are not fixed (cached activations: no forward pass)."""
    x = torch.from_numpy(np.asarray(acts[rows], dtype=np.float32))
    c, err = encode_with_error(basis, x)
    keep = torch.from_numpy(~fixed_mask(special[rows])).to(c.device)
    return c[keep].mean(0), err[keep].mean(0)

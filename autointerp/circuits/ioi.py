"""Faithfulness for an output: the IOI logit difference attributed to one basis's features.

For each clean IOI prompt ``p`` the metric is ``m_p = logit(IO) - logit(S)`` at its last
position. At an upstream hookpoint the activation is written ``decode(c) + e`` (error kept);
each feature's edge into the metric is grad x delta with the mean baseline, per prompt:
``edge_pi = sum_s dm_p/dc_i(s) (c_i(s) - cbar_i)``, the error term one more node
``err_p = sum_s dm_p/de(s) . (e(s) - ebar)``. The circuit is ranked once for the task, by the
pooled edge ``A_i = sum_p edge_pi`` (Marks et al. 2024); keeping its top-``k`` features and
mean-ablating the rest gives ``m_p(K)`` for every prompt, from which the summary computes the
share of the logit difference that survives (:mod:`autointerp.circuits.ioi_summary`).
Prompts are right-padded into one batch (the model is causal: padding after a prompt's last
token cannot change its logits), so one backward pass gives the edges of a batch of prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from autointerp.bases.base import Basis
from autointerp.causal.intervene import _given, decode_with_error, encode_with_error, hidden
from autointerp.causal.ioi_prompts import IOIPair
from autointerp.metrics import _n_skippable
from autointerp.model import Hookpoint, SubjectModel


@dataclass
class Prompts:
    """Clean IOI prompts right-padded to one length: ``ids``, ``fixed`` ``[P, T]`` (position
    0, the BOS / attention sink, and the padding: never moved off their actual codes),
    ``last``, ``io``, ``s`` ``[P]``."""

    ids: torch.Tensor
    fixed: torch.Tensor
    last: torch.Tensor
    io: torch.Tensor
    s: torch.Tensor

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def rows(self, sl: slice) -> Prompts:
        return Prompts(self.ids[sl], self.fixed[sl], self.last[sl], self.io[sl], self.s[sl])


def prompts(pairs: list[IOIPair], pad: int) -> Prompts:
    """The clean prompts of ``pairs`` padded with token ``pad``."""
    T = max(len(p.clean_ids) for p in pairs)
    ids = torch.full((len(pairs), T), int(pad), dtype=torch.long)
    fixed = torch.ones((len(pairs), T), dtype=torch.bool)
    for r, p in enumerate(pairs):
        ids[r, : len(p.clean_ids)] = torch.tensor(p.clean_ids)
        fixed[r, 1 : len(p.clean_ids)] = False
    last = torch.tensor([len(p.clean_ids) - 1 for p in pairs])
    io = torch.tensor([p.io_id for p in pairs])
    s = torch.tensor([p.s_id for p in pairs])
    return Prompts(ids, fixed, last, io, s)


def logit_diff(
    sm: SubjectModel, hp: Hookpoint, basis: Basis, pr: Prompts, c: torch.Tensor, e: torch.Tensor
) -> torch.Tensor:
    """``[P]``: logit(IO) - logit(S) at each prompt's last position when the activation at
    ``hp`` is ``decode(c) + e`` (the run resumes there for a residual ``hp``); keeps the graph
    when grad is enabled."""
    x = decode_with_error(basis, c, e)
    keep = torch.unique(pr.last)
    with _given(sm, hp, x, _n_skippable(sm, hp)):
        ids = pr.ids.to(sm.device)
        try:
            logits = sm.model(input_ids=ids, use_cache=False, logits_to_keep=keep).logits
            col = torch.searchsorted(keep, pr.last)
        except TypeError:  # models without logits_to_keep
            logits = sm.model(input_ids=ids, use_cache=False).logits
            col = pr.last
    ar = torch.arange(len(pr))
    at = logits[ar, col.to(logits.device)].float()  # [P, V]
    return at[ar, pr.io.to(at.device)] - at[ar, pr.s.to(at.device)]


@dataclass
class IOIEdges:
    """Per prompt: ``edges [P, F]``, ``error [P]`` (the error node), ``act [P]`` (the logit
    difference, every code actual) and ``base [P]`` (every code at its mean, error kept)."""

    edges: np.ndarray
    error: np.ndarray
    act: np.ndarray
    base: np.ndarray
    backward_passes: int


def _codes(
    sm: SubjectModel, hp: Hookpoint, basis: Basis, pr: Prompts, cbar: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Actual codes, error, and the mean-ablated codes (fixed positions actual)."""
    with torch.no_grad():
        c, e = encode_with_error(basis, hidden(sm, hp, pr.ids))
    fx = pr.fixed.to(c.device)[..., None]
    return c, e, torch.where(fx, c, cbar.to(c.device, torch.float32).expand_as(c))


def ioi_edges(
    sm: SubjectModel,
    hp: Hookpoint,
    basis: Basis,
    pr: Prompts,
    cbar: torch.Tensor,
    ebar: torch.Tensor,
    *,
    batch: int = 16,
) -> IOIEdges:
    """Grad x delta edges of every prompt's logit difference (one backward pass per batch of
    ``batch`` prompts)."""
    P, F = len(pr), basis.n_features
    edges, error = np.zeros((P, F)), np.zeros(P)
    act, base = np.zeros(P), np.zeros(P)
    passes = 0
    for s in range(0, P, batch):
        sl = slice(s, min(s + batch, P))
        b = pr.rows(sl)
        c, e, c0 = _codes(sm, hp, basis, b, cbar)
        fx = b.fixed.to(c.device)[..., None]
        de = (e - ebar.to(c.device, torch.float32)).masked_fill(fx, 0.0)
        leaf, e_leaf = c.clone().requires_grad_(True), e.clone().requires_grad_(True)
        with torch.enable_grad():
            m = logit_diff(sm, hp, basis, b, leaf, e_leaf)
            gc, ge = torch.autograd.grad(m.sum(), [leaf, e_leaf], allow_unused=True)
        passes += 1
        gc = torch.zeros_like(c) if gc is None else gc
        ge = torch.zeros_like(e) if ge is None else ge
        edges[sl] = (gc * (c - c0)).sum(1).double().cpu().numpy()
        error[sl] = (ge * de).sum((1, 2)).double().cpu().numpy()
        act[sl] = m.detach().double().cpu().numpy()
        with torch.no_grad():
            base[sl] = logit_diff(sm, hp, basis, b, c0, e).double().cpu().numpy()
    return IOIEdges(edges, error, act, base, passes)


@torch.no_grad()
def kept_logit_diffs(
    sm: SubjectModel,
    hp: Hookpoint,
    basis: Basis,
    pr: Prompts,
    cbar: torch.Tensor,
    keeps: list[np.ndarray],
    *,
    ablate_only: bool = False,
    batch: int = 16,
) -> np.ndarray:
    """``[len(keeps), P]``: each prompt's logit difference with only the features of each
    ``keeps[r]`` at their actual codes and the rest at their means (error kept); with
    ``ablate_only`` the features of ``keeps[r]`` are the ones set to their means instead."""
    out = np.zeros((len(keeps), len(pr)))
    for s in range(0, len(pr), batch):
        sl = slice(s, min(s + batch, len(pr)))
        b = pr.rows(sl)
        c, e, c0 = _codes(sm, hp, basis, b, cbar)
        for r, keep in enumerate(keeps):
            idx = torch.from_numpy(np.asarray(keep, dtype=np.int64)).to(c.device)
            src, dst = (c0, c) if ablate_only else (c, c0)
            ck = dst.clone()
            ck[..., idx] = src[..., idx]
            out[r, sl] = logit_diff(sm, hp, basis, b, ck, e).double().cpu().numpy()
    return out


def _r(v: float) -> float:
    return float(f"{v:.8g}")


def ioi_circuit(
    sm: SubjectModel,
    hp: Hookpoint,
    basis: Basis,
    pr: Prompts,
    cbar: torch.Tensor,
    ebar: torch.Tensor,
    *,
    ks: list[int],
    n_linear: int,
    top_edges: int,
    batch: int = 16,
) -> dict[str, Any]:
    """One basis's IOI record: per prompt the logit difference with every code actual
    (``act``), none (``base``) and the top-``k`` of the pooled ranking (``m_k``, one row per
    ``ks``), the error node; the top pooled edges; for the top ``n_linear`` (non-zero) pooled
    edges the per-prompt edge (``lin_edges``) and the per-prompt actual change when that one
    feature is mean-ablated (``lin_actual``)."""
    res = ioi_edges(sm, hp, basis, pr, cbar, ebar, batch=batch)
    pooled = res.edges.sum(0)
    order = np.argsort(-np.abs(pooled), kind="stable")
    mk = kept_logit_diffs(sm, hp, basis, pr, cbar, [order[:k] for k in ks], batch=batch)
    lin = [int(i) for i in order[:n_linear] if pooled[i] != 0]
    single = kept_logit_diffs(
        sm, hp, basis, pr, cbar, [np.array([i]) for i in lin], ablate_only=True, batch=batch
    )
    return {
        "n_prompts": len(pr),
        "n_up": basis.n_features,
        "ks": list(ks),
        "act": [_r(v) for v in res.act],
        "base": [_r(v) for v in res.base],
        "m_k": [[_r(v) for v in row] for row in mk],
        "error": [_r(v) for v in res.error],
        "edge_sum": [_r(v) for v in res.edges.sum(1)],
        "top": [[int(i), _r(pooled[i])] for i in order[:top_edges]],
        "lin_features": lin,
        "lin_edges": [[_r(v) for v in res.edges[:, i]] for i in lin],
        "lin_actual": [[_r(a - v) for a, v in zip(res.act, row, strict=True)] for row in single],
        "backward_passes": res.backward_passes,
    }

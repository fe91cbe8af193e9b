"""Ablation effect of a feature on its top contexts (docs/output.md).

For feature ``i`` and one of its top contexts (a corpus row): every position ``t`` of the row
(except the excluded BOS / special positions, which keep their activation) gets
``x'_t = decode(c_t with c_t,i = 0) + (x_t - decode(c_t))``, ``c_t = encode(x_t)``: the feature
is removed, the basis's error term kept. The row's max-activating position ``p`` (of the top
example's window) and the next ``n_positions - 1`` positions are measured: positions ``t`` in
``[p, p + n_positions)`` with ``t + 1 < T`` (the next token exists) and ``t`` not excluded. At
each measured position:

- ``kl`` = KL(P_orig ‖ P_ablated) = Σ_v p(v) (log p(v) − log p'(v)) of the next-token
  distributions;
- ``ce_delta`` = −log p'(y) − (−log p(y)), ``y`` the actual next token;
- ``dlogp`` = log p'(v) − log p(v) for every token ``v``.

A feature's values are means over its measured (context, position) pairs; its falling tokens
(those the feature promotes) are the most negative mean ``dlogp``, its rising tokens the most
positive. The row is cut after the last measured position (a causal model's earlier outputs do
not see later tokens), and the ablated and the original run share one batched pass that starts
at the hookpoint from the cached activations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from autointerp.bases.base import Basis
from autointerp.causal.hook_forward import HookForward
from autointerp.causal.logit_lens import token_strings
from autointerp.types import FeatureRecord


@dataclass(frozen=True)
class Context:
    """One measured context of one feature: corpus row ``seq``, positions ``pos``."""

    feature: int
    seq: int
    pos: tuple[int, ...]


@dataclass
class AblationEffect:
    """One feature's ablation effect (means over ``n_pairs`` measured (context, position)
    pairs in ``n_contexts`` contexts); ``None`` values when nothing could be measured."""

    feature: int
    kl: float | None
    ce_delta: float | None
    n_contexts: int
    n_pairs: int
    falls: list[list] = field(default_factory=list)  # [token, mean dlogp], most negative first
    rises: list[list] = field(default_factory=list)  # [token, mean dlogp], most positive first
    reason: str = ""

    def to_dict(self) -> dict:
        return {
            "feature": self.feature,
            "kl": self.kl,
            "ce_delta": self.ce_delta,
            "n_contexts": self.n_contexts,
            "n_pairs": self.n_pairs,
            "falls": self.falls,
            "rises": self.rises,
            **({"reason": self.reason} if self.reason else {}),
        }


def top_contexts(
    record: FeatureRecord,
    n_contexts: int,
    n_positions: int,
    exclude: np.ndarray,
) -> list[Context]:
    """The strongest top examples of ``record`` (one per corpus row), each with its measured
    positions (module docstring); ``exclude [n_rows, T]`` marks BOS / special positions."""
    T = exclude.shape[1]
    tops = [e for e in record.explain + record.test_top if e.kind == "top" and e.fires]
    tops.sort(key=lambda e: -e.max_act)
    out: list[Context] = []
    seen: set[int] = set()
    for e in tops:
        if e.seq in seen or e.seq < 0:
            continue
        p = e.start + e.acts.index(e.max_act)
        pos = tuple(t for t in range(p, min(p + n_positions, T - 1)) if not exclude[e.seq, t])
        if not pos:
            continue
        seen.add(e.seq)
        out.append(Context(record.feature, e.seq, pos))
        if len(out) == n_contexts:
            break
    return out


@torch.no_grad()
def ablated(basis: Basis, x: torch.Tensor, feature: torch.Tensor, keep: torch.Tensor):
    """``x [B, T, w]`` with feature ``feature[b]`` of row ``b`` removed at every position not in
    ``keep [B, T]``, the error term kept: ``x - (decode(c) - decode(c with c_i = 0))``."""
    B, T, w = x.shape
    flat = x.reshape(B * T, w).to(basis.device, torch.float32)
    c = basis.encode(flat)
    c0 = c.clone()
    rows = torch.arange(B * T, device=c.device)
    c0[rows, feature.to(c.device).repeat_interleave(T)] = 0.0
    delta = (basis.decode(c) - basis.decode(c0)).reshape(B, T, w).to(x.device, x.dtype)
    return torch.where(keep.unsqueeze(-1).to(x.device), x, x - delta)


@torch.no_grad()
def ablation_effects(
    fwd: HookForward,
    basis: Basis,
    records: Sequence[FeatureRecord],
    ids: np.ndarray,
    acts: np.ndarray,
    exclude: np.ndarray,
    *,
    n_contexts: int = 8,
    n_positions: int = 4,
    n_logit_tokens: int = 5,
    batch_size: int = 32,
) -> list[AblationEffect]:
    """The ablation effect of every feature in ``records`` (module docstring). ``ids
    [n_rows, T]`` token rows, ``acts [n_rows, T, w]`` their activations at the hookpoint,
    ``exclude [n_rows, T]`` positions kept as they are (BOS / special)."""
    per_feat = {r.feature: top_contexts(r, n_contexts, n_positions, exclude) for r in records}
    jobs = [c for cs in per_feat.values() for c in cs]
    jobs.sort(key=lambda c: c.pos[-1])  # similar lengths share a batch (less padding)
    sums: dict[int, dict] = {
        f: {"kl": 0.0, "ce": 0.0, "n": 0, "dlogp": None} for f in per_feat
    }  # fmt: skip
    for s in range(0, len(jobs), batch_size):
        batch = jobs[s : s + batch_size]
        L = max(c.pos[-1] for c in batch) + 1
        P = max(len(c.pos) for c in batch)
        seqs = np.array([c.seq for c in batch])
        full = torch.from_numpy(ids[seqs, : L + 1].astype(np.int64))  # t + 1 < T holds
        tok = full[:, :L]
        x = torch.from_numpy(np.asarray(acts[seqs, :L], dtype=np.float32))
        keep = torch.from_numpy(np.asarray(exclude[seqs, :L]))
        feat = torch.tensor([c.feature for c in batch])
        pos = torch.tensor([list(c.pos) + [c.pos[-1]] * (P - len(c.pos)) for c in batch])
        valid = torch.tensor([[j < len(c.pos) for j in range(P)] for c in batch])
        xa = ablated(basis, x, feat, keep)
        lp = fwd.logprobs(torch.cat([tok, tok]), torch.cat([x, xa]), torch.cat([pos, pos]))
        lp0, lp1 = lp[: len(batch)], lp[len(batch) :]
        kl = (lp0.exp() * (lp0 - lp1)).sum(-1).cpu()  # [B, P]
        y = full.gather(1, pos + 1).to(lp.device)  # the actual next tokens
        ce = (lp0.gather(-1, y.unsqueeze(-1)) - lp1.gather(-1, y.unsqueeze(-1))).squeeze(-1).cpu()
        d = ((lp1 - lp0) * valid.to(lp.device).unsqueeze(-1)).sum(1).double().cpu()  # [B, V]
        for b, c in enumerate(batch):
            acc, v = sums[c.feature], valid[b]
            acc["kl"] += float(kl[b][v].double().sum())
            acc["ce"] += float(ce[b][v].double().sum())
            acc["n"] += int(v.sum())
            acc["dlogp"] = d[b] if acc["dlogp"] is None else acc["dlogp"] + d[b]
    tokenizer = fwd.sm.tokenizer
    out = []
    for r in records:
        acc, n = sums[r.feature], sums[r.feature]["n"]
        if n == 0:
            out.append(
                AblationEffect(r.feature, None, None, 0, 0, reason="no top context to measure")
            )
            continue
        mean = acc["dlogp"] / n
        k = min(n_logit_tokens, mean.numel())
        lo, hi = mean.topk(k, largest=False), mean.topk(k)
        out.append(
            AblationEffect(
                feature=r.feature,
                kl=acc["kl"] / n,
                ce_delta=acc["ce"] / n,
                n_contexts=len(per_feat[r.feature]),
                n_pairs=n,
                falls=_pairs(tokenizer, lo.indices.tolist(), lo.values.tolist()),
                rises=_pairs(tokenizer, hi.indices.tolist(), hi.values.tolist()),
            )
        )
    return out


def _pairs(tokenizer, ids: list[int], vals: list[float]) -> list[list]:
    return [[t, round(v, 4)] for t, v in zip(token_strings(tokenizer, ids), vals)]

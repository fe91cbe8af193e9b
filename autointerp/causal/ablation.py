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
positive — only tokens whose mean change exceeds ``DLOGP_NOISE`` (a float32 forward pass
reproduces a log-probability only to about 1e-6: a smaller change is rounding, not an effect,
and a feature whose removal changes nothing lists no tokens). The row is cut after the last
measured position (a causal model's earlier outputs do not see later tokens), and the ablated
and the original run share one batched pass that starts at the hookpoint from the cached
activations.
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

#: |mean dlogp| (nats) below which a token's change is float noise, not a falling/rising token
DLOGP_NOISE = 1e-5


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
    return ablated_from(basis, x, feature, keep)[0]


@torch.no_grad()
def ablated_from(
    basis: Basis, x: torch.Tensor, feature: torch.Tensor, keep: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(:func:`ablated`'s rows, each row's first edited column): the removal changes only the
    positions where the feature's code is not 0 (elsewhere ``c`` and ``c with c_i = 0`` are
    the same codes, whose decodings cancel), so those keep ``x`` as it is; a row with no such
    position reports ``T``."""
    B, T, w = x.shape
    flat = x.reshape(B * T, w).to(basis.device, torch.float32)
    c = basis.encode(flat)
    c0 = c.clone()
    rows = torch.arange(B * T, device=c.device)
    col = feature.to(c.device).repeat_interleave(T)
    edit = (c[rows, col] != 0).reshape(B, T).to(x.device) & ~keep.to(x.device)
    c0[rows, col] = 0.0
    delta = (basis.decode(c) - basis.decode(c0)).reshape(B, T, w).to(x.device, x.dtype)
    first = torch.where(edit.any(1), edit.float().argmax(1), torch.full((B,), T, device=x.device))
    return torch.where(edit.unsqueeze(-1), x - delta, x), first.long()


@torch.no_grad()
def ablation_effects(
    fwd: HookForward,
    basis: Basis,
    records: Sequence[FeatureRecord],
    ids: np.ndarray,
    acts: np.ndarray,
    exclude: np.ndarray,
    **kw,
) -> list[AblationEffect]:
    """:func:`ablation_effects_many` for one basis."""
    return ablation_effects_many(fwd, {basis.name: (basis, records)}, ids, acts, exclude, **kw)[
        basis.name
    ]


@torch.no_grad()
def ablation_effects_many(
    fwd: HookForward,
    bases: dict[str, tuple[Basis, Sequence[FeatureRecord]]],
    ids: np.ndarray,
    acts: np.ndarray,
    exclude: np.ndarray,
    *,
    n_contexts: int = 8,
    n_positions: int = 4,
    n_logit_tokens: int = 5,
    batch_size: int = 32,
    reuse_prefix: bool = True,
) -> dict[str, list[AblationEffect]]:
    """The ablation effect of every feature in each basis's records (module docstring). ``ids
    [n_rows, T]`` token rows, ``acts [n_rows, T, w]`` their activations at the hookpoint,
    ``exclude [n_rows, T]`` positions kept as they are (BOS / special).

    Contexts are grouped by corpus row: the original run of a row is done once for every
    feature of every basis measured on it, and their ablated runs (about ``batch_size`` per
    pass) start at each one's first edited position on the original run's keys/values of the
    positions before (``reuse_prefix``; :class:`~autointerp.causal.hook_forward.PrefixForward`,
    where the model's layout allows), else both run in full in one batched pass."""
    from autointerp.causal.hook_forward import PrefixForward

    pf = PrefixForward(fwd) if reuse_prefix else None
    if pf is not None and not pf.available:
        pf = None
    per_feat = {
        (name, r.feature): top_contexts(r, n_contexts, n_positions, exclude)
        for name, (_, recs) in bases.items()
        for r in recs
    }
    by_row: dict[int, list[tuple[str, Context]]] = {}
    for (name, _), cs in per_feat.items():
        for c in cs:
            by_row.setdefault(c.seq, []).append((name, c))
    order = sorted(by_row, key=lambda q: max(c.pos[-1] for _, c in by_row[q]))  # less padding
    sums = {k: {"kl": 0.0, "ce": 0.0, "n": 0, "dlogp": None} for k in per_feat}
    chunk: list[int] = []
    n_jobs = 0
    for i, q in enumerate(order):
        chunk.append(q)
        n_jobs += len(by_row[q])
        if n_jobs >= batch_size or i == len(order) - 1:
            _run_chunk(fwd, pf, bases, by_row, chunk, ids, acts, exclude, sums)
            chunk, n_jobs = [], 0
    tokenizer = fwd.sm.tokenizer
    out: dict[str, list[AblationEffect]] = {}
    for name, (_, recs) in bases.items():
        out[name] = []
        for r in recs:
            acc = sums[(name, r.feature)]
            n = acc["n"]
            if n == 0:
                out[name].append(
                    AblationEffect(r.feature, None, None, 0, 0, reason="no top context to measure")
                )
                continue
            mean = acc["dlogp"] / n
            k = min(n_logit_tokens, mean.numel())
            lo, hi = mean.topk(k, largest=False), mean.topk(k)
            out[name].append(
                AblationEffect(
                    feature=r.feature,
                    kl=acc["kl"] / n,
                    ce_delta=acc["ce"] / n,
                    n_contexts=len(per_feat[(name, r.feature)]),
                    n_pairs=n,
                    falls=_pairs(tokenizer, lo.indices.tolist(), lo.values.tolist(), -1),
                    rises=_pairs(tokenizer, hi.indices.tolist(), hi.values.tolist(), 1),
                )
            )
    return out


def _run_chunk(fwd, pf, bases, by_row, rows, ids, acts, exclude, sums) -> None:
    """The original run of each row in ``rows`` and the ablated run of every context measured
    on them (``pf``: from the first edited position on the original's keys/values, else one
    full batched pass); adds each context's KL, CE change and dlogp to ``sums``."""
    jobs = [(name, c) for q in rows for name, c in by_row[q]]
    L = max(c.pos[-1] for _, c in jobs) + 1
    seqs = np.asarray(rows)
    full = torch.from_numpy(ids[seqs, : L + 1].astype(np.int64))  # t + 1 < T holds
    x = torch.from_numpy(np.asarray(acts[seqs, :L], dtype=np.float32))
    keep = torch.from_numpy(np.asarray(exclude[seqs, :L]))
    ri = {q: k for k, q in enumerate(rows)}
    # the original runs are measured at the union of their contexts' positions
    upos = [sorted({t for _, c in by_row[q] for t in c.pos}) for q in rows]
    P0 = max(len(u) for u in upos)
    P1 = max(len(c.pos) for _, c in jobs)
    pos0 = torch.tensor([u + [u[-1]] * (P0 - len(u)) for u in upos])
    pos1 = torch.tensor([list(c.pos) + [c.pos[-1]] * (P1 - len(c.pos)) for _, c in jobs])
    jr = torch.tensor([ri[c.seq] for _, c in jobs])
    xa = torch.empty(len(jobs), L, x.shape[-1])
    first = torch.full((len(jobs),), L, dtype=torch.long)
    for name, (basis, _) in bases.items():  # each basis ablates its own contexts
        js = [j for j, (n, _) in enumerate(jobs) if n == name]
        if js:
            feat = torch.tensor([jobs[j][1].feature for j in js])
            xa[js], first[js] = ablated_from(basis, x[jr[js]], feat, keep[jr[js]])
    tok = full[:, :L]
    idx = torch.tensor(  # where each context's positions sit among its row's
        [[upos[ri[c.seq]].index(t) for t in pos1[j].tolist()] for j, (_, c) in enumerate(jobs)]
    )
    if pf is None:
        lp0_rows, lp1 = _two_passes(fwd, tok, x, pos0, tok[jr], xa, pos1)
        lp0 = lp0_rows[jr.to(lp0_rows.device)[:, None], idx.to(lp0_rows.device)]  # [J, P1, V]
    else:  # each ablated run starts at its first edit (or first measured position)
        live = first <= pos1.max(1).values  # others change no measured position
        start = torch.minimum(first, pos1[:, 0])[live]
        lp0_rows, lp1_live = pf.run(tok, x, pos0, jr[live], start, xa[live], pos1[live])
        lp0 = lp0_rows[jr.to(lp0_rows.device)[:, None], idx.to(lp0_rows.device)]
        lp1 = lp0.clone()
        lp1[live.to(lp1.device)] = lp1_live
        same = (pos1 < first[:, None]).to(lp1.device)  # before the first edit: the original
        lp1[same] = lp0[same]
    valid = torch.tensor([[k < len(c.pos) for k in range(P1)] for _, c in jobs])
    kl = (lp0.exp() * (lp0 - lp1)).sum(-1).cpu()
    y = full[jr].gather(1, pos1 + 1).to(lp1.device)  # the actual next tokens
    ce = (lp0.gather(-1, y.unsqueeze(-1)) - lp1.gather(-1, y.unsqueeze(-1))).squeeze(-1).cpu()
    d = ((lp1 - lp0) * valid.to(lp1.device).unsqueeze(-1)).sum(1).double().cpu()  # [J, V]
    for j, (name, c) in enumerate(jobs):
        acc, v = sums[(name, c.feature)], valid[j]
        acc["kl"] += float(kl[j][v].double().sum())
        acc["ce"] += float(ce[j][v].double().sum())
        acc["n"] += int(v.sum())
        acc["dlogp"] = d[j] if acc["dlogp"] is None else acc["dlogp"] + d[j]


def _two_passes(fwd, tok0, x0, pos0, tok1, x1, pos1):
    """Original rows and ablated rows in one pass (positions padded to one width)."""
    P = max(pos0.shape[1], pos1.shape[1])
    pad = lambda p: torch.cat([p, p[:, -1:].expand(-1, P - p.shape[1])], 1)  # noqa: E731
    lp = fwd.logprobs(
        torch.cat([tok0, tok1]), torch.cat([x0, x1]), torch.cat([pad(pos0), pad(pos1)])
    )
    return lp[: len(tok0), : pos0.shape[1]], lp[len(tok0) :, : pos1.shape[1]]


def _pairs(tokenizer, ids: list[int], vals: list[float], sign: int) -> list[list]:
    """``[token, dlogp]`` for the changes of ``sign`` larger than the noise level."""
    keep = [(i, v) for i, v in zip(ids, vals) if sign * v > DLOGP_NOISE]
    toks = token_strings(tokenizer, [i for i, _ in keep])
    return [[t, round(v, 4)] for t, (_, v) in zip(toks, keep)]

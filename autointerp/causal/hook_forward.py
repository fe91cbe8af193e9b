"""Forward passes that start at the hookpoint from given (edited) activations and return the
next-token log-probabilities at chosen positions only.

For a residual-stream hookpoint the layers before it are skipped (the given activations are the
residual after them); for any other hookpoint the full forward runs with the activation at the
hookpoint replaced by the given one (exact too: the layers before the hookpoint compute the same
activation the cache holds). Log-probabilities are taken only where asked, so a batch never
holds ``[B, T, vocab]`` logits.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from autointerp.errors import AutointerpError
from autointerp.metrics import _n_skippable, _resume_at
from autointerp.model import Hookpoint, SubjectModel, splice


def base_and_head(sm: SubjectModel) -> tuple[nn.Module, nn.Module]:
    """The decoder stack (returns normed final hidden states) and the unembedding."""
    m = sm.model
    base = getattr(m, getattr(m, "base_model_prefix", "model"), None)
    head = m.get_output_embeddings() if hasattr(m, "get_output_embeddings") else None
    if base is None or head is None:
        raise AutointerpError(
            f"{type(m).__name__}: cannot find the decoder stack and the unembedding "
            "(needs base_model_prefix and get_output_embeddings, as HF causal LMs have)"
        )
    return base, head


class HookForward:
    """``logprobs(ids, x, pos)``: log-softmax of the next-token logits at ``pos`` when the
    activations at ``hp`` are ``x`` (see the module docstring)."""

    def __init__(self, sm: SubjectModel, hp: Hookpoint) -> None:
        self.sm, self.hp = sm, hp
        self.skip = _n_skippable(sm, hp)
        self.base, self.head = base_and_head(sm)
        self.dtype = next(sm.model.parameters()).dtype

    @property
    def resumes(self) -> bool:
        """True when the passes start at the hookpoint (residual stream)."""
        return self.skip > 0

    @torch.no_grad()
    def hidden(self, ids: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Final (normed) hidden states ``[B, T, d]`` with activations ``x [B, T, w]`` at the
        hookpoint for token ids ``ids [B, T]``."""
        dev = self.sm.device
        ids, x = ids.to(dev), x.to(dev, self.dtype)
        kw: dict[str, Any] = {"input_ids": ids, "use_cache": False}
        if self.skip:
            with _resume_at(self.sm, self.skip, x):
                return self.base(**kw).last_hidden_state
        with splice(self.hp, lambda a: x.to(a.dtype)):
            return self.base(**kw).last_hidden_state

    @torch.no_grad()
    def logprobs(self, ids: torch.Tensor, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``[B, P, vocab]`` (float32) at positions ``pos [B, P]``."""
        h = self.hidden(ids, x)
        pos = pos.to(h.device)
        sel = h.gather(1, pos.unsqueeze(-1).expand(-1, -1, h.shape[-1]))
        return F.log_softmax(self.head(sel).float(), dim=-1)


# decoder families whose layers attend through ``cache.update`` with an explicit 4-D mask and
# ``position_ids`` (the layout :class:`_PrefixCache` relies on; others use the plain passes)
_PREFIX_FAMILIES = {"llama", "mistral", "qwen2", "qwen3"}


class _PrefixCache:
    """Keys/values of the layers a pass runs, duck-typing the one method of transformers'
    ``Cache`` the decoder layers call (``update``). ``record`` mode keeps each layer's keys and
    values of an original pass; ``extend`` mode runs rows that share an original row's first
    ``start[j]`` positions: row ``j``'s new keys/values go to columns ``start[j] ..`` of a copy
    of its original row's, and attention reads that whole copy (the mask hides the columns
    after each query)."""

    def __init__(self) -> None:
        self.k: dict[int, torch.Tensor] = {}
        self.v: dict[int, torch.Tensor] = {}
        self.rows: torch.Tensor | None = None  # extend: the original row of each new row
        self.cols: torch.Tensor | None = None  # extend: [J, m] the column of each new position
        self.width = 0

    def update(self, k: torch.Tensor, v: torch.Tensor, layer_idx: int, *_: Any, **__: Any):
        if self.rows is None:
            self.k[layer_idx], self.v[layer_idx] = k, v
            return k, v
        out = []
        for new, old in ((k, self.k[layer_idx]), (v, self.v[layer_idx])):
            full = new.new_zeros(new.shape[0], new.shape[1], self.width, new.shape[3])
            full[:, :, : old.shape[2]] = old[self.rows]
            assert self.cols is not None
            idx = self.cols[:, None, :, None].expand(-1, new.shape[1], -1, new.shape[3])
            out.append(full.scatter_(2, idx, new))
        return out[0], out[1]


def _causal_mask(q_pos: torch.Tensor, width: int, dtype: torch.dtype) -> torch.Tensor:
    """``[B, 1, Q, width]`` additive mask: query at absolute position ``q_pos[b, i]`` sees
    key columns ``0 .. q_pos[b, i]``."""
    cols = torch.arange(width, device=q_pos.device)
    allowed = cols[None, None, :] <= q_pos[:, :, None]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=q_pos.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


def _supports_prefix(model: nn.Module) -> bool:
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) not in _PREFIX_FAMILIES:
        return False
    if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
        return False
    return getattr(cfg, "_attn_implementation", None) in ("sdpa", "eager")


class PrefixForward:
    """Pairs of passes from the hookpoint where the second rows repeat a first row's
    activations up to a column: ``run(ids, x, pos, rows, start, ids1, x1, pos1)`` runs the
    original rows ``(ids, x)`` once keeping every layer's keys/values, then each edited row
    ``j`` only from column ``start[j]`` on, over original row ``rows[j]``'s keys/values for
    the columns before. Exact (to float rounding): a causal layer's outputs before the first
    edited column do not depend on it. ``available`` is False where the layout is not one this
    knows (not a residual hookpoint, another model family); the caller then runs both passes
    in full."""

    def __init__(self, fwd: HookForward) -> None:
        self.fwd = fwd
        self.available = fwd.resumes and _supports_prefix(fwd.sm.model)

    def _pass(self, ids, x, pos_ids, mask, cache) -> torch.Tensor:
        from autointerp.llm.hf_compat import cache_kwarg

        fwd = self.fwd
        with _resume_at(fwd.sm, fwd.skip, x):
            return fwd.base(
                input_ids=ids,
                position_ids=pos_ids,
                attention_mask=mask,
                use_cache=True,
                **{cache_kwarg(fwd.base): cache},
            ).last_hidden_state

    def _lp(self, h: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        sel = h.gather(1, at.to(h.device).unsqueeze(-1).expand(-1, -1, h.shape[-1]))
        return F.log_softmax(self.fwd.head(sel).float(), dim=-1)

    @torch.no_grad()
    def run(
        self,
        ids: torch.Tensor,
        x: torch.Tensor,
        pos: torch.Tensor,
        rows: torch.Tensor,
        start: torch.Tensor,
        x1: torch.Tensor,
        pos1: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lp0 [B, P0, V], lp1 [J, P1, V])``: log-probabilities at ``pos`` of the original
        rows ``ids / x [B, L(, w)]`` and at ``pos1`` of the edited rows ``x1 [J, L, w]`` (the
        token ids of edited row ``j`` are those of row ``rows[j]``), which equal their original
        row before column ``start[j]`` (every ``pos1[j] >= start[j]``)."""
        fwd = self.fwd
        dev, dt = fwd.sm.device, fwd.dtype
        B, L = ids.shape
        ids, x = ids.to(dev), x.to(dev, dt)
        cache = _PrefixCache()
        ar = torch.arange(L, device=dev)
        h0 = self._pass(ids, x, ar.expand(B, L), _causal_mask(ar.expand(B, L), L, dt), cache)
        lp0 = self._lp(h0, pos)
        if len(rows) == 0:
            return lp0, lp0.new_zeros(0, pos1.shape[1], lp0.shape[-1])
        rows, start = rows.to(dev), start.to(dev)
        m = int((pos1.to(dev).max(1).values - start).max()) + 1  # new columns per edited row
        cols = start[:, None] + torch.arange(m, device=dev)[None]  # [J, m], may pass L - 1
        cache.rows, cache.cols, cache.width = rows, cols, max(L, int(cols.max()) + 1)
        src = cols.clamp(max=L - 1)  # columns past a row's end repeat its last (not measured)
        x1 = x1.to(dev, dt).gather(1, src[..., None].expand(-1, -1, x1.shape[-1]))
        ids1 = ids[rows].gather(1, src)
        h1 = self._pass(ids1, x1, cols, _causal_mask(cols, cache.width, dt), cache)
        lp1 = self._lp(h1, pos1.to(dev) - start[:, None])
        return lp0, lp1

"""The forward passes of the IOI patched states: next-token log-probs at the last position
of a clean prompt whose activations at the hookpoint are replaced (docs/causal.md, "Cost").

A patched state differs from its clean prompt only from the IO name on (the patched
positions), so a layer's keys and values before that column are the clean run's. Where the
model's layout allows (:class:`~autointerp.causal.hook_forward.PrefixForward`: a residual
hookpoint, a Llama-like family), each group's clean prompts are run once
keeping every layer's keys/values, and a batch of patched states runs only from the earliest
first edited column among its rows on (:func:`first_edited`: the first column where the
patched features' delta is not zero; for a sparse basis and a small set often well after the
IO name). Otherwise the
whole prompt runs from the hookpoint (or spliced into a full forward), as before.

Either way only the last position's final hidden state goes through the unembedding, as one
``[n, d] x [d, V]`` product (:func:`autointerp.causal.intervene.last_logprobs`).

Exact to float rounding: the prefix columns' activations are the cached clean ones where the
full pass had ``decode(encode(x)) + e`` (equal to ``x`` up to rounding).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from autointerp.causal.intervene import last_logprobs
from autointerp.model import Hookpoint, SubjectModel


class PatchedForward:
    """``logprobs(gi, g, rows, xs)``: last-position log-probs ``[n, V]`` of group ``gi``'s
    prompts ``rows`` (indices in the group) with activations ``xs [n, T, d]`` at the hookpoint
    (module docstring). ``reuse_prefix=False`` runs every state in full (the reference)."""

    def __init__(self, sm: SubjectModel, hp: Hookpoint, skip: int, reuse_prefix: bool = True):
        from autointerp.causal.hook_forward import HookForward, PrefixForward

        self.sm, self.hp, self.skip = sm, hp, skip
        self.pf = None
        if reuse_prefix and skip > 0:
            pf = PrefixForward(HookForward(sm, hp))
            if pf.available and pf.fwd.skip == skip:
                self.pf = pf
        self._prefix: dict[int, Any] = {}

    def _prefix_cache(self, gi: int, g):
        """The keys/values of every layer of group ``gi``'s clean prompts (run once); a
        patched state reads the columns before its first edited one."""
        from autointerp.causal.hook_forward import _causal_mask, _PrefixCache

        cache = self._prefix.get(gi)
        if cache is None:
            assert self.pf is not None
            fwd = self.pf.fwd
            dev, dt = fwd.sm.device, fwd.dtype
            ids = g.clean.to(dev)
            ar = torch.arange(ids.shape[1], device=dev).expand(ids.shape)
            cache = _PrefixCache()
            self.pf._pass(ids, g.x_clean.to(dev, dt), ar, _causal_mask(ar, ids.shape[1], dt), cache)
            self._prefix[gi] = cache
        return cache

    @torch.no_grad()
    def logprobs(
        self, gi: int, g, rows: torch.Tensor, xs: torch.Tensor, first: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The rows run together from ``s``, the earliest among them of ``first`` (each row's
        first edited column; default its first patched column): the columns before ``s`` are
        every row's clean prompt (module docstring)."""
        rows = rows.cpu()
        if first is None:
            first = _starts(g)[rows]
        s = int(first.min()) if len(rows) else 0
        if self.pf is None or s == 0:
            return last_logprobs(self.sm, self.hp, g.clean[rows], xs, self.skip)
        from autointerp.causal.hook_forward import _causal_mask

        fwd = self.pf.fwd
        dev, dt = fwd.sm.device, fwd.dtype
        n_t = g.clean.shape[1]
        cache = self._prefix_cache(gi, g)
        cols = torch.arange(s, n_t, device=dev).expand(len(rows), n_t - s)
        cache.rows, cache.cols, cache.width = rows.to(dev), cols, n_t
        try:
            h = self.pf._pass(g.clean[rows, s:].to(dev), xs[:, s:].to(dev, dt), cols,
                              _causal_mask(cols, n_t, dt), cache)  # fmt: skip
        finally:
            cache.rows = cache.cols = None
        return F.log_softmax(fwd.head(h[:, -1].contiguous()).float(), dim=-1)


def first_edited(delta: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Per state, the first column its patch edits: the first ``t`` where ``delta [n, T, F]``
    is non-zero on a feature of ``m [n, F]`` (the last column when none is: the state is the
    clean prompt's reconstruction, and the last position is still run). Before it the state's
    activations are the clean ones (to rounding), so a sparse basis's small sets, whose
    features fire late in the prompt, run only from there."""
    hit = ((delta != 0) & m[:, None, :].to(delta.device)).any(-1)  # [n, T]
    last = torch.full((len(hit),), hit.shape[1] - 1, dtype=torch.long, device=hit.device)
    return torch.where(hit.any(1), hit.int().argmax(1), last).cpu()


def by_start(g, rows: np.ndarray) -> np.ndarray:
    """A stable order of the group's prompts ``rows`` (repeats allowed) by their first
    patched column, so that consecutive batches share it."""
    return np.argsort(_starts(g).numpy()[rows], kind="stable")


def _starts(g) -> torch.Tensor:
    """Per prompt of the group, its first patched column."""
    return g.patch.int().argmax(1).cpu()

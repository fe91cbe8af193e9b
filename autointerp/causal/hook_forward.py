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

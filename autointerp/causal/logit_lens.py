"""Feature directions and their logit lens (docs/output.md).

direction ``d_i = decode(e_i) - decode(0)`` (what one unit of code ``i`` adds at the hookpoint);
its residual-stream form ``r_i`` is ``d_i`` itself for a hookpoint in (or added to) the residual
stream, and ``W_out d_i`` for the input of a linear layer that writes to it (the MLP neurons,
``down_proj:input``). The logit lens is ``W_U (g ⊙ r_i)`` with ``g`` the final norm's weight; for
a LayerNorm ``r_i`` is centred first (its mean is removed, as the norm would), the norm's bias
and the division by the RMS are left out (the first is the same for every direction, the second
a positive scale that changes no ranking).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from autointerp.bases.base import Basis
from autointerp.causal.hook_forward import base_and_head
from autointerp.errors import AutointerpError
from autointerp.model import Hookpoint, SubjectModel
from autointerp.templates import display_token


@torch.no_grad()
def feature_directions(basis: Basis, features: Sequence[int]) -> torch.Tensor:
    """``[k, d_in]``: ``decode(e_i) - decode(0)`` for each feature ``i``."""
    feats = torch.as_tensor(list(features), dtype=torch.long)
    if len(feats) and (int(feats.min()) < 0 or int(feats.max()) >= basis.n_features):
        raise AutointerpError(
            f"features out of range for basis {basis.name!r} ({basis.n_features} features)"
        )
    dev = basis.device
    one = torch.zeros(len(feats), basis.n_features, device=dev)
    one[torch.arange(len(feats)), feats.to(dev)] = 1.0
    zero = torch.zeros(1, basis.n_features, device=dev)
    return (basis.decode(one) - basis.decode(zero)).float()


def final_norm(sm: SubjectModel) -> nn.Module:
    """The norm applied to the last hidden state before the unembedding."""
    base, _ = base_and_head(sm)
    for name in ("norm", "ln_f", "final_layer_norm", "final_layernorm"):
        mod = getattr(base, name, None)
        if isinstance(mod, nn.Module):
            return mod
    raise AutointerpError(f"{type(base).__name__}: no final norm (norm / ln_f) found")


@torch.no_grad()
def to_residual(sm: SubjectModel, hp: Hookpoint, dirs: torch.Tensor) -> torch.Tensor:
    """Directions at ``hp`` -> their contribution to the residual stream (module docstring)."""
    d_model = sm.d_model
    if hp.width == d_model:
        return dirs
    if hp.io == "input" and isinstance(hp.module, nn.Linear) and hp.module.out_features == d_model:
        w = hp.module.weight  # [d_model, width]
        return dirs.to(w.device, w.dtype) @ w.T
    raise AutointerpError(
        f"hookpoint {hp.name!r} (width {hp.width}) is neither in the residual stream nor the "
        "input of a linear layer writing to it: the logit lens of its directions is undefined"
    )


@torch.no_grad()
def lens_logits(sm: SubjectModel, resid: torch.Tensor) -> torch.Tensor:
    """``[k, vocab]``: ``W_U (g ⊙ r)`` (centred first for a LayerNorm; module docstring)."""
    norm = final_norm(sm)
    _, head = base_and_head(sm)
    w = head.weight
    r = resid.to(w.device, torch.float32)
    if isinstance(norm, nn.LayerNorm):
        r = r - r.mean(-1, keepdim=True)
    g = getattr(norm, "weight", None)
    if g is not None:
        r = r * g.float()
    return r @ w.float().T


@dataclass
class LensTokens:
    """One feature's top (promoted) and bottom (suppressed) logit-lens tokens."""

    feature: int
    top_ids: list[int]
    top_tokens: list[str]
    top_logits: list[float]
    bottom_tokens: list[str]
    bottom_logits: list[float]

    def to_dict(self) -> dict:
        return {
            "feature": self.feature,
            "top": [[t, round(v, 4)] for t, v in zip(self.top_tokens, self.top_logits)],
            "bottom": [[t, round(v, 4)] for t, v in zip(self.bottom_tokens, self.bottom_logits)],
            "top_ids": self.top_ids,
        }


def token_strings(tokenizer, ids: Sequence[int]) -> list[str]:
    """Printable form of each token id."""
    return [display_token(tokenizer.decode([int(i)])) for i in ids]


@torch.no_grad()
def logit_lens(
    sm: SubjectModel, hp: Hookpoint, basis: Basis, features: Sequence[int], n: int
) -> list[LensTokens]:
    """The ``n`` top and bottom logit-lens tokens of each feature's direction."""
    feats = list(features)
    if not feats:
        return []
    logits = lens_logits(sm, to_residual(sm, hp, feature_directions(basis, feats)))
    n = min(n, logits.shape[-1])
    top = logits.topk(n, dim=-1)
    bot = (-logits).topk(n, dim=-1)
    out = []
    for j, f in enumerate(feats):
        ti, bi = top.indices[j].tolist(), bot.indices[j].tolist()
        out.append(
            LensTokens(
                feature=int(f),
                top_ids=ti,
                top_tokens=token_strings(sm.tokenizer, ti),
                top_logits=top.values[j].tolist(),
                bottom_tokens=token_strings(sm.tokenizer, bi),
                bottom_logits=(-bot.values[j]).tolist(),
            )
        )
    return out

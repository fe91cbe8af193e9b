"""Interventions on a basis's codes with the error term kept, and forward passes that start
at the hookpoint.

Every basis is treated as ``x = decode(c) + e`` with ``c = encode(x)`` and the error term
``e = x - decode(encode(x))`` held fixed, so an edit of the codes changes only the chosen
features: ``x' = decode(c') + e``. With ``c' = c`` this gives back ``x`` exactly (up to float
rounding).

Runs from an edited activation start at the hookpoint from the given residual (the layers
before it are skipped, as :func:`autointerp.metrics._resume_at` does) when the hookpoint is in
the residual stream; at any other hookpoint (``mlp_out``, ``attn_out``, ``mlp.hook_post``) the
activation is spliced into a full forward (:func:`autointerp.model.splice`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from autointerp.bases.base import Basis
from autointerp.causal.hook_forward import base_and_head
from autointerp.errors import AutointerpError
from autointerp.metrics import _n_skippable, _resume_at
from autointerp.model import Hookpoint, SubjectModel, run_to_hookpoint, splice


def encode_with_error(basis: Basis, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes ``[..., F]`` of ``x [..., d]`` and the error term ``x - decode(codes)``."""
    shape = x.shape
    flat = x.reshape(-1, shape[-1]).to(basis.device, torch.float32)
    c = basis.encode(flat)
    err = flat - basis.decode(c)
    return c.reshape(*shape[:-1], -1), err.reshape(shape)


def decode_with_error(basis: Basis, c: torch.Tensor, err: torch.Tensor) -> torch.Tensor:
    """``decode(c) + err`` for codes ``[..., F]``."""
    return basis.decode(c.reshape(-1, c.shape[-1])).reshape(err.shape) + err


def hidden(sm: SubjectModel, hp: Hookpoint, ids: torch.Tensor) -> torch.Tensor:
    """Activations ``[B, T, width]`` at ``hp`` (float32)."""
    return run_to_hookpoint(sm, hp, ids.to(sm.device)).float()


@contextlib.contextmanager
def _given(sm: SubjectModel, hp: Hookpoint, x: torch.Tensor, skip: int) -> Iterator[None]:
    dtype = next(sm.model.parameters()).dtype
    if skip:
        with _resume_at(sm, skip, x.to(sm.device, dtype)):
            yield
    else:
        with splice(hp, lambda a: x.to(a.device, a.dtype)):
            yield


def last_logprobs(
    sm: SubjectModel, hp: Hookpoint, ids: torch.Tensor, x: torch.Tensor | None, skip: int
) -> torch.Tensor:
    """Next-token log-probs ``[B, V]`` at the last position of ``ids``; with ``x`` given, the
    activation at ``hp`` is ``x`` (the run starts there when ``skip`` > 0). Keeps the graph
    when grad is enabled."""
    ctx = _given(sm, hp, x, skip) if x is not None else contextlib.nullcontext()
    parts = _base_and_head(sm)
    with ctx:
        if parts is not None:  # the last position's hidden state [B, d] through the head: one GEMM
            base, head = parts
            h = base(input_ids=ids.to(sm.device), use_cache=False).last_hidden_state
            return F.log_softmax(head(h[:, -1].contiguous()).float(), dim=-1)
        try:
            out = sm.model(input_ids=ids.to(sm.device), use_cache=False, logits_to_keep=1)
        except TypeError:  # models without logits_to_keep
            out = sm.model(input_ids=ids.to(sm.device), use_cache=False)
    return F.log_softmax(out.logits[:, -1].float(), dim=-1)


#: families whose causal-LM logits are exactly ``lm_head(final normed hidden state)``
_PLAIN_HEAD = {"llama", "mistral", "qwen2", "qwen3", "gpt2"}


def _base_and_head(sm: SubjectModel) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """The decoder stack and the unembedding when the logits are just ``head(hidden)`` (no
    soft-capping or logit scale), else None. With ``logits_to_keep=1`` the model's own head
    runs a batched matrix-vector product per row (``[B, 1, d]`` against the ``[d, V]`` weight,
    read once per row); on the 2-D last hidden states it is one matrix product."""
    cfg = getattr(sm.model, "config", None)
    if getattr(cfg, "model_type", None) not in _PLAIN_HEAD:
        return None
    if getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "logit_scale", None):
        return None
    try:
        return base_and_head(sm)
    except AutointerpError:  # no stack / head found: the model's own forward
        return None


def resume_layers(
    sm: SubjectModel, hp: Hookpoint, ids: torch.Tensor, x: torch.Tensor, full: torch.Tensor
) -> int:
    """Layers a run from a given activation at ``hp`` skips: ``_n_skippable``, checked once on
    ``ids`` with their activations ``x`` and full-forward last log-probs ``full`` (the resumed
    run must match within 1e-3 in float32, 5e-2 otherwise), else 0 (spliced full forwards)."""
    skip = _n_skippable(sm, hp)
    if not skip:
        return 0
    with torch.no_grad():
        res = last_logprobs(sm, hp, ids, x, skip)
    dtype = next(sm.model.parameters()).dtype
    tol = 1e-3 if dtype == torch.float32 else 5e-2
    return skip if torch.allclose(full, res, atol=tol, rtol=0) else 0


def kl_last(logp_ref: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """``KL(P_ref || P) = sum_v p_ref(v) (log p_ref(v) - log p(v))`` per row ``[B]``."""
    return (logp_ref.exp() * (logp_ref - logp)).sum(-1)

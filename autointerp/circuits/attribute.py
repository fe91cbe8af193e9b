"""Why this completion? OpenAI's (2025) latent attribution of one completion against another.

For a basis with decoder directions ``d_i`` at a hookpoint with activations ``a_t`` and mean
activation ``abar``, and the completion's loss ``L = -sum log p(completion token)``, each
position ``t`` that predicts a completion token gives
``delta_i(t) = -(g_t . d_i)((a_t - abar) . d_i)`` with ``g_t = dL / da_t``; ``delta_i`` is
their sum. A feature with ``delta_i > 0`` lowers the completion's loss (first order, moving
the activation from the mean along ``d_i``). Features are ranked by
``delta_i(good) - delta_i(bad)``: the ones that make the model prefer the good completion.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from autointerp.bases.base import Basis
from autointerp.errors import AutointerpError
from autointerp.model import Hookpoint, SubjectModel, splice


def decoder_directions(basis: Basis) -> torch.Tensor:
    """``[F, d]``: ``decode(e_i) - decode(0)``, the direction feature ``i`` writes."""
    eye = torch.eye(basis.n_features, device=basis.device)
    with torch.no_grad():
        return basis.decode(eye) - basis.decode(torch.zeros_like(eye[:1]))


def split_ids(sm: SubjectModel, prompt: str, completion: str) -> tuple[list[int], int]:
    """Token ids of ``prompt + completion`` and the prompt's length in tokens; one clear error
    when the completion does not start on a token boundary of the joint tokenization."""
    tok = sm.tokenizer
    full = list(tok(prompt + completion).input_ids)
    head = list(tok(prompt).input_ids)
    if not completion or full[: len(head)] != head or len(full) <= len(head):
        raise AutointerpError(
            f"attribute: {completion!r} does not tokenize as a continuation of the prompt "
            "(the joint tokenization merges them); start the completion with a space, or end "
            "the prompt on a word boundary"
        )
    return full, len(head)


def delta(
    sm: SubjectModel,
    hp: Hookpoint,
    bases: list[Basis],
    prompt: str,
    completion: str,
    mean_act: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Per basis, ``delta [F]`` of ``completion`` after ``prompt`` (one forward and one
    backward pass, shared by every basis)."""
    ids, n_p = split_ids(sm, prompt, completion)
    x_ids = torch.tensor([ids], device=sm.device)
    got: list[torch.Tensor] = []

    def leaf(a: torch.Tensor) -> torch.Tensor:
        x = a.detach().float().requires_grad_(True)
        got.append(x)
        return x.to(a.dtype)

    with torch.enable_grad(), splice(hp, leaf):
        logits = sm.model(input_ids=x_ids, use_cache=False).logits[0]
        lp = F.log_softmax(logits[n_p - 1 : -1].float(), -1)
        tgt = x_ids[0, n_p:]
        loss = -lp.gather(-1, tgt[:, None]).sum()
        (g,) = torch.autograd.grad(loss, [got[0]])
    pos = slice(n_p - 1, len(ids) - 1)
    g_t = g[0, pos].float()
    a_t = got[0].detach()[0, pos] - mean_act.to(g_t.device, torch.float32)
    out = {}
    for b in bases:
        d = decoder_directions(b).to(g_t.device)
        out[b.name] = -((g_t @ d.T) * (a_t @ d.T)).sum(0).cpu()
    return out


def rank(
    sm: SubjectModel,
    hp: Hookpoint,
    bases: list[Basis],
    prompt: str,
    good: str,
    bad: str,
    mean_act: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Per basis, ``delta(good) - delta(bad)`` ``[F]``."""
    dg = delta(sm, hp, bases, prompt, good, mean_act)
    db = delta(sm, hp, bases, prompt, bad, mean_act)
    return {k: dg[k] - db[k] for k in dg}

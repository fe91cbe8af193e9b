"""The subject model's activations at the word's last token of each first-letter prompt."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from autointerp.model import Hookpoint, SubjectModel, run_to_hookpoint


@torch.no_grad()
def word_activations(
    sm: SubjectModel,
    hp: Hookpoint,
    ids: Sequence[Sequence[int]],
    positions: np.ndarray,
    batch_size: int,
    truncate: bool = True,
) -> np.ndarray:
    """``[N, width]`` float32: prompt ``i``'s activation at ``hp``, token ``positions[i]``.

    Only what the activation depends on is run: each prompt up to its token ``positions[i]``
    (causal attention: the tokens after it cannot change it; SAEBench's prompts have five),
    batched by length (right-padded; the causal mask keeps the padding out of the positions
    read), and the layers up to the hookpoint. ``truncate=False``: whole prompts (the
    benchmark's baseline)."""
    if truncate:
        ids = [list(t[: int(p) + 1]) for t, p in zip(ids, positions)]
    n = len(ids)
    out = np.zeros((n, hp.width), dtype=np.float32)
    if n == 0:
        return out
    pad = sm.tokenizer.pad_token_id
    pad = int(pad) if pad is not None else 0
    order = np.argsort([len(t) for t in ids], kind="stable")
    for s in range(0, n, batch_size):
        rows = order[s : s + batch_size]
        width = max(len(ids[r]) for r in rows)
        x = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, r in enumerate(rows):
            x[j, : len(ids[r])] = torch.as_tensor(ids[r], dtype=torch.long)
            mask[j, : len(ids[r])] = 1
        a = run_to_hookpoint(sm, hp, x, mask)
        at = torch.as_tensor(positions[rows], dtype=torch.long, device=a.device)
        out[rows] = a[torch.arange(len(rows), device=a.device), at].float().cpu().numpy()
    return out

"""Output score: does amplifying a feature raise the probability of its explanation's tokens?
(Arad et al. 2025 style; docs/output.md.)

Neutral prompts are the first ``prompt_len`` tokens of ``n_prompts`` held-out corpus rows. For
feature ``i`` with direction ``d_i`` every non-excluded position gets ``x' = x + α_i d_i``, with
``α_i = strength · m / ‖d_i‖`` and ``m`` the mean residual norm ‖x_t‖ over the prompts'
non-excluded positions: every feature of every basis is moved by the same distance, a fraction
``strength`` of a typical activation. For a token set ``S`` the gain at the last position is

    gain_i(S) = mean over prompts of [ log Σ_{v∈S} p'(v) − log Σ_{v∈S} p(v) ]

(nats; ``p`` the clean, ``p'`` the amplified next-token distribution). The output score of a
feature is ``gain_i(S_i)`` with ``S_i`` its explanation's tokens; the null is
``gain_i(S_{π(i)})``, another feature's explanation tokens under the same amplification
(``π`` a seeded derangement of the basis's scored features); the lift is their difference.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from autointerp.bases.base import Basis
from autointerp.causal.hook_forward import HookForward
from autointerp.causal.logit_lens import feature_directions
from autointerp.errors import AutointerpError


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation of ``range(n)`` with no fixed point (``n >= 2``; identity for
    ``n < 2``): a cyclic shift of a random order."""
    if n < 2:
        return np.arange(n)
    order = np.random.default_rng(seed).permutation(n)
    perm = np.empty(n, dtype=np.int64)
    perm[order] = np.roll(order, -1)
    return perm


def neutral_rows(candidates: np.ndarray, n: int) -> np.ndarray:
    """``n`` rows spread evenly over ``candidates`` (all of them when fewer)."""
    if len(candidates) <= n:
        return np.asarray(candidates)
    idx = np.unique(np.linspace(0, len(candidates) - 1, n).round().astype(np.int64))
    return np.asarray(candidates)[idx]


@torch.no_grad()
def amplification_gains(
    fwd: HookForward,
    basis: Basis,
    features: Sequence[int],
    token_sets: Sequence[Sequence[Sequence[int]]],
    ids: np.ndarray,
    acts: np.ndarray,
    exclude: np.ndarray,
    rows: np.ndarray,
    *,
    prompt_len: int = 16,
    strength: float = 1.0,
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """``(gains [n_sets, k], alpha [k])``: ``gains[s, i]`` = gain of amplifying feature
    ``features[i]`` for the token set ``token_sets[s][i]`` (module docstring); NaN where a set
    is empty or the direction is zero."""
    feats = list(features)
    if not feats:
        return np.zeros((len(token_sets), 0)), np.zeros(0)
    T = ids.shape[1]
    if not 2 <= prompt_len <= T:
        raise AutointerpError(
            f"output.prompt_len must be in 2..{T} (the row length), got {prompt_len}"
        )
    rows = np.asarray(rows)
    L = prompt_len
    tok = torch.from_numpy(ids[rows, :L].astype(np.int64))
    x0 = torch.from_numpy(np.asarray(acts[rows, :L], dtype=np.float32))
    keep = torch.from_numpy(np.asarray(exclude[rows, :L]))
    N = len(rows)
    last = torch.full((N, 1), L - 1, dtype=torch.long)
    lp0 = fwd.logprobs(tok, x0, last)[:, 0].cpu()  # [N, V]
    norms = x0.norm(dim=-1)[~keep]
    m = float(norms.mean()) if norms.numel() else float("nan")
    dirs = feature_directions(basis, feats).cpu()
    dn = dirs.norm(dim=-1)
    alpha = torch.where(dn > 0, strength * m / dn.clamp_min(1e-30), torch.zeros_like(dn))
    gains = np.full((len(token_sets), len(feats)), np.nan)
    per = max(1, batch_size // N)
    edit = (~keep).unsqueeze(-1).float()
    for s in range(0, len(feats), per):
        js = list(range(s, min(s + per, len(feats))))
        shift = torch.stack([alpha[j] * dirs[j] for j in js])  # [J, w]
        x = (x0.unsqueeze(0) + edit.unsqueeze(0) * shift[:, None, None, :]).reshape(
            -1, L, x0.shape[-1]
        )
        lp = fwd.logprobs(tok.repeat(len(js), 1), x, last.repeat(len(js), 1))[:, 0].cpu()
        lp = lp.reshape(len(js), N, -1)
        for a, j in enumerate(js):
            if float(dn[j]) == 0.0:
                continue
            for si, sets in enumerate(token_sets):
                S = list(sets[j])
                if not S:
                    continue
                g = lp[a][:, S].double().logsumexp(-1) - lp0[:, S].double().logsumexp(-1)
                gains[si, j] = float(g.mean())
    return gains, alpha.numpy()

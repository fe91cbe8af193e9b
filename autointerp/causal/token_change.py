"""Output explanations that are not their own answer key (docs/output.md, "TokenChange"):

1. **Strength at a target KL** (per basis, as delphi's intervention scorer tunes to a KL): every
   feature ``i`` is added as ``x' = x + s · m / ‖d_i‖ · d_i`` at every non-special position of a
   prompt (``m`` the mean ‖x_t‖ of the prompts), and ``s`` is the one number per basis at which
   the mean over calibration features and prompts of ``KL(P ‖ P')`` at the last position is
   ``target_kl`` (geometric bisection). Every basis is then moved as far *in output space*,
   whatever the norm or the placement of its directions.
2. **TokenChange explanation** (Gur-Arieh et al. 2025) on the *explain* prompts at strength
   ``s``: the mean over prompts of ``log P'(v) − log P(v)`` (the logit change up to a shift
   common to all tokens); its ``n`` largest entries are the explanation's tokens.
3. **Score on held-out prompts at another strength** (``score_ratio · s``): the gain
   ``log Σ_{v∈S} P'(v) − log Σ_{v∈S} P(v)`` of the explanation's tokens, averaged over the
   *score* prompts (no prompt in both sets); the null is another feature's explanation under
   the same amplification; the lift is their difference.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from autointerp.causal.hook_forward import HookForward


class Prompts:
    """Neutral prompts: token ids ``[N, L]``, activations at the hookpoint ``[N, L, w]``, the
    edited positions (non-special) and the clean last-position log-probs."""

    def __init__(
        self, fwd: HookForward, ids: np.ndarray, acts: np.ndarray, exclude: np.ndarray, L: int
    ):
        self.fwd = fwd
        self.tok = torch.from_numpy(np.asarray(ids[:, :L], dtype=np.int64))
        self.x0 = torch.from_numpy(np.asarray(acts[:, :L], dtype=np.float32))
        keep = torch.from_numpy(np.asarray(exclude[:, :L]))
        self.edit = (~keep).unsqueeze(-1).float()
        norms = self.x0.norm(dim=-1)[~keep]
        self.m = float(norms.mean()) if norms.numel() else float("nan")
        self.last = torch.full((len(self.tok), 1), L - 1, dtype=torch.long)
        self.lp0 = fwd.logprobs(self.tok, self.x0, self.last)[:, 0].cpu()  # [N, V]

    def __len__(self) -> int:
        return len(self.tok)

    def amplified(
        self, shifts: torch.Tensor, batch_size: int
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """``(j0, log-probs [J, N, V])`` for chunks of ``shifts [k, w]`` (``x + shift`` at every
        edited position), ``J * N`` about ``batch_size`` rows per pass."""
        N = len(self)
        per = max(1, batch_size // N)
        for s in range(0, len(shifts), per):
            sh = shifts[s : s + per]
            x = (self.x0.unsqueeze(0) + self.edit.unsqueeze(0) * sh[:, None, None, :]).reshape(
                -1, *self.x0.shape[1:]
            )
            lp = self.fwd.logprobs(self.tok.repeat(len(sh), 1), x, self.last.repeat(len(sh), 1))
            yield s, lp[:, 0].cpu().reshape(len(sh), N, -1)


def unit_shifts(dirs: torch.Tensor, m: float) -> torch.Tensor:
    """``m · d_i / ‖d_i‖`` (zero for a zero direction): the shift of strength 1."""
    dn = dirs.norm(dim=-1, keepdim=True)
    return torch.where(dn > 0, m * dirs / dn.clamp_min(1e-30), torch.zeros_like(dirs))


def _kl(lp0: torch.Tensor, lp: torch.Tensor) -> torch.Tensor:
    """``KL(P0 ‖ P)`` over the last axis."""
    return (lp0.exp() * (lp0 - lp)).sum(-1)


def mean_kl(p: Prompts, shifts: torch.Tensor, batch_size: int) -> float:
    """Mean over features and prompts of ``KL(P ‖ P')`` when ``shifts [k, w]`` are added."""
    tot, n = 0.0, 0
    for _, lp in p.amplified(shifts, batch_size):
        kl = _kl(p.lp0.unsqueeze(0).double(), lp.double())
        tot += float(kl.sum())
        n += kl.numel()
    return tot / max(n, 1)


def calibrate_strength(
    p: Prompts,
    unit: torch.Tensor,
    target_kl: float,
    batch_size: int,
    *,
    lo: float = 1 / 16,
    hi: float = 16.0,
    steps: int = 6,
) -> tuple[float, float]:
    """``(s, KL at s)``: geometric bisection of ``s`` in ``[lo, hi]`` so that
    ``mean_kl(p, s · unit) = target_kl`` (the KL grows with ``s``; ``hi`` or ``lo`` when the
    target lies outside)."""
    k_lo, k_hi = mean_kl(p, lo * unit, batch_size), mean_kl(p, hi * unit, batch_size)
    if target_kl <= k_lo:
        return lo, k_lo
    if target_kl >= k_hi:
        return hi, k_hi
    best = (hi, k_hi)
    for _ in range(steps):
        mid = float(np.sqrt(lo * hi))
        k = mean_kl(p, mid * unit, batch_size)
        if abs(np.log(k / target_kl)) < abs(np.log(best[1] / target_kl)):
            best = (mid, k)
        if k < target_kl:
            lo = mid
        else:
            hi = mid
    return best


def token_change(p: Prompts, shifts: torch.Tensor, n: int, batch_size: int) -> np.ndarray:
    """``[k, n]`` token ids: per feature the ``n`` tokens whose mean log-probability change
    over the prompts is largest when ``shifts[i]`` is added (TokenChange, tokens up)."""
    out = np.zeros((len(shifts), n), dtype=np.int64)
    for j0, lp in p.amplified(shifts, batch_size):
        d = (lp.double() - p.lp0.unsqueeze(0).double()).mean(1)  # [J, V]
        out[j0 : j0 + len(lp)] = d.topk(n, dim=-1).indices.numpy()
    return out


def set_gains(
    p: Prompts, shifts: torch.Tensor, sets: list[np.ndarray], batch_size: int
) -> np.ndarray:
    """``[len(sets), k]``: mean over prompts of ``log Σ_{v∈S} P'(v) − log Σ_{v∈S} P(v)`` for
    the token set ``sets[s][i]`` of feature ``i`` when ``shifts[i]`` is added."""
    out = np.full((len(sets), len(shifts)), np.nan)
    for j0, lp in p.amplified(shifts, batch_size):
        for a in range(len(lp)):
            for si, st in enumerate(sets):
                S = torch.as_tensor(st[j0 + a], dtype=torch.long)
                if len(S) == 0:
                    continue
                g = lp[a][:, S].double().logsumexp(-1) - p.lp0[:, S].double().logsumexp(-1)
                out[si, j0 + a] = float(g.mean())
    return out


def arad_scores(
    p: Prompts, shifts: torch.Tensor, sets: list[np.ndarray], batch_size: int
) -> np.ndarray:
    """``[len(sets), k]``: Arad et al. (2025)'s output score of token set ``sets[s][i]`` when
    ``shifts[i]`` is added: per prompt ``(1 − min_{v∈S} rank'(v) / |V|) · max_{v∈S} P'(v)``
    (``rank'(v)`` = how many tokens are more probable than ``v``; 0 for the top token),
    averaged over the prompts."""
    out = np.full((len(sets), len(shifts)), np.nan)
    for j0, lp in p.amplified(shifts, batch_size):
        V = lp.shape[-1]
        for a in range(len(lp)):
            for si, st in enumerate(sets):
                S = torch.as_tensor(st[j0 + a], dtype=torch.long)
                if len(S) == 0:
                    continue
                ls = lp[a][:, S]  # [N, |S|]
                rank = (lp[a][:, None, :] > ls[:, :, None]).sum(-1).min(-1).values  # [N]
                sc = (1.0 - rank.double() / V) * ls.double().exp().max(-1).values
                out[si, j0 + a] = float(sc.mean())
    return out

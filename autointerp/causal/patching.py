"""The IOI patching curve (Cunningham et al. 2023) of one basis, batched and resumed at the
hookpoint.

For a pair (clean prompt, counterfactual with the IO name replaced), at every position from the
IO name on: ``c = encode(x_clean)``, ``e = x_clean - decode(c)``, ``delta = encode(x_cf) - c``;
patching the feature set S gives ``x_S = decode(c + 1_S * delta) + e``. Positions before the IO
name are identical in both prompts and left untouched.

* Attribution (:func:`attribution`): ``a[p, i] = sum_t delta[t, i] * dM/dc[t, i]`` with
  ``M = KL(P_cf || P)`` at the last position and ``dM/dc`` averaged over points of the path
  from the clean to the counterfactual activation (:func:`path_points`: integrated gradients;
  one step = attribution patching at the clean point). The path points are activations, the
  same for every basis, so ``dM/dx`` is computed once (:func:`prepare`) and each basis only
  maps it through its decoder: ``dM/dc = (d decode / dc)^T dM/dx``. Rankings:
  :mod:`autointerp.causal.ranking`.
* Runs (:func:`patched_runs`): per feature set and pair, ``KL(P_cf || P_S)`` at the last
  position, the relative edit ``||X_S - X_clean||_F / ||X_cf - X_clean||_F`` and the paper's
  edit, the mean over patched positions of ``||x_S[t] - x_clean[t]||_2``.

All patched states of a basis (pairs x k) are stacked and run in batches of ``batch_size``
rows, starting at the hookpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from autointerp.bases.base import Basis
from autointerp.causal.intervene import (
    decode_with_error,
    encode_with_error,
    kl_last,
    last_logprobs,
    resume_layers,
)
from autointerp.causal.ioi_forward import PatchedForward, first_edited
from autointerp.causal.ioi_prompts import IOIPair
from autointerp.model import Hookpoint, SubjectModel, splice


@dataclass
class Group:
    """Pairs of one prompt length, with their cached states."""

    rows: np.ndarray
    clean: torch.Tensor  # [B, T]
    cf: torch.Tensor  # [B, T]
    patch: torch.Tensor  # [B, T] bool: positions from the IO name on
    x_clean: torch.Tensor  # [B, T, d] activations at the hookpoint
    x_cf: torch.Tensor
    logp_clean: torch.Tensor  # [B, V] last position, full forward
    logp_cf: torch.Tensor
    grad_kl: torch.Tensor | None = None  # [B, T, d] dKL(P_cf || P)/dx on the path (below)


@dataclass
class IOIData:
    """The pairs and their clean / counterfactual states (shared by every basis)."""

    pairs: list[IOIPair]
    groups: list[Group]
    skip: int  # layers skipped by the resumed runs (0: spliced full forwards)
    logit_diff: np.ndarray  # [P] clean log p(IO) - log p(S) = logit(IO) - logit(S)
    kl_clean: np.ndarray  # [P] KL(P_cf || P_clean), the unpatched KL


@dataclass
class Curve:
    """One basis's IOI curve under one ranking: per k (``ks``; the last is all features) and
    pair, the KL and the two edit sizes."""

    basis: str
    n_features: int
    ks: list[int]
    kl: np.ndarray  # [K, P]
    edit: np.ndarray  # [K, P] relative to the full counterfactual edit
    attribution: np.ndarray  # [F] pooled a_i
    order: np.ndarray  # features in pooled ranking order
    info: dict = field(default_factory=dict)
    edit_abs: np.ndarray | None = None  # [K, P] mean per-position ||dx||_2 (the paper's)


def forward_with_hidden(
    sm: SubjectModel, hp: Hookpoint, ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One full forward: the activations at ``hp`` ``[B, T, d]`` (float32) and the last
    position's log-probs ``[B, V]``."""
    got: list[torch.Tensor] = []

    def grab(a: torch.Tensor) -> torch.Tensor:
        got.append(a.detach().float())
        return a

    with splice(hp, grab):
        lp = last_logprobs(sm, hp, ids, None, 0)
    return got[0], lp


def grad_at(
    sm: SubjectModel, hp: Hookpoint, g: Group, skip: int, metric, x0: torch.Tensor | None = None
) -> torch.Tensor:
    """``d metric(last log-probs) / dx`` at ``x0`` (default ``x_clean``) ``[B, T, d]`` (one
    backward pass; only the input's gradient is taken)."""
    x = (g.x_clean if x0 is None else x0).detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (gx,) = torch.autograd.grad(metric(last_logprobs(sm, hp, g.clean, x, skip)), x)
    return gx.detach()


def decoder_grad(basis: Basis, c: torch.Tensor, grad_x: torch.Tensor) -> torch.Tensor:
    """``dM/dc = (d decode / dc)^T dM/dx`` at codes ``c [..., F]`` for ``grad_x [..., d]``."""
    cc = c.detach().reshape(-1, c.shape[-1]).requires_grad_(True)
    with torch.enable_grad():
        x = basis.decode(cc)
        (gc,) = torch.autograd.grad(x, cc, grad_outputs=grad_x.reshape(x.shape).to(x))
    return gc.reshape(c.shape)


@torch.no_grad()
def path_points(steps: int) -> list[float]:
    """Where on the path ``x_clean + t (x_cf - x_clean)`` the KL gradient is taken: ``t = 0``
    (attribution patching at the clean point) for one step, else the midpoints
    ``(j + 1/2) / steps`` (integrated gradients, midpoint rule)."""
    return [0.0] if steps <= 1 else [(j + 0.5) / steps for j in range(steps)]


def prepare(sm: SubjectModel, hp: Hookpoint, pairs: list[IOIPair], ig_steps: int = 2) -> IOIData:
    """The pairs' clean and counterfactual states at ``hp`` and last-position log-probs, the
    unpatched KL, the model's logit difference, and the KL gradient averaged over
    :func:`path_points` (shared by every basis)."""
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(pairs):
        by_len.setdefault(len(p.clean_ids), []).append(i)
    groups = []
    skip = None
    ld = np.zeros(len(pairs))
    klc = np.zeros(len(pairs))
    for _n, rows in sorted(by_len.items()):
        clean = torch.tensor([pairs[i].clean_ids for i in rows])
        cf = torch.tensor([pairs[i].cf_ids for i in rows])
        first = (clean != cf).int().argmax(1)
        patch = torch.arange(clean.shape[1])[None, :] >= first[:, None]
        x_clean, lpc = forward_with_hidden(sm, hp, clean)
        x_cf, lpf = forward_with_hidden(sm, hp, cf)
        if skip is None:
            skip = resume_layers(sm, hp, clean, x_clean, lpc)
        g = Group(np.array(rows), clean, cf, patch, x_clean, x_cf, lpc, lpf)

        def kl_sum(lp: torch.Tensor, g: Group = g) -> torch.Tensor:
            return kl_last(g.logp_cf.to(lp.device), lp).sum()

        ts = path_points(ig_steps)
        g.grad_kl = sum(
            grad_at(sm, hp, g, skip or 0, kl_sum, x_clean + t * (x_cf - x_clean)) for t in ts
        ) / len(ts)
        groups.append(g)
        io = torch.tensor([pairs[i].io_id for i in rows])
        s = torch.tensor([pairs[i].s_id for i in rows])
        ar = torch.arange(len(rows))
        ld[rows] = (lpc[ar, io] - lpc[ar, s]).cpu().numpy()
        klc[rows] = kl_last(lpf, lpc).cpu().numpy()
    return IOIData(pairs, groups, int(skip or 0), ld, klc)


def _codes(basis: Basis, g: Group) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    c, err = encode_with_error(basis, g.x_clean)
    c_cf, _ = encode_with_error(basis, g.x_cf)
    delta = (c_cf - c) * g.patch[..., None].to(c.device)
    return c, err, delta


def attribution(sm: SubjectModel, hp: Hookpoint, data: IOIData, basis: Basis) -> np.ndarray:
    """Per pair and feature ``a[p, i] = sum_t delta[t, i] * dKL/dc[t, i]`` at the clean point
    ``[P, F]`` (the gradient at the hookpoint, shared by every basis, through the decoder)."""
    out = np.zeros((len(data.pairs), basis.n_features))
    for g in data.groups:
        with torch.no_grad():
            c, _err, delta = _codes(basis, g)
        assert g.grad_kl is not None
        gc = decoder_grad(basis, c, g.grad_kl)
        out[g.rows] = (delta * gc).sum(1).double().cpu().numpy()
    return out


def k_values(ks: list[int] | str, n_features: int) -> list[int]:
    """The grid of k: ``"pow2"`` gives every power of two below the feature count, then all
    (no gap wider than 2x); a list gives its values below the feature count, then all."""
    if ks == "pow2":
        ks = [2**j for j in range(max(1, n_features).bit_length())]
    return sorted({int(k) for k in ks if 0 < int(k) < n_features}) + [n_features]


@dataclass
class Runs:
    """Per feature set and pair ``[S, P]``: the KL, the relative edit and the paper's edit."""

    kl: np.ndarray
    edit: np.ndarray  # ||X_S - X_clean||_F / ||X_cf - X_clean||_F
    edit_abs: np.ndarray  # mean over patched positions of ||x_S[t] - x_clean[t]||_2
    n_states: int = 0  # distinct states run (after de-duplication)


@torch.no_grad()
def patched_runs(
    sm: SubjectModel,
    hp: Hookpoint,
    data: IOIData,
    basis: Basis,
    sets: list[torch.Tensor],
    batch_size: int,
    reuse_prefix: bool = True,
) -> Runs:
    """KL(P_cf || P_S) and the edit sizes per feature set S and pair. A set is a bool mask
    ``[F]`` (one set for every pair) or ``[P, F]`` (one per pair). The distinct (pair, state)
    rows of a group are run ``batch_size`` at a time from the hookpoint: two sets that differ
    only on features whose delta is 0 for that pair give the same state, which runs once.
    Each state runs from its first edited column on over the clean prompt's keys/values
    (``reuse_prefix``, :class:`~autointerp.causal.ioi_forward.PatchedForward`)."""
    fwd = PatchedForward(sm, hp, data.skip, reuse_prefix)
    n_sets, n_pairs = len(sets), len(data.pairs)
    kl = np.zeros((n_sets, n_pairs))
    edit = np.zeros((n_sets, n_pairs))
    edit_abs = np.zeros((n_sets, n_pairs))
    n_states = 0
    for gi, g in enumerate(data.groups):
        c, err, delta = _codes(basis, g)
        dev = c.device
        full = (g.x_cf - g.x_clean).flatten(1).norm(dim=1).to(dev)
        n_pos = g.patch.sum(1).to(dev)
        support = delta.abs().amax(1) > 0  # [B, F]
        rows = torch.from_numpy(g.rows)
        masks = torch.stack(
            [(m if m.dim() == 1 else m[rows]).to(dev).expand_as(support) & support for m in sets]
        )  # [S, B, F]
        b = len(g.rows)
        index: dict[tuple[int, bytes], int] = {}
        uniq: list[tuple[int, int]] = []  # (set, row) of each distinct state
        pick = np.zeros((n_sets, b), dtype=np.int64)
        packed = np.packbits(masks.cpu().numpy(), axis=-1)
        for si in range(n_sets):
            for r in range(b):
                key = (r, packed[si, r].tobytes())
                if key not in index:
                    index[key] = len(uniq)
                    uniq.append((si, r))
                pick[si, r] = index[key]
        n_states += len(uniq)
        # states in order of their first edited column: a batch runs from its earliest
        first = torch.cat([
            first_edited(delta[ri], masks[si, ri])
            for si, ri in (torch.tensor(uniq[s : s + 256], device=dev).T
                           for s in range(0, len(uniq), 256))
        ])  # fmt: skip
        run = np.argsort(first.numpy(), kind="stable")
        first = first[torch.from_numpy(run)]
        at = np.empty(len(uniq), dtype=np.int64)
        at[run] = np.arange(len(uniq))
        uniq, pick = [uniq[i] for i in run], at[pick]
        kl_u, rel_u, abs_u = [], [], []
        for s in range(0, len(uniq), batch_size):
            chunk = uniq[s : s + batch_size]
            si = torch.tensor([u[0] for u in chunk], device=dev)
            ri = torch.tensor([u[1] for u in chunk], device=dev)
            m = masks[si, ri]  # [n, F]
            xs = decode_with_error(basis, c[ri] + delta[ri] * m[:, None, :].to(c), err[ri])
            lp = fwd.logprobs(gi, g, ri, xs, first[s : s + batch_size])
            kl_u.append(kl_last(g.logp_cf[ri.cpu()].to(lp.device), lp).double().cpu())
            dx = xs - g.x_clean[ri.cpu()].to(xs.device)
            rel_u.append((dx.flatten(1).norm(dim=1) / full[ri]).double().cpu())
            abs_u.append((dx.norm(dim=-1).sum(1) / n_pos[ri]).double().cpu())
        kl[:, g.rows] = torch.cat(kl_u).numpy()[pick]
        edit[:, g.rows] = torch.cat(rel_u).numpy()[pick]
        edit_abs[:, g.rows] = torch.cat(abs_u).numpy()[pick]
    return Runs(kl, edit, edit_abs, n_states)

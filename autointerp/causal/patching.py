"""The IOI patching curve (Cunningham et al. 2023) of one basis, batched and resumed at the
hookpoint.

For a pair (clean prompt, counterfactual with the IO name replaced), at every position from the
IO name on: ``c = encode(x_clean)``, ``e = x_clean - decode(c)``, ``delta = encode(x_cf) - c``;
patching the feature set S gives ``x_S = decode(c + 1_S * delta) + e``. Positions before the IO
name are identical in both prompts and left untouched.

* Ranking (attribution patching, one backward pass): ``a_i = sum_pairs sum_t delta[t, i] *
  dM/dc[t, i]`` at the clean point, with ``M = KL(P_cf || P)`` at the last position; features are
  patched in order of ``|a_i|`` (one ranking pooled over the pairs, as the paper's one feature
  set for the whole task). The clean point is the same activation ``x_clean`` for every basis
  (``decode(c) + e = x_clean``), so ``dM/dx`` is computed once (:func:`prepare`) and each basis
  only maps it through its decoder: ``dM/dc = (d decode / dc)^T dM/dx``.
* Curve: for each k, ``KL(P_cf || P_{S_k})`` at the last position per pair, and the edit size
  ``||X_clean - X_{S_k}||_F / ||X_clean - X_cf||_F`` (Frobenius norm over the positions and
  width of one prompt, relative to the full counterfactual edit).

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
    grad_kl: torch.Tensor | None = None  # [B, T, d] dKL(P_cf || P)/dx at x_clean


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
    """One basis's IOI curve: per k (``ks``; the last is all features), per pair."""

    basis: str
    n_features: int
    ks: list[int]
    kl: np.ndarray  # [K, P]
    edit: np.ndarray  # [K, P]
    attribution: np.ndarray  # [F] pooled a_i
    order: np.ndarray  # features by |a_i| descending
    info: dict = field(default_factory=dict)


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


def grad_at(sm: SubjectModel, hp: Hookpoint, g: Group, skip: int, metric) -> torch.Tensor:
    """``d metric(last log-probs) / dx`` at ``x_clean`` ``[B, T, d]`` (one backward pass)."""
    x = g.x_clean.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        metric(last_logprobs(sm, hp, g.clean, x, skip)).backward()
    assert x.grad is not None
    return x.grad.detach()


def decoder_grad(basis: Basis, c: torch.Tensor, grad_x: torch.Tensor) -> torch.Tensor:
    """``dM/dc = (d decode / dc)^T dM/dx`` at codes ``c [..., F]`` for ``grad_x [..., d]``."""
    cc = c.detach().reshape(-1, c.shape[-1]).requires_grad_(True)
    with torch.enable_grad():
        x = basis.decode(cc)
        (gc,) = torch.autograd.grad(x, cc, grad_outputs=grad_x.reshape(x.shape).to(x))
    return gc.reshape(c.shape)


@torch.no_grad()
def prepare(sm: SubjectModel, hp: Hookpoint, pairs: list[IOIPair]) -> IOIData:
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
        g.grad_kl = grad_at(
            sm, hp, g, skip or 0, lambda lp, g=g: kl_last(g.logp_cf.to(lp.device), lp).sum()
        )
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


def k_values(ks: list[int], n_features: int) -> list[int]:
    """The configured ks below the basis's feature count, then all features."""
    return sorted({k for k in ks if 0 < k < n_features}) + [n_features]


@torch.no_grad()
def patched_runs(
    sm: SubjectModel,
    hp: Hookpoint,
    data: IOIData,
    basis: Basis,
    sets: list[torch.Tensor],
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """KL(P_cf || P_S) and the relative edit size per feature set S and pair: two arrays
    ``[len(sets), P]``. A set is a bool mask ``[F]`` (one set for every pair) or ``[P, F]``
    (one per pair). All (set, pair) states of a group are stacked and run ``batch_size`` rows
    at a time; states that differ only on features whose delta is 0 are the same state and
    run once."""
    n_sets, n_pairs = len(sets), len(data.pairs)
    kl = np.zeros((n_sets, n_pairs))
    edit = np.zeros((n_sets, n_pairs))
    for g in data.groups:
        c, err, delta = _codes(basis, g)
        full = (g.x_cf - g.x_clean).flatten(1).norm(dim=1)
        support = delta.abs().amax(1) > 0  # [B, F]
        rows = torch.from_numpy(g.rows)
        masks_g = [(m if m.dim() == 1 else m[rows]).to(support.device) & support for m in sets]
        keys = [m.cpu().numpy().tobytes() for m in masks_g]
        uniq = list(dict.fromkeys(keys))
        masks = [masks_g[keys.index(k)] for k in uniq]
        n_u = len(masks)
        xs = torch.cat(
            [decode_with_error(basis, c + delta * m[:, None, :].to(c), err) for m in masks]
        )
        b = len(g.rows)
        ids = g.clean.repeat(n_u, 1)
        ref = g.logp_cf.repeat(n_u, 1)
        kls = []
        for s in range(0, len(xs), batch_size):
            lp = last_logprobs(sm, hp, ids[s : s + batch_size], xs[s : s + batch_size], data.skip)
            kls.append(kl_last(ref[s : s + batch_size].to(lp.device), lp))
        kl_u = torch.cat(kls).reshape(n_u, b).double().cpu().numpy()
        d = (xs - g.x_clean.repeat(n_u, 1, 1).to(xs.device)).flatten(1).norm(dim=1)
        rel_u = (d.reshape(n_u, b) / full.to(d.device)).double().cpu().numpy()
        pick = [uniq.index(k) for k in keys]
        kl[:, g.rows] = kl_u[pick]
        edit[:, g.rows] = rel_u[pick]
    return kl, edit


def ioi_curve(
    sm: SubjectModel,
    hp: Hookpoint,
    data: IOIData,
    basis: Basis,
    ks: list[int],
    batch_size: int = 64,
    ranking: str = "pooled",
) -> Curve:
    """The patching curve of ``basis`` (see the module docstring). ``ranking="per_pair"``
    ranks the features of each pair by its own ``|a[p, i]|`` instead of the pooled one."""
    a = attribution(sm, hp, data, basis)
    pooled = a.sum(0)
    order = np.argsort(-np.abs(pooled), kind="stable")
    kv = k_values(ks, basis.n_features)
    if ranking == "per_pair":
        orders = torch.from_numpy(np.argsort(-np.abs(a), axis=1, kind="stable").copy())
    sets = []
    for k in kv:
        if ranking == "per_pair":
            m = torch.zeros(a.shape, dtype=torch.bool)
            m.scatter_(1, orders[:, :k], True)
        else:
            m = torch.zeros(basis.n_features, dtype=torch.bool)
            m[torch.from_numpy(order[:k].copy())] = True
        sets.append(m)
    kl, edit = patched_runs(sm, hp, data, basis, sets, batch_size)
    info = {"ranking": ranking}
    return Curve(basis.name, basis.n_features, kv, kl, edit, pooled, order, info)

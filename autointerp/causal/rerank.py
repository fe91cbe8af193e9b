"""A bootstrap over IOI pairs that re-fits the feature ranking in every replicate
(``[causal.ioi] ranking_bootstrap = R``; docs/causal.md, "Confidence intervals").

Replicate ``r`` draws pairs with replacement and repeats the whole measurement on the draw:

* ``in_sample``: the draw is row ``r`` of the resample matrix every basis shares
  (:func:`autointerp.causal.summary.boot_idx`, so lifts stay paired); the order is fitted on
  ``sum_{p in draw} a[p, :]`` and every drawn pair is patched with its top-k;
* ``held_out``: half 0 and half 1 are drawn separately (``n_h`` draws within half ``h``, the
  split by template and names as in :mod:`autointerp.causal.ranking`); the pairs drawn from
  half ``h`` are patched in the order fitted on the other half's draw.

The replicate's curve is the mean over its drawn pairs (with repetition) at every grid k, and
its readings (:func:`autointerp.causal.summary.curve_readings`) are those of that curve with
the draw's own unpatched KL. Every grid point is evaluated: the first crossing of half the KL
is only found by a partial search when the curve is monotone, which a signed ranking does not
guarantee, and the AUC and the KL at the common edit need every point anyway.

A pair's patched state depends only on the features of the set whose delta is non-zero for
that pair, so the KL and both edits are memoised by (pair, that set) (:class:`StateMemo`):
across k, rankings and replicates each state runs once, the point-estimate curves seed the
memo, and all new states run together, ``batch_size`` rows at a time from the hookpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from autointerp.bases.base import Basis
from autointerp.causal.intervene import decode_with_error, kl_last
from autointerp.causal.ioi_forward import PatchedForward, by_start, first_edited
from autointerp.causal.patching import Curve, IOIData, _codes, attribution
from autointerp.causal.ranking import order_of
from autointerp.causal.summary import boot_idx, curve_readings
from autointerp.model import Hookpoint, SubjectModel

#: a replicate: per block, the drawn pairs (with repetition) and the order they are patched in
Blocks = list[tuple[np.ndarray, np.ndarray]]


class StateMemo:
    """KL(P_cf || P_S) and both edit sizes of one basis per (pair, effective set), where the
    effective set is the patched set restricted to the features whose delta is non-zero for
    that pair (two sets with the same restriction give the same state)."""

    def __init__(
        self, sm: SubjectModel, hp: Hookpoint, data: IOIData, basis: Basis, batch_size: int = 64
    ) -> None:
        self.sm, self.hp, self.data, self.basis, self.batch_size = sm, hp, data, basis, batch_size
        n_p, self.n_f = len(data.pairs), basis.n_features
        self.codes = []
        self.support = np.zeros((n_p, self.n_f), dtype=bool)
        self.where = np.zeros((n_p, 2), dtype=np.int64)  # (group, row in group)
        with torch.no_grad():
            for gi, g in enumerate(data.groups):
                c, err, delta = _codes(basis, g)
                self.codes.append((c, err, delta))
                self.support[g.rows] = (delta.abs().amax(1) > 0).cpu().numpy()
                self.where[g.rows, 0] = gi
                self.where[g.rows, 1] = np.arange(len(g.rows))
        self.index: dict[tuple[int, bytes], int] = {}
        self.pair: list[int] = []
        self.packed: list[np.ndarray] = []
        self.vals = np.zeros((0, 3))  # kl, relative edit, paper's edit (NaN: not run yet)
        self.n_run = 0
        self.fwd = PatchedForward(sm, hp, data.skip)

    def request(self, rows: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """State ids ``[K, len(rows)]`` of the sets ``masks [K, F]`` on pairs ``rows``
        (registered, run by :meth:`run`)."""
        eff = masks[:, None, :] & self.support[rows][None]
        packed = np.packbits(eff, axis=-1)
        out = np.empty(eff.shape[:2], dtype=np.int64)
        for k in range(len(masks)):
            for j, p in enumerate(rows.tolist()):
                key = (p, packed[k, j].tobytes())
                i = self.index.get(key)
                if i is None:
                    i = self.index[key] = len(self.pair)
                    self.pair.append(p)
                    self.packed.append(packed[k, j])
                out[k, j] = i
        if len(self.pair) > len(self.vals):  # grow geometrically (rows past the last id unused)
            more = max(len(self.pair) - len(self.vals), len(self.vals))
            self.vals = np.concatenate([self.vals, np.full((more, 3), np.nan)])
        return out

    def put(self, ids: np.ndarray, kl: np.ndarray, edit: np.ndarray, edit_abs: np.ndarray) -> None:
        """Known values for states ``ids`` (e.g. the point-estimate curve's); a state that
        already has values keeps them (the first curve to give a state wins)."""
        new = np.isnan(self.vals[ids, 0])
        self.vals[ids[new]] = np.stack([kl, edit, edit_abs], -1)[new]

    @torch.no_grad()
    def run(self) -> int:
        """Run every requested state without values, batched per prompt group; returns how
        many ran."""
        todo = np.nonzero(np.isnan(self.vals[: len(self.pair), 0]))[0]
        pair = np.asarray(self.pair, dtype=np.int64)
        for gi, g in enumerate(self.data.groups):
            ids = todo[self.where[pair[todo], 0] == gi]
            ids = ids[by_start(g, self.where[pair[ids], 1])]  # batches share a first column
            c, err, delta = self.codes[gi]
            dev = c.device
            full = (g.x_cf - g.x_clean).flatten(1).norm(dim=1).to(dev)
            n_pos = g.patch.sum(1).to(dev)
            for s in range(0, len(ids), self.batch_size):
                chunk = ids[s : s + self.batch_size]
                r_np = self.where[pair[chunk], 1]
                ri, rc = torch.from_numpy(r_np).to(dev), torch.from_numpy(r_np)
                bits = np.unpackbits(np.stack([self.packed[i] for i in chunk]), -1, self.n_f)
                m = torch.from_numpy(bits.astype(bool)).to(dev)
                codes = c[ri] + delta[ri] * m[:, None, :].to(c)
                xs = decode_with_error(self.basis, codes, err[ri])
                lp = self.fwd.logprobs(gi, g, rc, xs, first_edited(delta[ri], m))
                kl = kl_last(g.logp_cf[rc].to(lp.device), lp).double().cpu()
                dx = xs - g.x_clean[rc].to(xs.device)
                rel = (dx.flatten(1).norm(dim=1) / full[ri]).double().cpu()
                ab = (dx.norm(dim=-1).sum(1) / n_pos[ri]).double().cpu()
                self.vals[chunk] = torch.stack([kl, rel, ab], -1).numpy()
        self.n_run += len(todo)
        return len(todo)


def rank_masks(order: np.ndarray, ks: list[int]) -> np.ndarray:
    """``[K, F]``: the first ``k`` features of ``order`` for each k."""
    pos = np.empty(len(order), dtype=np.int64)
    pos[order] = np.arange(len(order))
    return pos[None, :] < np.asarray(ks)[:, None]


def draws(halves: np.ndarray, ranking: str, n_rep: int, seed: int) -> list[list[np.ndarray]]:
    """Per replicate, the drawn pairs per block: ``in_sample`` one block (the first ``n_rep``
    rows of :func:`boot_idx`), ``held_out`` two (half 0, half 1, drawn separately)."""
    n = len(halves)
    if ranking == "in_sample":
        return [[row] for row in boot_idx(n, seed)[:n_rep]]
    rng = np.random.default_rng([seed, 1])
    members = [np.nonzero(halves == h)[0] for h in (0, 1)]
    return [[rng.choice(m, size=len(m)) for m in members] for _ in range(n_rep)]


def fitted_blocks(
    a: np.ndarray, halves: np.ndarray, ranking: str, drawn: list[np.ndarray], signed: bool,
    refit: bool = True,
) -> Blocks:  # fmt: skip
    """The replicate's blocks with their orders: fitted on the draw (``refit``), or the
    point estimate's orders, fitted once on all pairs (``refit=False``: the fixed ranking)."""
    if ranking == "in_sample":
        fit = drawn[0] if refit else np.arange(len(a))
        return [(drawn[0], order_of(a[fit].sum(0), signed))]
    out = []
    for h in (0, 1):
        other = drawn[1 - h] if refit else np.nonzero(halves != h)[0]
        out.append((drawn[h], order_of(a[other].sum(0), signed)))
    return out


@dataclass
class Reranked:
    """One ranking's replicates: the matched readings ``[R, 5]`` (the order of
    :func:`autointerp.causal.summary.curve_readings`) and the mean KL per grid k ``[R, K]``."""

    readings: np.ndarray
    kl: np.ndarray


def replicate(memo: StateMemo, ks: list[int], blocks: Blocks) -> np.ndarray:
    """Request the replicate's states; returns the state ids ``[K, n]`` of its drawn pairs
    (blocks concatenated, repetitions kept)."""
    cols = []
    for drawn, order in blocks:
        rows, inv = np.unique(drawn, return_inverse=True)
        cols.append(memo.request(rows, rank_masks(order, ks))[:, inv])
    return np.concatenate(cols, 1)


def seed_memo(
    memo: StateMemo, a: np.ndarray, halves: np.ndarray, curves: dict[str, Curve], signed: bool
) -> None:
    """Put the point-estimate curves' states in the memo (their rankings fitted on all
    pairs: the replicate with every pair drawn once)."""
    everyone = np.arange(len(a))
    for r in ("in_sample", "held_out"):
        c = curves.get(r)
        if c is None:
            continue
        every = [everyone[halves == h] for h in (0, 1)] if r == "held_out" else [everyone]
        for drawn, order in fitted_blocks(a, halves, r, every, signed, refit=False):
            ids = memo.request(drawn, rank_masks(order, c.ks))
            memo.put(ids, c.kl[:, drawn], c.edit[:, drawn], _abs(c)[:, drawn])


def _abs(c: Curve) -> np.ndarray:
    return c.edit_abs if c.edit_abs is not None else c.edit


def bootstrap(
    memo: StateMemo, a: np.ndarray, ks: list[int], rankings: tuple[str, ...], n_rep: int,
    seed: int, signed: bool = True, refit: bool = True,
) -> dict[str, Reranked]:  # fmt: skip
    """``n_rep`` replicates of each of ``rankings`` (module docstring), their new states run
    together; ``refit=False`` keeps the point estimate's orders on the same draws (the
    fixed-ranking bootstrap, for comparison)."""
    halves = np.array([p.half for p in memo.data.pairs])
    reps = {
        r: [
            (np.concatenate(d), replicate(memo, ks, fitted_blocks(a, halves, r, d, signed, refit)))
            for d in draws(halves, r, n_rep, seed)
        ]
        for r in rankings
    }
    memo.run()
    kl0 = memo.data.kl_clean
    out = {}
    for r, got in reps.items():
        rd, kls = [], []
        for drawn, ids in got:
            v = memo.vals[ids]  # [K, n, 3]
            kl, er, ea = v[..., 0].mean(1), v[..., 1].mean(1), v[..., 2].mean(1)
            rd.append(curve_readings(ks, kl, ea, er, float(kl0[drawn].mean())))
            kls.append(kl)
        out[r] = Reranked(np.array(rd).reshape(-1, 5), np.array(kls).reshape(-1, len(ks)))
    return out


def ranking_bootstrap(
    sm: SubjectModel, hp: Hookpoint, data: IOIData, basis: Basis, curves: dict[str, Curve],
    n_rep: int, seed: int, signed: bool = True, batch_size: int = 64,
) -> tuple[dict[str, Reranked], int]:  # fmt: skip
    """The re-ranked replicates of the ``in_sample`` and ``held_out`` curves of ``basis``
    (one grid for both) and the number of new patched states run for them."""
    a = attribution(sm, hp, data, basis)
    halves = np.array([p.half for p in data.pairs])
    memo = StateMemo(sm, hp, data, basis, batch_size)
    seed_memo(memo, a, halves, curves, signed)
    rankings = tuple(r for r in ("in_sample", "held_out") if r in curves)
    ks = curves[rankings[0]].ks
    return bootstrap(memo, a, ks, rankings, n_rep, seed, signed), memo.n_run

"""The paper's greedy backward elimination (Cunningham et al. 2023), opt-in
(``causal.ioi.greedy``): an exact search for a small feature set instead of the attribution
ranking.

Candidates: the ``greedy_candidates`` features of largest pooled ``|a_i|`` among those whose
delta is not zero (all patched at the start). For each threshold of
``logspace(-5, 0, greedy_thresholds)`` (ascending), visit the remaining candidates in a seeded
random order and un-patch one when the mean KL over pairs rises by less than the threshold;
after each threshold record a point (set size, KL and edit per pair). One batched run over all
pairs per decision.
"""

from __future__ import annotations

import numpy as np
import torch

from autointerp.bases.base import Basis
from autointerp.causal.patching import Curve, IOIData, attribution, patched_runs
from autointerp.model import Hookpoint, SubjectModel


def greedy_curve(
    sm: SubjectModel, hp: Hookpoint, data: IOIData, basis: Basis, cfg, seed: int
) -> Curve:
    a = attribution(sm, hp, data, basis)
    pooled = a.sum(0)
    order = np.argsort(-np.abs(pooled), kind="stable")
    moved = np.abs(a).sum(0) > 0
    cand = [int(i) for i in order if moved[i]][: cfg.greedy_candidates]
    n_f = basis.n_features

    def run(feats: list[int]) -> tuple[np.ndarray, np.ndarray]:
        m = torch.zeros(n_f, dtype=torch.bool)
        m[feats] = True
        kl, edit = patched_runs(sm, hp, data, basis, [m], cfg.batch_size)
        return kl[0], edit[0]

    rng = np.random.default_rng(seed)
    cur = list(cand)
    kl_cur, edit_cur = run(cur)
    points: dict[int, tuple[np.ndarray, np.ndarray]] = {len(cur): (kl_cur, edit_cur)}
    sets = {len(cur): sorted(cur)}
    n_runs = 1
    for thr in np.logspace(-5, 0, cfg.greedy_thresholds):
        for f in rng.permutation(cur).tolist():
            trial = [x for x in cur if x != f]
            kl_t, edit_t = run(trial)
            n_runs += 1
            if kl_t.mean() - kl_cur.mean() < thr:
                cur, kl_cur, edit_cur = trial, kl_t, edit_t
        points[len(cur)] = (kl_cur, edit_cur)
        sets[len(cur)] = sorted(cur)
    kl_all, edit_all = run(list(range(n_f)))
    sizes = sorted(s for s in points if s < n_f)
    ks = [*sizes, n_f]
    kl = np.stack([points[s][0] for s in sizes] + [kl_all])
    edit = np.stack([points[s][1] for s in sizes] + [edit_all])
    info = {
        "mode": "greedy",
        "candidates": len(cand),
        "runs": n_runs + 1,
        "sets": {str(k): v for k, v in sorted(sets.items()) if k < n_f},
    }
    return Curve(basis.name, n_f, ks, kl, edit, pooled, order, info)

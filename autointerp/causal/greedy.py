"""The paper's greedy backward elimination (Cunningham et al. 2023), opt-in
(``causal.ioi.greedy``): a search for a small feature set instead of a ranking.

Start from every feature whose delta is not zero on some pair (all patched). For each
threshold of ``logspace(-5, 0, greedy_thresholds)`` in ascending order, continuing from the
previous threshold's set, visit the remaining features in a seeded random order and un-patch
one when the mean KL over pairs rises by less than the threshold. After each threshold record a
point (set size, KL and edits per pair).

Batched but exact: the next ``m`` visits are run together against the current set (one
batched pass over pairs x trials); the first accepted one is taken, those before it are
rejections made against the same set, and the visits after it are run again from the new set.
``m`` doubles after a batch without acceptance and shrinks to twice the accepted position.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from autointerp.bases.base import Basis
from autointerp.causal.patching import Curve, IOIData, _codes, attribution, patched_runs
from autointerp.model import Hookpoint, SubjectModel

MAX_BATCH = 64


def moved_features(basis: Basis, data: IOIData) -> np.ndarray:
    """Features whose delta is not zero at some patched position of some pair."""
    out = np.zeros(basis.n_features, dtype=bool)
    with torch.no_grad():
        for g in data.groups:
            _c, _e, delta = _codes(basis, g)
            out |= (delta.abs().amax((0, 1)) > 0).cpu().numpy()
    return out


def greedy_curve(
    sm: SubjectModel, hp: Hookpoint, data: IOIData, basis: Basis, cfg, seed: int
) -> Curve:
    t0 = time.perf_counter()
    n_f = basis.n_features
    cur = moved_features(basis, data)
    n_start = int(cur.sum())

    def run(masks: list[np.ndarray]):
        return patched_runs(
            sm, hp, data, basis, [torch.from_numpy(m) for m in masks], cfg.batch_size
        )

    r = run([cur])
    state = (r.kl[0], r.edit[0], r.edit_abs[0])
    points = {n_start: state}
    sets = {}
    rng = np.random.default_rng(seed)
    n_runs, m = 1, 1
    for thr in np.logspace(-5, 0, cfg.greedy_thresholds):
        queue = rng.permutation(np.nonzero(cur)[0]).tolist()
        i = 0
        while i < len(queue):
            batch = queue[i : i + m]
            trials = []
            for f in batch:
                t = cur.copy()
                t[f] = False
                trials.append(t)
            r = run([cur, *trials])
            n_runs += len(batch)
            base = r.kl[0].mean()
            ok = [j for j in range(len(batch)) if r.kl[1 + j].mean() - base < thr]
            if ok:
                j = ok[0]
                cur = trials[j]
                state = (r.kl[1 + j], r.edit[1 + j], r.edit_abs[1 + j])
                i += j + 1
                m = max(1, min(MAX_BATCH, 2 * (j + 1)))
            else:
                i += len(batch)
                m = min(MAX_BATCH, 2 * m)
        size = int(cur.sum())
        points[size] = state
        sets[size] = np.nonzero(cur)[0].tolist()
    r_all = run([np.ones(n_f, dtype=bool)])
    points[n_f] = (r_all.kl[0], r_all.edit[0], r_all.edit_abs[0])
    ks = sorted(points)
    pooled = attribution(sm, hp, data, basis).sum(0)
    info = {
        "mode": "greedy",
        "start": n_start,
        "thresholds": int(cfg.greedy_thresholds),
        "trials": n_runs,
        "seconds": round(time.perf_counter() - t0, 2),
        "sets": {str(k): v for k, v in sorted(sets.items())},
    }
    return Curve(
        basis.name, n_f, ks, np.stack([points[k][0] for k in ks]),
        np.stack([points[k][1] for k in ks]), pooled, np.argsort(pooled, kind="stable"), info,
        np.stack([points[k][2] for k in ks]),
    )  # fmt: skip

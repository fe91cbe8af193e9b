"""The two histograms of a Neuronpedia feature page (docs/publishing.md).

Both follow Neuronpedia's dashboards: ``HIST_BINS`` equal-width bars spanning the data's
minimum to its maximum (the last bar includes the maximum), ``bar_values`` the bar centres.

* activations (``freq_hist_data_bar_*``): the feature's non-zero activations over the corpus.
  The run does not keep them all; :func:`activation_histogram` estimates them from the
  record's windows (every non-zero activation lies in a firing window):
  the top windows are the ``n_top`` strongest firing windows, each counted once; the quantile
  windows are drawn round-robin from ``n_quantiles`` equal-count activation bins of a uniform
  sample of the other firing windows, so a window of bin ``q`` stands for ``c / n_q`` windows,
  ``n_q`` the windows drawn from bin ``q`` and ``c`` the windows per bin, fixed by the firing
  count the density gives: ``top + c · Σ_q nz_q / n_q = density · n_tokens``, ``nz_q`` the
  non-zero tokens of bin ``q``'s windows, ``top`` those of the top windows. Equal-count bins
  differ by at most one window, so ``c ≥ max_q n_q − 1``, and a window stands at least for
  itself: its weight is ``max(c, n_q) / n_q``. The heights are these weighted counts, an
  estimate of how many corpus tokens fall in each bar (their sum is ``density · n_tokens``
  unless a floor applied).
* logits (``logits_hist_data_bar_*``): the feature's logit-lens row over the full vocabulary,
  one count per token (:mod:`autointerp.export.lens`); the heights sum to the vocabulary size.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from autointerp.types import FeatureRecord

#: bars per histogram (Neuronpedia's dashboards use 40 for both)
HIST_BINS = 40


def histogram(
    values: Sequence[float] | np.ndarray,
    weights: Sequence[float] | np.ndarray | None = None,
    bins: int = HIST_BINS,
) -> tuple[list[float], list[float]]:
    """(bar heights, bar centres): ``bins`` equal-width bars from ``min(values)`` to
    ``max(values)``, the last closed; one bar when every value is equal; empty for no data."""
    v = np.asarray(values, dtype=np.float64)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    if not len(v):
        return [], []
    lo, hi = float(v.min()), float(v.max())
    if lo == hi:
        return [float(w.sum()) if w is not None else float(len(v))], [lo]
    heights, edges = np.histogram(v, bins=bins, range=(lo, hi), weights=w)
    centres = (edges[:-1] + edges[1:]) / 2
    return heights.astype(float).tolist(), [round(float(c), 5) for c in centres]


def activation_histogram(
    rec: FeatureRecord, n_tokens: int | None
) -> tuple[list[float], list[float]]:
    """The estimated histogram of ``rec``'s non-zero activations over the corpus (module
    docstring); ``n_tokens`` the corpus's scored tokens (None: unknown; ``c`` is then its floor,
    and the heights are sample-sized)."""
    top = [a for e in rec.explain + rec.test_top if e.kind == "top" for a in e.acts if a > 0]
    quant = [e for e in rec.explain + rec.test_quantile if e.kind == "quantile"]
    n_q = Counter(e.quantile for e in quant)
    nz = [[a for a in e.acts if a > 0] for e in quant]
    s = sum(len(z) / n_q[e.quantile] for e, z in zip(quant, nz))
    c = max(n_q.values()) - 1.0 if n_q else 0.0
    if n_tokens and s > 0:
        c = max(c, (float(rec.density) * n_tokens - len(top)) / s)
    vals = list(top) + [a for z in nz for a in z]
    wts = [1.0] * len(top) + [
        max(c, n_q[e.quantile]) / n_q[e.quantile] for e, z in zip(quant, nz) for _ in z
    ]
    heights, centres = histogram(vals, wts)
    return [round(h, 2) for h in heights], centres


def logit_histogram(logits: Sequence[float] | np.ndarray) -> tuple[list[int], list[float]]:
    """(bar heights, bar centres) of one logit-lens row: one count per vocabulary token."""
    heights, centres = histogram(logits)
    return [int(round(h)) for h in heights], centres

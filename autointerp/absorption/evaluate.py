"""The absorption eval of one basis on a hookpoint's :class:`GroundTruth`: k-sparse probing on
its codes, absorption per probe-positive test word, rates per letter, means over letters
(SAEBench's names), and for the feature browser the words each main latent misses.

Any basis works: its codes are ``encode(x)`` and latent i's decoder direction is
``decode(e_i) − decode(0)``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import numpy as np
import torch

from autointerp.absorption.config import AbsorptionConfig
from autointerp.absorption.fractions import (
    EPS,
    LetterAbsorption,
    WordAbsorption,
    cosines,
    letter_absorption,
    words_absorption,
)
from autointerp.absorption.groundtruth import GroundTruth
from autointerp.absorption.sparse import LetterSparse, k_sparse_probing
from autointerp.absorption.vocab import LETTERS

#: SAEBench's summary names, in order
METRICS = ("mean_absorption_fraction_score", "mean_full_absorption_score",
           "mean_num_split_features")  # fmt: skip
#: their spreads over letters (sample standard deviations), SAEBench's names
STD_NAMES = ("std_dev_absorption_fraction_score", "std_dev_full_absorption_score",
             "std_dev_num_split_features")  # fmt: skip
#: missed words kept per main latent for the browser
BROWSER_WORDS = 20


@dataclass
class BasisAbsorption:
    """One basis's result; ``reason`` set when the eval is undefined."""

    letters: list[LetterAbsorption] = field(default_factory=list)
    sparse: dict[str, dict] = field(default_factory=dict)
    latents: dict[str, dict] = field(default_factory=dict)  # main latent -> letter, misses
    reason: str | None = None

    def values(self, metric: str) -> list[float]:
        attr = {"mean_absorption_fraction_score": "mean_absorption_fraction",
                "mean_full_absorption_score": "full_absorption_rate",
                "mean_num_split_features": "num_split_features"}[metric]  # fmt: skip
        return [float(getattr(a, attr)) for a in self.letters]

    def summary(self) -> dict[str, float | None]:
        """SAEBench's ``eval_result_metrics.mean`` (means and sample standard deviations)."""
        out: dict[str, float | None] = {}
        for m, std in zip(METRICS, STD_NAMES):
            v = self.values(m) if self.reason is None else []
            out[m] = statistics.mean(v) if v else None
            out[std] = statistics.stdev(v) if len(v) > 1 else None
        return out

    def to_dict(self) -> dict:
        return {
            "reason": self.reason,
            "summary": self.summary(),
            "letters": [a.to_dict() for a in self.letters],
            "k_sparse": self.sparse,
            "latents": self.latents,
        }


@torch.no_grad()
def encode_all(basis, x: np.ndarray, batch: int = 4096) -> torch.Tensor:
    dev = basis.device
    parts = [basis.encode(torch.from_numpy(x[s : s + batch]).to(dev)).float().cpu()
             for s in range(0, len(x), batch)]  # fmt: skip
    return torch.cat(parts) if parts else torch.zeros(0, basis.n_features)


@torch.no_grad()
def decoder_directions(basis, batch: int = 1024) -> torch.Tensor:
    """``[F, d]``: ``decode(e_i) − decode(0)`` for every latent."""
    dev, n = basis.device, basis.n_features
    zero = basis.decode(torch.zeros(1, n, device=dev))
    out = []
    for s in range(0, n, batch):
        e = torch.zeros(min(batch, n - s), n, device=dev)
        e[torch.arange(len(e)), torch.arange(s, s + len(e))] = 1.0
        out.append((basis.decode(e) - zero).float().cpu())
    return torch.cat(out)


def too_few_letters(gt: GroundTruth, cfg: AbsorptionConfig) -> str | None:
    """Why the eval is undefined for this hookpoint (every basis), or None."""
    kept = gt.kept_letters(cfg.min_probe_f1)
    if len(kept) >= cfg.min_letters:
        return None
    return (
        f"only {len(kept)} letters have a ground-truth probe test F1 > {cfg.min_probe_f1} "
        f"(SAEBench needs {cfg.min_letters}): the model does not represent enough first letters "
        f"linearly at this hookpoint ({len(gt.train_words) + len(gt.test_words)} words)"
    )


def evaluate_basis(basis, gt: GroundTruth, cfg: AbsorptionConfig, seed: int) -> BasisAbsorption:
    """The absorption eval of ``basis`` (module docstring)."""
    why = too_few_letters(gt, cfg)
    if why is not None:
        return BasisAbsorption(reason=why)
    kept = gt.kept_letters(cfg.min_probe_f1)
    tr = encode_all(basis, gt.train_acts).to(basis.device)
    te = encode_all(basis, gt.test_acts).numpy()
    ab = encode_all(basis, gt.abs_acts)
    sparse = k_sparse_probing(tr, gt.train_labels, te, gt.test_labels, kept, cfg, seed)
    dirs = decoder_directions(basis)
    out = BasisAbsorption()
    abs_letters = gt.test_labels[gt.abs_idx]
    for c in kept:
        sp: LetterSparse | None = sparse.get(c)
        rows = np.flatnonzero(abs_letters == c)
        if sp is None or not len(rows):
            continue
        u = gt.probe.unit_direction(c)
        cos = cosines(dirs, u)
        names = [str(gt.test_words[gt.abs_idx[r]]) for r in rows]
        words = words_absorption(names, gt.abs_acts[rows], ab[rows], cos, u, sp.main)
        out.letters.append(letter_absorption(LETTERS[c], words, len(sp.main)))
        out.sparse[LETTERS[c]] = sp.to_dict()
        _add_misses(out.latents, LETTERS[c], sp.main, words, ab[rows], cos)
    return out


def _add_misses(latents: dict, letter: str, main: list[int], words: list[WordAbsorption],
                codes: torch.Tensor, cos: torch.Tensor) -> None:  # fmt: skip
    """Per main latent: its letter, and the words where it stays off while absorption is
    found (with the absorbing latents)."""
    for j in main:
        miss = []
        for w, c in zip(words, codes):
            if float(c[j]) < EPS and (w.fraction > 0 or w.full):
                by = w.absorbers or ([w.top[0]] if w.full else [])
                miss.append({"word": w.word, "fraction": round(w.fraction, 4), "full": w.full,
                             "absorbers": by,
                             "absorber_cos": [round(float(cos[i]), 4) for i in by]})  # fmt: skip
        latents[str(j)] = {
            "letter": letter,
            "cos": round(float(cos[j]), 4),
            "n_missed": len(miss),
            "missed": miss[:BROWSER_WORDS],
        }

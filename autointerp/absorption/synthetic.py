"""A synthetic first-letter world with a planted answer (the known-answer test and the parity
benchmark use it): 26 letters on the first 26 axes, words of a letter at ``ALPHA`` along its
axis plus noise on 4 axes no probe reads. The ground-truth probe is the letter axes themselves.

The dictionary has one latent per letter and one per *absorbed* test word of "s" (the first
``full + partial`` of them), whose decoder direction is that word's own activation direction
(``ALPHA`` along s, ``DELTA`` along an axis of its own), normalised. With ``absorb``, the s
latent is pushed down on those words — to 0 on the first ``full``, to ``beta`` of its code on
the next ``partial`` — and the word's latent carries exactly the projection the s latent lost:
the planted absorption fraction of a word is 1 (full absorption) or ``1 − beta``, 0 elsewhere.
Without ``absorb`` the word latents lie off the s direction and nothing absorbs.

``n_dead`` latents never fire (random decoder directions): as in a real dictionary, the L1
probe's random initial weights (uniform within ``1/sqrt(n_latents)``) are then small next to
what its few steps learn — with a handful of latents its init would decide the ranking.
"""

from __future__ import annotations

import numpy as np
import torch

from autointerp.absorption.groundtruth import GroundTruth
from autointerp.absorption.vocab import LETTERS
from autointerp.bases.base import Basis

ALPHA, DELTA = 4.0, 3.0
S = LETTERS.index("s")


class LinearReLU(Basis):
    """``codes = relu(x @ E + c)``, ``x_hat = codes @ D + bias``."""

    def __init__(self, E: torch.Tensor, c: torch.Tensor, D: torch.Tensor, name: str) -> None:
        super().__init__(name, "sae")
        self.register_buffer("E", E.float())
        self.register_buffer("c", c.float())
        self.register_buffer("D", D.float())
        self.register_buffer("bias", torch.zeros(D.shape[1]))

    @property
    def d_in(self) -> int:
        return int(self.E.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.E.shape[1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x.float() @ self.E + self.c)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return codes @ self.D + self.bias


def planted_world(
    absorb: bool, *, n_train: int = 24, n_test: int = 40, full: int = 8, partial: int = 8,
    beta: float = 0.25, n_dead: int = 2000, seed: int = 0,
) -> tuple[GroundTruth, LinearReLU]:  # fmt: skip
    """``(ground truth, dictionary)``; see the module docstring. The planted mean absorption
    fraction of "s" is ``(full + partial (1 − beta)) / n_test`` and its full-absorption rate
    ``full / n_test`` (0 for every other letter, and everywhere without ``absorb``)."""
    n_abs = full + partial
    d = 26 + n_abs + 4
    eye = torch.eye(d)
    rng = np.random.default_rng(seed)

    def acts(n: int, absorbed: int) -> np.ndarray:
        x = np.zeros((26 * n, d), dtype=np.float32)
        for c in range(26):
            x[c * n : (c + 1) * n, c] = ALPHA
        x[:, d - 4 :] = rng.normal(0, 0.3, (26 * n, 4))
        for k in range(absorbed):
            x[S * n + k, 26 + k] = DELTA
        return x

    x_tr, x_te = acts(n_train, 0), acts(n_test, n_abs)
    norm = float(np.hypot(ALPHA, DELTA))
    cos = ALPHA / norm
    F = 26 + n_abs + n_dead
    E, D = torch.zeros(d, F), torch.zeros(F, d)
    dead = torch.from_numpy(rng.normal(size=(n_dead, d))).float()
    D[26 + n_abs :] = dead / dead.norm(dim=1, keepdim=True)
    for c in range(26):
        E[c, c], D[c] = 1.0, eye[c]
    for k in range(n_abs):
        j = 26 + k
        if absorb:
            kept = 0.0 if k < full else beta
            D[j] = (ALPHA * eye[S] + DELTA * eye[j]) / norm
            E[j, S] = -(1 - kept) * ALPHA / DELTA  # the s latent loses (1 - kept) ALPHA
            E[j, j] = (1 - kept) * ALPHA / (DELTA * cos)  # projection of latent j: that loss
        else:
            D[j], E[j, j] = eye[j], 1.0
    ytr, yte = np.repeat(np.arange(26), n_train), np.repeat(np.arange(26), n_test)

    def words(n: int, tag: str) -> np.ndarray:
        return np.array([f"{LETTERS[c]}{tag}{i}" for c in range(26) for i in range(n)])

    gt = GroundTruth(
        words(n_train, "a"), ytr, x_tr, words(n_test, "e"), yte, x_te,
        np.eye(26, d, dtype=np.float32), np.full(26, -ALPHA / 2, dtype=np.float32),
        np.ones(26), np.arange(len(yte)), x_te.copy(), np.array([-6]), 26 * (n_train + n_test),
    )  # fmt: skip
    name = "planted" if absorb else "clean"
    return gt, LinearReLU(E, torch.zeros(F), D, name)

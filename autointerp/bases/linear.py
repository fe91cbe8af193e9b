"""Linear baselines behind the basis protocol: PCA, ICA, neurons, random directions.

Each is a set of signed directions ``z = (x - mu) @ E`` (E: [d_in, m]) with a linear decoder
``x_hat = z @ D + mu`` (D: [m, d_in]). Codes split each signed direction into a positive and a
negative feature, ``codes = [relu(z), relu(-z)]`` (2m non-negative features; feature ``j < m`` is
direction ``j`` positive, ``j >= m`` direction ``j - m`` negative), then keep the ``k`` largest
per token (top-k sparsification to a chosen L0, so baselines are compared at the SAE's sparsity).
``k = None`` keeps all codes (exact reconstruction for PCA/ICA/neurons).

The random-directions null (``RandomDirections``) is different: ``n_features`` random directions
with per-feature thresholds chosen so each feature's firing density matches a target density
(feature by feature in sorted order); codes are ``relu((x - mu) @ r - t)``. ``space="raw"`` draws
unit directions in activation space, where one principal component can hold most of the variance
and every random projection is then mostly that component (the null collapses onto one
feature); ``space="whitened"`` (default) draws them isotropically in the whitened space,
``r = Σ^{-1/2} u`` with ``u`` a random unit vector, so every principal direction contributes
equally, and decodes along ``Σ^{1/2} u`` (``docs/nulls.md``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from autointerp.bases.base import Basis
from autointerp.errors import AutointerpError


def topk_sparsify(codes: torch.Tensor, k: int | None) -> torch.Tensor:
    """Keep the ``k`` largest entries per row (others zeroed)."""
    if k is None or k >= codes.shape[-1]:
        return codes
    vals, idx = codes.topk(k, dim=-1)
    return torch.zeros_like(codes).scatter_(-1, idx, vals)


class SignedLinearBasis(Basis):
    """Signed linear directions split into +/- features, top-k per token."""

    def __init__(
        self,
        name: str,
        kind: str,
        encoder: torch.Tensor,
        decoder: torch.Tensor,
        mean: torch.Tensor,
        k: int | None,
        info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(name, kind, info)
        self.register_buffer("E", encoder.float().contiguous())
        self.register_buffer("D", decoder.float().contiguous())
        self.register_buffer("mu", mean.float().contiguous())
        self.k = k
        self.info.update({"k": k, "n_directions": int(encoder.shape[1])})

    @property
    def d_in(self) -> int:
        return int(self.E.shape[0])

    @property
    def n_features(self) -> int:
        return 2 * int(self.E.shape[1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        z = (x.float() - self.mu) @ self.E
        codes = torch.cat([z.clamp(min=0), (-z).clamp(min=0)], dim=-1)
        return topk_sparsify(codes, self.k)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        m = self.E.shape[1]
        z = codes[..., :m] - codes[..., m:]
        return z @ self.D + self.mu

    def state(self) -> dict[str, torch.Tensor]:
        return {"E": self.E, "D": self.D, "mu": self.mu}


def fit_pca(
    x: torch.Tensor, *, k: int | None, name: str = "pca", overwrite: bool = False
) -> SignedLinearBasis:
    """PCA on ``x`` (centred); all ``d`` components, orthonormal so D = E^T. ``overwrite``:
    a float64 ``x`` is centred in place instead of copied (the caller's copy is spent)."""
    inplace = overwrite and x.dtype == torch.float64
    # one float64 copy (or x itself), centred in place: the same numbers as ``x - mu``
    xc = x if inplace else x.to(torch.float64, copy=True)
    mu = xc.mean(0)
    xc -= mu
    cov = xc.T @ xc / max(1, len(xc) - 1)
    del xc
    evals, evecs = torch.linalg.eigh(cov)
    order = evals.argsort(descending=True)
    W = evecs[:, order]  # [d, d], columns = components
    info = {"explained_variance_ratio_top10": (evals[order][:10] / evals.sum()).tolist()}
    return SignedLinearBasis(name, "pca", W, W.T, mu, k, info)


def fit_ica(
    x: torch.Tensor, *, k: int | None, name: str = "ica", seed: int = 0, max_iter: int = 100
) -> SignedLinearBasis:
    """sklearn FastICA after standard scaling (as in Cunningham et al.'s ``ica_topk``).

    Encoder maps raw x to the sources: ``s = ((x - mu)/sigma - m_) @ U^T``; decoder is the
    mixing matrix, ``x = (s @ A^T + m_) * sigma + mu``, folded into one affine map.
    """
    import warnings

    from sklearn.decomposition import FastICA
    from sklearn.exceptions import ConvergenceWarning

    xn = x.double().numpy()
    mu = xn.mean(0)
    sigma = xn.std(0) + 1e-8
    xs = ((xn - mu) / sigma).astype(np.float32)  # FastICA keeps float32: half the time
    from threadpoolctl import threadpool_limits

    ica = FastICA(whiten="unit-variance", random_state=seed, max_iter=max_iter, tol=1e-3)
    # One BLAS thread: FastICA's many small products slow down >10x when BLAS threads
    # compete with other busy processes on a small machine.
    with warnings.catch_warnings(record=True) as caught, threadpool_limits(1):
        warnings.simplefilter("always", ConvergenceWarning)
        ica.fit(xs)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    U = ica.components_.astype(np.float64)  # [m, d]: s = (xs - ica.mean_) @ U.T
    A = ica.mixing_.astype(np.float64)  # [d, m]: xs = s @ A.T + ica.mean_
    # Fold scaling: s = (x - mu_eff) @ E with E = diag(1/sigma) @ U.T, mu_eff = mu + sigma*mean_
    E = U.T / sigma[:, None]
    D = A.T * sigma[None, :]
    mu_eff = mu + sigma * ica.mean_.astype(np.float64)
    info = {"converged": converged, "n_iter": int(ica.n_iter_)}
    return SignedLinearBasis(
        name, "ica", torch.from_numpy(E), torch.from_numpy(D), torch.from_numpy(mu_eff), k, info
    )


def neuron_basis(d: int, *, k: int | None, name: str = "neurons") -> SignedLinearBasis:
    """The model's own coordinates: identity directions, not centred (raw neuron values)."""
    eye = torch.eye(d)
    return SignedLinearBasis(name, "neurons", eye, eye, torch.zeros(d), k, {"centred": False})


class RandomDirections(Basis):
    """Null basis: random unit directions thresholded to match target firing densities."""

    def __init__(
        self,
        name: str,
        directions: torch.Tensor,
        thresholds: torch.Tensor,
        mean: torch.Tensor,
        scale: float,
        info: dict[str, Any] | None = None,
        decoder: torch.Tensor | None = None,
    ) -> None:
        super().__init__(name, "random", info)
        self.register_buffer("R", directions.float().contiguous())  # [d, F] encoder
        self.register_buffer("t", thresholds.float().contiguous())  # [F]
        self.register_buffer("mu", mean.float().contiguous())
        dec = directions if decoder is None else decoder
        self.register_buffer("Dr", dec.float().contiguous())  # [d, F] decoder directions
        self.scale = float(scale)

    @property
    def d_in(self) -> int:
        return int(self.R.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.R.shape[1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return _shifted_proj(x.float(), self.R, self.mu, self.t).clamp_(min=0)

    @property
    def separable_features(self) -> bool:
        return True

    def encode_features(self, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        f = features.to(self.R.device)
        return _shifted_proj(x.float(), self.R[:, f], self.mu, self.t[f]).clamp_(min=0)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.scale * (codes @ self.Dr.T) + self.mu

    def state(self) -> dict[str, torch.Tensor]:
        st = {"R": self.R, "t": self.t, "mu": self.mu, "scale": torch.tensor(self.scale)}
        if not torch.equal(self.Dr, self.R):
            st["Dr"] = self.Dr
        return st


def _shifted_proj(
    x: torch.Tensor, R: torch.Tensor, mu: torch.Tensor, t: torch.Tensor | float = 0.0
) -> torch.Tensor:
    """``(x - mu) @ R - t`` as one ``addmm`` (bias ``-(mu @ R) - t``): no [N, F] temporaries."""
    return torch.addmm(-(mu @ R) - t, x, R)


def _whitening(x: torch.Tensor, mu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Σ^{-1/2}, Σ^{1/2})`` of ``x``'s covariance (float64; eigenvalues floored at 1e-6 of
    the largest, so near-null directions do not blow up)."""
    xc = x.double() - mu.double()
    cov = xc.T @ xc / max(1, len(x) - 1)
    evals, evecs = torch.linalg.eigh(cov)
    lam = evals.clamp(min=float(evals.max()) * 1e-6)
    return (evecs * lam.rsqrt()) @ evecs.T, (evecs * lam.sqrt()) @ evecs.T


def fit_random(
    x: torch.Tensor,
    *,
    n_features: int,
    target_density: np.ndarray | None = None,
    seed: int = 0,
    name: str = "random",
    space: str = "raw",
) -> RandomDirections:
    """Random directions (``space`` "raw": unit vectors in activation space; "whitened":
    ``Σ^{-1/2} u`` for random unit ``u``, decoded along ``Σ^{1/2} u``); thresholds put feature
    i's firing density on ``x`` at ``target_density[i]`` (default 1%); decoder scale fitted by
    least squares on ``x``."""
    if space not in ("raw", "whitened"):
        raise AutointerpError(f"random basis space {space!r}: use 'raw' or 'whitened'")
    g = torch.Generator().manual_seed(seed)
    d = x.shape[1]
    U = torch.randn(d, n_features, generator=g, dtype=torch.float64)
    U = U / U.norm(dim=0, keepdim=True)
    mu = x.double().mean(0).float()
    if space == "whitened":
        w_inv, w = _whitening(x, mu)
        R, Dr = (w_inv @ U).float(), (w @ U).float()
    else:
        R = Dr = U.float()
    if target_density is None:
        target_density = np.full(n_features, 0.01)
    td = np.asarray(target_density, dtype=np.float64)
    if td.shape != (n_features,):
        raise AutointerpError(f"target_density must have {n_features} entries, got {td.shape}")
    n = len(x)
    idx_all = torch.from_numpy(np.clip(np.round((1.0 - td) * (n - 1)), 0, n - 1).astype(np.int64))
    t = torch.empty(n_features)
    # float32 and the same product as ``encode``, whose codes the thresholds are applied to
    xf = x.float()
    xc = xf - mu
    xr = torch.zeros_like(xc)
    # Feature chunks (memory N x 256) in order of density, so a chunk's thresholds are read
    # off its ``m`` largest projections (topk) rather than a full sort of N values each.
    order = torch.from_numpy(np.argsort(td, kind="stable"))
    for j in range(0, n_features, 256):
        f = order[j : j + 256]
        z = _shifted_proj(xf, R[:, f], mu)
        above = (n - 1) - idx_all[f]  # values above the threshold (descending rank)
        top = z.topk(int(above.max()) + 1, dim=0).values  # [m, chunk], descending
        cols = torch.arange(len(f))
        tj = top[above, cols]
        dead = torch.from_numpy(td[f.numpy()] <= 0)
        tj = torch.where(dead, top[0] + 1.0, tj)  # dead targets stay dead
        t[f] = tj
        xr += (z - tj).clamp(min=0) @ Dr[:, f].T
    num = float((xc.double() * xr.double()).sum())
    denom = float(xr.double().pow(2).sum())
    scale = num / denom if denom > 0 else 0.0
    info = {"seed": seed, "matched_density": target_density is not None, "space": space}
    return RandomDirections(name, R, t, mu, scale, info, decoder=None if space == "raw" else Dr)


def random_target_density(sae_density: np.ndarray, n_features: int, seed: int) -> np.ndarray:
    """Densities for the random null: the SAE's per-feature densities, permuted (seeded)."""
    rng = np.random.default_rng(seed)
    d = np.asarray(sae_density, dtype=np.float64)
    if len(d) != n_features:
        d = rng.choice(d, size=n_features, replace=True)
    return rng.permutation(d)


def mixture_target_density(densities: list[np.ndarray], n_features: int, seed: int) -> np.ndarray:
    """Densities for a null matched to several bases at once: an equal share of the
    ``n_features`` drawn (seeded, with replacement) from each basis's per-feature densities,
    so every basis's density range is covered by null features (``docs/nulls.md``)."""
    if not densities:
        raise AutointerpError("a density mixture needs at least one basis's densities")
    rng = np.random.default_rng([seed, 6151])
    shares = np.full(len(densities), n_features // len(densities))
    shares[: n_features - int(shares.sum())] += 1
    parts = [
        rng.choice(np.asarray(d, dtype=np.float64), size=int(k), replace=True)
        for d, k in zip(densities, shares, strict=True)
    ]
    return rng.permutation(np.concatenate(parts))


def save_linear(basis: SignedLinearBasis | RandomDirections, directory: str | Path) -> None:
    """Store a fitted linear basis (safetensors + JSON), atomically."""
    from safetensors.torch import save_file

    from autointerp.results import atomic_write_json, atomic_write_with

    d = Path(directory)
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in basis.state().items()}
    atomic_write_with(d / "weights.safetensors", lambda p: save_file(tensors, str(p)))
    meta = {"name": basis.name, "kind": basis.kind, "info": basis.info}
    if isinstance(basis, SignedLinearBasis):
        meta["k"] = basis.k
    atomic_write_json(d / "basis.json", meta)


def load_linear(directory: str | Path) -> SignedLinearBasis | RandomDirections:
    import json

    from safetensors.torch import load_file

    d = Path(directory)
    meta = json.loads((d / "basis.json").read_text())
    t = load_file(str(d / "weights.safetensors"))
    if meta["kind"] == "random":
        return RandomDirections(
            meta["name"], t["R"], t["t"], t["mu"], float(t["scale"]), meta["info"], t.get("Dr")
        )
    return SignedLinearBasis(
        meta["name"], meta["kind"], t["E"], t["D"], t["mu"], meta.get("k"), meta["info"]
    )

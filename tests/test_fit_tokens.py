"""The bases' fit tokens and PCA, filled / centred in place for memory, give the same numbers
as the plain construction (the committed runs' weights hashes depend on it)."""

import numpy as np
import torch

from autointerp.bases.linear import fit_pca
from autointerp.stages.bases import fit_tokens


def _plain_fit_tokens(acts, mask, fit_rows, n, seed):
    xs = [torch.from_numpy(np.asarray(acts[r])[~mask[r]]) for r in np.array_split(fit_rows, 7)]
    x = torch.cat(xs)
    if len(x) > n:
        g = torch.Generator().manual_seed(seed)
        x = x[torch.randperm(len(x), generator=g)[:n].sort().values]
    return x


def test_fit_tokens_equal_the_plain_subsample(tmp_path):
    rng = np.random.default_rng(0)
    acts = np.lib.format.open_memmap(tmp_path / "a.npy", "w+", np.float32, (600, 5, 3))
    acts[:] = rng.normal(size=acts.shape)
    mask = rng.random((600, 5)) < 0.3
    mask[:, 0] = True
    rows = np.sort(rng.choice(600, 520, replace=False))
    for n in (10**9, 1000, 17, 1):
        a = _plain_fit_tokens(acts, mask, rows, n, 3)
        b = fit_tokens(acts, mask, rows, n, 3)
        assert a.shape == b.shape and torch.equal(a, b), n


def test_pca_centred_in_place_is_the_plain_pca():
    x = torch.randn(4000, 12) * torch.linspace(0.5, 3, 12) + 2.0
    xd = x.double()
    mu = xd.mean(0)
    xc = xd - mu
    evals, evecs = torch.linalg.eigh(xc.T @ xc / (len(x) - 1))
    W = evecs[:, evals.argsort(descending=True)]
    b = fit_pca(x, k=4)
    f = b.E.dtype  # stored as the basis keeps them (float32)
    assert torch.equal(b.E, W.to(f)) and torch.equal(b.D, W.T.to(f))
    assert torch.equal(b.mu, mu.to(b.mu.dtype))


def test_pca_from_float64_fit_tokens_is_the_same_basis(tmp_path):
    """PCA's own float64 copy, read straight from the map and centred in place, gives the
    weights of the float32 copy converted (the committed runs' weights hashes depend on it);
    without ``overwrite`` the caller's float64 tensor is left as it was."""
    rng = np.random.default_rng(1)
    acts = np.lib.format.open_memmap(tmp_path / "a.npy", "w+", np.float32, (300, 6, 5))
    acts[:] = rng.normal(size=acts.shape) * np.linspace(0.5, 4, 5) + 1.5
    mask = rng.random((300, 6)) < 0.2
    rows = np.arange(0, 300, 2)
    x32 = fit_tokens(acts, mask, rows, 10**9, 0)
    x64 = fit_tokens(acts, mask, rows, 10**9, 0, torch.float64)
    assert x64.dtype == torch.float64 and torch.equal(x64, x32.double())
    keep = x64.clone()
    a = fit_pca(x32, k=3)
    b = fit_pca(x64, k=3)
    assert torch.equal(x64, keep)  # not overwritten unless asked
    c = fit_pca(x64, k=3, overwrite=True)
    for m in (b, c):
        assert torch.equal(a.E, m.E) and torch.equal(a.D, m.D) and torch.equal(a.mu, m.mu)
    assert not torch.equal(x64, keep)  # spent: centred in place

"""PCA / ICA / neurons / random-direction baselines."""

import numpy as np
import torch

from autointerp.bases.linear import (
    fit_ica,
    fit_pca,
    fit_random,
    load_linear,
    neuron_basis,
    save_linear,
    topk_sparsify,
)


def _data(n=2000, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(n, d, generator=g) ** 3  # non-Gaussian sources
    return s @ torch.randn(d, d, generator=g) + 3.0


def test_exact_reconstruction_without_sparsity():
    x = _data()
    for b in (fit_pca(x, k=None), fit_ica(x, k=None), neuron_basis(16, k=None)):
        codes = b.encode(x)
        assert codes.shape == (len(x), 32) and (codes >= 0).all()
        torch.testing.assert_close(b.decode(codes), x, atol=2e-3, rtol=1e-3)


def test_signed_split_and_topk():
    x = _data()
    b = fit_pca(x, k=4)
    z = (x - b.mu) @ b.E
    codes = b.encode(x)
    assert ((codes > 0).sum(1) <= 4).all()
    # each direction is either its + or its - feature, never both
    assert not ((codes[:, :16] > 0) & (codes[:, 16:] > 0)).any()
    # the kept ones are the 4 largest |z|
    top = z.abs().topk(4, dim=1).indices
    kept = torch.where(codes[:, :16] > 0, 1, 0) + torch.where(codes[:, 16:] > 0, 1, 0)
    assert torch.equal(kept.gather(1, top), torch.ones_like(top))
    assert torch.equal(
        topk_sparsify(torch.tensor([[3.0, 1.0, 2.0]]), 2), torch.tensor([[3.0, 0, 2.0]])
    )


def test_pca_components_are_sorted_by_variance():
    x = _data()
    b = fit_pca(x, k=None)
    var = ((x - b.mu) @ b.E).var(0)
    assert torch.all(var[:-1] >= var[1:] - 1e-4)


def test_random_directions_match_target_density():
    x = _data(n=5000)
    target = np.linspace(0.005, 0.3, 40)
    b = fit_random(x, n_features=40, target_density=target, seed=1)
    dens = (b.encode(x) > 0).float().mean(0).numpy()
    np.testing.assert_allclose(dens, target, atol=2e-3)
    b2 = fit_random(x, n_features=40, target_density=target, seed=1)
    assert torch.equal(b.R, b2.R)
    sub = torch.tensor([39, 2, 7])
    torch.testing.assert_close(b.encode_features(x, sub), b.encode(x)[:, sub])


def test_save_load_roundtrip(tmp_path):
    x = _data()
    for b in (fit_pca(x, k=3), neuron_basis(16, k=2), fit_random(x, n_features=8)):
        save_linear(b, tmp_path / b.name)
        c = load_linear(tmp_path / b.name)
        assert (c.name, c.kind, c.n_features) == (b.name, b.kind, b.n_features)
        torch.testing.assert_close(c.decode(c.encode(x)), b.decode(b.encode(x)))


def test_mixture_target_density_covers_every_basis():
    from autointerp.bases.linear import mixture_target_density

    a, b = np.full(100, 1e-3), np.full(40, 0.2)
    t = mixture_target_density([a, b], 10, seed=0)
    assert len(t) == 10 and sorted(t.tolist()) == [1e-3] * 5 + [0.2] * 5
    assert np.array_equal(t, mixture_target_density([a, b], 10, seed=0))


def test_held_out_metric_rows_span_the_corpus():
    """Defect: the metric tokens were the last 32 rows (one or two articles)."""
    from autointerp.pipeline import held_out_rows

    rows = held_out_rows(3200, 32)
    assert len(rows) == 32 == len(set(rows.tolist()))
    assert rows[0] == 0 and rows[-1] == 3199 and np.all(np.diff(rows) >= 100)

"""Streaming records collection against a brute-force reference."""

import numpy as np
import pytest

from autointerp.bases.linear import neuron_basis
from autointerp.config import RecordsConfig
from autointerp.records import TokenCodes, collect_records, select_features
from tests.conftest import make_char_tokenizer


@pytest.fixture
def corpus():
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, 60, (60, 33)).astype(np.int32)
    tokens[:, 0] = 1  # BOS
    acts = (rng.standard_normal((60, 33, 6)) * (rng.random((60, 33, 6)) < 0.05)).astype(np.float32)
    acts[:, 0] = 100.0  # BOS outlier must never show up
    return tokens, acts, tokens == 1


def _window_max(acts, feat, W=8):
    a = np.clip(acts[:, 1:33, feat], 0, None).reshape(len(acts), 32 // W, W)
    return a.max(2).ravel()


@pytest.mark.parametrize("batch_rows", [1, 7, 64])
def test_top_windows_equal_brute_force(corpus, batch_rows):
    tokens, acts, mask = corpus
    cfg = RecordsConfig(
        window=8,
        n_explain_top=6,
        n_test_top=3,
        n_explain_quantile=4,
        n_test_quantile=2,
        n_test_random=5,
        n_quantiles=3,
    )
    dens = np.full(12, 0.05)
    recs = collect_records(
        neuron_basis(6, k=None),
        acts,
        tokens,
        mask,
        np.array([0, 4]),
        dens,
        cfg,
        make_char_tokenizer(),
        batch_rows=batch_rows,
        progress=False,
    )
    for r in recs:
        wm = _window_max(acts, r.feature)
        tops = sorted((e.max_act for e in r.explain + r.test_top if e.kind == "top"), reverse=True)
        np.testing.assert_allclose(tops, np.sort(wm)[::-1][:9], rtol=1e-6)
        assert r.max_act == pytest.approx(wm.max())
        assert r.explain[0].max_act == pytest.approx(wm.max())  # the strongest goes to explain
        assert len(r.test_top) == 3 and len(r.test_random) == 5
        assert all(e.kind == "quantile" and e.fires for e in r.test_quantile)
        locs = [(e.seq, e.start) for e in r.explain + r.test_top + r.test_quantile + r.test_random]
        assert len(locs) == len(set(locs))  # disjoint windows
        for e in r.explain + r.test_top + r.test_random:
            assert len(e.tokens) == len(e.acts) == 8 and e.start >= 1  # BOS never included
            np.testing.assert_allclose(
                e.acts, np.clip(acts[e.seq, e.start : e.start + 8, r.feature], 0, None)
            )


def test_same_result_for_any_batch_size(corpus):
    tokens, acts, mask = corpus
    cfg = RecordsConfig(window=8, n_explain_top=3, n_test_top=2, n_test_random=4)
    out = [
        collect_records(
            neuron_basis(6, k=None),
            acts,
            tokens,
            mask,
            np.array([1]),
            np.full(12, 0.1),
            cfg,
            make_char_tokenizer(),
            batch_rows=b,
            progress=False,
        )[0].to_dict()
        for b in (3, 60)
    ]
    assert out[0] == out[1]


def test_random_windows_are_not_conditioned_on_firing(corpus):
    tokens, acts, mask = corpus
    cfg = RecordsConfig(window=8, n_explain_top=2, n_test_top=2, n_test_random=40)
    r = collect_records(
        neuron_basis(6, k=None),
        acts,
        tokens,
        mask,
        np.array([2]),
        np.full(12, 0.1),
        cfg,
        make_char_tokenizer(),
        progress=False,
    )[0]
    fires = [e.fires for e in r.test_random]
    assert len(fires) == 40 and 0 < sum(fires) < 40


def test_select_features_only_alive_and_seeded():
    dens = np.array([0, 0.1, 0, 0.2, 0.3, 0, 0.01])
    a = select_features(dens, 3, seed=1)
    assert set(a) <= {1, 3, 4, 6} and len(a) == 3
    assert np.array_equal(a, select_features(dens, 3, seed=1))
    assert list(select_features(dens, 2, mode="first")) == [1, 3]


def test_records_from_kept_codes_equal_records_from_encoding(corpus):
    """Records built from a basis's kept non-zero codes (the density pass's) equal those
    built by encoding the activations, for unsorted feature ids too."""
    import torch

    tokens, acts, mask = corpus
    basis = neuron_basis(6, k=2)
    cfg = RecordsConfig(window=8, n_explain_top=3, n_test_top=2, n_test_random=4)
    c = basis.encode(torch.from_numpy(acts.reshape(-1, 6)))
    i, j = (c != 0).nonzero(as_tuple=True)
    kept = TokenCodes(tokens.shape, i.numpy(), j.numpy(), c[i, j].numpy())
    feats = np.array([7, 1, 4])
    np.testing.assert_array_equal(
        kept.columns(feats), c[:, feats].reshape(*tokens.shape, 3).numpy()
    )

    def records(codes):
        return [
            r.to_dict()
            for r in collect_records(
                basis, acts, tokens, mask, feats, np.full(12, 0.1), cfg,
                make_char_tokenizer(), progress=False, codes=codes,
            )
        ]  # fmt: skip

    assert records(kept) == records(None)


def test_random_windows_may_be_quantile_test_windows(corpus):
    """Defect: random windows also avoided the quantile *test* windows, conditioning them
    against firing (for a rare feature those are most of its firing windows). Now only the
    explain windows and the top test windows (pooled with them in top_and_random) are avoided."""
    tokens, acts, mask = corpus
    n_windows = len(tokens) * (32 // 8)
    cfg = RecordsConfig(
        window=8, n_explain_top=2, n_test_top=2, n_explain_quantile=2, n_test_quantile=2,
        n_quantiles=2, n_test_random=n_windows - 6,
    )  # fmt: skip
    r = collect_records(
        neuron_basis(6, k=None), acts, tokens, mask, np.array([2]), np.full(12, 0.1), cfg,
        make_char_tokenizer(), progress=False,
    )[0]  # fmt: skip
    loc = lambda es: {(e.seq, e.start) for e in es}  # noqa: E731
    assert len(r.test_quantile) == 2
    assert loc(r.test_quantile) <= loc(r.test_random)  # every other window is random now
    assert not loc(r.test_random) & (loc(r.explain) | loc(r.test_top))


def test_all_selects_every_alive_feature_like_a_large_n():
    dens = np.array([0, 0.1, 0, 0.2, 0.3, 0, 0.01])
    for mode in ("random_alive", "first"):
        assert list(select_features(dens, "all", mode=mode)) == [1, 3, 4, 6]
        assert list(select_features(dens, 10**6, mode=mode, seed=5)) == [1, 3, 4, 6]
    assert list(select_features(dens, "all", min_density=0.05)) == [1, 3, 4]


def test_kept_codes_rows_equal_dense_codes_for_any_rows_and_order():
    """``TokenCodes.rows`` (one batch of rows at a time) equals the dense codes, for rows in
    any order, repeated rows, unsorted non-zeros and features absent from the codes."""
    rng = np.random.default_rng(3)
    dense = (rng.random((9, 5, 7)) < 0.2) * rng.random((9, 5, 7)).astype(np.float32)
    tok, col = np.nonzero(dense.reshape(45, 7))
    val = dense.reshape(45, 7)[tok, col]
    perm = rng.permutation(len(tok))  # unsorted, as a plug-in might keep them
    kept = TokenCodes((9, 5), tok[perm], col[perm], val[perm])
    feats = np.array([6, 0, 3, 9])  # 9: no such feature, all zeros
    full = np.concatenate([dense, np.zeros((9, 5, 3), np.float32)], 2)[:, :, feats]
    for rows in ([0, 1, 2], [8, 2, 2, 5], [], list(range(9))):
        np.testing.assert_array_equal(kept.rows(np.array(rows, dtype=int), feats), full[rows])
    np.testing.assert_array_equal(kept.columns(feats), full)


def test_records_of_all_equal_records_of_a_count_covering_every_feature(corpus):
    tokens, acts, mask = corpus
    cfg = RecordsConfig(window=8, n_explain_top=3, n_test_top=2, n_test_random=4)
    dens = np.array([0.1, 0.0, 0.2, 0.1, 0.3, 0.05])

    def records(n):
        feats = select_features(dens, n, seed=0)
        return [
            r.to_dict()
            for r in collect_records(
                neuron_basis(6, k=None), acts, tokens, mask, feats, dens, cfg,
                make_char_tokenizer(), progress=False,
            )
        ]  # fmt: skip

    got = records("all")
    assert [r["feature"] for r in got] == [0, 2, 3, 4, 5]
    assert got == records(100)


def test_n_features_all_and_per_basis_config():
    from pydantic import ValidationError

    assert RecordsConfig(n_features="all").n_features == "all"
    for bad in (0, "most", -1):
        with pytest.raises(ValidationError):
            RecordsConfig(n_features=bad)
    rc = RecordsConfig(n_features="all", n_features_by_basis={"random": 256})
    assert rc.n_features_of("random") == 256 and rc.n_features_of("sae") == "all"
    assert "n_features_by_basis" not in RecordsConfig().model_dump()  # default hashes unchanged
    assert rc.model_dump()["n_features_by_basis"] == {"random": 256}

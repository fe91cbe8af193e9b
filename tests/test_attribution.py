"""Gradient x Δ attribution (docs/attribution.md) against finite differences on a tiny
random-weight model, for every baseline, and OpenAI's δ by hand for an orthonormal basis."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autointerp.bases.base import Basis
from autointerp.bases.linear import neuron_basis
from autointerp.causal import patching
from autointerp.causal.attribution import (
    ioi_attribution,
    ioi_attributions,
    loss_attributions,
    mean_codes,
)
from autointerp.causal.intervene import decode_with_error, encode_with_error, hidden
from autointerp.causal.ioi_prompts import ioi_pairs
from autointerp.model import splice
from tests.causal_tiny import tiny_word_model

HP = "blocks.1.hook_resid_post"


class Rotation(Basis):
    """An orthonormal rotation about ``mu``: ``c = (x - mu) Q``, ``x = c Qᵀ + mu`` (exact)."""

    def __init__(self, q: torch.Tensor, mu: torch.Tensor):
        super().__init__("rot", "test")
        self.register_buffer("Q", q.float())
        self.register_buffer("mu", mu.float())

    @property
    def d_in(self) -> int:
        return int(self.Q.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.Q.shape[1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mu) @ self.Q

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return codes @ self.Q.T + self.mu


@pytest.fixture(scope="module")
def sm():
    return tiny_word_model()


@pytest.fixture(scope="module")
def data(sm):
    pairs = ioi_pairs(sm.tokenizer, 10, 0, sm.bos_token_id)
    return patching.prepare(sm, sm.hookpoint(HP), pairs)


def _fd_close(a: np.ndarray, fd: np.ndarray) -> None:
    assert a == pytest.approx(fd, rel=2e-2, abs=5e-3 * max(np.abs(fd).max(), 1e-6))


def test_ioi_attribution_matches_finite_differences_for_every_baseline(sm, data):
    hp = sm.hookpoint(HP)
    b = neuron_basis(32, k=None)
    mean = torch.linspace(-0.5, 0.5, 64).clamp(min=0)  # any baseline code vector
    got = ioi_attributions(sm, hp, data, b, ("zero", "mean", "cf"), mean=mean)
    assert np.array_equal(got["zero"], ioi_attribution(sm, hp, data, b))
    g = data.groups[0]
    c, err = encode_with_error(b, g.x_clean)
    c_cf, _ = encode_with_error(b, g.x_cf)
    w = (g.clean != sm.bos_token_id).float()[..., None]
    io = torch.tensor([data.pairs[i].io_id for i in g.rows])
    s = torch.tensor([data.pairs[i].s_id for i in g.rows])
    ar = torch.arange(len(io))
    deltas = {"zero": c, "mean": c - mean, "cf": c - c_cf}
    for name, delta in deltas.items():
        a = got[name][g.rows]
        i = int(np.argmax(np.abs(a).sum(0)))
        m = torch.zeros(64)
        m[i] = 1.0

        def ld(t, delta=delta, m=m):
            x = decode_with_error(b, c + t * delta * m * w, err)
            lp = patching.last_logprobs(sm, hp, g.clean, x, data.skip)
            return (lp[ar, io] - lp[ar, s]).double().numpy()

        _fd_close(a[:, i], (ld(1e-2) - ld(-1e-2)) / 2e-2)
    # the counterfactual baseline is zero before the IO name: features the two prompts share
    # there get nothing from those positions
    assert not np.allclose(got["cf"], got["zero"])


def _rows(sm, data):
    ids = torch.tensor([list(data.pairs[0].clean_ids)] * 2)
    ids[1, 3] = ids[0, 5]
    ex = torch.zeros_like(ids, dtype=torch.bool)
    ex[:, 0] = True
    return ids, ex, hidden(sm, sm.hookpoint(HP), ids)


def _loss(sm, hp, ids, ex, xx):
    with splice(hp, lambda a_: xx.to(a_.dtype)):
        lp = torch.log_softmax(sm.model(input_ids=ids).logits[:, :-1].float(), -1)
    nll = -lp.gather(-1, ids[:, 1:, None]).squeeze(-1)
    return (nll * (~ex[:, :-1])).sum(1).double().numpy()


def test_loss_attribution_matches_finite_differences_for_mean_and_zero(sm, data):
    hp = sm.hookpoint(HP)
    b = neuron_basis(32, k=None)
    ids, ex, x = _rows(sm, data)
    mean = mean_codes(b, x.numpy(), ex.numpy(), np.arange(2))
    # by hand: the mean code over the non-special tokens
    cc, e2 = encode_with_error(b, x)
    assert mean.numpy() == pytest.approx(cc[~ex].mean(0).numpy(), abs=1e-5)
    got = loss_attributions(sm, hp, [b], ids, x, ex, 2, 1, ("zero", "mean"), {b.name: mean})
    for name, delta in {"zero": cc, "mean": cc - mean}.items():
        la = got[b.name][name]
        j = int(np.argmax(np.abs(la).sum(0)))
        mj = torch.zeros(64)
        mj[j] = 1.0

        def loss(t, delta=delta, mj=mj):
            xx = decode_with_error(b, cc + t * delta * mj * (~ex)[..., None], e2)
            return _loss(sm, hp, ids, ex, xx)

        _fd_close(la[:, j], (loss(1e-2) - loss(-1e-2)) / 2e-2)


def test_mean_baseline_is_openai_delta_for_an_orthonormal_basis(sm, data):
    """δ_{i,t} = −(g_t · d_i)((a_t − ā) · d_i) summed over the row's counted tokens."""
    hp = sm.hookpoint(HP)
    ids, ex, x = _rows(sm, data)
    q, _ = torch.linalg.qr(torch.randn(32, 32, generator=torch.Generator().manual_seed(1)))
    mu = x[~ex].mean(0)
    b = Rotation(q, mu)
    a_bar = x[~ex].mean(0)  # ā over the same tokens as the mean codes
    mean = mean_codes(b, x.numpy(), ex.numpy(), np.arange(2))
    got = loss_attributions(sm, hp, [b], ids, x, ex, 2, 2, ("mean",), {b.name: mean})
    xg = x.clone().requires_grad_(True)
    with splice(hp, lambda a_: xg.to(a_.dtype)):
        lp = torch.log_softmax(sm.model(input_ids=ids).logits[:, :-1].float(), -1)
    nll = -lp.gather(-1, ids[:, 1:, None]).squeeze(-1)
    (nll * (~ex[:, :-1])).sum().backward()
    g = xg.grad * (~ex)[..., None]  # [rows, T, d]
    delta = -((g @ q) * ((x - a_bar) @ q)).sum(1)  # [rows, F]
    assert got[b.name]["mean"] == pytest.approx(-delta.double().numpy(), abs=1e-4, rel=1e-3)


def test_bad_baseline_is_one_clear_error(sm, data):
    b = neuron_basis(32, k=None)
    with pytest.raises(ValueError, match="unknown"):
        ioi_attributions(sm, sm.hookpoint(HP), data, b, ("median",))
    with pytest.raises(ValueError, match="mean codes"):
        ioi_attributions(sm, sm.hookpoint(HP), data, b, ("mean",))

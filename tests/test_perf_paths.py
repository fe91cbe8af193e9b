"""The faster paths give the numbers of the paths they replace (to float rounding, on a tiny
random-weight model), and the run summary reports peak memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autointerp.bases.linear import SignedLinearBasis
from autointerp.causal.ablation import ablated, ablated_from, ablation_effects_many
from autointerp.causal.hook_forward import HookForward, PrefixForward
from autointerp.model import run_to_hookpoint
from autointerp.run.memory import peak_rss_mib
from autointerp.run.runner import format_summary
from autointerp.types import Example, FeatureRecord

HOOK = "blocks.1.hook_resid_post"


def _sparse_basis(d: int, m: int = 8, k: int = 2, seed: int = 1) -> SignedLinearBasis:
    """Top-k codes: a feature is 0 at most positions, so ablated rows keep a prefix."""
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(m, d, generator=g)
    return SignedLinearBasis("b", "test", torch.linalg.pinv(D), D, torch.zeros(d), k)


def _data(sm, n=6, T=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, len(sm.tokenizer), (n, T), generator=g)
    ids[:, 0] = sm.bos_token_id
    exclude = torch.zeros(n, T, dtype=torch.bool)
    exclude[:, 0] = True
    hp = sm.hookpoint(HOOK)
    return hp, ids, exclude, run_to_hookpoint(sm, hp, ids)


def _records(basis, acts, exclude, n_feats=6):
    """Each feature's top contexts: its largest codes, one per row."""
    codes = basis.encode(acts.reshape(-1, acts.shape[-1])).reshape(*acts.shape[:2], -1)
    codes[exclude] = 0
    recs = []
    for f in range(n_feats):
        tops = []
        for q in range(acts.shape[0]):
            t = int(codes[q, :, f].argmax())
            if codes[q, t, f] > 0:
                tops.append(Example(["t"], [0], [float(codes[q, t, f])], "top", seq=q, start=t))
        recs.append(FeatureRecord("b", f, 0.1, 3.0, test_top=tops))
    return recs


def test_ablated_rows_equal_the_input_before_the_first_edit(tiny_model):
    sm = tiny_model
    hp, ids, exclude, acts = _data(sm)
    basis = _sparse_basis(hp.width)
    feat = torch.arange(acts.shape[0]) % 4
    xa, first = ablated_from(basis, acts, feat, exclude)
    assert torch.equal(xa, ablated(basis, acts, feat, exclude))
    codes = basis.encode(acts.reshape(-1, hp.width)).reshape(*acts.shape[:2], -1)
    for b in range(acts.shape[0]):
        on = [t for t in range(1, acts.shape[1]) if codes[b, t, int(feat[b])] != 0]
        assert int(first[b]) == (on[0] if on else acts.shape[1])
        assert torch.equal(xa[b, : int(first[b])], acts[b, : int(first[b])])
        if on:
            assert not torch.equal(xa[b, on[0]], acts[b, on[0]])
    assert (first > 1).any()  # the test exercises a shared prefix


def test_prefix_passes_equal_full_passes(tiny_model):
    """Original rows once with their keys/values, edited rows from their first edited column:
    the log-probabilities of two full passes."""
    sm = tiny_model
    hp, ids, _, acts = _data(sm, n=3, T=12)
    fwd = HookForward(sm, hp)
    pf = PrefixForward(fwd)
    assert pf.available
    rows = torch.tensor([0, 2, 2, 1])
    start = torch.tensor([3, 1, 7, 11])
    x1 = acts[rows].clone()
    for j, s in enumerate(start.tolist()):
        x1[j, s:] += 0.7 * torch.randn(x1.shape[1] - s, hp.width)
    pos = torch.tensor([[2, 5, 9], [0, 4, 11], [6, 7, 8]])
    pos1 = torch.tensor([[3, 4, 10], [1, 2, 3], [7, 9, 11], [11, 11, 11]])
    lp0, lp1 = pf.run(ids, acts, pos, rows, start, x1, pos1)
    assert torch.allclose(lp0, fwd.logprobs(ids, acts, pos), atol=1e-5)
    assert torch.allclose(lp1, fwd.logprobs(ids[rows], x1, pos1), atol=1e-5)


@pytest.mark.parametrize("batch_size", [1, 64])
def test_ablation_effects_with_prefix_reuse_match_full_passes(tiny_model, batch_size):
    sm = tiny_model
    hp, ids, exclude, acts = _data(sm)
    basis = _sparse_basis(hp.width)
    recs = _records(basis, acts, exclude)
    fwd = HookForward(sm, hp)
    args = (fwd, {"b": (basis, recs)}, ids.numpy(), acts.numpy(), exclude.numpy())
    kw = dict(n_contexts=3, n_positions=3, n_logit_tokens=4, batch_size=batch_size)
    new = ablation_effects_many(*args, reuse_prefix=True, **kw)["b"]
    old = ablation_effects_many(*args, reuse_prefix=False, **kw)["b"]
    assert sum(e.n_pairs for e in new) > 0
    for a, b in zip(new, old, strict=True):
        assert a.n_pairs == b.n_pairs and a.n_contexts == b.n_contexts
        if b.kl is None:
            assert a.kl is None and a.reason == b.reason
            continue
        assert a.kl == pytest.approx(b.kl, rel=1e-4, abs=1e-6)
        assert a.ce_delta == pytest.approx(b.ce_delta, rel=1e-4, abs=1e-6)
        # the extreme mean shifts agree; which token holds a near-tie is float noise
        assert a.falls[0][1] == pytest.approx(b.falls[0][1], abs=1e-3)
        assert a.rises[0][1] == pytest.approx(b.rises[0][1], abs=1e-3)


def test_summary_reports_peak_memory():
    peak = peak_rss_mib()
    assert peak["self"] is not None and peak["self"] > 10  # a Python with torch: > 10 MiB
    rows = [
        {"stage": "tokens", "seconds": 1.25, "status": "computed", "peak_rss_mib": 321.0,
         "stage_peak_rss_mib": 300.4},
        {"stage": "split", "seconds": 0.5, "status": "ran", "peak_rss_mib": 321.0},
    ]  # fmt: skip
    text = format_summary(rows, 2.0, peak)
    lines = text.splitlines()
    assert "peak MiB" in lines[1] and "own MiB" in lines[1]
    assert lines[2].split()[:4] == ["tokens", "1.2", "321", "300"]
    assert lines[3].split()[:4] == ["split", "0.5", "321", "ran"]
    assert lines[-1].split()[0] == "total" and f"peak RSS {peak['self']:.0f} MiB" in lines[-1]
    assert np.isfinite(peak["self"])

"""The IOI stage's fast path against the plain one on a tiny random-weight Llama: patched
states run from their first patched column over the clean prompt's keys/values, and the last
position through the unembedding as one matrix product (autointerp/causal/ioi_forward.py),
give the KLs, edits and gradients of one spliced full forward through the model's own head
(tolerances, not bit equality: the two sum in different orders)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autointerp.bases.linear import neuron_basis
from autointerp.causal import patching
from autointerp.causal.intervene import decode_with_error, kl_last, last_logprobs
from autointerp.causal.ioi_forward import PatchedForward, first_edited
from autointerp.causal.ioi_prompts import ioi_pairs
from autointerp.causal.ranking import RANKINGS, ioi_curves, pair_orders, top_k_masks
from autointerp.model import splice
from tests.causal_tiny import tiny_word_model

HP = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def sm():
    return tiny_word_model()


@pytest.fixture(scope="module")
def data(sm):
    pairs = ioi_pairs(sm.tokenizer, 12, 0, sm.bos_token_id)
    return patching.prepare(sm, sm.hookpoint(HP), pairs, ig_steps=2)


def model_logprobs(sm, hp, ids: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The reference: the whole model with ``x`` spliced in at ``hp``, its own head, last
    position."""
    with torch.no_grad(), splice(hp, lambda a: x.to(a.dtype)):
        logits = sm.model(input_ids=ids, use_cache=False).logits[:, -1]
    return torch.log_softmax(logits.float(), -1)


def test_the_fast_path_is_the_one_taken(sm, data):
    """The tiny Llama takes the prefix path, its prompts start patching at several columns
    (so batches mix them), and a group holds more prompts than the test's batches."""
    fwd = PatchedForward(sm, sm.hookpoint(HP), data.skip)
    assert fwd.pf is not None and data.skip == 2
    starts = {int(s) for g in data.groups for s in g.patch.int().argmax(1)}
    assert len(starts) >= 2 and min(starts) > 0
    assert max(len(g.rows) for g in data.groups) > 5


def test_last_logprobs_and_its_gradient_equal_the_models_own_head(sm, data):
    hp = sm.hookpoint(HP)
    g = data.groups[0]
    want = model_logprobs(sm, hp, g.clean, g.x_clean)
    got = last_logprobs(sm, hp, g.clean, g.x_clean, data.skip)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(last_logprobs(sm, hp, g.clean, None, 0), want, atol=2e-5, rtol=0)

    def grad(fast: bool) -> torch.Tensor:
        x = ((g.x_clean + g.x_cf) / 2).requires_grad_(True)  # not x_cf: the KL's minimum
        with torch.enable_grad():
            if fast:
                lp = last_logprobs(sm, hp, g.clean, x, data.skip)
            else:
                with splice(hp, lambda a: x):
                    logits = sm.model(input_ids=g.clean, use_cache=False).logits[:, -1]
                lp = torch.log_softmax(logits.float(), -1)
            (gx,) = torch.autograd.grad(kl_last(g.logp_cf, lp).sum(), x)
        return gx

    gf, gr = grad(True), grad(False)
    assert gr.abs().max() > 1e-3  # a gradient worth comparing
    torch.testing.assert_close(gf, gr, atol=1e-5 * float(gr.abs().max()), rtol=1e-4)


def test_every_rankings_states_equal_one_full_forward_each(sm, data):
    """The sets of the three rankings at every grid k, run by the stage's batched fast path
    (batches of 5, mixing prompts and first patched columns), against one spliced full
    forward per (set, pair) through the model's own head; the edits by hand."""
    hp = sm.hookpoint(HP)
    b = neuron_basis(32, k=8)
    a = patching.attribution(sm, hp, data, b)
    halves = np.array([p.half for p in data.pairs])
    ks = patching.k_values("pow2", b.n_features)
    sets = [m for r in RANKINGS for m in top_k_masks(pair_orders(a, halves, r, True), ks)]
    g0 = data.groups[0]
    c0, _e, d0 = patching._codes(b, g0)
    firsts = [first_edited(d0, m[g0.rows]) for m in sets]
    starts = g0.patch.int().argmax(1)
    assert all((f >= starts).all() for f in firsts)
    assert any((f > starts).any() for f in firsts)  # small sets of a sparse basis: later
    runs = patching.patched_runs(sm, hp, data, b, sets, batch_size=5)
    plain = patching.patched_runs(sm, hp, data, b, sets, batch_size=64, reuse_prefix=False)
    assert runs.n_states == plain.n_states
    want_kl = np.zeros_like(runs.kl)
    for g in data.groups:
        c, err, delta = patching._codes(b, g)
        for j, m in enumerate(sets):
            x = decode_with_error(b, c + delta * m[g.rows][:, None, :].to(c), err)
            lp = model_logprobs(sm, hp, g.clean, x)
            want_kl[j, g.rows] = kl_last(g.logp_cf, lp).double().numpy()
            dx = x - g.x_clean
            full = (g.x_cf - g.x_clean).flatten(1).norm(dim=1)
            rel = (dx.flatten(1).norm(dim=1) / full).numpy()
            np.testing.assert_allclose(runs.edit[j, g.rows], rel, rtol=1e-5, atol=1e-7)
    assert want_kl.max() > 0.05  # KLs well above float noise
    np.testing.assert_allclose(runs.kl, want_kl, rtol=1e-3, atol=2e-6)
    np.testing.assert_allclose(plain.kl, want_kl, rtol=1e-3, atol=2e-6)
    np.testing.assert_allclose(runs.edit_abs, plain.edit_abs, rtol=1e-6, atol=0)


def test_curves_with_and_without_the_prefix_agree(sm, data):
    """The stage's curves (all three rankings) of a lossy basis: the same points either way;
    the orders come from the same attribution, so they are identical."""
    hp = sm.hookpoint(HP)
    b = neuron_basis(32, k=4)
    fast = ioi_curves(sm, hp, data, b, "pow2", batch_size=7)
    for r, c in fast.items():
        assert c.info["states"] > 0
        orders = pair_orders(patching.attribution(sm, hp, data, b),
                             np.array([p.half for p in data.pairs]), r, True)  # fmt: skip
        sets = top_k_masks(orders, c.ks)
        plain = patching.patched_runs(sm, hp, data, b, sets, 64, reuse_prefix=False)
        np.testing.assert_allclose(c.kl, plain.kl, rtol=1e-3, atol=2e-6)
        np.testing.assert_allclose(c.edit, plain.edit, rtol=1e-6, atol=1e-9)

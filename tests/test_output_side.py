"""Ablation effects, logit lens and the output score (docs/output.md): hand computations on a
tiny random-weight model, known answers on the real SmolLM2, and the stages in a tiny suite."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from autointerp.bases.linear import SignedLinearBasis
from autointerp.causal.ablation import ablation_effects, ablation_effects_many
from autointerp.causal.hook_forward import HookForward
from autointerp.causal.logit_lens import feature_directions, lens_logits, logit_lens, to_residual
from autointerp.causal.output_score import amplification_gains, derangement
from autointerp.model import run_to_hookpoint, splice
from autointerp.types import Example, FeatureRecord
from tests.conftest import save_tiny_files

HOOK = "blocks.1.hook_resid_post"


def _rows(sm, n=4, T=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, len(sm.tokenizer), (n, T), generator=g)
    ids[:, 0] = sm.bos_token_id
    exclude = torch.zeros(n, T, dtype=torch.bool)
    exclude[:, 0] = True
    return ids, exclude


def _basis(d: int, m: int = 6, seed: int = 1) -> SignedLinearBasis:
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(m, d, generator=g)
    E = torch.linalg.pinv(D)  # [d, m]
    return SignedLinearBasis("b", "test", E, D, torch.randn(d, generator=g) * 0.1, None)


def _full_logprobs(sm, hp, ids, x_new):
    """The hand-made reference: a full forward with the activation at hp replaced."""
    with splice(hp, lambda a: x_new.to(a.dtype)):
        return F.log_softmax(sm.model(input_ids=ids, use_cache=False).logits.float(), -1)


@pytest.mark.parametrize("hook", [HOOK, "blocks.1.hook_mlp_out"])
def test_pass_from_the_hookpoint_equals_a_spliced_full_forward(tiny_model, hook):
    sm = tiny_model
    hp = sm.hookpoint(hook)
    ids, _ = _rows(sm)
    x = run_to_hookpoint(sm, hp, ids) + 0.5 * torch.randn(*ids.shape, hp.width)
    fwd = HookForward(sm, hp)
    assert fwd.resumes == (hook == HOOK)
    pos = torch.tensor([[3, 7], [0, 11], [5, 5], [10, 2]])
    got = fwd.logprobs(ids, x, pos)
    want = _full_logprobs(sm, hp, ids, x).gather(1, pos[..., None].expand(-1, -1, got.shape[-1]))
    assert torch.allclose(got, want, atol=1e-5)


def test_ablation_kl_ce_and_logit_shifts_match_a_hand_computation(tiny_model):
    sm = tiny_model
    hp = sm.hookpoint(HOOK)
    ids, exclude = _rows(sm, n=3, T=12)
    acts = run_to_hookpoint(sm, hp, ids)
    basis = _basis(hp.width)
    f, seq, p = 2, 1, 4
    # one top example whose max is at row position p; a second context in row 2 at position 9
    ex1 = Example(["t"] * 4, [0] * 4, [0.1, 0.2, 3.0, 0.5], "top", seq=seq, start=p - 2)
    ex2 = Example(["t"] * 3, [0] * 3, [2.0, 0.1, 0.0], "top", seq=2, start=9)
    rec = FeatureRecord("b", f, 0.1, 3.0, explain=[ex2], test_top=[ex1])
    (eff,) = ablation_effects(
        HookForward(sm, hp), basis, [rec], ids.numpy(), acts.numpy(), exclude.numpy(),
        n_contexts=2, n_positions=3, n_logit_tokens=3,
    )  # fmt: skip
    # by hand: x' = x - c_f d_f at every non-excluded position (linear decoder), full forwards
    kls, ces, dl = [], [], []
    for row, positions in ((seq, [4, 5, 6]), (2, [9, 10])):  # row 2: t + 1 < T cuts at 10
        x = acts[row : row + 1]
        c = basis.encode(x[0])[:, f]
        c[0] = 0.0  # BOS keeps its activation
        xa = x - c[None, :, None] * basis.D[f]
        lp0 = _full_logprobs(sm, hp, ids[row : row + 1], x)[0]
        lp1 = _full_logprobs(sm, hp, ids[row : row + 1], xa)[0]
        for t in positions:
            kls.append(float((lp0[t].exp() * (lp0[t] - lp1[t])).sum()))
            y = ids[row, t + 1]
            ces.append(float(lp0[t, y] - lp1[t, y]))
            dl.append(lp1[t] - lp0[t])
    assert eff.n_pairs == 5 and eff.n_contexts == 2
    assert eff.kl == pytest.approx(np.mean(kls), rel=1e-4, abs=1e-7)
    assert eff.ce_delta == pytest.approx(np.mean(ces), rel=1e-4, abs=1e-7)
    mean = torch.stack(dl).mean(0)
    falls = [sm.tokenizer.decode([i]) for i in mean.topk(3, largest=False).indices.tolist()]
    assert [t for t, _ in eff.falls] == falls
    assert eff.falls[0][1] == pytest.approx(float(mean.min()), abs=1e-4)
    assert eff.rises[0][1] == pytest.approx(float(mean.max()), abs=1e-4)
    assert eff.kl > 0


def _same_ranking(a: list[list], b: list[list], tol: float = 2e-4) -> None:
    """Two top-token lists from different batch shapes: the same values, and the same token at
    every rank whose value is apart from its neighbours' by more than float noise (the order
    of a near-tie depends on the CPU's kernels, not on the code)."""
    assert [v for _, v in a] == pytest.approx([v for _, v in b], abs=tol)
    vals = [v for _, v in a]
    for i, ((ta, va), (tb, _)) in enumerate(zip(a, b, strict=True)):
        near = [u for j, u in enumerate(vals) if j != i and abs(u - va) <= 2 * tol]
        if not near and i < len(vals) - 1:
            assert ta == tb, (i, a, b)


def test_rows_shared_by_features_of_several_bases_give_the_same_effects(tiny_model):
    """One original run per row serves every context on it (positions merged): the same
    numbers as each basis alone, one context per pass."""
    sm = tiny_model
    hp = sm.hookpoint(HOOK)
    ids, exclude = _rows(sm, n=3, T=12)
    acts = run_to_hookpoint(sm, hp, ids).numpy()
    ids, exclude = ids.numpy(), exclude.numpy()

    def rec(name, f, starts):
        tops = [Example(["t"] * 2, [0] * 2, [1.0, 2.0 + i], "top", seq=q, start=s)
                for i, (q, s) in enumerate(starts)]  # fmt: skip
        return FeatureRecord(name, f, 0.1, 3.0, test_top=tops)

    a, b = _basis(hp.width, seed=1), _basis(hp.width, seed=2)
    b.name = "b2"
    recs_a = [rec("b", 0, [(0, 2), (1, 5)]), rec("b", 3, [(0, 6)])]
    recs_b = [rec("b2", 1, [(0, 3), (2, 1)])]
    fwd = HookForward(sm, hp)
    many = ablation_effects_many(fwd, {"b": (a, recs_a), "b2": (b, recs_b)}, ids, acts, exclude,
                                 n_positions=3, batch_size=64)  # fmt: skip
    for name, basis, recs in (("b", a, recs_a), ("b2", b, recs_b)):
        alone = ablation_effects(fwd, basis, recs, ids, acts, exclude, n_positions=3,
                                 batch_size=1)  # fmt: skip
        for x, y in zip(many[name], alone, strict=True):
            assert x.n_pairs == y.n_pairs > 0
            # float32 reproduces a log-probability to ~1e-6 across batch shapes and kernels
            # (AVX2 vs AVX-512): a KL of 2e-5 nats moves by ~1e-7 between them
            assert x.kl == pytest.approx(y.kl, rel=1e-4, abs=1e-6)
            assert x.ce_delta == pytest.approx(y.ce_delta, rel=1e-4, abs=1e-6)
            _same_ranking(x.falls, y.falls)
            _same_ranking(x.rises, y.rises)


def test_a_feature_without_measurable_context_is_undefined_with_a_reason(tiny_model):
    sm = tiny_model
    hp = sm.hookpoint(HOOK)
    ids, exclude = _rows(sm, n=2, T=8)
    acts = run_to_hookpoint(sm, hp, ids)
    last = Example(["t"], [0], [1.0], "top", seq=0, start=7)  # max at the last position
    (eff,) = ablation_effects(
        HookForward(sm, hp), _basis(hp.width), [FeatureRecord("b", 0, 0.1, 1.0, test_top=[last])],
        ids.numpy(), acts.numpy(), exclude.numpy(),
    )  # fmt: skip
    assert eff.kl is None and eff.ce_delta is None and eff.reason


def test_logit_lens_is_the_unembedding_of_the_norm_weighted_direction(tiny_model):
    sm = tiny_model
    hp = sm.hookpoint(HOOK)
    basis = _basis(hp.width)
    d = feature_directions(basis, [1, 4])
    assert torch.allclose(d[0], basis.D[1], atol=1e-5)
    assert torch.allclose(d[1], basis.D[4], atol=1e-5)
    with torch.no_grad():
        sm.model.model.norm.weight.copy_(torch.linspace(0.5, 2.0, hp.width))
    W, g = sm.model.lm_head.weight, sm.model.model.norm.weight
    want = torch.stack([W @ (g * d[j]) for j in range(2)])
    assert torch.allclose(lens_logits(sm, d), want, atol=1e-5)
    lens = logit_lens(sm, hp, basis, [1, 4], 3)
    assert lens[0].top_ids == want[0].topk(3).indices.tolist()
    assert lens[1].bottom_logits[0] == pytest.approx(float(want[1].min()), abs=1e-5)
    # MLP neurons: the direction reaches the residual stream through down_proj
    hn = sm.hookpoint("blocks.1.mlp.hook_post")
    dn = torch.randn(2, hn.width)
    assert torch.allclose(to_residual(sm, hn, dn), dn @ sm.layers[1].mlp.down_proj.weight.T)


def test_output_gain_matches_a_hand_computation(tiny_model):
    sm = tiny_model
    hp = sm.hookpoint(HOOK)
    ids, exclude = _rows(sm, n=3, T=10)
    acts = run_to_hookpoint(sm, hp, ids)
    basis = _basis(hp.width)
    sets = [[[5, 9], [7]], [[11], []]]  # feature 0: {5, 9} then {11}; feature 3: {7}, empty
    gains, alpha = amplification_gains(
        HookForward(sm, hp), basis, [0, 3], sets, ids.numpy(), acts.numpy(), exclude.numpy(),
        np.arange(3), prompt_len=6, strength=0.5,
    )  # fmt: skip
    x = acts[:, :6]
    m = float(x[:, 1:].norm(dim=-1).mean())
    for i, f in enumerate([0, 3]):
        d = basis.D[f]
        assert alpha[i] == pytest.approx(0.5 * m / float(d.norm()), rel=1e-5)
        xa = x.clone()
        xa[:, 1:] += alpha[i] * d
        lp0 = _full_logprobs(sm, hp, ids[:, :6], x)[:, -1]
        lp1 = _full_logprobs(sm, hp, ids[:, :6], xa)[:, -1]
        for s in range(2):
            S = sets[s][i]
            if not S:
                assert math.isnan(gains[s, i])
                continue
            want = (lp1[:, S].logsumexp(-1) - lp0[:, S].logsumexp(-1)).mean()
            assert gains[s, i] == pytest.approx(float(want), abs=1e-5)


def test_derangement_moves_every_feature():
    for n in (2, 3, 10, 64):
        p = derangement(n, seed=n)
        assert sorted(p.tolist()) == list(range(n)) and (p != np.arange(n)).all()


# --------------------------------------------------------------------------- known answers


@pytest.mark.slow
def test_unembedding_direction_tops_its_logit_lens_and_amplifying_it_raises_the_token(
    real_model,
):
    """Real SmolLM2: features built as the (tied) unembedding rows of common tokens."""
    sm = real_model
    tok = sm.tokenizer
    hp = sm.hookpoint("blocks.6.hook_resid_post")
    words = [" the", " and", "'s", " red", " seven", " s"]
    tids = [tok.encode(w, add_special_tokens=False)[0] for w in words]
    W = sm.model.get_output_embeddings().weight.detach()
    D = W[tids].clone()
    basis = SignedLinearBasis("planted", "test", D.T / D.norm(dim=-1) ** 2, D,
                              torch.zeros(D.shape[1]), None)  # fmt: skip
    lens = logit_lens(sm, hp, basis, range(len(tids)), 5)
    assert [ln.top_ids[0] for ln in lens] == tids
    texts = ["The weather today is quite nice and I think", "In 1990 the company said that its"]
    enc = [tok.encode(t, add_special_tokens=False)[:8] for t in texts]
    ids = np.array([[tok.bos_token_id or 0] + e for e in enc])
    acts = run_to_hookpoint(sm, hp, torch.from_numpy(ids)).numpy()
    exclude = np.zeros(ids.shape, dtype=bool)
    exclude[:, 0] = True
    own = [[t] for t in tids]
    other = [[tids[(i + 1) % len(tids)]] for i in range(len(tids))]
    gains, _ = amplification_gains(
        HookForward(sm, hp), basis, list(range(len(tids))), [own, other], ids, acts, exclude,
        np.arange(len(ids)), prompt_len=9, strength=1.0,
    )  # fmt: skip
    assert (gains[0] > 0.5).all(), gains[0]  # amplifying the token's direction raises it
    assert gains[0].mean() > gains[1].mean() + 1.0  # more than it raises another token


# --------------------------------------------------------------------------- stages


def tiny_suite(tmp_path: Path, tiny_model, **causal):
    from autointerp.config import suite_from_dict

    model_dir, text = save_tiny_files(tmp_path, tiny_model)
    return suite_from_dict(
        {
            "name": "out",
            "model": {"name": str(model_dir), "hookpoint": HOOK},
            "corpus": {"source": str(text), "context": 16, "n_tokens": 1024},
            "bases": [{"kind": "neurons", "l0": 4}, {"kind": "pca", "l0": 4}],
            "records": {"n_features": 4},
            "metrics": {"n_tokens": 64, "ablations": ["zero"]},
            "explain": {"style": "top_tokens"},
            "scoring": {"scorers": [], "floor": True, "n_bootstrap": 100},
            "causal": {"output": {"n_prompts": 4, "prompt_len": 8}, **causal},
        }
    )


def _run(tmp_path, suite, name="r"):
    from autointerp.pipeline import SuiteRun

    r = SuiteRun(suite, results_root=tmp_path / "res", run_name=name, work_dir=tmp_path / "w",
                 llm_cache=tmp_path / "llm.sqlite", progress=False)  # fmt: skip
    rd = r.run()
    return rd, {row["stage"]: row["status"] for row in r.summary()}


def test_stages_write_columns_with_per_feature_data_and_resume(tmp_path, tiny_model):
    from autointerp.columns import load_columns

    rd, st = _run(tmp_path, tiny_suite(tmp_path, tiny_model))
    assert st["ablation"] == "computed" and st["output"] == "computed"
    cols = {c.stage: c for c in load_columns(rd)}
    abl, out = cols["ablation"], cols["output"]
    for basis in ("neurons", "pca"):
        kl = abl.rows[basis]["ablation_kl"]
        assert kl.value is not None and kl.value > 0 and kl.n == 4
        assert kl.ci_low <= kl.value <= kl.ci_high
        assert abl.rows[basis]["ablation_ce_delta"].value is not None
        feats = abl.extra["features"][basis]
        assert len(feats) == 4 and all(len(f["falls"]) == 5 for f in feats)
        assert out.rows[basis]["output_score"].n == 4
        per = out.extra["features"][basis]
        assert all(p["explanation"].startswith("tokens: ") and len(p["top"]) == 10 for p in per)
        want = np.mean([p["lift"] for p in per])
        assert out.rows[basis]["output_score_lift"].value == pytest.approx(want)
        # TokenChange: tokens from the explain prompts, scored on the others
        assert all(len(p["tc_tokens"]) == 10 for p in per)
        tc = np.mean([p["tc_score"] - p["tc_null"] for p in per])
        assert out.rows[basis]["output_tc_lift"].value == pytest.approx(tc)
        info = out.extra["token_change"][basis]
        assert not set(info["explain_rows"]) & set(info["score_rows"])
        assert out.rows[basis]["output_strength"].value == pytest.approx(info["strength"])
        assert "no random-directions basis" in out.rows[basis]["output_tc_vs_random"].reason
    assert abl.extra["resumed_at_hookpoint"] is True
    assert "output_score_llm" not in {c.name for c in out.columns}
    _, st = _run(tmp_path, tiny_suite(tmp_path, tiny_model))
    assert st["ablation"] == "cached" and st["output"] == "cached"
    # switched off: no cells, the reason kept
    rd2, _ = _run(tmp_path, tiny_suite(tmp_path, tiny_model, ablation={"enabled": False}), "off")
    off = json.loads((rd2 / "columns" / "ablation.json").read_text())
    assert off["rows"] == {} and "enabled = false" in off["extra"]["disabled"]


def test_llm_output_explanations_use_the_explainer(tmp_path, tiny_model, monkeypatch):
    """The opt-in LLM style: the explainer sees the logit-lens tokens; its summary's words are
    scored (a scripted client stands in for the LLM here)."""
    from autointerp.llm.base import ChatResponse
    from autointerp.stages import env as env_mod

    seen = []

    class Scripted:
        async def chat(self, messages, **kw):
            seen.append(messages[-1]["content"])
            return ChatResponse(text="cats and mats", finish_reason="stop")

        def forget(self, key):
            pass

    monkeypatch.setattr(env_mod.LLMSession, "clients", lambda self, ctx: {"explainer": Scripted()})
    monkeypatch.setattr(env_mod.LLMSession, "flush", lambda self: None)
    suite = tiny_suite(tmp_path, tiny_model, output={"n_prompts": 4, "prompt_len": 8,
                                                      "llm_explanations": True})  # fmt: skip
    rd, _ = _run(tmp_path, suite)
    out = json.loads((rd / "columns" / "output.json").read_text())
    assert len(seen) == 8 and "tokens have in common" in seen[0]
    per = out["extra"]["features"]["neurons"][0]
    assert per["llm_explanation"]["text"] == "cats and mats"
    assert per["llm_score"] is not None
    assert out["rows"]["neurons"]["output_score_llm"]["n"] == 4

"""The "why this completion?" latent attribution (OpenAI 2025's delta) by hand on a tiny model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from autointerp.bases.linear import SignedLinearBasis, neuron_basis
from autointerp.circuits.attribute import decoder_directions, delta, rank, split_ids
from autointerp.errors import AutointerpError
from autointerp.model import run_to_hookpoint, splice
from tests.conftest import make_tiny_model

HP = "blocks.1.hook_resid_post"


def _loss(sm, hp, ids, n_p, x):
    with torch.no_grad(), splice(hp, lambda a: x.to(a.dtype)):
        lp = F.log_softmax(sm.model(input_ids=ids, use_cache=False).logits[0].float(), -1)
    return float(-lp[n_p - 1 : -1].gather(-1, ids[0, n_p:, None]).sum())


def test_delta_of_neurons_by_hand_with_a_finite_difference_gradient():
    sm = make_tiny_model(n_layers=2, d_model=16, seed=3, initializer_range=0.3)
    hp = sm.hookpoint(HP)
    prompt, comp = "The cat sat on the m", "at"
    ids, n_p = split_ids(sm, prompt, comp)
    assert len(ids) - n_p == 2
    t_ids = torch.tensor([ids])
    x = run_to_hookpoint(sm, hp, t_ids).float()
    abar = run_to_hookpoint(sm, hp, torch.tensor([split_ids(sm, "A dog ran", " to")[0]]))
    abar = abar[0].float().mean(0)
    got = delta(sm, hp, [neuron_basis(16, k=None)], prompt, comp, abar)["neurons"]
    assert got.shape == (32,)
    # neurons: d_i = +-e_i, so delta_i = -sum_t g_t[i] (a_t[i] - abar[i]) for both signs
    assert torch.allclose(got[:16], got[16:], atol=1e-6)
    eps = 1e-2
    for i in [int(got[:16].abs().argmax()), 0, 7]:
        hand = 0.0
        for t in range(n_p - 1, len(ids) - 1):
            up, dn = x.clone(), x.clone()
            up[0, t, i] += eps
            dn[0, t, i] -= eps
            g = (_loss(sm, hp, t_ids, n_p, up) - _loss(sm, hp, t_ids, n_p, dn)) / (2 * eps)
            hand += -g * float(x[0, t, i] - abar[i])
        assert float(got[i]) == pytest.approx(hand, rel=2e-2, abs=1e-4)
    assert float(got.abs().max()) > 1e-3


def test_rank_is_good_minus_bad_and_directions_are_the_decoder_rows():
    sm = make_tiny_model(n_layers=2, d_model=16, seed=3, initializer_range=0.3)
    hp = sm.hookpoint(HP)
    g = torch.Generator().manual_seed(0)
    q = torch.linalg.qr(torch.randn(16, 16, generator=g))[0]
    b = SignedLinearBasis("rot", "pca", q, q.T, torch.full((16,), 0.5), 4)
    d = decoder_directions(b)
    assert torch.allclose(d[:16], q.T, atol=1e-6) and torch.allclose(d[16:], -q.T, atol=1e-6)
    abar = torch.zeros(16)
    r = rank(sm, hp, [b], "The cat sat on the", " mat", " dog", abar)["rot"]
    dg = delta(sm, hp, [b], "The cat sat on the", " mat", abar)["rot"]
    db = delta(sm, hp, [b], "The cat sat on the", " dog", abar)["rot"]
    assert torch.allclose(r, dg - db, atol=1e-6)
    assert float((dg - db).abs().max()) > 1e-4


def test_a_completion_that_is_not_a_continuation_is_one_clear_error():
    sm = make_tiny_model(n_layers=2, d_model=16, seed=3)
    with pytest.raises(AutointerpError, match="continuation"):
        split_ids(sm, "The cat", "")


def test_attribute_command_loads_a_runs_bases_through_the_stage_cache(tmp_path, capsys):
    import json

    from autointerp.circuits.attribute import rank as rank_
    from autointerp.circuits.command import load_run_bases
    from autointerp.cli import main
    from autointerp.config import suite_from_dict
    from tests.causal_tiny import tiny_word_model
    from tests.conftest import save_tiny_files

    model_dir, text = save_tiny_files(
        tmp_path, tiny_word_model(), "The cat sat on the mat . A dog ran to 12 red doors . "
    )
    suite = suite_from_dict(
        {
            "name": "attr",
            "model": {"name": str(model_dir), "hookpoint": "blocks.1.hook_resid_post"},
            "corpus": {"source": str(text), "context": 16, "n_tokens": 512},
            "bases": [{"kind": "pca", "l0": 4}, {"kind": "neurons", "l0": 4}],
        }
    )
    rd = tmp_path / "res" / "attr" / "r"
    rd.mkdir(parents=True)
    (rd / "suite.json").write_text(json.dumps(suite.model_dump()))
    wd = tmp_path / "w"
    prompt = "When Mary and John went to the store , John gave a drink to"
    argv = ["attribute", "--run", str(rd), "--prompt", prompt, "--good", " Mary",
            "--bad", " John", "--top", "3", "--work-dir", str(wd)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "## pca" in out and "## neurons" in out and "(not explained)" in out
    (page,) = (rd / "attribute").glob("*.html")  # the page next to its markdown
    assert page.with_suffix(".md").read_text() == out
    assert "<h3>pca</h3>" in page.read_text() and "#open=" not in page.read_text()  # no records
    assert not (rd / "browser").exists()  # not a finished run (no manifest): no browser
    loaded = load_run_bases(rd, wd)  # from the cache now
    r = rank_(loaded["sm"], loaded["hp"], loaded["bases"], prompt, " Mary", " John", loaded["mean"])
    top = int(r["pca"].abs().argmax())
    assert f"| 1 | {top} | {float(r['pca'][top]):+.4g} |" in out
    assert main(["attribute", "--run", str(tmp_path), "--prompt", "a", "--good", " b",
                 "--bad", " c"]) == 2  # fmt: skip
    assert "not a finished run" in capsys.readouterr().err

"""The SAE trainer: recovers a known sparse dictionary, decreases its loss, is deterministic,
trains once and is reused, and the train-sae / inspect commands work end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from autointerp.bases.checkpoints import load_checkpoint
from autointerp.cli import main
from autointerp.config import SAETrainConfig
from autointerp.train import evaluate_sae, geometric_median, train_or_load, train_sae

D, F_TRUE, N = 32, 64, 12288


@pytest.fixture(scope="module")
def synthetic():
    """x = sum of 3 of 64 known unit directions with positive magnitudes, + offset + noise."""
    g = torch.Generator().manual_seed(1)
    dictionary = torch.randn(F_TRUE, D, generator=g)
    dictionary /= dictionary.norm(dim=1, keepdim=True)
    idx = torch.stack([torch.randperm(F_TRUE, generator=g)[:3] for _ in range(N)])
    mag = 0.5 + torch.rand(N, 3, generator=g) * 2
    x = (mag[..., None] * dictionary[idx]).sum(1) + 0.3 + 0.01 * torch.randn(N, D, generator=g)
    return x, dictionary


def test_topk_recovers_known_dictionary(synthetic):
    x, dictionary = synthetic
    cfg = SAETrainConfig(architecture="topk", expansion=4, k=3, lr=3e-3, epochs=6, batch_size=256)
    sae = train_sae(x, cfg, progress=False)
    st = sae.info["training"]
    assert st["fvu"] < 0.1, st
    assert st["l0"] <= 3.0
    # most true directions have a decoder row with cosine > 0.9
    W = sae.W_dec / sae.W_dec.norm(dim=1, keepdim=True)
    best = (dictionary @ W.T).max(dim=1).values
    assert (best > 0.9).float().mean() > 0.8, best
    # decoder rows stay unit norm; codes non-negative; stats agree with a recomputation
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(sae.d_sae), atol=1e-4, rtol=0)
    again = evaluate_sae(sae, x, max_tokens=4096)
    assert abs(again["fvu"] - st["fvu"]) < 0.05
    assert (sae.encode(x[:100]) >= 0).all()


def test_relu_loss_decreases_and_sparsifies(synthetic):
    x, _ = synthetic
    cfg = SAETrainConfig(
        architecture="relu", expansion=4, l1_coeff=1.0, lr=3e-3, epochs=4, batch_size=256
    )
    sae = train_sae(x, cfg, progress=False)
    hist = sae.info["training"]["epoch_history"]
    assert len(hist) == 4
    losses = [h["loss"] for h in hist]
    assert all(b < a for a, b in zip(losses, losses[1:])), hist
    assert losses[-1] < 0.7 * losses[0], hist
    st = sae.info["training"]
    assert st["fvu"] < 0.5 and st["l0"] < 0.5 * sae.d_sae, st


def test_deterministic_with_seed(synthetic):
    x, _ = synthetic
    cfg = SAETrainConfig(architecture="topk", expansion=2, k=4, epochs=1, batch_size=512, seed=7)
    a = train_sae(x[:4096], cfg, progress=False)
    b = train_sae(x[:4096], cfg, progress=False)
    for name, t in a.tensors().items():
        assert torch.equal(t, b.tensors()[name]), name
    c = train_sae(x[:4096], cfg.model_copy(update={"seed": 8}), progress=False)
    assert not torch.equal(a.W_dec, c.W_dec)


def test_geometric_median_hand_computed():
    # three points on a line: the geometric median is the middle one
    pts = torch.tensor([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0]])
    torch.testing.assert_close(
        geometric_median(pts, iters=200), torch.tensor([1.0, 0.0]), atol=1e-3, rtol=0
    )


def test_folded_scaling_reads_raw_activations(synthetic):
    """Training rescales activations to E||x|| = sqrt(d) and folds the factor back: an SAE
    trained on 40 x reconstructs raw 40 x as well as one trained on x reconstructs x."""
    x, _ = synthetic
    cfg = SAETrainConfig(architecture="topk", expansion=4, k=3, lr=3e-3, epochs=2, batch_size=256)
    small = train_sae(x, cfg, progress=False)
    big = train_sae(x * 40.0, cfg, progress=False)
    assert big.info["training"]["scaling_factor"] < 0.1
    xs = x[:2048]

    def fvu(sae, v):
        with torch.no_grad():
            return float((sae(v) - v).pow(2).sum() / (v - v.mean(0)).pow(2).sum())

    assert fvu(small, xs) < 0.5
    assert abs(fvu(big, 40.0 * xs) - fvu(small, xs)) < 0.02
    # codes are in raw units: 40x larger
    with torch.no_grad():
        ratio = big.encode(40.0 * xs).sum() / small.encode(xs).sum()
    assert abs(float(ratio) - 40.0) < 2.0


def test_train_or_load_trains_once(synthetic, tmp_path):
    x, _ = synthetic
    cfg = SAETrainConfig(architecture="topk", expansion=2, k=4, epochs=1, batch_size=512)
    meta = {"model": "tiny-llama", "hookpoint": "blocks.1.hook_resid_post"}
    a = train_or_load(x[:2048], cfg, tmp_path, meta, progress=False)
    assert a.info["reused"] is False
    mtime = (tmp_path / "weights.safetensors").stat().st_mtime_ns
    b = train_or_load(x[:2048], cfg, tmp_path, meta, progress=False)
    assert b.info["reused"] is True
    assert (tmp_path / "weights.safetensors").stat().st_mtime_ns == mtime
    assert torch.equal(a.W_enc, b.W_enc)
    assert b.info["hookpoint"] == "blocks.1.hook_resid_post" and b.info["training"]["l0"] > 0
    # another config (or other data) retrains
    c = train_or_load(x[:2048], cfg.model_copy(update={"k": 3}), tmp_path, meta, progress=False)
    assert c.info["reused"] is False and c.k == 3
    d = train_or_load(x[2048:4096], cfg.model_copy(update={"k": 3}), tmp_path, meta, progress=False)
    assert d.info["reused"] is False


def test_cli_train_sae_and_inspect(synthetic, tmp_path, capsys):
    x, _ = synthetic
    np.save(tmp_path / "acts.npy", x[:4096].numpy())
    out = tmp_path / "sae"
    rc = main(
        [
            "train-sae",
            "--acts",
            str(tmp_path / "acts.npy"),
            "--out",
            str(out),
            "--architecture",
            "topk",
            "--expansion",
            "2",
            "--k",
            "4",
            "--epochs",
            "1",
            "--batch-size",
            "512",
            "--hookpoint",
            "blocks.1.hook_resid_post",
            "--quiet",
        ]
    )
    assert rc == 0
    assert "fvu=" in capsys.readouterr().out
    meta = json.loads((out / "autointerp.json").read_text())
    assert meta["architecture"] == "topk" and meta["k"] == 4 and meta["d_sae"] == 2 * D
    assert {"mse", "fvu", "l0", "dead_frac"} <= set(meta["training"])
    sae = load_checkpoint(out, expected_d_in=D, expected_hookpoint="model.layers.1")
    assert sae.info["format"] == "native"
    rc = main(["inspect", str(out), "--json"])
    assert rc == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "native" and info["d_sae"] == 2 * D and info["k"] == 4
    assert abs(info["decoder_norm"]["mean"] - 1.0) < 1e-4
    # bad input: one clear error, exit status 2
    rc = main(["train-sae", "--acts", str(tmp_path / "missing.npy"), "--out", str(out)])
    assert rc == 2
    assert "does not exist" in capsys.readouterr().err


def test_sparse_decode_gradients_match_dense_autograd():
    """The hand-written backward of the gathered decode (sampled product for the codes'
    gradient, sparse product for the decoder's) equals autograd through a dense decode."""
    from autointerp.train import _SparseDecode

    g = torch.Generator().manual_seed(0)
    n, d, B, k = 50, 12, 40, 5
    W = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    idx = torch.rand(B, n, generator=g).topk(k, dim=1, sorted=False).indices
    f = torch.randn(B, k, generator=g, dtype=torch.float64, requires_grad=True)
    up = torch.randn(B, d, generator=g, dtype=torch.float64)
    (_SparseDecode.apply(f, idx, W) * up).sum().backward()
    gf, gW = f.grad.clone(), W.grad.clone()
    f.grad = W.grad = None
    dense = torch.zeros(B, n, dtype=torch.float64).scatter(1, idx, f)
    ((dense @ W) * up).sum().backward()
    assert torch.allclose(gf, f.grad, atol=1e-10)
    assert torch.allclose(gW, W.grad, atol=1e-10)

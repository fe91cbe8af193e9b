"""Every checkpoint format and architecture loads and encodes/decodes exactly like a direct
reimplementation of that library's formula, written here against the raw file layout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from autointerp.bases.checkpoints import (
    canonical_hookpoint,
    detect_format,
    load_checkpoint,
    same_hookpoint,
    same_model,
    save_native,
)
from autointerp.bases.sae import SAE

D_IN, D_SAE, N = 16, 48, 64
TOL = {"atol": 1e-5, "rtol": 1e-5}


def rand(*shape, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * scale


def acts(seed=99):
    return rand(N, D_IN, seed=seed) * 2 + 0.3


# ----------------------------------------------------------------------------- writers
# Each writes the library's exact file layout (key names, shapes, cfg fields).


def saelens_weights(arch: str, seed: int = 0) -> dict[str, torch.Tensor]:
    w = {
        "W_enc": rand(D_IN, D_SAE, seed=seed, scale=0.5),
        "W_dec": rand(D_SAE, D_IN, seed=seed + 1, scale=0.3),
        "b_dec": rand(D_IN, seed=seed + 2, scale=0.1),
    }
    if arch == "gated":
        w["b_gate"] = rand(D_SAE, seed=seed + 3, scale=0.5)
        w["r_mag"] = rand(D_SAE, seed=seed + 4, scale=0.2)
        w["b_mag"] = rand(D_SAE, seed=seed + 5, scale=0.5)
    else:
        w["b_enc"] = rand(D_SAE, seed=seed + 3, scale=0.5)
    if arch == "jumprelu":
        w["threshold"] = rand(D_SAE, seed=seed + 6).abs() * 0.8
    return w


def write_saelens(
    d: Path,
    arch: str,
    *,
    layout: str = "v6",
    k: int = 5,
    apply_b_dec: bool = True,
    norm: str = "none",
    hook: str = "blocks.2.hook_resid_post",
    model: str = "tiny-llama",
    extra_cfg: dict | None = None,
    weights: dict | None = None,
) -> dict[str, torch.Tensor]:
    d.mkdir(parents=True, exist_ok=True)
    w = weights if weights is not None else saelens_weights(arch)
    if layout == "v6":
        cfg = {
            "architecture": arch,
            "d_in": D_IN,
            "d_sae": D_SAE,
            "dtype": "float32",
            "device": "cpu",
            "apply_b_dec_to_input": apply_b_dec,
            "normalize_activations": norm,
            "reshape_activations": "none",
            "metadata": {
                "model_name": model,
                "hook_name": hook,
                "hook_head_index": None,
                "context_size": 128,
                "prepend_bos": True,
                "sae_lens_version": "6.5.0",
            },
        }
        if arch == "topk":
            cfg["k"] = k
    else:  # older flat config
        cfg = {
            "d_in": D_IN,
            "d_sae": D_SAE,
            "model_name": model,
            "hook_point": hook,
            "hook_point_layer": 2,
            "activation_fn_str": "topk" if arch == "topk" else "relu",
            "apply_b_dec_to_input": apply_b_dec,
            "normalize_activations": norm,
            "context_size": 128,
            "dtype": "torch.float32",
        }
        if arch == "topk":
            cfg["activation_fn_kwargs"] = {"k": k}
        if arch in ("jumprelu", "gated"):
            cfg["architecture"] = arch
    cfg.update(extra_cfg or {})
    (d / "cfg.json").write_text(json.dumps(cfg))
    save_file(w, str(d / "sae_weights.safetensors"))
    return w


def saelens_ref(x, w, arch, *, k=5, apply_b_dec=True, norm="none", factor=None):
    """SAELens: process_sae_in (norm, minus b_dec), architecture encode, decode, norm out."""
    if norm == "constant_norm_rescale":
        c = math.sqrt(D_IN) / x.norm(dim=-1, keepdim=True)
        x_in = x * c
    elif norm == "layer_norm":
        mu = x.mean(-1, keepdim=True)
        std = (x - mu).std(-1, keepdim=True)
        x_in = (x - mu) / (std + 1e-5)
    elif norm == "expected_average_only_in":
        x_in = x * factor
    else:
        x_in = x
    sae_in = x_in - w["b_dec"] * apply_b_dec
    if arch == "gated":
        h = sae_in @ w["W_enc"]
        f = ((h + w["b_gate"]) > 0).float() * torch.relu(h * torch.exp(w["r_mag"]) + w["b_mag"])
    else:
        pre = sae_in @ w["W_enc"] + w["b_enc"]
        if arch == "standard":
            f = torch.relu(pre)
        elif arch == "topk":
            v, i = torch.topk(pre, k, dim=-1)
            f = torch.zeros_like(pre).scatter(-1, i, torch.relu(v))
        elif arch == "jumprelu":
            f = torch.relu(pre) * (pre > w["threshold"]).float()
    out = f @ w["W_dec"] + w["b_dec"]
    if norm == "constant_norm_rescale":
        out = out / c
    elif norm == "layer_norm":
        out = out * std + mu
    elif norm == "expected_average_only_in":
        out = out / factor
    return f, out


def dl_state(dict_class: str, seed: int = 0, k: int = 5, threshold: float = -1.0):
    """dictionary_learning state dicts with the library's parameter names and shapes."""
    enc_w = rand(D_SAE, D_IN, seed=seed, scale=0.5)  # nn.Linear(d_in, d_sae).weight
    dec_w = rand(D_IN, D_SAE, seed=seed + 1, scale=0.3)  # nn.Linear(d_sae, d_in).weight
    if dict_class == "AutoEncoder":
        return {
            "bias": rand(D_IN, seed=seed + 2, scale=0.1),
            "encoder.weight": enc_w,
            "encoder.bias": rand(D_SAE, seed=seed + 3, scale=0.5),
            "decoder.weight": dec_w,
        }
    if dict_class in ("AutoEncoderTopK", "BatchTopKSAE"):
        return {
            "k": torch.tensor(k, dtype=torch.int),
            "threshold": torch.tensor(threshold, dtype=torch.float32),
            "decoder.weight": dec_w,
            "encoder.weight": enc_w,
            "encoder.bias": rand(D_SAE, seed=seed + 3, scale=0.5),
            "b_dec": rand(D_IN, seed=seed + 2, scale=0.1),
        }
    if dict_class == "JumpReluAutoEncoder":
        return {
            "W_enc": rand(D_IN, D_SAE, seed=seed, scale=0.5),
            "b_enc": rand(D_SAE, seed=seed + 3, scale=0.5),
            "W_dec": rand(D_SAE, D_IN, seed=seed + 1, scale=0.3),
            "b_dec": rand(D_IN, seed=seed + 2, scale=0.1),
            "threshold": rand(D_SAE, seed=seed + 6).abs() * 0.8,
        }
    if dict_class == "GatedAutoEncoder":
        return {
            "decoder_bias": rand(D_IN, seed=seed + 2, scale=0.1),
            "r_mag": rand(D_SAE, seed=seed + 4, scale=0.2),
            "gate_bias": rand(D_SAE, seed=seed + 3, scale=0.5),
            "mag_bias": rand(D_SAE, seed=seed + 5, scale=0.5),
            "encoder.weight": enc_w,
            "decoder.weight": dec_w,
        }
    raise ValueError(dict_class)


def write_dl(
    d: Path, dict_class: str, sd: dict, *, k: int = 5, config: bool = True, mid=None
) -> None:
    d.mkdir(parents=True, exist_ok=True)
    trainer = {
        "trainer_class": "X",
        "dict_class": dict_class,
        "activation_dim": D_IN,
        "dict_size": D_SAE,
        "layer": 2,
        "lm_name": "tiny-llama",
        "submodule_name": "resid_post_layer_2",
        "lr": 1e-3,
        "seed": 0,
    }
    if dict_class in ("AutoEncoderTopK", "BatchTopKSAE"):
        trainer["k"] = k
    if config:
        (d / "config.json").write_text(
            json.dumps({"trainer": trainer, "buffer": {"d_submodule": D_IN}})
        )
    if mid is None:
        torch.save(sd, d / "ae.pt")
    else:
        opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(3))])
        torch.save(
            {
                "step": 123,
                "ae": sd,
                "optimizer": opt.state_dict(),
                "config": {"trainer": trainer},
                "norm_factor": mid,
            },
            d / "ae.pt",
        )


def dl_ref(x, sd, dict_class):
    """dictionary_learning encode/decode written against the raw state dict."""
    if dict_class == "AutoEncoder":
        f = torch.relu(F.linear(x - sd["bias"], sd["encoder.weight"], sd["encoder.bias"]))
        return f, F.linear(f, sd["decoder.weight"]) + sd["bias"]
    if dict_class in ("AutoEncoderTopK", "BatchTopKSAE"):
        post = torch.relu(F.linear(x - sd["b_dec"], sd["encoder.weight"], sd["encoder.bias"]))
        thr = sd["threshold"]
        if dict_class == "BatchTopKSAE" and thr >= 0:
            f = post * (post > thr)
        else:
            v, i = post.topk(int(sd["k"]), dim=-1)
            f = torch.zeros_like(post).scatter(-1, i, v)
        return f, F.linear(f, sd["decoder.weight"]) + sd["b_dec"]
    if dict_class == "JumpReluAutoEncoder":
        pre = x @ sd["W_enc"] + sd["b_enc"]
        f = torch.relu(pre * (pre > sd["threshold"]))
        return f, f @ sd["W_dec"] + sd["b_dec"]
    if dict_class == "GatedAutoEncoder":
        x_enc = F.linear(x - sd["decoder_bias"], sd["encoder.weight"])
        gate = (x_enc + sd["gate_bias"] > 0).float()
        mag = torch.relu(sd["r_mag"].exp() * x_enc + sd["mag_bias"])
        f = gate * mag
        return f, F.linear(f, sd["decoder.weight"]) + sd["decoder_bias"]
    raise ValueError(dict_class)


def sparsify_weights(seed=0):
    return {
        "encoder.weight": rand(D_SAE, D_IN, seed=seed, scale=0.5),
        "encoder.bias": rand(D_SAE, seed=seed + 1, scale=0.5),
        "W_dec": rand(D_SAE, D_IN, seed=seed + 2, scale=0.3),
        "b_dec": rand(D_IN, seed=seed + 3, scale=0.1),
    }


def write_sparsify(d: Path, k: int = 6, seed: int = 0) -> dict:
    d.mkdir(parents=True, exist_ok=True)
    w = sparsify_weights(seed)
    cfg = {
        "activation": "topk",
        "expansion_factor": 3,
        "normalize_decoder": True,
        "num_latents": D_SAE,
        "k": k,
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": D_IN,
    }
    (d / "cfg.json").write_text(json.dumps(cfg))
    save_file(w, str(d / "sae.safetensors"))
    return w


def sparsify_ref(x, w, k):
    pre = torch.relu(F.linear(x - w["b_dec"], w["encoder.weight"], w["encoder.bias"]))
    v, i = pre.topk(k, dim=-1)
    f = torch.zeros_like(pre).scatter(-1, i, v)
    return f, f @ w["W_dec"] + w["b_dec"]


def check(basis, x, f_ref, out_ref):
    with torch.no_grad():
        f = basis.encode(x)
        out = basis.decode(f)
    assert (f >= 0).all()
    assert (f > 0).any(), "reference test is vacuous: nothing fires"
    torch.testing.assert_close(f, f_ref, **TOL)
    torch.testing.assert_close(out, out_ref, **TOL)
    sub = torch.tensor([f.shape[1] - 1, 0, 3])  # records encode only the features they keep
    with torch.no_grad():
        torch.testing.assert_close(basis.encode_features(x, sub), f[:, sub], **TOL)


# ----------------------------------------------------------------------------- SAELens


@pytest.mark.parametrize("arch", ["standard", "topk", "jumprelu", "gated"])
@pytest.mark.parametrize("layout", ["v6", "flat"])
def test_saelens_architectures(tmp_path, arch, layout):
    w = write_saelens(tmp_path, arch, layout=layout)
    b = load_checkpoint(tmp_path)
    assert b.info["format"] == "saelens"
    assert b.info["hookpoint"] == "blocks.2.hook_resid_post"
    assert b.info["model"] == "tiny-llama"
    assert b.info["architecture"] == {"standard": "relu"}.get(arch, arch)
    x = acts()
    check(b, x, *saelens_ref(x, w, arch))


def test_saelens_meta_key_and_no_b_dec_on_input(tmp_path):
    w = saelens_weights("standard")
    write_saelens(tmp_path, "standard", apply_b_dec=False, weights=w)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    cfg["meta"] = cfg.pop("metadata")  # some v6 releases write "meta"
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    b = load_checkpoint(tmp_path, "sae_lens")
    assert b.info["hookpoint"] == "blocks.2.hook_resid_post"
    x = acts()
    check(b, x, *saelens_ref(x, w, "standard", apply_b_dec=False))


@pytest.mark.parametrize("norm", ["constant_norm_rescale", "layer_norm"])
def test_saelens_per_token_normalisation(tmp_path, norm):
    w = write_saelens(tmp_path, "topk", norm=norm)
    b = load_checkpoint(tmp_path)
    x = acts() * 7
    f_ref, out_ref = saelens_ref(x, w, "topk", norm=norm)
    check(b, x, f_ref, out_ref)
    torch.testing.assert_close(b(x), out_ref, **TOL)
    with pytest.raises(Exception, match="same batch"):
        b.decode(b.encode(x)[:3])


def test_saelens_expected_average_scaling(tmp_path):
    w = write_saelens(
        tmp_path,
        "standard",
        norm="expected_average_only_in",
        extra_cfg={"norm_scaling_factor": 0.37},
    )
    b = load_checkpoint(tmp_path)
    x = acts()
    check(b, x, *saelens_ref(x, w, "standard", norm="expected_average_only_in", factor=0.37))


def test_saelens_old_finetuning_scaling_factor(tmp_path):
    w = saelens_weights("standard")
    sf = rand(D_SAE, seed=5).abs() + 0.5
    write_saelens(tmp_path, "standard", layout="flat", weights={**w, "scaling_factor": sf})
    b = load_checkpoint(tmp_path)
    x = acts()
    f = torch.relu((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"])
    check(b, x, f, (f * sf) @ w["W_dec"] + w["b_dec"])


def test_saelens_topk_rescale_acts_by_decoder_norm(tmp_path):
    w = write_saelens(tmp_path, "topk", extra_cfg={"rescale_acts_by_decoder_norm": True})
    b = load_checkpoint(tmp_path)
    x = acts()
    n = w["W_dec"].norm(dim=-1)
    pre = ((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]) * n
    v, i = pre.topk(5, dim=-1)
    f = torch.zeros_like(pre).scatter(-1, i, torch.relu(v))
    check(b, x, f, (f / n) @ w["W_dec"] + w["b_dec"])


# ----------------------------------------------------------------------------- dictionary_learning


@pytest.mark.parametrize(
    "dict_class,arch",
    [
        ("AutoEncoder", "relu"),
        ("AutoEncoderTopK", "topk"),
        ("BatchTopKSAE", "batchtopk"),
        ("JumpReluAutoEncoder", "jumprelu"),
        ("GatedAutoEncoder", "gated"),
    ],
)
@pytest.mark.parametrize("with_config", [True, False])
def test_dictionary_learning_classes(tmp_path, dict_class, arch, with_config):
    sd = dl_state(dict_class)
    write_dl(tmp_path, dict_class, sd, config=with_config)
    b = load_checkpoint(tmp_path)
    assert b.info["format"] == "dictionary_learning"
    if with_config or dict_class != "BatchTopKSAE":  # keys alone cannot tell batch topk
        assert b.info["architecture"] == arch
    if with_config:
        assert b.info["model"] == "tiny-llama"
        assert b.info["hookpoint"] == "blocks.2.hook_resid_post"
    x = acts()
    check(b, x, *dl_ref(x, sd, dict_class))


def test_dictionary_learning_batchtopk_threshold_at_inference(tmp_path):
    sd = dl_state("BatchTopKSAE", threshold=0.9)
    write_dl(tmp_path, "BatchTopKSAE", sd)
    b = load_checkpoint(tmp_path / "ae.pt")  # the file itself also works
    x = acts()
    f_ref, out_ref = dl_ref(x, sd, "BatchTopKSAE")
    check(b, x, f_ref, out_ref)
    # the threshold rule, not per-token top-k: L0 varies per token
    l0 = (b.encode(x) > 0).sum(-1)
    assert l0.max() != l0.min()


def test_dictionary_learning_mid_training_dict(tmp_path):
    sd = dl_state("AutoEncoderTopK")
    write_dl(tmp_path, "AutoEncoderTopK", sd, config=False, mid=2.5)
    b = load_checkpoint(tmp_path)
    assert b.info["step"] == 123 and b.info["norm_factor"] == 2.5
    x = acts() * 3
    # trained on x / norm_factor: reconstruction is scaled back
    f, out = dl_ref(x / 2.5, sd, "AutoEncoderTopK")
    check(b, x, f, out * 2.5)


# ----------------------------------------------------------------------------- sparsify


def test_sparsify_single_hookpoint(tmp_path):
    w = write_sparsify(tmp_path / "layers.2", k=6)
    b = load_checkpoint(tmp_path / "layers.2")
    assert b.info["format"] == "sparsify" and b.info["k"] == 6
    assert same_hookpoint(b.info["hookpoint"], "blocks.2.hook_resid_post")
    x = acts()
    check(b, x, *sparsify_ref(x, w, 6))


def test_sparsify_parent_folder_pick_by_hookpoint(tmp_path):
    w1 = write_sparsify(tmp_path / "layers.1", k=4, seed=10)
    w3 = write_sparsify(tmp_path / "layers.3", k=6, seed=30)
    (tmp_path / "config.json").write_text(json.dumps({"model": "tiny-llama", "k": 4}))
    with pytest.raises(Exception, match=r"layers\.1, layers\.3"):
        load_checkpoint(tmp_path)
    x = acts()
    b3 = load_checkpoint(tmp_path, expected_hookpoint="blocks.3.hook_resid_post")
    check(b3, x, *sparsify_ref(x, w3, 6))
    assert b3.info["model"] == "tiny-llama"
    b1 = load_checkpoint(tmp_path, expected_hookpoint="layers.1")
    check(b1, x, *sparsify_ref(x, w1, 4))


# ----------------------------------------------------------------------------- native


@pytest.mark.parametrize("arch", ["standard", "topk", "jumprelu", "gated"])
def test_native_roundtrip(tmp_path, arch):
    write_saelens(tmp_path / "src", arch)
    b = load_checkpoint(tmp_path / "src")
    save_native(b, tmp_path / "nat", training={"fvu": 0.1})
    assert detect_format(tmp_path / "nat") == "native"
    nb = load_checkpoint(tmp_path / "nat")
    meta = json.loads((tmp_path / "nat" / "autointerp.json").read_text())
    assert meta["hookpoint"] == "blocks.2.hook_resid_post" and meta["training"] == {"fvu": 0.1}
    x = acts()
    with torch.no_grad():
        torch.testing.assert_close(nb.encode(x), b.encode(x), atol=0, rtol=0)
        torch.testing.assert_close(nb(x), b(x), atol=0, rtol=0)


def test_native_batchtopk_and_device(tmp_path):
    w = saelens_weights("standard")
    sae = SAE(
        w["W_enc"],
        w["b_enc"],
        w["W_dec"],
        w["b_dec"],
        architecture="batchtopk",
        k=3,
        threshold=torch.tensor(0.5),
    )
    save_native(sae, tmp_path, hookpoint="blocks.1.hook_resid_post", model="m")
    b = load_checkpoint(tmp_path, device="cpu")
    x = acts()
    post = torch.relu((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"])
    f = post * (post > 0.5)
    check(b, x, f, f @ w["W_dec"] + w["b_dec"])
    assert not any(p.requires_grad for p in b.parameters())


# ----------------------------------------------------------------------------- names


def test_hookpoint_and_model_equivalence(tiny_model):
    from autointerp.model import resolve_hookpoint

    assert canonical_hookpoint("model.layers.6") == "blocks.6.hook_resid_post"
    assert canonical_hookpoint("layers.6.mlp") == "blocks.6.hook_mlp_out"
    assert canonical_hookpoint("blocks.7.hook_resid_pre") == "blocks.6.hook_resid_post"
    assert canonical_hookpoint("model.layers.6.mlp.down_proj:input") == "blocks.6.mlp.hook_post"
    assert not same_hookpoint("blocks.6.hook_resid_post", "blocks.6.hook_mlp_out")
    assert same_model("HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-gguf")
    assert not same_model("gpt2", "gpt2-xl")
    # a checkpoint's TL name and the HF module it resolves to agree
    hp = resolve_hookpoint(tiny_model.model, "blocks.2.hook_resid_post")
    assert same_hookpoint(hp.module_path, "blocks.2.hook_resid_post")

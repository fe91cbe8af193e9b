"""dictionary_learning checkpoints in the files its ``trainSAE`` writes, for every dictionary
class it saves, in both layouts::

    trainer_0/config.json + trainer_0/ae.pt                 (final)
    trainer_0/config.json + trainer_0/checkpoints/ae_N.pt   (mid-training: config one folder up)

State dicts are written with torch.save using the library's parameter/buffer names, shapes and
dtypes; encodings are checked against the library's ``encode`` formulas written out here
against the raw state dict (no dictionary_learning import)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from autointerp.bases.checkpoints import load_checkpoint
from autointerp.errors import CheckpointError

D_IN, D_SAE, N, K, STEP, LAYER = 16, 48, 64, 5, 500, 3
GROUPS = [8, 16, 24]  # Matryoshka group sizes, sum D_SAE
THRESHOLD = 0.4  # learnt batch threshold (>= 0 once training passed threshold_start_step)
HOOK = f"blocks.{LAYER}.hook_resid_post"
MODEL = "EleutherAI/pythia-70m-deduped"
TOL = {"atol": 1e-5, "rtol": 1e-5}

CLASSES = {  # dict_class -> (trainer_class, architecture)
    "AutoEncoder": ("StandardTrainer", "relu"),
    "AutoEncoderTopK": ("TopKTrainer", "topk"),
    "BatchTopKSAE": ("BatchTopKTrainer", "batchtopk"),
    "MatryoshkaBatchTopKSAE": ("MatryoshkaBatchTopKTrainer", "batchtopk"),
    "JumpReluAutoEncoder": ("JumpReluTrainer", "jumprelu"),
    "GatedAutoEncoder": ("GatedSAETrainer", "gated"),
}


def rand(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * scale


def acts(seed: int = 7) -> torch.Tensor:
    return rand(N, D_IN, seed=seed) * 2 + 0.3


def state_dict(dict_class: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """``ae.state_dict()`` of each class: nn.Linear weights are [out, in]; k, threshold and
    group_sizes are buffers (int32 scalar, float32 scalar, int64 vector)."""
    enc_w = rand(D_SAE, D_IN, seed=seed, scale=0.5)
    dec_w = rand(D_IN, D_SAE, seed=seed + 1, scale=0.3)
    b_enc = rand(D_SAE, seed=seed + 2, scale=0.5)
    b_dec = rand(D_IN, seed=seed + 3, scale=0.1)
    k = torch.tensor(K, dtype=torch.int)
    thr = torch.tensor(THRESHOLD, dtype=torch.float32)
    if dict_class == "AutoEncoder":
        return {
            "bias": b_dec,
            "encoder.weight": enc_w,
            "encoder.bias": b_enc,
            "decoder.weight": dec_w,
        }
    if dict_class in ("AutoEncoderTopK", "BatchTopKSAE"):
        return {
            "k": k,
            "threshold": thr,
            "decoder.weight": dec_w,
            "encoder.weight": enc_w,
            "encoder.bias": b_enc,
            "b_dec": b_dec,
        }
    if dict_class == "MatryoshkaBatchTopKSAE":  # nn.Parameter W_enc [d_in, d_sae]
        return {
            "k": k,
            "threshold": thr,
            "group_sizes": torch.tensor(GROUPS),
            "W_enc": enc_w.T.contiguous(),
            "b_enc": b_enc,
            "W_dec": dec_w.T.contiguous(),
            "b_dec": b_dec,
        }
    if dict_class == "JumpReluAutoEncoder":
        return {
            "W_enc": enc_w.T.contiguous(),
            "b_enc": b_enc,
            "W_dec": dec_w.T.contiguous(),
            "b_dec": b_dec,
            "threshold": rand(D_SAE, seed=seed + 4).abs() * 0.8,
        }
    if dict_class == "GatedAutoEncoder":
        return {
            "decoder_bias": b_dec,
            "encoder.weight": enc_w,
            "r_mag": rand(D_SAE, seed=seed + 5, scale=0.2),
            "gate_bias": rand(D_SAE, seed=seed + 6, scale=0.5),
            "mag_bias": rand(D_SAE, seed=seed + 7, scale=0.5),
            "decoder.weight": dec_w,
        }
    raise ValueError(dict_class)


def reference(x: torch.Tensor, sd: dict, dict_class: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The library's ``encode(x)`` (default arguments) and ``decode(f)``."""
    if dict_class == "AutoEncoder":
        f = torch.relu(F.linear(x - sd["bias"], sd["encoder.weight"], sd["encoder.bias"]))
        return f, F.linear(f, sd["decoder.weight"]) + sd["bias"]
    if dict_class in ("AutoEncoderTopK", "BatchTopKSAE"):
        post = torch.relu(F.linear(x - sd["b_dec"], sd["encoder.weight"], sd["encoder.bias"]))
        if dict_class == "BatchTopKSAE":  # use_threshold=True
            f = post * (post > sd["threshold"])
        else:  # use_threshold=False: per-token top-k
            top = post.topk(int(sd["k"]), sorted=False, dim=-1)
            f = torch.zeros_like(post).scatter_(-1, top.indices, top.values)
        return f, F.linear(f, sd["decoder.weight"]) + sd["b_dec"]
    if dict_class == "MatryoshkaBatchTopKSAE":
        post = torch.relu((x - sd["b_dec"]) @ sd["W_enc"] + sd["b_enc"])
        f = post * (post > sd["threshold"])
        f[:, int(sd["group_sizes"].sum()) :] = 0  # all groups active after from_pretrained
        return f, f @ sd["W_dec"] + sd["b_dec"]
    if dict_class == "JumpReluAutoEncoder":  # apply_b_dec_to_input = False
        pre = x @ sd["W_enc"] + sd["b_enc"]
        f = torch.relu(pre * (pre > sd["threshold"]))
        return f, f @ sd["W_dec"] + sd["b_dec"]
    if dict_class == "GatedAutoEncoder":
        x_enc = F.linear(x - sd["decoder_bias"], sd["encoder.weight"])
        gate = (x_enc + sd["gate_bias"] > 0).float()
        f = gate * torch.relu(sd["r_mag"].exp() * x_enc + sd["mag_bias"])
        return f, F.linear(f, sd["decoder.weight"]) + sd["decoder_bias"]
    raise ValueError(dict_class)


def trainer_config(dict_class: str, submodule_name: str | None) -> dict:
    trainer_class = CLASSES[dict_class][0]
    cfg = {
        "trainer_class": trainer_class,
        "dict_class": dict_class,
        "lr": 1e-3,
        "steps": 1000,
        "seed": 0,
        "activation_dim": D_IN,
        "dict_size": D_SAE,
        "device": "cpu",
        "layer": LAYER,
        "lm_name": MODEL,
        "wandb_name": f"{trainer_class}_trainer_0",
        "submodule_name": submodule_name,
    }
    if dict_class in ("AutoEncoderTopK", "BatchTopKSAE", "MatryoshkaBatchTopKSAE"):
        cfg |= {"k": K, "threshold_beta": 0.999, "threshold_start_step": 100}
    if dict_class == "MatryoshkaBatchTopKSAE":
        cfg |= {"group_fractions": [g / D_SAE for g in GROUPS], "group_sizes": GROUPS}
    return cfg


def write_trainer(
    root: Path,
    dict_class: str,
    sd: dict,
    *,
    step: int | None = None,
    config: bool = True,
    submodule_name: str | None = f"resid_post_layer_{LAYER}",
) -> Path:
    """``trainSAE(save_dir=root)`` output for one trainer; returns the .pt file written."""
    d = root / "trainer_0"
    d.mkdir(parents=True, exist_ok=True)
    if config:
        doc = {
            "trainer": trainer_config(dict_class, submodule_name),
            "buffer": {"d_submodule": D_IN, "io": "out", "n_ctxs": 30, "ctx_len": 128},
        }
        (d / "config.json").write_text(json.dumps(doc, indent=4))
    if step is None:
        f = d / "ae.pt"
    else:
        (d / "checkpoints").mkdir(exist_ok=True)
        f = d / "checkpoints" / f"ae_{step}.pt"
    torch.save({k: v.cpu() for k, v in sd.items()}, f)
    return f


def check_against_library(basis, sd: dict, dict_class: str) -> None:
    x = acts()
    f_ref, out_ref = reference(x, sd, dict_class)
    f = basis.encode(x)
    torch.testing.assert_close(f, f_ref, **TOL)
    torch.testing.assert_close(basis.decode(f), out_ref, **TOL)


# ----------------------------------------------------------------------------- every class


@pytest.mark.parametrize("dict_class", list(CLASSES))
@pytest.mark.parametrize("layout", ["final", "mid"])
def test_every_class_in_both_layouts(tmp_path, dict_class, layout):
    sd = state_dict(dict_class)
    pt = write_trainer(tmp_path, dict_class, sd, step=None if layout == "final" else STEP)
    # by the .pt file, by its folder, and by the trainer folder
    sources = [pt, pt.parent] + ([tmp_path / "trainer_0"] if layout == "mid" else [])
    for src in sources:
        b = load_checkpoint(src, expected_d_in=D_IN, expected_hookpoint=HOOK, expected_model=MODEL)
        assert b.info["format"] == "dictionary_learning", src
        assert b.info["dict_class"] == dict_class, src
        assert b.info["architecture"] == CLASSES[dict_class][1], src
        assert b.info["hookpoint"] == HOOK and b.info["model"] == MODEL, src
        assert b.info["d_in"] == D_IN and b.info["d_sae"] == D_SAE
        assert str(tmp_path / "trainer_0" / "config.json") in b.info["files"]
        if layout == "mid":
            assert b.info["step"] == STEP and b.info["mid_training"] is True
        else:
            assert "step" not in b.info
        check_against_library(b, sd, dict_class)


def test_batchtopk_mid_training_checkpoint_keeps_its_architecture_and_hookpoint(tmp_path):
    """The reported bug: checkpoints/ae_N.pt has the same keys as AutoEncoderTopK and its
    config.json is one folder up; it was read as per-token TopK with no hookpoint."""
    sd = state_dict("BatchTopKSAE")
    pt = write_trainer(tmp_path, "BatchTopKSAE", sd, step=STEP)
    b = load_checkpoint(pt)
    assert b.info["architecture"] == "batchtopk" and b.info["dict_class"] == "BatchTopKSAE"
    assert b.info["hookpoint"] == HOOK and b.info["model"] == MODEL
    assert b.info["threshold"] == pytest.approx(THRESHOLD)
    x = acts()
    f = b.encode(x)
    f_ref, _ = reference(x, sd, "BatchTopKSAE")
    torch.testing.assert_close(f, f_ref, **TOL)
    # the threshold rule, not top-k per token: the number of active features varies
    l0 = (f > 0).sum(-1)
    assert l0.min() != l0.max() and not bool((l0 == K).all())
    # and the recovered hookpoint is checked
    with pytest.raises(CheckpointError, match="recorded for hookpoint 'blocks.3.hook_resid_post'"):
        load_checkpoint(pt, expected_hookpoint="blocks.5.hook_resid_post")


def test_matryoshka_without_config_is_told_by_its_group_sizes(tmp_path):
    sd = state_dict("MatryoshkaBatchTopKSAE")
    pt = write_trainer(tmp_path, "MatryoshkaBatchTopKSAE", sd, step=STEP, config=False)
    b = load_checkpoint(pt)
    assert b.info["dict_class"] == "MatryoshkaBatchTopKSAE"
    assert b.info["architecture"] == "batchtopk" and b.info["group_sizes"] == GROUPS
    assert b.info["hookpoint"] is None
    check_against_library(b, sd, "MatryoshkaBatchTopKSAE")


def test_matryoshka_group_sizes_must_sum_to_dict_size(tmp_path):
    sd = state_dict("MatryoshkaBatchTopKSAE")
    sd["group_sizes"] = torch.tensor([8, 16, 20])
    write_trainer(tmp_path, "MatryoshkaBatchTopKSAE", sd)
    with pytest.raises(CheckpointError, match=r"'group_sizes' is \[8, 16, 20\].*dict_size=48"):
        load_checkpoint(tmp_path / "trainer_0")


# ----------------------------------------------------------------------------- layout details


def test_several_mid_training_checkpoints_need_a_file(tmp_path):
    sds = {step: state_dict("BatchTopKSAE", seed=step) for step in (100, 2000, 300)}
    for step, sd in sds.items():
        write_trainer(tmp_path, "BatchTopKSAE", sd, step=step)
    ckpts = tmp_path / "trainer_0" / "checkpoints"
    for src in (ckpts, tmp_path / "trainer_0"):  # no final ae.pt yet
        with pytest.raises(
            CheckpointError,
            match=r"3 mid-training checkpoints \(ae_100\.pt, "
            r"ae_300\.pt, ae_2000\.pt\); pass one file",
        ):
            load_checkpoint(src)
    b = load_checkpoint(ckpts / "ae_300.pt")
    assert b.info["step"] == 300
    check_against_library(b, sds[300], "BatchTopKSAE")
    # once the final ae.pt exists the trainer folder means it
    final = state_dict("BatchTopKSAE", seed=9)
    write_trainer(tmp_path, "BatchTopKSAE", final)
    b = load_checkpoint(tmp_path / "trainer_0")
    assert "step" not in b.info
    check_against_library(b, final, "BatchTopKSAE")


@pytest.mark.parametrize(
    "submodule_name,hook",
    [
        (None, HOOK),  # the library's default submodule: the block output
        (f"resid_pre_layer_{LAYER}", f"blocks.{LAYER}.hook_resid_pre"),
        (f"mlp_out_layer_{LAYER}", f"blocks.{LAYER}.hook_mlp_out"),
        (f"attn_out_layer_{LAYER}", f"blocks.{LAYER}.hook_attn_out"),
    ],
)
def test_hookpoint_from_layer_and_submodule_name(tmp_path, submodule_name, hook):
    sd = state_dict("JumpReluAutoEncoder")
    pt = write_trainer(
        tmp_path, "JumpReluAutoEncoder", sd, step=STEP, submodule_name=submodule_name
    )
    b = load_checkpoint(pt)
    assert b.info["hookpoint"] == hook and b.info["layer"] == LAYER


def test_an_unrelated_config_above_a_plain_folder_is_not_used(tmp_path):
    """Only ``checkpoints/`` looks one folder up; any other folder reads its own config."""
    sd = state_dict("BatchTopKSAE")
    write_trainer(tmp_path, "BatchTopKSAE", sd)
    other = tmp_path / "trainer_0" / "copy"
    other.mkdir()
    torch.save(sd, other / "ae_7.pt")
    b = load_checkpoint(other / "ae_7.pt")
    assert b.info["dict_class"] == "AutoEncoderTopK" and b.info["hookpoint"] is None

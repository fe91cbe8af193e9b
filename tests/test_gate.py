"""The sanity gate on the real SmolLM2 with real checkpoint files of every format.

One TopK SAE is trained here (seconds) on ~12k tokens of the default corpus at
``blocks.5.hook_resid_post`` and written to tmp_path as SAELens, dictionary_learning,
sparsify and native checkpoints. The gate must pass each at the right hookpoint, stop it one
layer off (the hidden_states-index confusion) and name ``blocks.5.hook_resid_post``, stop a
SAELens checkpoint whose dataset-wide scaling factor was dropped, and stop a decoder scaled 5x
by the norm ratio — reading every candidate hookpoint in one forward pass.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from autointerp.bases.checkpoints import load_checkpoint, save_native
from autointerp.bases.inspect import reference_tokens
from autointerp.bases.sae import SAE
from autointerp.config import SAETrainConfig
from autointerp.errors import ConfigError
from autointerp.gate import GateError, GateReport, capture, check_basis, gate_plugged_basis
from autointerp.train import train_sae

pytestmark = pytest.mark.slow

HOOK = "blocks.5.hook_resid_post"
OFF_BY_ONE = "blocks.6.hook_resid_post"  # hidden_states[6] recorded as "layer 6"
MODEL = "SmolLM2-135M-Instruct"
N_REF = 1024
N_TRAIN = 12288
FORMATS = ("saelens", "dictionary_learning", "sparsify", "native")


# ----------------------------------------------------------------------------- fixtures


def train_at(sm, hook: str, name: str) -> tuple[np.ndarray, np.ndarray, SAE, float]:
    """(reference tokens, mask, a TopK SAE trained at ``hook`` on the tokens after them, s)."""
    tokens, mask = reference_tokens(sm, N_REF + N_TRAIN)
    n_ref = N_REF // 64
    ref, ref_mask = tokens[:n_ref], mask[:n_ref]
    hp = sm.hookpoint(hook)
    xs = []
    train_rows, train_mask = tokens[n_ref:], mask[n_ref:]
    for i in range(0, len(train_rows), 64):
        ids = torch.from_numpy(train_rows[i : i + 64].astype(np.int64))
        a = capture(sm, [hp], ids)[hook]
        xs.append(a[~torch.from_numpy(train_mask[i : i + 64])])
    x = torch.cat(xs)
    cfg = SAETrainConfig(architecture="topk", expansion=2, k=16, epochs=4, batch_size=512, lr=3e-3)
    sae = train_sae(x, cfg, progress=False, name=name)
    scale = math.sqrt(x.shape[1]) / float(x.norm(dim=1).mean())
    return ref, ref_mask, sae, scale


@pytest.fixture(scope="module")
def world(real_model):
    """(sm, reference tokens, mask, trained SAE for blocks.5.hook_resid_post, scale s)."""
    return (real_model, *train_at(real_model, HOOK, "sae5"))


def tensors(sae: SAE) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in sae.tensors().items()}


def write(fmt: str, sae: SAE, d: Path, layer: int = 5) -> Path:
    """``sae`` in ``fmt``'s own file layout, recording ``blocks.<layer>.hook_resid_post``."""
    t = tensors(sae)
    d_in, d_sae, k = sae.d_in, sae.d_sae, int(sae.k)
    hook = f"blocks.{layer}.hook_resid_post"
    d.mkdir(parents=True, exist_ok=True)
    if fmt == "saelens":
        return write_saelens(d, t, k, hook)
    if fmt == "dictionary_learning":
        sd = {
            "k": torch.tensor(k, dtype=torch.int),
            "threshold": torch.tensor(-1.0),
            "decoder.weight": t["W_dec"].T.contiguous(),
            "encoder.weight": t["W_enc"].T.contiguous(),
            "encoder.bias": t["b_enc"],
            "b_dec": t["b_dec"],
        }
        trainer = {
            "dict_class": "AutoEncoderTopK",
            "activation_dim": d_in,
            "dict_size": d_sae,
            "k": k,
            "layer": layer,
            "lm_name": "HuggingFaceTB/SmolLM2-135M-Instruct",
            "submodule_name": f"resid_post_layer_{layer}",
        }
        (d / "config.json").write_text(json.dumps({"trainer": trainer}))
        torch.save(sd, d / "ae.pt")
        return d
    if fmt == "sparsify":
        sub = d / f"layers.{layer}"  # sparsify: one folder per hookpoint (module path)
        sub.mkdir()
        cfg = {"activation": "topk", "k": k, "num_latents": d_sae, "d_in": d_in}
        (sub / "cfg.json").write_text(json.dumps(cfg))
        w = {
            "encoder.weight": t["W_enc"].T.contiguous(),
            "encoder.bias": t["b_enc"],
            "W_dec": t["W_dec"],
            "b_dec": t["b_dec"],
        }
        save_file(w, str(sub / "sae.safetensors"))
        return sub
    save_native(sae, d, hookpoint=hook, model=MODEL)
    return d


def write_saelens(d: Path, t: dict, k: int, hook: str, **cfg_extra) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    cfg = {
        "architecture": "topk",
        "d_in": int(t["W_enc"].shape[0]),
        "d_sae": int(t["W_enc"].shape[1]),
        "k": k,
        "dtype": "float32",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {"model_name": MODEL, "hook_name": hook, "sae_lens_version": "6.5.0"},
        **cfg_extra,
    }
    (d / "cfg.json").write_text(json.dumps(cfg))
    save_file(t, str(d / "sae_weights.safetensors"))
    return d


def gate(world, basis, hookpoint: str | None = None) -> GateReport:
    """The gate on the reference batch at ``hookpoint`` (default: the recorded one)."""
    sm, ref, ref_mask, _, _ = world
    return check_basis(sm, basis, ref, ref_mask, hookpoint or basis.info["hookpoint"])


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("fmt", FORMATS)
def test_right_hookpoint_passes_and_off_by_one_is_stopped(world, tmp_path, fmt):
    good = load_checkpoint(write(fmt, world[3], tmp_path / "good"))
    r = gate(world, good, HOOK)
    assert r.passed, r.format_table()
    assert r.fvu < 0.5 and 0 < r.l0 <= 16 and 0.5 < r.l2_ratio < 2 and r.ce_loss_score > 0.5
    assert r.n_ce_tokens > 200
    assert r.likely is None, r.format_table()
    d = r.to_dict()
    assert json.loads(json.dumps(d)) == d and d["passed"] is True
    assert GateReport.from_dict(d).to_dict() == d

    # trained on hidden_states[6] (= blocks.5.hook_resid_post), recorded as layer 6
    bad = load_checkpoint(write(fmt, world[3], tmp_path / "bad", layer=6))
    r = gate(world, bad)
    assert r.hookpoint == OFF_BY_ONE  # sparsify's "layers.6" read as its canonical name
    assert not r.passed, r.format_table()
    assert r.likely is not None and r.likely.hookpoint == HOOK, r.format_table()
    assert r.likely.variant == "as loaded"
    msg = r.error_message()
    assert f"--hookpoint {HOOK}" in msg and "--allow-mismatch" in msg and "\n" not in msg
    assert "hidden_states" in msg


def test_dropped_scaling_factor_is_stopped(world, tmp_path):
    """A SAELens checkpoint trained on x * s (normalize_activations expected_average_only_in)
    whose factor is not recorded, so it is read on raw activations."""
    sae, s = world[3], world[4]
    t = tensors(sae)
    t["b_dec"], t["b_enc"] = t["b_dec"] * s, t["b_enc"] * s  # the same SAE reading x * s
    k = int(sae.k)
    ok = write_saelens(
        tmp_path / "ok",
        t,
        k,
        HOOK,
        normalize_activations="expected_average_only_in",
        norm_scaling_factor=s,
    )
    dropped = write_saelens(
        tmp_path / "dropped", t, k, HOOK, normalize_activations="expected_average_only_in"
    )
    r = gate(world, load_checkpoint(ok))
    assert r.passed, r.format_table()
    with pytest.warns(UserWarning, match="no scaling factor recorded"):
        basis = load_checkpoint(dropped)
    r = gate(world, basis)
    assert not r.passed, r.format_table()
    assert r.likely is not None and r.likely.hookpoint == HOOK, r.format_table()
    assert "sqrt(d)/E||x||" in r.likely.variant
    assert r.likely.scale == pytest.approx(s, rel=0.15)
    assert "scaling factor" in r.cause and "norm_scaling_factor" in r.fix


def test_scaled_decoder_is_stopped_by_norm_ratio(world, tmp_path):
    t = tensors(world[3])
    t["W_dec"] = t["W_dec"] * 5
    basis = load_checkpoint(write_saelens(tmp_path, t, int(world[3].k), HOOK))
    r = gate(world, basis)
    failed = {c.name for c in r.failed}
    assert "norm ratio" in failed, r.format_table()
    assert r.l2_ratio > 2
    assert r.likely is not None and r.likely.variant.startswith("decoder rows unit-norm")
    assert "not unit-norm" in r.cause


@pytest.mark.parametrize("case", ["topk_lost", "nothing_fires"])
def test_wrong_activation_is_stopped_by_l0_or_fvu(world, tmp_path, case):
    """A TopK checkpoint whose cfg lost k (read as a plain ReLU SAE), and one whose encoder
    bias silences every latent (L0 0; no alternative can fix it)."""
    t = tensors(world[3])
    if case == "nothing_fires":
        t["b_enc"] = t["b_enc"] - 1e4
    d = write_saelens(tmp_path, t, int(world[3].k), HOOK)
    cfg = json.loads((d / "cfg.json").read_text())
    cfg["architecture"] = "standard"
    del cfg["k"]
    (d / "cfg.json").write_text(json.dumps(cfg))
    r = gate(world, load_checkpoint(d))
    failed = {c.name for c in r.failed}
    if case == "topk_lost":
        assert r.l0 > 100 and "FVU" in failed and r.fvu > 1, r.format_table()
    else:
        assert r.l0 == 0 and {"L0", "FVU"} <= failed, r.format_table()
        assert r.likely is None and "no other hookpoint" in r.error_message()


def test_one_forward_pass_over_the_reference_batch(world):
    """Every candidate hookpoint comes from one forward over the reference rows; the other
    forwards are the CE splices on the first few rows only."""
    sm, ref, ref_mask, sae, _ = world
    rows: list[int] = []
    h = sm.model.register_forward_pre_hook(
        lambda _m, _a, kw: rows.append(int(kw["input_ids"].shape[0])), with_kwargs=True
    )
    try:
        r = check_basis(sm, sae, ref, ref_mask, HOOK)
    finally:
        h.remove()
    # every hidden_states index (31), mlp_out and attn_out of layer 5: all from one forward
    assert len({a.hookpoint for a in r.alternatives}) == 31 + 2 == r.n_hookpoints
    assert rows[0] == len(ref) and rows.count(len(ref)) == 1, rows
    # then clean, zero-ablated and spliced runs on the few rows holding 256 tokens
    assert len(rows) == r.forward_passes == 4 and len(set(rows[1:])) == 1, rows
    assert rows[1] * 64 < 2 * 256 and r.n_ce_tokens >= 200, rows


def test_gate_plugged_basis_raises_or_warns(world, tmp_path, caplog):
    sm, ref, ref_mask, sae, _ = world
    with pytest.raises(GateError, match="blocks.5.hook_resid_post") as e:
        gate_plugged_basis(sm, sae, ref, ref_mask, OFF_BY_ONE, allow_mismatch=False)
    assert isinstance(e.value, ConfigError)
    r = gate_plugged_basis(sm, sae, ref, ref_mask, OFF_BY_ONE, allow_mismatch=True)
    assert not r.passed and r.allowed_mismatch and "used anyway" in caplog.text
    assert r.to_dict()["allowed_mismatch"] is True


def test_width_mismatch_is_one_clear_error(world):
    sm, ref, ref_mask, sae, _ = world
    with pytest.raises(ConfigError, match="width 576 but .* has width 1536"):
        check_basis(sm, sae, ref, ref_mask, "blocks.5.mlp.hook_post")


def test_inspect_check_cli(world, tmp_path, capsys):
    """``autointerp inspect CKPT --check``: JSON report, one error line, exit status 2."""
    from autointerp.cli import main

    bad = write("native", world[3], tmp_path / "bad", layer=6)
    assert main(["inspect", str(bad), "--check", "--json", "--n-tokens", str(N_REF)]) == 2
    cap = capsys.readouterr()
    assert json.loads(cap.out)["passed"] is False
    err = [ln for ln in cap.err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and f"--hookpoint {HOOK}" in err[0]


def test_a_suite_stops_at_the_gate_before_any_expensive_stage(world, tmp_path):
    """A suite that plugs in the layer-5 SAE recorded as (and run at) layer 6 is stopped by
    the gate stage, with the diagnosis, before activations are cached or anything is fitted."""
    from autointerp.config import load_suite, suite_from_dict
    from autointerp.pipeline import run_suite

    _, _, _, sae, _ = world
    ck = write("saelens", sae, tmp_path / "ck", layer=6)
    d = load_suite("evals/default.toml").model_dump()
    d["corpus"]["n_tokens"] = 8192
    d["model"]["hookpoint"] = OFF_BY_ONE
    d["bases"] = [{"kind": "sae", "name": "plugged", "path": str(ck)}, {"kind": "random"}]
    kw = dict(results_root=tmp_path / "r", work_dir=tmp_path / "w", progress=False)
    with pytest.raises(GateError, match=f"likely cause: the checkpoint was trained at {HOOK}"):
        run_suite(suite_from_dict(d), llm_cache=tmp_path / "c.sqlite", **kw)
    assert not list((tmp_path / "w").rglob("acts-*.npy"))  # the gate ran first


def test_a_suite_with_a_family_path_gates_the_member_for_its_hookpoint(world, tmp_path):
    """``path`` = a family folder: the suite at blocks.6 loads the member whose cfg records
    blocks.6 (here the layer-5 SAE mislabelled, in a folder not named after any hookpoint),
    and the gate stage stops it, naming the layer it was trained at."""
    from autointerp.config import load_suite, suite_from_dict
    from autointerp.pipeline import run_suite

    _, _, _, sae, _ = world
    write("saelens", sae, tmp_path / "fam" / "a", layer=5)
    write("saelens", sae, tmp_path / "fam" / "b", layer=6)
    d = load_suite("evals/default.toml").model_dump()
    d["corpus"]["n_tokens"] = 8192
    d["model"]["hookpoint"] = OFF_BY_ONE
    d["bases"] = [{"kind": "sae", "name": "fam", "path": str(tmp_path / "fam")}]
    kw = dict(results_root=tmp_path / "r", work_dir=tmp_path / "w", progress=False)
    with pytest.raises(GateError, match=f"likely cause: the checkpoint was trained at {HOOK}"):
        run_suite(suite_from_dict(d), llm_cache=tmp_path / "c.sqlite", **kw)


def test_gate_figures_become_leaderboard_notes():
    from autointerp.report.runs import gate_notes

    g = {"hookpoint": HOOK, "n_tokens": 2048, "fvu": 0.0914, "l0": 32.0, "l2_ratio": 0.928,
         "ce_loss_score": 0.987, "passed": True}  # fmt: skip
    bad = {**g, "fvu": None, "passed": False, "allowed_mismatch": True, "cause": "scaling"}
    notes = gate_notes({"good": g, "bad": bad})
    assert notes[0].startswith("sanity gate passed for good") and "FVU 0.0914" in notes[0]
    assert "FAILED, used anyway" in notes[1] and "FVU undefined" in notes[1]
    assert notes[1].endswith("; scaling")


SIX = "blocks.6.hook_resid_post"


@pytest.fixture(scope="module")
def six_sae(real_model) -> SAE:
    """A TopK SAE trained at blocks.6.hook_resid_post (once for both labels)."""
    return train_at(real_model, SIX, "sae6")[2]


@pytest.mark.parametrize("label", [9, 20])
def test_a_label_off_by_any_number_of_layers_is_diagnosed_in_one_step(
    six_sae, tmp_path, capsys, label
):
    """An SAE trained at blocks.6.hook_resid_post, written as a SAELens checkpoint recording
    blocks.9 (or blocks.20): one ``autointerp inspect --check`` names blocks.6 with its FVU,
    the runner-up, and the fix. It reads blocks.2-5 (below its layer) about as well as its
    own, one of them possibly a hair better, and the layers above clearly worse: the deepest
    plausible reading is the one named, not the lowest FVU."""
    from autointerp.cli import main

    six, sae = SIX, six_sae
    ck = write_saelens(tmp_path / "ck", tensors(sae), int(sae.k), f"blocks.{label}.hook_resid_post")
    assert main(["inspect", str(ck), "--check", "--json", "--n-tokens", str(N_REF)]) == 2
    cap = capsys.readouterr()
    r = GateReport.from_dict(json.loads(cap.out))
    assert not r.passed and r.hookpoint == f"blocks.{label}.hook_resid_post"
    assert r.likely is not None and r.likely.hookpoint == six, r.format_table()
    assert r.likely.variant == "as loaded" and r.likely.fvu < 0.3
    readings = {a.hookpoint: a.fvu for a in r.alternatives if a.variant == "as loaded"}
    assert len(readings) == r.n_hookpoints == 33 and r.n_search_tokens >= 200
    assert readings[six] == pytest.approx(r.likely.fvu)
    # every reading above blocks.6 is clearly worse; the best FVU is within 10% of blocks.6's
    assert readings["blocks.7.hook_resid_post"] > 1.1 * r.likely.fvu
    assert min(readings.values()) > 0.9 * r.likely.fvu
    up = r.runner_up
    assert (
        up is not None and up.hookpoint != six and up.fvu == pytest.approx(readings[up.hookpoint])
    )
    err = [ln for ln in cap.err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and f"--hookpoint {six}" in err[0], err
    assert f"trained at {six}, not blocks.{label}" in err[0]
    assert f"FVU {r.likely.fvu:.3g} there" in err[0] and f"runner-up {up.hookpoint}" in err[0]

"""Checkpoint families (one checkpoint per hookpoint) matched by each member's own metadata.

Every family is written in its library's documented layout (no library imported): a SAELens
release (one folder per SAE, ``cfg.json`` naming ``hook_name``), the same release in the
Hugging Face cache read as ``hf://owner/repo`` offline, a dictionary_learning trainer tree
(``trainer_N/config.json`` naming layer + submodule; layer folders nested deeper; a BatchTopK
trainer with only ``checkpoints/ae_N.pt``), a sparsify run (``layers.N[.mlp]/``) and native
folders. Folder names are chosen *not* to be the hookpoints where the format records the
hookpoint itself, so a match can only come from the metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_dictionary_learning_layouts import reference as dl_reference
from test_dictionary_learning_layouts import state_dict as dl_state_dict
from test_dictionary_learning_layouts import trainer_config
from test_sae_formats import (
    D_IN,
    acts,
    check,
    dl_state,
    saelens_ref,
    saelens_weights,
    sparsify_ref,
    write_dl,
    write_saelens,
    write_sparsify,
)

from autointerp.bases.checkpoints import load_checkpoint
from autointerp.bases.families import (
    FamilyError,
    list_family,
    resolve_family_member,
    scan_family,
)
from autointerp.bases.inspect import _fmt, inspect_checkpoint
from autointerp.bases.sae import sae_from_tensors
from autointerp.errors import CheckpointError, ConfigError

TOL = {"atol": 1e-5, "rtol": 1e-5}
R0, R3, M3 = "blocks.0.hook_resid_post", "blocks.3.hook_resid_post", "blocks.3.hook_mlp_out"


def write_release(root: Path) -> dict[str, dict]:
    """A SAELens release: folders named by the release, not by hookpoint (v6 and flat cfgs)."""
    return {
        R0: write_saelens(
            root / "layer_0", "standard", hook=R0, weights=saelens_weights("standard", 1)
        ),
        R3: write_saelens(
            root / "res_3", "standard", hook=R3, weights=saelens_weights("standard", 2)
        ),
        M3: write_saelens(
            root / "mlp" / "l3",
            "standard",
            layout="flat",
            hook=M3,
            weights=saelens_weights("standard", 3),
        ),
    }


# ----------------------------------------------------------------------------- SAELens


def test_saelens_release_matched_by_hook_name(tmp_path):
    w = write_release(tmp_path / "rel")
    rel = str(tmp_path / "rel")
    assert list_family(rel) == {
        R0: str(tmp_path / "rel" / "layer_0"),
        R3: str(tmp_path / "rel" / "res_3"),
        M3: str(tmp_path / "rel" / "mlp" / "l3"),
    }
    # equivalent spellings of a hookpoint find the same member
    assert resolve_family_member(rel, "model.layers.3") == str(tmp_path / "rel" / "res_3")
    assert resolve_family_member(rel, "blocks.4.hook_resid_pre") == str(tmp_path / "rel" / "res_3")
    assert resolve_family_member(rel, "model.layers.3.mlp") == str(tmp_path / "rel" / "mlp" / "l3")
    b = load_checkpoint(rel, expected_hookpoint=M3, expected_d_in=D_IN)
    assert b.info["hookpoint"] == M3 and b.info["family"] == rel
    x = acts()
    check(b, x, *saelens_ref(x, w[M3], "standard"))
    # a single checkpoint comes back unchanged, whatever the hookpoint asked
    single = str(tmp_path / "rel" / "layer_0")
    assert resolve_family_member(single, R3) == single


def _hub_cache(cache: Path, repo_id: str, fill) -> str:
    """The Hugging Face cache layout of one snapshot: refs/main -> snapshots/<commit>/."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    store = cache / f"models--{repo_id.replace('/', '--')}"
    (store / "refs").mkdir(parents=True)
    (store / "refs" / "main").write_text(commit)
    fill(store / "snapshots" / commit)
    return commit


def test_saelens_release_on_the_hub_offline_from_the_cache(tmp_path, monkeypatch):
    """hf://owner/repo: the real huggingface_hub code, offline, reading its local cache."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    store: dict = {}
    _hub_cache(tmp_path / "hub", "someone/tiny-release", lambda d: store.update(write_release(d)))
    src = "hf://someone/tiny-release"
    assert list_family(src) == {
        R0: f"{src}/layer_0",
        R3: f"{src}/res_3",
        M3: f"{src}/mlp/l3",
    }
    assert resolve_family_member(f"{src}@main", "model.layers.3") == f"{src}/res_3@main"
    assert resolve_family_member(f"{src}/mlp", M3) == f"{src}/mlp/l3"  # a subfolder family
    b = load_checkpoint(src, expected_hookpoint=R3)
    assert b.info["source"] == f"{src}/res_3" and b.info["family"] == src
    x = acts()
    check(b, x, *saelens_ref(x, store[R3], "standard"))
    with pytest.raises(FamilyError, match="no checkpoint for hookpoint 'blocks.7.hook_resid_post'"):
        resolve_family_member(src, "blocks.7.hook_resid_post")


def test_hub_family_offline_and_not_cached_is_one_clear_error(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(CheckpointError, match="cannot fetch 'hf://someone/absent'.*local path"):
        resolve_family_member("hf://someone/absent", R3)


# ----------------------------------------------------------------------------- dictionary_learning


def write_dl_trainer(d: Path, dict_class: str, layer: int, submodule: str, *, seed: int,
                     step: int | None = None) -> dict:  # fmt: skip
    """One trainSAE trainer folder: config.json + ae.pt (or checkpoints/ae_<step>.pt only)."""
    d.mkdir(parents=True, exist_ok=True)
    cfg = trainer_config(dict_class, submodule) | {"layer": layer}
    doc = {"trainer": cfg, "buffer": {"d_submodule": D_IN, "io": "out"}}
    (d / "config.json").write_text(json.dumps(doc, indent=4))
    sd = dl_state_dict(dict_class, seed=seed)
    if step is None:
        torch.save(sd, d / "ae.pt")
    else:
        (d / "checkpoints").mkdir()
        torch.save(sd, d / "checkpoints" / f"ae_{step}.pt")
    return sd


def test_dictionary_learning_trainer_tree_matched_by_layer_and_submodule(tmp_path):
    root = tmp_path / "run"
    write_dl_trainer(root / "trainer_0", "AutoEncoder", 0, "resid_post_layer_0", seed=1)
    sd3 = write_dl_trainer(root / "trainer_1", "AutoEncoderTopK", 3, "resid_post_layer_3", seed=2)
    # a layer folder nested two deep, as the library's released dictionaries are laid out
    sdm = write_dl_trainer(
        root / "mlp_out_layer3" / "10_48", "GatedAutoEncoder", 3, "mlp_out_layer_3", seed=3
    )
    # a training backup ({step, ae, optimizer, config, norm_factor}) without config.json
    write_dl(root / "trainer_2", "AutoEncoderTopK", dl_state("AutoEncoderTopK"), config=False,
             mid=1.0)  # fmt: skip
    fam = list_family(str(root))
    assert fam == {
        R0: str(root / "trainer_0"),
        R3: str(root / "trainer_1"),
        "blocks.2.hook_resid_post": str(root / "trainer_2"),  # from the config inside ae.pt
        M3: str(root / "mlp_out_layer3" / "10_48"),
    }
    x = acts()
    for hook, sd, cls in ((R3, sd3, "AutoEncoderTopK"), (M3, sdm, "GatedAutoEncoder")):
        b = load_checkpoint(root, expected_hookpoint=hook, expected_d_in=D_IN)
        assert b.info["dict_class"] == cls and b.info["hookpoint"] == hook
        torch.testing.assert_close(b.encode(x), dl_reference(x, sd, cls)[0], **TOL)


def test_batchtopk_mid_training_member_of_a_family(tmp_path):
    """A trainer with only checkpoints/ae_N.pt (config one folder up) inside a family: picked
    by its config's layer, read as BatchTopK (threshold rule), not as TopK."""
    root = tmp_path / "run"
    write_dl_trainer(root / "trainer_0", "BatchTopKSAE", 0, "resid_post_layer_0", seed=1)
    sd = write_dl_trainer(
        root / "trainer_1", "BatchTopKSAE", 3, "resid_post_layer_3", seed=2, step=500
    )
    assert resolve_family_member(str(root), R3) == str(root / "trainer_1")
    b = load_checkpoint(root, expected_hookpoint="model.layers.3", expected_d_in=D_IN)
    assert b.info["architecture"] == "batchtopk" and b.info["dict_class"] == "BatchTopKSAE"
    assert b.info["step"] == 500 and b.info["mid_training"] is True
    assert b.info["hookpoint"] == R3
    x = acts()
    f = b.encode(x)
    torch.testing.assert_close(f, dl_reference(x, sd, "BatchTopKSAE")[0], **TOL)
    l0 = (f > 0).sum(-1)
    assert l0.min() != l0.max()  # the batch threshold, not a fixed k per token


# ----------------------------------------------------------------------------- sparsify


def test_sparsify_run_matched_by_folder_names(tmp_path):
    run = tmp_path / "sparsify-run"
    w0 = write_sparsify(run / "layers.0", k=4, seed=10)
    w3 = write_sparsify(run / "layers.3", k=5, seed=30)
    wm = write_sparsify(run / "layers.3.mlp", k=6, seed=40)
    (run / "config.json").write_text(json.dumps({"model": "tiny-llama"}))
    assert list_family(str(run)) == {
        R0: str(run / "layers.0"),
        R3: str(run / "layers.3"),
        M3: str(run / "layers.3.mlp"),
    }
    x = acts()
    # the input of layer 4 is the output of layer 3
    b3 = load_checkpoint(run, expected_hookpoint="model.layers.4:input")
    check(b3, x, *sparsify_ref(x, w3, 5))
    bm = load_checkpoint(run, expected_hookpoint=M3)
    check(bm, x, *sparsify_ref(x, wm, 6))
    b0 = load_checkpoint(run, "sparsify", expected_hookpoint="blocks.1.hook_resid_pre")
    check(b0, x, *sparsify_ref(x, w0, 4))


# ----------------------------------------------------------------------------- native


def test_native_family_matched_by_recorded_hookpoint(tmp_path):
    from autointerp.bases.formats.native import save_native

    fam = tmp_path / "mine"
    saes = {}
    for i, hook in enumerate((R0, R3)):
        w = saelens_weights("standard", seed=20 + i)
        saes[hook] = sae_from_tensors(w, {"architecture": "standard"}, name=f"s{i}")
        save_native(saes[hook], fam / f"sae-{i}", hookpoint=hook, model="tiny-llama")
    assert list_family(str(fam)) == {R0: str(fam / "sae-0"), R3: str(fam / "sae-1")}
    b = load_checkpoint(fam, expected_hookpoint=R3)
    x = acts()
    torch.testing.assert_close(b.encode(x), saes[R3].encode(x), **TOL)


# ----------------------------------------------------------------------------- errors


def test_two_members_for_one_hookpoint_names_both(tmp_path):
    rel = tmp_path / "rel"
    write_saelens(rel / "width_16" / "l0_20", "standard", hook=R3)
    write_saelens(rel / "width_64" / "l0_20", "standard", hook="model.layers.3")
    write_saelens(rel / "width_64" / "l0_0", "standard", hook=R0)
    a, b = str(rel / "width_16" / "l0_20"), str(rel / "width_64" / "l0_20")
    for call in (lambda: resolve_family_member(str(rel), R3), lambda: list_family(str(rel))):
        with pytest.raises(ConfigError, match="2 checkpoints record hookpoint") as e:
            call()
        assert a in str(e.value) and b in str(e.value)
    # the other hookpoint is not ambiguous
    assert resolve_family_member(str(rel), R0) == str(rel / "width_64" / "l0_0")


def test_missing_hookpoint_lists_the_familys_hookpoints(tmp_path):
    write_release(tmp_path / "rel")
    with pytest.raises(ConfigError) as e:
        resolve_family_member(str(tmp_path / "rel"), "blocks.5.hook_resid_post")
    msg = str(e.value)
    assert "no checkpoint for hookpoint 'blocks.5.hook_resid_post'" in msg
    assert f"{R0} (layer_0), {R3} (res_3)" in msg and f"{M3} (mlp/l3)" in msg
    assert isinstance(e.value, CheckpointError)  # load_checkpoint callers catch it too
    # no hookpoint asked: one error listing the members
    with pytest.raises(CheckpointError, match=r"holds 3 checkpoints \(layer_0, res_3, mlp/l3\)"):
        load_checkpoint(tmp_path / "rel")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ConfigError, match="a folder with no checkpoints"):
        list_family(str(tmp_path / "empty"))


# ----------------------------------------------------------------------------- wiring


def test_suite_sae_basis_with_a_family_path_loads_the_suites_hookpoint(tmp_path):
    """``[[bases]] kind = "sae" path = "family/"``: the member for the suite's hookpoint, and
    a stage hash of its own (another hookpoint, another member, another hash)."""
    from autointerp.bases.builtin_kinds import build_sae
    from autointerp.bases.kinds import BasisBuild
    from autointerp.config import BasisConfig

    w = write_release(tmp_path / "rel")
    bc = BasisConfig(kind="sae", path=str(tmp_path / "rel"), name="fam")
    hashes = {}
    for hook in (R3, M3):
        b = build_sae(_build(BasisBuild, bc, hook))
        assert b.info["hookpoint"] == hook and b.name == "fam"
        x = acts()
        check(b, x, *saelens_ref(x, w[hook], "standard"))
        hashes[hook] = b.info["stage_hash"]
    assert hashes[R3] != hashes[M3]
    with pytest.raises(ConfigError, match="no checkpoint for hookpoint 'blocks.1.hook_mlp_out'"):
        build_sae(_build(BasisBuild, bc, "blocks.1.hook_mlp_out"))


def _build(cls, bc, hookpoint: str):
    """A BasisBuild for an sae checkpoint (only the fields build_sae reads are real)."""
    import dataclasses

    fields = {f.name: None for f in dataclasses.fields(cls)}
    fields.update(cfg=bc, device="cpu", width=D_IN, hookpoint=hookpoint, model_name="tiny-llama")
    return cls(**fields)


def test_inspect_lists_a_familys_members(tmp_path):
    write_release(tmp_path / "rel")
    d = inspect_checkpoint(tmp_path / "rel")
    assert d["family"] is True and d["n_members"] == 3
    assert [(m["hookpoint"], m["from"], m["format"]) for m in d["members"]] == [
        (R0, "metadata", "saelens"),
        (R3, "metadata", "saelens"),
        (M3, "metadata", "saelens"),
    ]
    text = _fmt(d)
    assert "a family of 3 checkpoints" in text and str(tmp_path / "rel" / "mlp" / "l3") in text
    assert scan_family(tmp_path / "rel" / "res_3").single

"""A third-party format installed as a real package registers through the entry-point group
``autointerp.bases`` and is found by load_checkpoint / inspect without any code change."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from autointerp.bases.checkpoints import load_checkpoint
from autointerp.bases.inspect import inspect_checkpoint
from autointerp.bases.registry import ENTRY_POINT_GROUP, plugins
from autointerp.errors import CheckpointError

EXAMPLE = Path(__file__).parent / "plugin_example"


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    """pip-install tests/plugin_example into a private folder and put it on sys.path."""
    tmp = tmp_path_factory.mktemp("plugin")
    src, site = tmp / "src", tmp / "site"
    shutil.copytree(EXAMPLE, src)  # build artefacts stay out of the repo
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "--target",
            str(site),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert list(site.glob("autointerp_plugin_example-*.dist-info/entry_points.txt"))
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    yield site
    sys.path.remove(str(site))
    for mod in [m for m in sys.modules if m.startswith("autointerp_plugin_example")]:
        del sys.modules[mod]


def write_tied(d: Path, d_in=8, d_sae=20, seed=0) -> dict:
    d.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    w = {"W": torch.randn(d_sae, d_in, generator=g), "b": torch.randn(d_sae, generator=g) * 0.1}
    meta = {
        "format": "tied-sae",
        "d_in": d_in,
        "d_sae": d_sae,
        "hookpoint": "blocks.1.hook_resid_post",
    }
    (d / "tied_sae.json").write_text(json.dumps(meta))
    save_file(w, str(d / "tied.safetensors"))
    return w


def test_without_the_plugin_the_folder_is_not_a_checkpoint(tmp_path):
    # runs first in this file: the module-scoped install below has not happened yet
    assert "tied-sae" not in plugins()
    write_tied(tmp_path / "ck")
    with pytest.raises(CheckpointError, match="not a recognised SAE checkpoint"):
        load_checkpoint(tmp_path / "ck")


def test_entry_point_is_registered(installed_plugin):
    names = [ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)]
    assert "tied-sae" in names
    assert "tied-sae" in plugins()


def test_plugin_checkpoint_is_detected_and_loaded(installed_plugin, tmp_path):
    w = write_tied(tmp_path / "ck")
    b = load_checkpoint(tmp_path / "ck", expected_d_in=8, expected_hookpoint="model.layers.1")
    assert type(b).__name__ == "TiedSAE"
    assert b.info["format"] == "tied-sae" and b.info["d_sae"] == 20
    x = torch.randn(5, 8)
    f = torch.relu(x @ w["W"].T + w["b"])
    torch.testing.assert_close(b.encode(x), f)
    torch.testing.assert_close(b.decode(f), f @ w["W"])
    # forced by name; the generic checks still apply to plugin bases
    assert load_checkpoint(tmp_path / "ck", format="tied-sae").n_features == 20
    with pytest.raises(
        CheckpointError, match="d_in is 8 but the hookpoint's activations have width 16"
    ):
        load_checkpoint(tmp_path / "ck", expected_d_in=16)
    with pytest.raises(CheckpointError, match="recorded for hookpoint"):
        load_checkpoint(tmp_path / "ck", expected_hookpoint="blocks.3.hook_resid_post")
    info = inspect_checkpoint(tmp_path / "ck")
    assert (
        info["format"] == "tied-sae" and info["d_in"] == 8 and info["architecture"] == "tied-relu"
    )


def test_plugin_errors_pass_through(installed_plugin, tmp_path):
    write_tied(tmp_path / "ck")
    meta = json.loads((tmp_path / "ck" / "tied_sae.json").read_text())
    meta["d_sae"] = 21
    (tmp_path / "ck" / "tied_sae.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"'W' has shape \[20, 8\], expected \[21, 8\]"):
        load_checkpoint(tmp_path / "ck")


def test_scorer_and_basis_kind_from_entry_points(installed_plugin):
    """The plugin package's ``autointerp.scorers`` and ``autointerp.basis_kinds`` entry points:
    known to the suite checks and loaded on first use, with no edit to autointerp."""
    import asyncio

    from autointerp.bases.kinds import BASIS_KINDS
    from autointerp.config import suite_from_dict
    from autointerp.scoring.registry import SCORERS, ScoringEnv
    from autointerp.types import Explanation, FeatureRecord

    try:
        assert "word-count" in SCORERS.names() and "half-neurons" in BASIS_KINDS.names()
        suite = suite_from_dict(
            {
                "bases": [{"kind": "half-neurons", "l0": 4}],
                "scoring": {"scorers": ["simulation", "word-count"]},
            }
        )
        scorer = SCORERS.get("word-count")
        env = ScoringEnv(suite.scoring, suite, {}, "pid")
        rec = FeatureRecord("b", 1, 0.1, 1.0)
        out = asyncio.run(scorer.score(rec, Explanation("b", 1, "two words", "compact"), env))
        assert [(s.scorer, s.variant, s.value) for s in out.scores] == [
            ("word-count", "words", 2.0)
        ]
        assert BASIS_KINDS.get("half-neurons").name == "half-neurons"
    finally:
        SCORERS.unregister("word-count")
        BASIS_KINDS.unregister("half-neurons")

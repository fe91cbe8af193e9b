"""The package as a user gets it from an index: a wheel built from the checkout, installed into a
fresh venv outside the checkout. Every module of the checkout must be in it and import from it,
the CLI must start, and a tiny suite must run from there (data files: prompts, suites)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import make_tiny_model, save_tiny_files

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _sh(*cmd, cwd: Path, env: dict | None = None, timeout: int = 600) -> str:
    p = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert p.returncode == 0, (
        f"{cmd} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    )
    return p.stdout


def _checkout_modules() -> set[str]:
    mods = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in (ROOT / "autointerp").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    return mods | {"autointerp.prompts", "autointerp.evals"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(venv python, wheel): the wheel installed with --no-deps into a fresh venv whose
    dependencies are this interpreter's site-packages (a .pth line: no editable finder, no
    checkout on the path)."""
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    _sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
        "-w", dist, ROOT, cwd=tmp)  # fmt: skip
    (wheel,) = dist.glob("autointerp-*.whl")
    venv = tmp / "venv"
    _sh(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp)
    py = venv / "bin" / "python"
    _sh(sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", "--no-index",
        wheel, cwd=tmp)  # fmt: skip
    site = Path(_sh(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                    cwd=tmp).strip())  # fmt: skip
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # the core install has no llama.cpp (an extra): make it absent here, whatever the dev venv
    # holds, so a run that needed it would fail (a None entry makes `import llama_cpp` raise)
    (site / "zz_no_llama.pth").write_text(
        "import sys; sys.modules.update(dict.fromkeys(('llama_cpp', 'llama_cpp.server')))\n"
    )
    return py, wheel


def _env(tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(AUTOINTERP_CACHE_DIR=str(tmp / "cache"), HF_HUB_OFFLINE="1")
    return env


def test_wheel_holds_every_module_of_the_checkout(installed):
    _, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    in_wheel = {
        n.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
        for n in names
        if n.endswith(".py")
    }
    assert _checkout_modules() - in_wheel == set()
    assert "autointerp/evals/default.toml" in names
    assert {n for n in names if n.startswith("autointerp/prompts/") and n.endswith(".txt")}


def test_llama_cpp_is_absent_in_the_test_venv_and_asked_for_by_name(installed, tmp_path):
    py, _ = installed
    code = (
        "from autointerp.llm.llamacpp import load_llama\n"
        "from autointerp.errors import FatalLLMError\n"
        "try:\n"
        "    load_llama(__import__('pathlib').Path('x.gguf'), 512)\n"
        "except FatalLLMError as e:\n"
        "    print(e)\n"
    )
    out = _sh(py, "-c", code, cwd=tmp_path, env=_env(tmp_path))
    assert "pip install 'autointerp[llamacpp]'" in out


def test_every_module_imports_from_the_installed_wheel(installed, tmp_path):
    py, _ = installed
    code = (
        "import importlib, sys, autointerp\n"
        "assert 'site-packages' in autointerp.__file__, autointerp.__file__\n"
        f"mods = {sorted(_checkout_modules())!r}\n"
        "bad = []\n"
        "for m in mods:\n"
        "    if m == 'autointerp.__main__': continue\n"
        "    try: importlib.import_module(m)\n"
        "    except Exception as e: bad.append(f'{m}: {type(e).__name__}: {e}')\n"
        "print('\\n'.join(bad)); sys.exit(1 if bad else 0)\n"
    )
    _sh(py, "-c", code, cwd=tmp_path, env=_env(tmp_path))
    out = _sh(py.parent / "autointerp", "--help", cwd=tmp_path, env=_env(tmp_path))
    assert "run" in out and "leaderboard" in out


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="needs transformers")
def test_a_tiny_suite_runs_from_the_installed_wheel(installed, tmp_path):
    py, _ = installed
    model_dir, text = save_tiny_files(tmp_path, make_tiny_model())
    suite = tmp_path / "tiny.toml"
    suite.write_text(
        f"""name = "tiny"
[model]
name = "{model_dir}"
hookpoint = "blocks.1.hook_resid_post"
[corpus]
source = "{text}"
context = 16
n_tokens = 1024
[[bases]]
kind = "pca"
l0 = 4
[[bases]]
kind = "neurons"
l0 = 4
[records]
n_features = 2
[metrics]
n_tokens = 64
ablations = ["zero"]
[explain]
style = "top_tokens"
[scoring]
scorers = ["simulation"]
simulation_method = "pmi"
variants = ["top_and_random"]
n_bootstrap = 50
[causal.ioi]
enabled = false
[causal.attribution]
enabled = false
[llm.simulator]
backend = "transformers"
model = "{model_dir}"
"""
    )
    out = _sh(py.parent / "autointerp", "run", suite, "--results", tmp_path / "res",
              cwd=tmp_path, env=_env(tmp_path))  # fmt: skip
    (lb,) = (tmp_path / "res" / "tiny").glob("run-*/leaderboard.md")
    text_lb = lb.read_text()
    assert "| pca" in text_lb and "| neurons" in text_lb, out[-2000:]

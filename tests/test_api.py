"""The public surface: ``python -m autointerp``, the lazy top-level names, a light import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import autointerp

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("run", "score", "inspect", "train-sae", "leaderboard", "export", "card")


def _python(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_python_m_autointerp_help_lists_the_commands():
    r = _python("-m", "autointerp", "--help")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("usage: autointerp"), out[:200]
    for cmd in COMMANDS:
        assert cmd in out, f"{cmd!r} missing from --help:\n{out}"
    # a user's text: what it does, an example, where the results go
    assert "autointerp run evals/default.toml" in out
    assert "results/<suite>/<run>" in out


def test_python_m_autointerp_without_command_is_a_usage_error():
    r = _python("-m", "autointerp")
    assert r.returncode == 2
    assert "usage: autointerp" in r.stderr


def test_lazy_names_resolve_to_the_implementations():
    from autointerp.bases.checkpoints import load_checkpoint
    from autointerp.pipeline import run_suite

    assert autointerp.run_suite is run_suite
    assert autointerp.load_checkpoint is load_checkpoint
    assert callable(autointerp.leaderboard)
    assert {"run_suite", "load_checkpoint", "leaderboard"} <= set(dir(autointerp))
    assert {"run_suite", "load_checkpoint", "leaderboard"} <= set(autointerp.__all__)


def test_unknown_top_level_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        autointerp.nope  # noqa: B018


def test_import_autointerp_is_light():
    code = (
        "import sys, autointerp\n"
        "heavy = [m for m in ('torch', 'transformers', 'polars', 'numpy', 'autointerp.pipeline',"
        " 'autointerp.report', 'autointerp.bases.checkpoints') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    r = _python("-c", code, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"import autointerp loaded: {r.stdout.strip()}"


def test_leaderboard_of_runs(tmp_path):
    from synthetic_runs import synth_run  # tests/ is on sys.path under pytest

    from autointerp.errors import AutointerpError

    a = synth_run(tmp_path / "suite" / "r1", seed=0, n_scored=8, extras=False)
    synth_run(tmp_path / "suite" / "r2", seed=1, n_scored=8, extras=False)
    board = autointerp.leaderboard(tmp_path)  # a folder searched for runs
    assert set(board.table["run"].to_list()) == {"r1", "r2"}
    assert {"basis", "sim_score", "lift_vs_random_dirs"} <= set(board.table.columns)
    one = autointerp.leaderboard([a])  # a list of run dirs
    assert set(one.table["run"].to_list()) == {"r1"}
    md = autointerp.leaderboard(a, "md")  # rendered, as `autointerp leaderboard --format md`
    assert md.startswith("# autointerp leaderboard")
    assert "r1" in autointerp.leaderboard(str(a), "csv")
    with pytest.raises(AutointerpError, match="unknown format"):
        autointerp.leaderboard(a, "pdf")

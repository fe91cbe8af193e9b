"""``autointerp docs``: marked sections of README.md / docs/*.md regenerated from committed runs;
``--check`` catches a number in the prose or a table that no longer matches its run."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from synthetic_runs import synth_run

from autointerp import report
from autointerp.columns import Cell, ColumnDoc, StageColumns, save_columns
from autointerp.errors import AutointerpError
from autointerp.report.docgen import run_docs

REPO = Path(__file__).resolve().parents[1]


def test_the_repository_docs_match_the_committed_runs():
    """The command the README names, on this repository: every generated section and inline
    cell of README.md and docs/*.md matches the committed runs."""
    p = subprocess.run(
        [sys.executable, "-m", "autointerp", "docs", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "generated sections match the committed runs" in p.stdout


DOC = """# Demo

The SAE's lift is <!-- autointerp:cell demo sae lift_vs_random_dirs ci -->0<!-- /autointerp:cell -->
and its FVU <!-- autointerp:cell demo sae fvu -->0<!-- /autointerp:cell -->.

<!-- autointerp:table headline demo -->
<!-- /autointerp:table -->

Stage times:

<!-- autointerp:table stage-times demo -->
old text
<!-- /autointerp:table -->

Shown as an example, never filled: `<!-- autointerp:cell demo sae l0 -->x<!-- /autointerp:cell -->`

```markdown
<!-- autointerp:table headline nowhere -->
<!-- /autointerp:table -->
```
"""


@pytest.fixture()
def repo(tmp_path):
    rd = synth_run(tmp_path / "results" / "demo" / "run-1", seed=5, n_scored=12, extras=False)
    m = json.loads((rd / "manifest.json").read_text())
    m["stages"] = [
        {"stage": "score", "seconds": 12.5, "status": "computed (40)"},
        {"stage": "bases", "seconds": 30.25, "status": "computed (4)"},
    ]
    m["wall_time_s"] = 44.0
    (rd / "manifest.json").write_text(json.dumps(m))
    cols = StageColumns(
        "ioi",
        [
            ColumnDoc("ioi_edit_half_kl", "edit at half KL", "lower"),
            ColumnDoc("ioi_kl_k16", "KL at k = 16", "lower"),
        ],
    )
    cols.set("sae", "ioi_edit_half_kl", Cell(0.4712, 0.41, 0.52, 64))
    cols.set("pca", "ioi_edit_half_kl", Cell.undefined("never reaches half the KL"))
    cols.set("sae", "ioi_kl_k16", Cell.undefined("a reason; with a semicolon: kept whole"))
    cols.set("pca", "ioi_kl_k16", Cell(1.5, 1.2, 1.8, 64))
    save_columns(rd, cols)
    (tmp_path / "README.md").write_text(DOC)
    return tmp_path, rd


def test_stage_column_cells_and_the_causal_and_minus_tables(repo):
    root, rd = repo
    synth_run(root / "results" / "demo-random" / "run-2", seed=6, n_scored=12, extras=False)
    (root / "README.md").write_text(
        "edit <!-- autointerp:cell demo sae ioi_edit_half_kl ci -->?<!-- /autointerp:cell -->, "
        "pca <!-- autointerp:cell demo pca ioi_edit_half_kl -->?<!-- /autointerp:cell -->\n\n"
        "<!-- autointerp:table causal demo -->\n<!-- /autointerp:table -->\n\n"
        "<!-- autointerp:table causal demo columns=ioi_edit_half_kl -->\n"
        "<!-- /autointerp:table -->\n\n"
        "<!-- autointerp:table minus demo demo-random method=all_at_once_logprobs -->\n"
        "<!-- /autointerp:table -->\n"
    )
    run_docs(root)
    text = (root / "README.md").read_text()
    assert "-->0.471 [0.410, 0.520]<!--" in text and "-->undefined<!--" in text
    assert text.count("| sae | sae | 0.471 [0.410, 0.520] n=64 | undefined |") == 1
    assert text.count("| sae | sae | 0.471 [0.410, 0.520] n=64 |\n") == 1
    assert text.count("- pca: ioi_edit_half_kl: never reaches half the KL\n") == 2
    # the whole table lists every undefined cell (a reason holding "; " kept whole); the
    # table of one column lists only that column's reasons
    assert text.count("- sae: ioi_kl_k16: a reason; with a semicolon: kept whole\n") == 1
    t = report.leaderboard_table([report.load_run(rd)])
    r = report.leaderboard_table([report.load_run(root / "results" / "demo-random" / "run-2")])
    sae_t = t.table.filter(t.table["basis"] == "sae")["sim_score"][0]
    sae_r = r.table.filter(r.table["basis"] == "sae")["sim_score"][0]
    line = next(x for x in text.splitlines() if x.startswith("| sae | ") and "[" in x and
                x.count("|") == 5 and "n=64" not in x)  # fmt: skip
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1:3] == [f"{sae_t:.3f}", f"{sae_r:.3f}"]
    assert cells[3].startswith(f"{sae_t - sae_r:.3f} [")
    assert not any(s.differs for s in run_docs(root, check=True))


def test_docs_fills_sections_and_check_catches_a_changed_number(repo):
    root, rd = repo
    sections = run_docs(root, check=True)
    assert len(sections) == 4 and all(s.differs for s in sections)
    run_docs(root)
    text = (root / "README.md").read_text()
    board = report.leaderboard_table([report.load_run(rd)])
    sae = board.table.filter(board.table["basis"] == "sae").to_dicts()[0]
    lift = (
        f"{sae['lift_vs_random_dirs']:.3f} [{sae['lift_vs_random_dirs_ci_low']:.3f}, "
        f"{sae['lift_vs_random_dirs_ci_high']:.3f}]"
    )
    assert f"-->{lift}<!--" in text and f"-->{sae['fvu']:.3f}<!--" in text
    assert "| bases | 30.2 | computed (4) |\n| score | 12.5 |" in text  # slowest first
    assert "| **total (wall)** | **44.0** | |" in text
    assert "| basis | interp. lift vs random" in text
    assert "`<!-- autointerp:cell demo sae l0 -->x<!-- /autointerp:cell -->`" in text  # code
    assert "<!-- autointerp:table headline nowhere -->\n<!-- /autointerp:table -->" in text
    assert not any(s.differs for s in run_docs(root, check=True))
    # a number typed into the prose by hand: caught, with what the run gives
    (root / "README.md").write_text(text.replace(f"-->{sae['fvu']:.3f}<!--", "-->0.999<!--"))
    bad = [s for s in run_docs(root, check=True) if s.differs]
    assert len(bad) == 1 and bad[0].kind == "cell" and bad[0].new == f"{sae['fvu']:.3f}"
    assert "the text says '0.999'" in bad[0].describe(root)
    # the run changes under an unchanged table: caught
    (root / "README.md").write_text(text)
    m = json.loads((rd / "manifest.json").read_text())
    m["stages"][0]["seconds"] = 13.5
    (rd / "manifest.json").write_text(json.dumps(m))
    bad = [s for s in run_docs(root, check=True) if s.differs]
    assert [(s.kind, s.spec) for s in bad] == [("table", "stage-times demo")]
    assert (root / "README.md").read_text() == text  # --check wrote nothing


def test_check_command_exit_status(repo):
    root, _ = repo
    cmd = [sys.executable, "-m", "autointerp", "docs", "--root", str(root)]
    p = subprocess.run([*cmd, "--check"], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 1 and "4 of 4 generated sections differ" in p.stderr
    assert "README.md:3: cell demo sae lift_vs_random_dirs ci" in p.stderr
    assert subprocess.run(cmd, capture_output=True, text=True, cwd=REPO).returncode == 0
    p = subprocess.run([*cmd, "--check"], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize(
    ("doc", "msg"),
    [
        ("<!-- autointerp:table headline demo -->\nno end\n", "are closed"),
        ("<!-- autointerp:table bogus demo -->\n<!-- /autointerp:table -->\n", "unknown table"),
        ("<!-- autointerp:cell demo sae -->1<!-- /autointerp:cell -->\n", "expected cell RUN"),
        ("<!-- autointerp:cell demo nobasis l0 -->1<!-- /autointerp:cell -->\n", "no row for"),
        ("<!-- autointerp:cell demo sae nocol -->1<!-- /autointerp:cell -->\n", "no column"),
        ("<!-- autointerp:table headline other -->\n<!-- /autointerp:table -->\n", "no run"),
        (
            "<!-- autointerp:table causal demo columns=nope -->\n<!-- /autointerp:table -->\n",
            "no stage column nope",
        ),
    ],
)
def test_bad_markers_are_one_clear_error(repo, doc, msg):
    root, _ = repo
    (root / "README.md").write_text(doc)
    with pytest.raises(AutointerpError, match=msg):
        run_docs(root, check=True)


def test_bench_output_is_recorded_and_embedded(repo, monkeypatch, capsys):
    root, _ = repo
    spec = importlib.util.spec_from_file_location("bench_out", REPO / "benchmarks" / "_out.py")
    out = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(out)
    monkeypatch.setattr(sys, "argv", ["benchmarks/bench_demo.py", "--n", "3"])
    with out.recorded("bench_demo", root / "benchmarks" / "results"):
        print("figure: 1.25 s   baseline: 2.50 s")
    assert "figure: 1.25 s" in capsys.readouterr().out  # still printed
    text = (root / "benchmarks" / "results" / "bench_demo.txt").read_text()
    lines = text.splitlines()
    assert lines[0] == "# command: python benchmarks/bench_demo.py --n 3"
    assert lines[1].startswith("# host: ") and "cores" in lines[1]
    assert lines[2].startswith("# date: 20") and lines[2].endswith(" UTC")
    assert lines[4] == "figure: 1.25 s   baseline: 2.50 s"
    (root / "README.md").write_text(
        "<!-- autointerp:table bench bench_demo -->\n<!-- /autointerp:table -->\n"
    )
    run_docs(root)
    assert (
        "```text\n# command: python benchmarks/bench_demo.py --n 3"
        in (root / "README.md").read_text()
    )
    with pytest.raises(RuntimeError), out.recorded("bench_fail", root / "benchmarks" / "results"):
        raise RuntimeError("benchmark failed")
    assert not (root / "benchmarks" / "results" / "bench_fail.txt").exists()

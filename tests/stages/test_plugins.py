"""Plug-ins registered from outside the package — a basis kind, an explain style, a scorer and
a stage — run in a whole suite on the tiny random-weight model (no LLM at all), are cached,
resumed, and reused by another run; changing a plug-in stage's key recomputes it."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from autointerp.bases.kinds import BASIS_KINDS, BasisKind, register_basis_kind
from autointerp.config import suite_from_dict
from autointerp.errors import ConfigError
from autointerp.explain_styles import EXPLAIN_STYLES, ExplainStyle, register_explain_style
from autointerp.pipeline import SuiteRun
from autointerp.run import JSON, Artifact, Stage, register_stage, unregister_stage
from autointerp.scoring.registry import SCORERS, ScorerResult, register_scorer
from autointerp.types import Score
from tests.conftest import save_tiny_files

CALLS: dict[str, int] = {}


def called(name: str) -> None:
    CALLS[name] = CALLS.get(name, 0) + 1


# --------------------------------------------------------------------------- the plug-ins


def build_first_neurons(b):
    """A toy basis kind: the first ``width // 2`` neurons, signed."""
    import torch

    from autointerp.bases.linear import SignedLinearBasis

    called("kind")
    n = b.width // 2
    eye = torch.eye(b.width)[:, :n]
    return SignedLinearBasis(b.cfg.label, "first-neurons", eye, eye.T, torch.zeros(b.width), b.k)


def first_token(examples) -> str:
    ex = examples[0]
    return "token " + json.dumps(ex.tokens[ex.acts.index(ex.max_act)])


class LengthScorer:
    """A toy scorer: the length of the explanation (no LLM)."""

    name = "length"
    roles: tuple[str, ...] = ()
    nulls = False
    floor = False

    async def score(self, record, explanation, env) -> ScorerResult:
        called("scorer")
        s = Score(record.basis, record.feature, "length", "chars", float(len(explanation.text)),
                  method="toy", protocol_id=env.protocol_id)  # fmt: skip
        return ScorerResult([s])


VERSION = {"v": 1}


def count_rows(ctx, inputs) -> dict:
    called("stage")
    rows = [r for item in inputs["score"] for r in item["rows"]]
    return {"n_records": sum(len(v) for v in inputs["records"].records.values()),
            "n_rows": len(rows)}  # fmt: skip


TOY_STAGE = Stage(
    "count-rows",
    count_rows,
    deps=("records", "score"),
    key=lambda ctx, i: {"score": ctx.upstream["score"], **VERSION},
    artifact=Artifact(JSON),
)


@pytest.fixture
def plugins():
    register_basis_kind(
        BasisKind("first-neurons", build_first_neurons, save=_save_linear, load=_load_linear)
    )
    register_explain_style(ExplainStyle("first_token", text=first_token))
    register_scorer(LengthScorer())
    register_stage(TOY_STAGE)
    CALLS.clear()
    try:
        yield
    finally:
        BASIS_KINDS.unregister("first-neurons")
        EXPLAIN_STYLES.unregister("first_token")
        SCORERS.unregister("length")
        unregister_stage("count-rows")


def _save_linear(b, d):
    from autointerp.bases.linear import save_linear

    save_linear(b, d)


def _load_linear(d):
    from autointerp.bases.linear import load_linear

    return load_linear(d)


def tiny_suite(tmp_path: Path, tiny_model, n_features: int = 3):
    model_dir, text = save_tiny_files(tmp_path, tiny_model)
    return suite_from_dict(
        {
            "name": "plug",
            "model": {"name": str(model_dir), "hookpoint": "blocks.1.hook_resid_post"},
            "corpus": {"source": str(text), "context": 16, "n_tokens": 1024},
            "bases": [
                {"kind": "first-neurons", "name": "half", "l0": 4},
                {"kind": "neurons", "l0": 4},
            ],
            "records": {"n_features": n_features},
            "metrics": {"n_tokens": 64, "ablations": ["zero"]},
            "explain": {"style": "first_token"},
            "scoring": {"scorers": ["length"], "floor": False},
        }
    )


def run(tmp_path, suite, name="r"):
    r = SuiteRun(suite, results_root=tmp_path / "res", run_name=name, work_dir=tmp_path / "w",
                 llm_cache=tmp_path / "llm.sqlite", progress=False)  # fmt: skip
    rd = r.run()
    return rd, {row["stage"]: row["status"] for row in r.summary()}


def test_unknown_names_list_the_registered_ones(plugins):
    with pytest.raises(
        ConfigError, match=r"unknown basis kind 'nope'; use 'sae', .*'first-neurons'"
    ):
        suite_from_dict({"bases": [{"kind": "nope"}]})
    with pytest.raises(ConfigError, match=r"unknown scorer 'nope'; use 'simulation', .*'length'"):
        suite_from_dict({"scoring": {"scorers": ["nope"]}})
    with pytest.raises(ConfigError, match=r"unknown explain style 'x'; use .*'first_token'"):
        suite_from_dict({"explain": {"style": "x"}})


def test_plugins_run_cache_resume_and_are_reused(plugins, tmp_path, tiny_model):
    suite = tiny_suite(tmp_path, tiny_model)
    rd, st = run(tmp_path, suite)
    scores = pl.read_parquet(rd / "scores.parquet")
    assert set(scores["scorer"]) == {"length"} and len(scores) == 6  # 3 features x 2 bases
    assert set(scores["basis"]) == {"half", "neurons"} and (scores["status"] == "ok").all()
    feats = pl.read_parquet(rd / "features.parquet")
    assert all(t.startswith("token ") for t in feats["explanation"])
    man = json.loads((rd / "manifest.json").read_text())
    assert [b["kind"] for b in man["bases"]] == ["first-neurons", "neurons"]
    (out,) = (rd / "stages").glob("count-rows-*.json")
    assert json.loads(out.read_text()) == {"n_records": 6, "n_rows": 6}
    assert st["count-rows"] == "computed" and st["score"] == "computed (6)"
    assert CALLS == {"kind": 1, "scorer": 6, "stage": 1}
    # the leaderboard shows the plug-in scorer's column (mean over features, per basis)
    md = (rd / "leaderboard.md").read_text()
    full = md[md.index("### Full table") :]  # the headline table comes first
    header = next(line for line in full.splitlines() if line.startswith("| basis |"))
    assert "| length chars |" in header
    from autointerp.report import leaderboard_table, load_run

    table = leaderboard_table([load_run(rd)]).table
    want = scores.group_by("basis").agg(pl.col("value").mean()).sort("basis")
    got = table.select("basis", "length_chars").sort("basis")
    assert got["length_chars"].to_list() == pytest.approx(want["value"].to_list())

    CALLS.clear()  # a rerun: nothing recomputed
    rd2, st = run(tmp_path, suite)
    assert rd2 == rd and CALLS == {}
    assert st["count-rows"] == "cached" and st["score"] == "cached (6)"
    assert st["metrics"] == "cached (2)" and st["bases"] == "cached (2)"  # one item per basis
    assert pl.read_parquet(rd / "scores.parquet").equals(scores)

    CALLS.clear()  # another run of the same suite: stage outputs reused from the shared cache
    _, st = run(tmp_path, suite, name="other")
    for stage in ("metrics", "diagnostics"):
        assert st[stage] == "reused from another run (2)", (stage, st)
    assert st["records"] == "reused from another run (2)"
    assert st["density"] == "reused from another run (2)"
    assert CALLS == {"scorer": 6}  # journals belong to their run; the toy stage's hash matches
    assert st["count-rows"] == "reused from another run"

    CALLS.clear()  # a changed key recomputes the plug-in stage only
    VERSION["v"] = 2
    try:
        _, st = run(tmp_path, suite)
    finally:
        VERSION["v"] = 1
    assert CALLS == {"stage": 1} and st["count-rows"] == "computed"

    CALLS.clear()  # fewer features: new records and scores; density and metrics reused
    _, st = run(tmp_path, tiny_suite(tmp_path, tiny_model, n_features=2), name="fewer")
    assert st["metrics"] == "reused from another run (2)"
    assert st["density"] == "reused from another run (2)"
    assert st["records"] == "computed (2)" and CALLS["scorer"] == 4

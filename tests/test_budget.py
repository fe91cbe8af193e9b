"""Costs up front and --max-cost, against the loopback server pretending to be a priced model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autointerp.config import suite_from_dict
from autointerp.llm import remote
from autointerp.llm.accounting import BudgetExceeded, Ledger
from autointerp.llm.budget import estimate_cost, is_paid
from autointerp.llm.config import LLMConfig
from autointerp.llm.faultserver import FaultServer
from autointerp.pipeline import SuiteRun
from autointerp.types import Example, FeatureRecord
from tests.conftest import save_tiny_files


def _suite(tmp_path: Path, tiny_model, url: str):
    model_dir, text = save_tiny_files(tmp_path, tiny_model)
    llm = {"backend": "openai", "model": "gpt-4o-mini", "base_url": url, "max_concurrency": 1}
    return suite_from_dict(
        {
            "name": "paid",
            "model": {"name": str(model_dir), "hookpoint": "blocks.1.hook_resid_post"},
            "corpus": {"source": str(text), "context": 16, "n_tokens": 1024},
            "bases": [{"kind": "neurons", "l0": 4}],
            "records": {"n_features": 4, "window": 8},
            "metrics": {"n_tokens": 64, "ablations": ["zero"]},
            "scoring": {"scorers": ["simulation"], "simulation_method": "pmi",
                        "shuffled_null": False, "floor": False},
            "llm": {"explainer": llm, "simulator": llm, "scorer": llm},
        }
    )  # fmt: skip


def _run(tmp_path: Path, suite, max_cost: float | None) -> Path:
    return SuiteRun(suite, results_root=tmp_path / "res", run_name="r", work_dir=tmp_path / "w",
                    llm_cache=tmp_path / "llm.sqlite", progress=False,
                    max_cost=max_cost).run()  # fmt: skip


def test_estimate_prices_the_plan_and_skips_local_and_free_roles():
    ex = Example(tokens=["ab", "cd"] * 4, token_ids=[1, 2] * 4, acts=[0.0, 1.0] * 4, kind="top")
    recs = {"b": [FeatureRecord("b", f, 0.1, 1.0, [ex] * 3, [ex] * 2, [ex], [ex] * 3)
                  for f in range(5)]}  # fmt: skip
    paid = {"backend": "openai", "model": "gpt-4o-mini", "base_url": "https://api.example.com/v1"}
    s = suite_from_dict({"llm": {"explainer": paid, "simulator": paid}})
    est = estimate_cost(s, recs, ["compact"])
    by = {r.role: r for r in est.roles}
    assert set(by) == {"explainer", "simulator"}  # the scorer role is not used by simulation
    assert by["explainer"].calls == 5 and by["explainer"].completion_tokens == 5 * 48
    # pmi: two passes per simulated example (2 top + 3 random), the shuffled null doubling it
    assert by["simulator"].calls == 5 * 2 * 5 * 2
    want = (by["simulator"].prompt_tokens * 0.15 + by["simulator"].completion_tokens * 0.60) / 1e6
    assert by["simulator"].usd == pytest.approx(want)
    assert est.usd == pytest.approx(by["explainer"].usd + want)
    assert "$" in est.format(1.0) and "--max-cost $1.00" in est.format(1.0)
    # loopback and in-process roles are free; an unpriced model's dollars are unknown
    assert not is_paid(LLMConfig(backend="openai", model="x", base_url="http://127.0.0.1:1/v1"))
    assert not is_paid(LLMConfig(backend="transformers"))
    odd = {**paid, "model": "no-such-model"}
    odd_suite = suite_from_dict({"llm": {"explainer": odd}})
    assert estimate_cost(odd_suite, recs, ["compact"]).usd is None


def test_ledger_budget_counts_earlier_spending():
    led = Ledger(max_cost_usd=1.0, spent_before=0.4)
    led.check_budget()
    led.spent += 0.6
    with pytest.raises(BudgetExceeded, match=r"spent \$1.0000 of \$1.0000"):
        led.check_budget()
    Ledger().check_budget()  # no cap


def test_max_cost_stops_cleanly_and_a_rerun_resumes(tmp_path, tiny_model, monkeypatch, capsys):
    monkeypatch.setattr(remote, "is_local_url", lambda url: False)  # loopback billed as OpenAI
    with FaultServer() as fs:
        suite = _suite(tmp_path, tiny_model, fs.url)
        with pytest.raises(BudgetExceeded, match="--max-cost reached"):
            _run(tmp_path, suite, max_cost=1e-5)
        out = capsys.readouterr().out
        assert "estimated LLM cost" in out and "gpt-4o-mini" in out and "--max-cost $0.00" in out
        rd = tmp_path / "res" / "paid" / "r"
        calls = [json.loads(x.split("\t", 1)[1]) for x in
                 (rd / "stages" / "llm_calls.jsonl").read_text().splitlines()]  # fmt: skip
        spent = sum(c["cost_usd"] for c in calls)
        assert 1e-5 <= spent < 1e-4  # stopped at the cap (in-flight calls finish: concurrency 1)
        (j,) = (rd / "stages").glob("explain-*.jsonl")
        kept = j.read_text().splitlines()
        assert 0 < len(kept) < 4  # finished items journaled, the rest not attempted
        n_before = len(fs.log)
        # a second invocation with the same cap stops at once: the run's spending counts
        with pytest.raises(BudgetExceeded):
            _run(tmp_path, suite, max_cost=1e-5)
        assert len(fs.log) == n_before
        rd = _run(tmp_path, suite, max_cost=None)  # resumes: journaled items not asked again
        assert j.read_text().splitlines()[: len(kept)] == kept
        explained = [k for e in fs.log if e.path.endswith("/chat/completions") for k in [e.key]]
        assert len(explained) == len(set(explained)) == 4
    scores = json.loads((rd / "manifest.json").read_text())["llm_usage"]["total"]
    assert scores["cost_usd"] > 1e-5


def test_work_tokens_count_cache_hits_that_spend_nothing():
    """A cache hit adds its original tokens to ``work_tokens`` (the LLM work the results
    need) but nothing to the tokens, dollars or latency this invocation paid."""
    from autointerp.llm.types import Tag, Usage

    led = Ledger()
    tag = Tag(stage="score", basis="sae", feature=3)
    led.record(tag, Usage(prompt_tokens=100, completion_tokens=20, cost_usd=0.5, latency_s=1.0),
               backend="openai", model="m", kind="chat")  # fmt: skip
    led.record(tag, Usage(prompt_tokens=100, completion_tokens=20, cache_hit=True),
               backend="openai", model="m", kind="hit")  # fmt: skip
    u = led.totals()["by_basis"]["sae"]
    assert (u["calls"], u["cache_hits"]) == (2, 1)
    assert (u["prompt_tokens"], u["completion_tokens"], u["work_tokens"]) == (100, 20, 240)
    assert u["cost_usd"] == 0.5 and u["latency_s"] == 1.0

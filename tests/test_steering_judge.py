"""The steering stage's LLM judge (docs/steering.md, "LLM judge"): unconfigured, its columns are
undefined with the reason; through a real OpenAI-compatible server on loopback (the fault server
for 429s and garbage bodies, the real llama.cpp server with the bundled SmolLM2 GGUF) every
rating is in {0, 1, 2} or recorded as unparsable with its raw reply, the harmonic means match a
hand computation, and a rerun asks the server nothing (response cache + call journal)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from autointerp.columns import load_columns
from autointerp.config import suite_from_dict
from autointerp.journal import Journal
from autointerp.llm.faultserver import FaultServer
from autointerp.stages.steering import JUDGE_COLUMNS
from autointerp.steering.judge import ASPECTS, NO_JUDGE, JudgeFailed, parse_rating
from tests.test_causal_stages import no_llm  # noqa: F401  (fixtures)
from tests.test_llm_servers import llama_server  # noqa: F401

STEER = {"enabled": True, "n_features": 1, "n_prompts": 2, "factors": [1.0], "max_new_tokens": 6,
         "pmi": False, "n_random_tokens": 32, "judge_max_tokens": 48}  # fmt: skip
JUDGED = ("feature", "diffmean", "prompting", "unsteered", "axbench")


def _suite(tmp_path, judge: dict | None):
    from tests.test_causal_stages import tiny_suite

    d = tiny_suite(tmp_path, steering=STEER, ioi={"enabled": False}).model_dump()
    d["llm"]["judge"] = judge
    return suite_from_dict(d)


def _steering(tmp_path, suite, name):
    """Run the suite in ``tmp_path/name`` (its own work dir: every stage computed) with the
    LLM response cache shared by every run of the test."""
    from autointerp.pipeline import SuiteRun

    r = SuiteRun(suite, results_root=tmp_path / name, run_name="r", work_dir=tmp_path / name / "w",
                 llm_cache=tmp_path / "llm.sqlite", progress=False)  # fmt: skip
    rd = r.run()
    assert {x["stage"]: x["status"] for x in r.summary()}["steering"] == "computed"
    calls = Journal(rd / "stages" / "llm_calls.jsonl").read()
    return {c.stage: c for c in load_columns(rd)}["steering"], calls


def _check_ratings(cols) -> int:
    """Every continuation's ratings are in {0, 1, 2} or unparsable with the raw reply, its
    harmonic mean is the hand computation, each arm's means are over the defined ones, and each
    judge column is the mean over the basis's features. Returns the number of ratings."""
    n = 0
    for basis, ds in cols.extra["features"].items():
        per_col: dict[str, list[float]] = {}
        for d in ds:
            j = d["judge"]
            assert set(JUDGED) <= set(j), j.keys()
            for slot in JUDGED:
                if slot == "axbench" and "ratings" not in j[slot]:  # no factor: its reason
                    assert "no defined judge rating" in j[slot]["reason"]
                    continue
                rs = j[slot]["ratings"]
                assert len(rs) == len(cols.extra["instructions"]["report"])
                for r in rs:
                    for a in ASPECTS:
                        n += 1
                        if r[a] is None:
                            raw = r["raw"][a]
                            assert isinstance(raw, str) and parse_rating(raw) is None
                        else:
                            assert r[a] in (0.0, 1.0, 2.0) and a not in r.get("raw", {})
                    v = [r[a] for a in ASPECTS]
                    want = (None if None in v else 0.0 if 0.0 in v
                            else 3 / sum(1 / x for x in v))  # fmt: skip
                    assert r["hmean"] == pytest.approx(want)
                for k in (*ASPECTS, "hmean"):
                    got = [r[k] for r in rs if r[k] is not None]
                    assert j[slot][k] == (pytest.approx(np.mean(got)) if got else None)
            for col, slot, key in (("judge_hmean", "feature", "hmean"),
                                   ("judge_axbench", "axbench", "hmean"),
                                   ("judge_unsteered_hmean", "unsteered", "hmean")):  # fmt: skip
                if j[slot].get(key) is not None:
                    per_col.setdefault(col, []).append(j[slot][key])
        for col in ("judge_hmean", "judge_axbench", "judge_unsteered_hmean"):
            cell = cols.rows[basis][col]
            if col in per_col:
                assert cell.value == pytest.approx(np.mean(per_col[col]))
            else:  # undefined with its reason, never 0
                assert cell.value is None and "no feature with a defined" in cell.reason
    return n


def test_judge_columns_undefined_without_a_judge(tmp_path, no_llm):  # noqa: F811
    cols, _ = _steering(tmp_path, _suite(tmp_path, None), "r")
    for row in cols.rows.values():
        for c in JUDGE_COLUMNS:
            assert row[c.name].value is None and row[c.name].reason == NO_JUDGE
    assert all("judge" not in d for ds in cols.extra["features"].values() for d in ds)


def test_judge_through_the_fault_server_429_garbage_cache(tmp_path, no_llm):  # noqa: F811
    """429s and garbage bodies are retried; the server's text has no rating: every rating is
    unparsable with its raw reply and every judge cell undefined (not 0); each distinct prompt
    is answered once, and a rerun in a new run directory asks the server nothing."""
    judge = {"backend": "openai", "model": "judge", "base_url": "", "max_retries": 30,
             "retry_initial_s": 0.0, "retry_max_s": 0.01, "max_concurrency": 4}  # fmt: skip
    with FaultServer(fault_rate=0.6, faults=("429", "garbage"), seed=1) as fs:
        judge["base_url"] = fs.url
        suite = _suite(tmp_path, judge)
        cols, calls = _steering(tmp_path, suite, "r")
        outcomes = Counter(e.outcome for e in fs.log)
        assert outcomes["429"] > 0 and outcomes["garbage"] > 0 and outcomes["ok"] > 0
        ok = Counter(e.key for e in fs.log if e.outcome == "ok")
        assert set(ok.values()) == {1}  # no prompt answered twice
        assert _check_ratings(cols) > 0
        raws = [r["raw"] for ds in cols.extra["features"].values() for d in ds
                for s in JUDGED for r in d["judge"][s].get("ratings", [])]  # fmt: skip
        assert all(v.startswith("answer ") for raw in raws for v in raw.values())
        for row in cols.rows.values():
            assert row["judge_hmean"].value is None and row["judge_hmean"].reason
            assert "no defined judge rating" in json.dumps(cols.extra["features"])
        judged = [c for c in calls if c["stage"] == "steering"]
        assert len(judged) == sum(ok.values()) and not any(c["cache_hit"] for c in judged)
        n_log = len(fs.log)
        cols2, calls2 = _steering(tmp_path, suite, "r2")  # a new run, the same LLM cache
        assert len(fs.log) == n_log
        assert all(c["cache_hit"] for c in calls2 if c["stage"] == "steering")
        assert cols2.extra["features"] == cols.extra["features"]


def test_judge_failing_for_good_stops_the_stage_then_resumes(tmp_path, no_llm):  # noqa: F811
    judge = {"backend": "openai", "model": "judge", "base_url": "", "max_retries": 0}
    with FaultServer(fault_rate=1.0, faults=("429",)) as fs:
        judge["base_url"] = fs.url
        with pytest.raises(JudgeFailed, match="judge calls failed after retries"):
            _steering(tmp_path, _suite(tmp_path, judge), "r")
    with FaultServer() as fs:
        judge["base_url"] = fs.url
        cols, _ = _steering(tmp_path, _suite(tmp_path, judge), "r")
        assert _check_ratings(cols) > 0


def _rate(body: dict) -> str:
    """The loopback server's judge: concept 2, instruction 1, fluency 2 (its last rating)."""
    system = body["messages"][0]["content"]
    if "about the given concept" in system:
        return "The concept shows up. Rating: [[2]]"
    if "responds to the given instruction" in system:
        return "Loosely related. Rating: [[1]]"
    return "At first Rating: [[1]], on reflection Rating: [[2]]"


def test_judge_known_answer_through_a_rating_server(tmp_path, no_llm):  # noqa: F811
    """A server answering fixed ratings: every continuation rates (2, 1, 2), harmonic mean
    3 / (1/2 + 1 + 1/2) = 1.5, so every judge cell of every basis is 1.5 with a CI of
    [1.5, 1.5] over its features, and AxBench's factor is the grid's only factor > 0."""
    from autointerp.report.browser import _steering as browser_panel

    judge = {"backend": "openai", "model": "judge", "base_url": ""}
    with FaultServer(reply=_rate) as fs:
        judge["base_url"] = fs.url
        cols, _ = _steering(tmp_path, _suite(tmp_path, judge), "r")
    assert _check_ratings(cols) > 0
    for ds in cols.extra["features"].values():
        for d in ds:
            for slot in JUDGED:
                j = d["judge"][slot]
                assert (j["concept"], j["instruction"], j["fluency"]) == (2.0, 1.0, 2.0)
                assert j["hmean"] == pytest.approx(1.5) and j["n_unparsable"] == 0
            assert d["judge"]["axbench"]["factor"] == 1.0
            panel = browser_panel(d)["judge"]  # the feature browser's steering panel
            assert panel["feature"]["hmean"] == pytest.approx(1.5) and "axbench" in panel
    for row in cols.rows.values():
        for c in JUDGE_COLUMNS:
            cell = row[c.name]
            want = {"judge_concept": 2.0, "judge_instruction": 1.0, "judge_fluency": 2.0}
            assert cell.value == pytest.approx(want.get(c.name, 1.5)), c.name
            assert cell.ci_low == pytest.approx(cell.value) == cell.ci_high and cell.n == 1


@pytest.mark.slow
def test_judge_with_the_real_llama_server(tmp_path, no_llm, llama_server):  # noqa: F811
    """The bundled SmolLM2 GGUF behind llama.cpp's OpenAI-compatible server judges the tiny
    model's continuations: ratings in {0, 1, 2} or unparsable with the raw reply, harmonic
    means by hand; the rerun in a new run directory is answered from the cache. (A 135M model
    is no judge: it answers without the rating form, so its ratings are unparsable.)"""
    judge = {"backend": "openai", "model": "smollm2", "base_url": llama_server,
             "max_concurrency": 1}  # fmt: skip
    suite = _suite(tmp_path, judge)
    cols, calls = _steering(tmp_path, suite, "r")
    assert _check_ratings(cols) > 0
    judged = [c for c in calls if c["stage"] == "steering"]
    assert judged and not any(c["cache_hit"] for c in judged)
    cols2, calls2 = _steering(tmp_path, suite, "r2")
    assert cols2.extra["features"] == cols.extra["features"]
    assert all(c["cache_hit"] for c in calls2 if c["stage"] == "steering")

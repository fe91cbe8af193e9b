"""End to end on the real parts: SmolLM2 GGUF, gensim's Wikipedia text, llama.cpp in-process.

A reduced default suite (same stages and bases, smaller scale)."""

import json
import math

import polars as pl
import pytest

from autointerp.config import load_suite, suite_from_dict
from autointerp.journal import Journal
from autointerp.pipeline import SuiteRun

pytestmark = pytest.mark.slow


def reduced_suite():
    d = load_suite("evals/default.toml").model_dump()
    d["name"] = "e2e"
    d["corpus"].update(n_tokens=8192, context=64)
    d["bases"][0]["train"].update(expansion=2, k=8, epochs=1, batch_size=512)
    d["records"].update(
        n_features=2,
        window=16,
        n_explain_top=4,
        n_explain_quantile=2,
        n_test_top=2,
        n_test_quantile=2,
        n_test_random=2,
        n_quantiles=2,
    )
    d["explain"].update(max_examples=4)
    d["metrics"].update(n_tokens=256)
    d["causal"]["ioi"].update(n_pairs=8, ks=[1, 4, 16])
    d["causal"]["attribution"].update(n_tokens=256)
    for role in ("explainer", "simulator", "scorer"):
        d["llm"][role].update(n_ctx=4096, max_parse_retries=1)
    return suite_from_dict(d)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    kw = dict(
        results_root=root / "results",
        work_dir=root / "work",
        llm_cache=root / "llm.sqlite",
        progress=False,
        run_name="r",
    )
    rd = SuiteRun(reduced_suite(), **kw).run()
    return rd, kw


@pytest.fixture
def own_run(finished, tmp_path):
    """A private copy of the finished run for a test that changes it (journals cut, items
    marked failed, the protocol changed): no test sees another's edits, in any order. The
    work dir and the response cache are shared (content-keyed: reading them changes nothing)."""
    import shutil

    rd, kw = finished
    results = tmp_path / "results"
    shutil.copytree(kw["results_root"], results)
    return results / rd.relative_to(kw["results_root"]), {**kw, "results_root": results}


def test_all_bases_with_finite_numbers(finished):
    rd, _ = finished
    metrics = pl.read_parquet(rd / "metrics.parquet")
    assert metrics["basis"].to_list() == ["sae-topk", "pca", "ica", "neurons", "random"]
    for col in ("l0", "fvu", "ce_loss_score", "kl_div_score", "dead_frac", "mse"):
        assert all(math.isfinite(v) for v in metrics[col].to_list()), col
    # matched sparsity: baselines top-k'd to the SAE's k
    l0 = dict(zip(metrics["basis"], metrics["l0"]))
    for b in ("pca", "ica", "neurons"):
        assert l0[b] == pytest.approx(8, abs=0.01)
    scores = pl.read_parquet(rd / "scores.parquet")
    sim = scores.filter((pl.col("scorer") == "simulation") & (pl.col("null") == ""))
    assert set(sim["basis"]) == set(metrics["basis"])
    assert set(sim["variant"]) == {"top_and_random", "top", "random"}
    # every score is either a finite value or marked undefined/failed with a reason
    for row in scores.iter_rows(named=True):
        if row["status"] == "ok":
            assert math.isfinite(row["value"]) and -1 <= row["value"] <= 1
        else:
            assert row["value"] is None and row["error"]
    assert (scores["status"] == "ok").sum() > 0
    assert (scores["null"] == "shuffled").sum() > 0
    board = (rd / "leaderboard.md").read_text()
    for b in metrics["basis"]:
        assert f"| {b} |" in board
    from autointerp.export import export_run

    paths, _ = export_run(rd, "saebench", rd.parent / "export")
    (core_path,) = [p for p in paths if p.parent.name == "core" and "sae-topk" in p.name]
    core = json.loads(core_path.read_text())
    assert core["eval_type_id"] == "core"
    assert core["eval_result_metrics"]["sparsity"]["l0"] == pytest.approx(l0["sae-topk"])
    # the weights stage filled SAEBench's weight fields (none left at -1)
    det = core["eval_result_details"]
    assert all(e["encoder_norm"] > 0 for e in det)
    assert (rd / "weights" / "sae-topk.parquet").is_file()
    man = json.loads((rd / "manifest.json").read_text())
    assert man["llm_usage"]["total"]["calls"] > 0 and man["protocol_id"]
    assert man["model"] == "SmolLM2-135M-Instruct"


def _rows(path):
    return Journal(path).read()


def test_rerun_resumes_without_llm_calls(own_run):
    rd, kw = own_run
    calls = rd / "stages" / "llm_calls.jsonl"
    n_calls = len(_rows(calls))
    before = pl.read_parquet(rd / "scores.parquet")
    # drop the last scored item, as if the run had been killed while scoring it
    (score_file,) = (rd / "stages").glob("score-*.jsonl")
    lines = score_file.read_bytes().splitlines(keepends=True)
    last_llm = max(i for i, ln in enumerate(lines) if b'"llm"]' in ln)
    score_file.write_bytes(b"".join(lines[:last_llm] + lines[last_llm + 1 :]))
    SuiteRun(reduced_suite(), **kw).run()
    after = pl.read_parquet(rd / "scores.parquet")
    cols = ["basis", "feature", "null", "scorer", "variant", "method"]
    assert after.sort(cols).equals(before.sort(cols))
    new = _rows(calls)[n_calls:]
    assert new and all(r["cache_hit"] for r in new)  # redone from the response cache: no paid call
    n_calls = len(_rows(calls))
    SuiteRun(reduced_suite(), **kw).run()  # finished suite: zero LLM calls at all
    assert len(_rows(calls)) == n_calls


def test_pmi_and_floor_rows(finished):
    rd, _ = finished
    scores = pl.read_parquet(rd / "scores.parquet")
    assert set(scores["method"].unique()) == {"pmi", "token_match"}
    board = (rd / "leaderboard.md").read_text()
    assert "| token_match |" in board and "| pmi |" in board
    floor = scores.filter(pl.col("method") == "token_match")
    assert set(floor["null"]) == {"", "shuffled"}


def test_torn_score_line_is_recomputed_and_reported(own_run, caplog):
    rd, kw = own_run
    (score_file,) = (rd / "stages").glob("score-*.jsonl")
    before = pl.read_parquet(rd / "scores.parquet")
    lines = score_file.read_bytes().splitlines(keepends=True)
    score_file.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    SuiteRun(reduced_suite(), **kw).run()
    assert "torn" in caplog.text
    cols = ["basis", "feature", "null", "scorer", "variant", "method"]
    assert pl.read_parquet(rd / "scores.parquet").sort(cols).equals(before.sort(cols))


def test_retry_failed_reasks_only_failed_items(own_run):
    rd, kw = own_run
    (exp_file,) = (rd / "stages").glob("explain-*.jsonl")
    (score_file,) = (rd / "stages").glob("score-*.jsonl")
    exp = Journal(exp_file).read()
    item = next(r for r in exp if r["key"][2] == "compact" and r["exp"]["status"] == "ok")
    bad = {**item, "exp": {**item["exp"], "status": "failed", "text": "", "error": "llm: 503"}}
    sc = next(
        r
        for r in Journal(score_file).read()
        if r["key"][3] == "llm"
        and r["key"][2] == ""
        and all(x["status"] != "failed" for x in r["rows"])
    )
    bad_sc = {**sc, "rows": [{**x, "status": "failed", "value": None} for x in sc["rows"]]}
    Journal(exp_file).append([bad])
    Journal(score_file).append([bad_sc])
    basis, feat = item["key"][:2]

    def status() -> tuple[str, int]:
        f = pl.read_parquet(rd / "features.parquet")
        row = f.filter((pl.col("basis") == basis) & (pl.col("feature") == feat)).row(0, named=True)
        s = pl.read_parquet(rd / "scores.parquet")
        return row["explanation_status"], int((s["status"] == "failed").sum())

    SuiteRun(reduced_suite(), **kw).run()
    st, n_failed = status()
    assert st == "failed" and n_failed >= len(sc["rows"])  # a plain rerun keeps what it has
    calls = rd / "stages" / "llm_calls.jsonl"
    n_calls = len(_rows(calls))
    really_failed = {
        tuple(r["key"][:2]) for r in Journal(exp_file).read() if r["exp"]["status"] != "ok"
    } - {(basis, feat)}
    SuiteRun(reduced_suite(), retry_failed=True, **kw).run()
    st, n_failed2 = status()
    assert st == "ok" and n_failed2 == n_failed - len(sc["rows"])
    new = _rows(calls)[n_calls:]
    # the corrupted items were asked again and answered from the cache; a call that is not a
    # cache hit belongs to an item that had really failed before (a truncated answer is
    # retried with other parameters, so its first asking is not cached)
    assert any(r["cache_hit"] and (r["basis"], r["feature"]) == (basis, feat) for r in new)
    assert all(r["cache_hit"] or (r["basis"], r["feature"]) in really_failed for r in new)


def test_changed_protocol_recomputes_instead_of_resuming(own_run):
    """``--run r --set records.window=8`` on a finished window-16 run: new records, new
    explanations and scores (not the window-16 ones under the new protocol id)."""
    rd, kw = own_run
    old_pid = json.loads((rd / "manifest.json").read_text())["protocol_id"]
    calls = rd / "stages" / "llm_calls.jsonl"
    n_calls = len(_rows(calls))
    d = reduced_suite().model_dump()
    d["records"]["window"] = 8
    SuiteRun(suite_from_dict(d), **kw).run()
    man = json.loads((rd / "manifest.json").read_text())
    assert man["protocol_id"] != old_pid
    sims = pl.read_parquet(rd / "simulations.parquet")
    assert set(sims["tokens"].list.len().to_list()) == {8}
    scores = pl.read_parquet(rd / "scores.parquet")
    assert set(scores["protocol_id"]) == {man["protocol_id"]}
    assert any(not r["cache_hit"] for r in _rows(calls)[n_calls:])  # really asked again

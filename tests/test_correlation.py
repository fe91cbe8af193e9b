"""Simulation scoring formulas against hand computations, and score_simulation's bookkeeping."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from autointerp.errors import AutointerpError
from autointerp.scoring.correlation import (
    absolute_dev_explained,
    correlation_score,
    rsquared_score,
    score_simulation,
    true_on_scale,
)
from autointerp.types import Example, Explanation, FeatureRecord


def test_pooled_correlation_differs_from_mean_of_per_example():
    true = [[0.0, 1.0], [10.0, 11.0]]
    pred = [[1.0, 0.0], [11.0, 10.0]]
    # per example r = -1 and -1 (mean -1); pooled: centred t = [-5.5,-4.5,4.5,5.5],
    # p = [-4.5,-5.5,5.5,4.5]; cov = 4 * 24.75 = 99; var = 2*30.25 + 2*20.25 = 101 each side.
    assert correlation_score(true, pred) == pytest.approx(99 / 101)
    per_example = [correlation_score([t], [p]) for t, p in zip(true, pred, strict=True)]
    assert per_example == [pytest.approx(-1.0), pytest.approx(-1.0)]


def test_correlation_never_leaves_its_range_when_rounding_overshoots():
    # a perfect (anti-)linear prediction: the pooled sums round to r = +-1.0000000000000002 on
    # AVX2 numpy for these values; a correlation is a cosine and is clipped to [-1, 1]
    for t, p in (([0.0, 1.0, 2.0, 3.0], [0.0, 0.3, 0.6, 0.9]),
                 ([float(i) for i in range(8)], [0.7 * i for i in range(8)])):  # fmt: skip
        assert correlation_score([t], [p]) == 1.0
        assert correlation_score([t], [[-x for x in p]]) == -1.0
    rng = np.random.default_rng(0)
    for _ in range(200):
        t = rng.random(int(rng.integers(3, 30)))
        r = correlation_score([t.tolist()], [(1e-3 * t + rng.random()).tolist()])
        assert r is not None and -1.0 <= r <= 1.0


def test_constant_truth_is_undefined_constant_prediction_scores_zero():
    assert correlation_score([[0.0, 0.0], [0.0]], [[1.0, 2.0], [3.0]]) is None
    assert correlation_score([[1.0]], [[2.0]]) is None
    # defect: a constant prediction against varying truth was "undefined" and dropped from
    # every mean; the explanation predicted nothing, which is a score of 0
    assert correlation_score([[0.0, 1.0], [2.0]], [[4.0, 4.0], [4.0]]) == 0.0


def test_constant_prediction_is_an_ok_zero_and_marked():
    rec = _record()  # the floor predicts 1 only on "zebra": nowhere in these windows
    res = asyncio.run(score_simulation(rec, 'tokens: "zebra"', client=None, method="token_match"))
    tr = {s.variant: s for s in res.scores}["top_and_random"]
    assert tr.status == "ok" and tr.value == 0.0 and tr.extra["constant_prediction"] is True


def test_auto_failures_are_filed_under_the_method_used(tmp_path):
    """Defect: with simulation_method = "auto" a failed score carried method "" and landed in
    a table row of its own."""
    from tests.test_llm_transformers import _client, _save_tiny

    _save_tiny(tmp_path)
    cl = _client(tmp_path)
    failed = Explanation("b", 7, "", "compact", status="failed", error="truncated")
    res = asyncio.run(score_simulation(_record(), failed, client=cl, method="auto"))
    assert {s.method for s in res.scores} == {"all_at_once"}
    assert all(s.status == "failed" for s in res.scores)


def test_rsquared_and_absolute_deviation_by_hand():
    true = [[0.0, 2.0], [4.0]]
    pred = [[1.0, 2.0], [2.0]]
    # mean sq err = (1 + 0 + 4) / 3; mean t^2 = (0 + 4 + 16) / 3  -> 1 - 5/20
    assert rsquared_score(true, pred) == pytest.approx(0.75)
    # mean |err| = (1 + 0 + 2) / 3 = 1; mean |t| = 6 / 3 = 2 -> 1 - 1/2
    assert absolute_dev_explained(true, pred) == pytest.approx(0.5)
    assert rsquared_score([[0.0, 0.0]], [[1.0, 2.0]]) is None
    assert absolute_dev_explained([[0.0]], [[1.0]]) is None


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(AutointerpError, match="example 0: 2 true vs 1 predicted"):
        correlation_score([[1.0, 2.0]], [[1.0]])
    with pytest.raises(AutointerpError, match="2 true vs 1 predicted examples"):
        rsquared_score([[1.0], [2.0]], [[1.0]])


def test_true_on_scale():
    exs = [Example(["a", "b"], [0, 1], [2.0, -1.0], "top"), Example(["c"], [2], [4.0], "random")]
    assert true_on_scale(exs, 8.0) == [[2.5, 0.0], [5.0]]
    assert true_on_scale(exs, 0.0) == [[5.0, 0.0], [10.0]]  # falls back to the examples' max


def _record() -> FeatureRecord:
    top = [Example(["x", " cat"], [0, 1], [0.0, 3.0], "top")]
    rand = [Example(["y", " dog"], [2, 3], [0.0, 0.0], "random")]
    return FeatureRecord("b", 7, 0.01, 3.0, test_top=top, test_random=rand)


def test_failed_explanation_gives_failed_scores_without_a_call():
    failed = Explanation("b", 7, "", "openai", status="failed", error="parse: empty")
    res = asyncio.run(score_simulation(_record(), failed, client=None, protocol_id="p1"))
    assert [s.variant for s in res.scores] == ["top_and_random", "top", "random"]
    assert all(s.status == "failed" and s.value is None for s in res.scores)
    assert "explanation failed: parse: empty" in res.scores[0].error
    assert res.scores[0].protocol_id == "p1" and res.pred is None and res.rows("b", 7) == []


def test_unknown_variant_is_rejected():
    with pytest.raises(AutointerpError, match="unknown simulation variant"):
        asyncio.run(score_simulation(_record(), "cats", client=None, variants=("all",)))


@pytest.mark.slow
def test_score_simulation_with_local_llm_makes_one_call():
    from autointerp.llm import Ledger, LLMConfig, make_client

    ledger = Ledger()
    client = make_client(
        LLMConfig(backend="llamacpp", model="smollm2-gguf", n_ctx=4096), ledger=ledger
    )
    res = asyncio.run(score_simulation(_record(), "the word cat", client, protocol_id="p"))
    assert len(ledger.records) == 1 and res.n_calls == 1 and res.method == "all_at_once"
    by = {s.variant: s for s in res.scores}
    # the random example has only zeros: its correlation is undefined, never 0
    assert by["random"].status == "undefined" and by["random"].value is None
    assert "true activations are constant" in by["random"].error
    for v in ("top_and_random", "top"):
        s = by[v]
        if s.value is not None:  # predictions may be constant for a 2-token example
            assert -1.0 <= s.value <= 1.0 and s.status == "ok"
    assert by["top_and_random"].extra["n_tokens"] == 4 and by["top"].extra["n_tokens"] == 2
    assert by["top"].method == "all_at_once"
    rows = res.rows("b", 7)
    assert [r["kind"] for r in rows] == ["top", "random"]
    assert rows[0]["true"] == [0.0, 3.0] and len(rows[1]["pred"]) == 2
    assert all(0.0 <= v <= 10.0 and not math.isnan(v) for r in rows for v in r["pred"])

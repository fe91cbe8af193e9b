"""Simulation scoring (Bills et al. 2023; ``docs/simulation.md``).

For true activations ``t`` and predictions ``p`` pooled over ALL tokens of ALL test examples
(never a mean of per-example scores):

- ``correlation_score`` = Pearson r(t, p) (OpenAI's ``ev_correlation_score``). Undefined (None)
  only when the *truth* is constant or there are fewer than 2 tokens: there is nothing to
  predict. A constant *prediction* against varying truth is a failed explanation, scored 0
  (``constant_prediction`` in the score's ``extra``), never dropped (``docs/nulls.md``).
- ``rsquared_score`` = ``1 - mean((t - p)^2) / mean(t^2)``; None when ``mean(t^2) == 0``.
- ``absolute_dev_explained`` = ``1 - mean(|t - p|) / mean(|t|)``; None when ``mean(|t|) == 0``.

In :func:`score_simulation` the true values are put on the simulator's 0-10 scale,
``t = 10 * relu(a) / record.max_act`` (the feature's corpus maximum; the test examples' maximum
when that is not positive), so rsquared and absolute deviation compare like with like; the
correlation does not depend on that scaling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autointerp.errors import AutointerpError, FatalLLMError, LLMError, ParseError
from autointerp.llm.base import LLMClient, Tag
from autointerp.scoring.methods import pick_method
from autointerp.scoring.simulation import simulate
from autointerp.types import Example, Explanation, FeatureRecord, Score

VARIANTS = ("top_and_random", "top", "random")


def _pool(true: Sequence[Sequence[float]], pred: Sequence[Sequence[float]]):
    if len(true) != len(pred):
        raise AutointerpError(f"{len(true)} true vs {len(pred)} predicted examples")
    for i, (t, p) in enumerate(zip(true, pred, strict=True)):
        if len(t) != len(p):
            raise AutointerpError(f"example {i}: {len(t)} true vs {len(p)} predicted tokens")
    t = np.array([x for row in true for x in row], dtype=np.float64)
    p = np.array([x for row in pred for x in row], dtype=np.float64)
    return t, p


def correlation_score(
    true: Sequence[Sequence[float]], pred: Sequence[Sequence[float]]
) -> float | None:
    """Pearson correlation over all tokens pooled. None (undefined) when the true values are
    constant or fewer than 2; 0.0 when only the prediction is constant."""
    t, p = _pool(true, pred)
    if t.size < 2 or np.ptp(t) == 0:
        return None
    if np.ptp(p) == 0:
        return 0.0
    tc, pc = t - t.mean(), p - p.mean()
    r = float((tc @ pc) / np.sqrt((tc @ tc) * (pc @ pc)))
    # rounding in the pooled sums can overshoot |r| = 1 by an ulp or two (1.0000000000000002
    # on AVX2 hosts for a perfect prediction): r is a cosine, so clip to its range
    return min(1.0, max(-1.0, r))


def rsquared_score(
    true: Sequence[Sequence[float]], pred: Sequence[Sequence[float]]
) -> float | None:
    """``1 - mean((t - p)^2) / mean(t^2)`` pooled; None when all true values are 0."""
    t, p = _pool(true, pred)
    denom = float(np.mean(t**2)) if t.size else 0.0
    return None if denom == 0 else 1.0 - float(np.mean((t - p) ** 2)) / denom


def absolute_dev_explained(
    true: Sequence[Sequence[float]], pred: Sequence[Sequence[float]]
) -> float | None:
    """``1 - mean(|t - p|) / mean(|t|)`` pooled; None when all true values are 0."""
    t, p = _pool(true, pred)
    denom = float(np.mean(np.abs(t))) if t.size else 0.0
    return None if denom == 0 else 1.0 - float(np.mean(np.abs(t - p))) / denom


def true_on_scale(examples: Sequence[Example], max_act: float) -> list[list[float]]:
    """``10 * relu(a) / max_act`` per token (max over ``examples`` when ``max_act <= 0``)."""
    if max_act <= 0:
        max_act = max((e.max_act for e in examples), default=0.0)
    if max_act <= 0:
        return [[0.0] * len(e.acts) for e in examples]
    return [[10.0 * max(a, 0.0) / max_act for a in e.acts] for e in examples]


@dataclass
class SimulationScoring:
    """The scores of one feature plus what ``simulations.parquet`` needs: ``examples`` (the
    simulated union, top then random), ``true`` (raw activations) and ``pred`` (0-10; None
    when the simulation failed)."""

    scores: list[Score]
    examples: list[Example]
    true: list[list[float]]
    pred: list[list[float]] | None
    method: str = ""
    n_calls: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def rows(self, basis: str, feature: int) -> list[dict[str, Any]]:
        """One ``simulations.parquet`` row per example (empty when the simulation failed)."""
        if self.pred is None:
            return []
        return [
            {
                "basis": basis,
                "feature": feature,
                "example": i,
                "kind": ex.kind,
                "tokens": list(ex.tokens),
                "true": [float(a) for a in t],
                "pred": [float(v) for v in p],
            }
            for i, (ex, t, p) in enumerate(zip(self.examples, self.true, self.pred, strict=True))
        ]


async def score_simulation(
    record: FeatureRecord,
    explanation: Explanation | str,
    client: LLMClient | None,
    *,
    variants: Sequence[str] = VARIANTS,
    protocol_id: str = "",
    method: str = "auto",
    max_parse_retries: int = 2,
    null: str = "",
    tag: Tag | None = None,
) -> SimulationScoring:
    """Simulate the union of the test examples the ``variants`` need (test_top then
    test_random) in ONE ``simulate`` call and score each variant on its subset.

    Each Score: ``value`` = pooled Pearson r (:func:`correlation_score`); ``status`` "ok",
    "undefined" (constant side / no examples; value None) or "failed" (explanation failed or
    LLM answer unusable; value None, ``error`` says why); ``extra`` holds ``rsquared``,
    ``absolute_dev_explained``, ``n_tokens``, ``n_examples`` and the shared call's ``n_calls``.
    ``null="shuffled"`` marks a shuffled-explanation null row."""
    for v in variants:
        if v not in VARIANTS:
            raise AutointerpError(f"unknown simulation variant {v!r}; use {', '.join(VARIANTS)}")
    use_top = any(v in ("top_and_random", "top") for v in variants)
    use_rand = any(v in ("top_and_random", "random") for v in variants)
    top = list(record.test_top) if use_top else []
    rand = list(record.test_random) if use_rand else []
    examples = top + rand
    subsets = {
        "top_and_random": range(len(examples)),
        "top": range(len(top)),
        "random": range(len(top), len(examples)),
    }
    true_raw = [list(e.acts) for e in examples]
    true = true_on_scale(examples, record.max_act)
    base = dict(
        basis=record.basis, feature=record.feature, scorer="simulation", protocol_id=protocol_id,
        null=null,
    )  # fmt: skip

    if method == "auto" and client is not None:
        method = pick_method(client, "auto")  # failures are filed under the method used

    def failed(error: str, method_used: str = method) -> SimulationScoring:
        scores = [
            Score(**base, variant=v, value=None, method=method_used, status="failed", error=error)
            for v in variants
        ]
        return SimulationScoring(scores, examples, true_raw, None, method=method_used)

    text = explanation if isinstance(explanation, str) else explanation.text
    if isinstance(explanation, Explanation) and explanation.status != "ok":
        return failed(f"explanation failed: {explanation.error}")
    if not text.strip():
        return failed("empty explanation")
    if not examples:
        scores = [
            Score(
                **base,
                variant=v,
                value=None,
                method=method,
                status="undefined",
                error="no test examples",
            )
            for v in variants
        ]
        return SimulationScoring(scores, examples, true_raw, None)
    tag = tag or Tag(stage="simulation", basis=record.basis, feature=record.feature)
    try:
        sim = await simulate(
            text, examples, client, method=method, max_parse_retries=max_parse_retries, tag=tag
        )
    except FatalLLMError:
        raise
    except (ParseError, LLMError) as e:
        return failed(f"{type(e).__name__}: {e}")
    scores = []
    for v in variants:
        idx = subsets[v]
        t = [true[i] for i in idx]
        p = [sim.pred[i] for i in idx]
        extra = {
            "rsquared": rsquared_score(t, p) if idx else None,
            "absolute_dev_explained": absolute_dev_explained(t, p) if idx else None,
            "n_tokens": sum(len(r) for r in t),
            "n_examples": len(idx),
            "n_calls": sim.n_calls,
            **sim.extra,
        }
        r = correlation_score(t, p) if idx else None
        err = ""
        if r is None:
            err = "true activations are constant: nothing to predict"
            err = "no test examples" if not idx else err
        elif len({x for row in p for x in row}) <= 1:
            extra["constant_prediction"] = True
            err = "the prediction is constant: scored 0"
        scores.append(
            Score(
                **base,
                variant=v,
                value=r,
                method=sim.method,
                status="ok" if r is not None else "undefined",
                error=err,
                extra=extra,
            )
        )
    return SimulationScoring(
        scores, examples, true_raw, sim.pred, method=sim.method, n_calls=sim.n_calls
    )

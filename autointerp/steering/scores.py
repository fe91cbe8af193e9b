"""Concept and fluency scores of one continuation, and the factor choice (docs/steering.md).

All concept and fluency numbers are *paired*: the steered continuation of a prompt minus the
unsteered continuation of the same prompt.

* ``concept_act``: mean over the continuation's tokens of the feature's own code (read back
  through the unsteered model), divided by the feature's max activation on the corpus.
* ``concept_pmi``: explanation-PMI per token, ``(1/n) Σ_u [log p(u | P_e) − log p(u | P_0)]``
  over the continuation's simulator tokens ``u`` (``P_e`` / ``P_0``: the explanation / neutral
  prefix of the PMI scorer, :mod:`autointerp.scoring.pmi`).
* ``nll``: the unsteered model's mean NLL per continuation token; ``repeat``: the share of the
  continuation's bigrams that occurred earlier in it.

The steering score of a feature: on the selection prompts, for each factor ``α`` the mean
concept gain ``C(α)`` and NLL rise ``R(α)``; ``α* = argmax {C(α) : R(α) ≤ budget}`` over the
grid including ``α = 0`` (``C(0) = R(0) = 0``); the score is the mean concept gain on the report
prompts at ``α*``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autointerp.llm.base import LLMClient, Tag
from autointerp.scoring.pmi import LOOKBACK, NEUTRAL, _own_tokens, _top_n_needed, pmi_prefix


def repeated_bigrams(tokens: Sequence[int]) -> float | None:
    """``(#bigrams − #distinct bigrams) / #bigrams``; None under 2 tokens."""
    bg = list(zip(tokens[:-1], tokens[1:], strict=True))
    if not bg:
        return None
    return (len(bg) - len(set(bg))) / len(bg)


def mean_code(codes: np.ndarray) -> float | None:
    """Mean of a feature's codes over a continuation's tokens; None when empty."""
    return float(np.mean(codes)) if len(codes) else None


async def pmi_per_token(
    client: LLMClient, explanations: Sequence[str], texts: Sequence[str], tag: Tag | None = None
) -> list[float | None]:
    """Per text: mean over its simulator tokens of ``log p(u | P_e + text) − log p(u | P_0 +
    text)``; None for an empty text or one with no logprob on either side."""
    prompts, starts, which = [], [], []
    for i, (e, t) in enumerate(zip(explanations, texts, strict=True)):
        if not t.strip():
            continue
        for prefix in (pmi_prefix(e), pmi_prefix(NEUTRAL)):
            prompts.append(prefix + t)
            starts.append(len(prefix))
        which.append(i)
    out: list[float | None] = [None] * len(texts)
    if not prompts:
        return out
    pls = await client.prompt_logprobs_many(
        prompts,
        top_logprobs=await _top_n_needed(client),
        tag=tag,
        only_at=[
            list(range(max(0, s - LOOKBACK), len(p))) for p, s in zip(prompts, starts, strict=True)
        ],
    )
    for k, i in enumerate(which):
        we = _own_tokens(pls[2 * k], starts[2 * k], len(prompts[2 * k]))
        wn = _own_tokens(pls[2 * k + 1], starts[2 * k + 1], len(prompts[2 * k + 1]))
        diffs = [
            we[s] - wn[s]  # type: ignore[operator]
            for s in we
            if s[1] > 0 and we.get(s) is not None and wn.get(s) is not None
        ]
        out[i] = float(np.mean(diffs)) if diffs else None
    return out


@dataclass(frozen=True)
class Choice:
    """A feature's chosen factor and its held-out numbers."""

    factor: float
    select_gain: float
    score: float | None  # mean concept gain on the report prompts at ``factor``
    nll_rise: float | None
    repeat: float | None


def _mean(v: Sequence[float | None]) -> float | None:
    x = [a for a in v if a is not None and np.isfinite(a)]
    return float(np.mean(x)) if x else None


def choose_factor(
    factors: Sequence[float],
    gain: np.ndarray,
    rise: np.ndarray,
    repeat: np.ndarray,
    select: np.ndarray,
    report: np.ndarray,
    budget: float,
    repeat_budget: float = float("inf"),
) -> Choice:
    """Pick ``α*`` on the ``select`` prompts under ``rise ≤ budget`` and a rise of the repeated-
    bigram share over factor 0's ``≤ repeat_budget``; score on ``report``.

    ``gain``, ``rise``: ``[n_factors, n_prompts]`` paired differences, ``repeat`` the shares
    (NaN where undefined); factor 0 must be in ``factors``."""
    j0 = list(factors).index(0.0)
    best_j, best = j0, 0.0
    for j, a in enumerate(factors):
        if a == 0:
            continue
        c, r = _nanmean(gain[j, select]), _nanmean(rise[j, select])
        if c is None or r is None or r > budget:
            continue
        rr = _nanmean(repeat[j, select] - repeat[j0, select])
        if rr is not None and rr > repeat_budget:
            continue
        if c > best:
            best_j, best = j, c
    return Choice(
        float(factors[best_j]),
        best,
        _nanmean(gain[best_j, report]),
        _nanmean(rise[best_j, report]),
        _nanmean(repeat[best_j, report]),
    )


def _nanmean(x: np.ndarray) -> float | None:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None

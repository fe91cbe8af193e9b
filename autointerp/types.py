"""Data types passed between stages (one type in, one type out per stage)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Example:
    """A window of tokens with one feature's activation on each token.

    ``kind`` is ``"top"`` (top-activating), ``"quantile"`` (sampled from activation quantile bin
    ``quantile``; 0 = lowest non-zero bin) or ``"random"`` (uniform over the corpus, NOT
    conditioned on firing). ``seq``/``start`` locate the window in the token array.
    """

    tokens: list[str]
    token_ids: list[int]
    acts: list[float]
    kind: str
    seq: int = -1
    start: int = -1
    quantile: int = -1

    @property
    def max_act(self) -> float:
        return max(self.acts) if self.acts else 0.0

    @property
    def fires(self) -> bool:
        return self.max_act > 0.0

    def to_dict(self) -> dict[str, Any]:
        # by hand: ``dataclasses.asdict`` deep-copies every list item (~30x slower, and
        # records of every latent are written whole)
        return {
            "tokens": list(self.tokens),
            "token_ids": list(self.token_ids),
            "acts": list(self.acts),
            "kind": self.kind,
            "seq": self.seq,
            "start": self.start,
            "quantile": self.quantile,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Example:
        return cls(**d)


@dataclass
class FeatureRecord:
    """Everything collected for one feature. ``explain`` (train) and the ``test_*`` lists are
    disjoint windows. ``density`` is the firing fraction over all scored tokens;
    ``max_act`` the maximum activation over the corpus."""

    basis: str
    feature: int
    density: float
    max_act: float
    explain: list[Example] = field(default_factory=list)
    test_top: list[Example] = field(default_factory=list)
    test_quantile: list[Example] = field(default_factory=list)
    test_random: list[Example] = field(default_factory=list)

    def test_examples(self, variant: str) -> list[Example]:
        """``"top_and_random"``, ``"top"`` or ``"random"`` (docs/simulation.md)."""
        if variant == "top_and_random":
            return self.test_top + self.test_random
        if variant == "top":
            return list(self.test_top)
        if variant == "random":
            return list(self.test_random)
        raise ValueError(f"unknown test variant {variant!r}; use top_and_random, top or random")

    def to_dict(self) -> dict[str, Any]:
        """Equal to ``dataclasses.asdict(self)``, built without its deep copies."""
        return {
            "basis": self.basis,
            "feature": self.feature,
            "density": self.density,
            "max_act": self.max_act,
            **{
                k: [e.to_dict() for e in getattr(self, k)]
                for k in ("explain", "test_top", "test_quantile", "test_random")
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureRecord:
        d = dict(d)
        for k in ("explain", "test_top", "test_quantile", "test_random"):
            d[k] = [Example.from_dict(e) for e in d.get(k, [])]
        return cls(**d)


@dataclass
class Explanation:
    basis: str
    feature: int
    text: str
    style: str  # "openai" | "highlight" | "top_tokens"
    status: str = "ok"  # "ok" | "failed" | "truncated" (cut at max_tokens mid-sentence)
    error: str = ""
    attempts: int = 1


@dataclass
class Score:
    """One score of one feature under one scorer/variant.

    ``value`` is None when undefined (e.g. constant activations -> Pearson undefined) or failed;
    ``status`` says which ("ok", "undefined", "failed") and ``error`` why.
    ``method`` records how it was obtained (e.g. "pmi", "all_at_once", "token_match",
    "top_logprobs", "json").
    """

    basis: str
    feature: int
    scorer: str  # "simulation" | "detection" | "fuzzing" | "intruder"
    variant: str  # e.g. "top_and_random", "top", "random", "balanced_accuracy", "auroc"
    value: float | None
    method: str = ""
    protocol_id: str = ""
    status: str = "ok"
    error: str = ""
    null: str = ""  # "" for the real score; "shuffled" for a shuffled-explanation null
    extra: dict[str, Any] = field(default_factory=dict)

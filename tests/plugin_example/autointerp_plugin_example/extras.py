"""A third-party scorer and basis kind for autointerp, found through entry points."""

from __future__ import annotations

from autointerp.bases.kinds import BasisKind
from autointerp.scoring.registry import ScorerResult
from autointerp.types import Score


class WordCount:
    """Scores an explanation by its number of words (no LLM)."""

    name = "word-count"
    roles: tuple[str, ...] = ()
    nulls = False
    floor = False

    async def score(self, record, explanation, env) -> ScorerResult:
        n = len(explanation.text.split()) if explanation else 0
        s = Score(record.basis, record.feature, self.name, "words", float(n), method="count",
                  protocol_id=env.protocol_id)  # fmt: skip
        return ScorerResult([s])


def build_half_neurons(b):
    """The first half of the neurons, signed."""
    import torch

    from autointerp.bases.linear import SignedLinearBasis

    n = b.width // 2
    eye = torch.eye(b.width)[:, :n]
    return SignedLinearBasis(b.cfg.label, "half-neurons", eye, eye.T, torch.zeros(b.width), b.k)


WORD_COUNT = WordCount()
HALF_NEURONS = BasisKind("half-neurons", build_half_neurons)

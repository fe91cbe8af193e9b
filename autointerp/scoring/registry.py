"""Scorers by name: ``[scoring] scorers = ["simulation", "detection"]`` names :class:`Scorer`
objects registered here.

A scorer turns one feature's records and explanation into scores, each with its status
(``ok`` / ``undefined`` / ``failed`` and why): ``await scorer.score(record, explanation, env)
-> ScorerResult``. Its attributes tell the score stage what to give it:

* ``roles``: the LLM roles it asks (``("scorer",)``, ``("simulator",)``; ``()`` for none) —
  clients are made only when some job needs them;
* ``nulls``: it also scores a shuffled-explanation null (``env.null == "shuffled"``; the
  explanation is another feature's, or None when no other feature's explanation is usable —
  then the scorer returns ``undefined`` rows);
* ``floor``: it also scores the no-LLM ``top_tokens`` explanation (``env.kind == "floor"``).

The built-ins (``simulation``, ``detection``, ``fuzzing``, ``intruder``) live in
:mod:`autointerp.scoring.builtin`; a third-party package registers more with
:func:`register_scorer` or the entry-point group ``autointerp.scorers``
(``NAME = "package.module:SCORER"``). Every scorer listed in a suite runs for every feature; its
rows land in ``scores.parquet`` under its name. Importing this module imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from autointerp.errors import AutointerpError
from autointerp.registry import Registry

if TYPE_CHECKING:
    from autointerp.config import ScoringConfig, Suite
    from autointerp.llm.base import LLMClient
    from autointerp.types import Explanation, FeatureRecord, Score


@dataclass
class ScoringEnv:
    """What a scorer sees besides the feature: the suite's scoring config, the LLM clients,
    the protocol id to stamp on each score, which null (``""`` or ``"shuffled"``) and which
    kind of explanation (``"llm"`` or the ``"floor"``) this job scores."""

    config: ScoringConfig
    suite: Suite
    clients: dict[str, LLMClient]
    protocol_id: str
    null: str = ""
    kind: str = "llm"

    @property
    def seed(self) -> int:
        return self.suite.seed

    def client(self, role: str) -> LLMClient:
        c = self.clients.get(role)
        if c is None:
            raise AutointerpError(f"this scorer needs the {role} LLM, which this run has not made")
        return c


@dataclass
class ScorerResult:
    """The scores of one feature, and optional per-example rows for ``simulations.parquet``."""

    scores: list[Score]
    sims: list[dict[str, Any]] = field(default_factory=list)


@runtime_checkable
class Scorer(Protocol):
    name: str
    roles: tuple[str, ...]
    nulls: bool
    floor: bool

    async def score(
        self, record: FeatureRecord, explanation: Explanation | None, env: ScoringEnv
    ) -> ScorerResult: ...


def _check(name: str, obj: Any) -> None:
    if not isinstance(obj, Scorer):
        raise TypeError(
            f"scorer {name!r}: {obj!r} lacks name / roles / nulls / floor / async score(record, "
            "explanation, env) (see autointerp.scoring.registry.Scorer)"
        )
    if obj.name != name:
        raise ValueError(f"scorer registered as {name!r} is named {obj.name!r}")


BUILTIN = {
    s: "autointerp.scoring.builtin" for s in ("simulation", "detection", "fuzzing", "intruder")
}

SCORERS: Registry[Scorer] = Registry("scorer", "autointerp.scorers", BUILTIN, check=_check)


def register_scorer(scorer: Scorer, *, replace: bool = False) -> Scorer:
    """Make ``scorer.name`` usable in ``[scoring] scorers`` (no edit to autointerp)."""
    return SCORERS.register(scorer.name, scorer, replace=replace)  # type: ignore[return-value]


def get_scorer(name: str) -> Scorer:
    return SCORERS.get(name)


def scorers_in_order(names: list[str]) -> list[Scorer]:
    """The scorers ``names`` lists, in registry order (built-ins first): the order of their
    rows in a feature's results does not depend on how the suite lists them."""
    order = SCORERS.names()
    return [get_scorer(n) for n in sorted(set(names), key=order.index)]

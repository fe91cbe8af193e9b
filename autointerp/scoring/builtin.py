"""The built-in scorers behind the :class:`~autointerp.scoring.registry.Scorer` protocol:
``simulation`` (with its methods, the shuffled null and the ``token_match`` floor),
``detection``, ``fuzzing`` and ``intruder``."""

from __future__ import annotations

from dataclasses import dataclass

from autointerp.llm.base import Tag
from autointerp.scoring.registry import ScorerResult, ScoringEnv, register_scorer
from autointerp.types import Explanation, FeatureRecord, Score

NO_NULL = "no shuffled null: no other feature's explanation is usable and differs in text"


@dataclass(frozen=True)
class SimulationScorer:
    """Simulate the test windows' activations from the explanation and correlate
    (``docs/simulation.md``); the floor is the ``top_tokens`` explanation by ``token_match``."""

    name: str = "simulation"
    roles: tuple[str, ...] = ("simulator",)
    nulls: bool = True
    floor: bool = True

    async def score(
        self, record: FeatureRecord, explanation: Explanation | None, env: ScoringEnv
    ) -> ScorerResult:
        from autointerp.scoring.correlation import score_simulation

        sc = env.config
        if explanation is None:
            return ScorerResult(self._undefined_null(record, env))
        if env.kind == "floor":
            s = await score_simulation(
                record, explanation, None, variants=tuple(sc.variants),
                protocol_id=env.protocol_id, null=env.null, method="token_match",
            )  # fmt: skip
            return ScorerResult(s.scores)
        stage = "score" if not env.null else f"score.{env.null}"
        s = await score_simulation(
            record,
            explanation,
            env.client("simulator"),
            variants=tuple(sc.variants),
            protocol_id=env.protocol_id,
            null=env.null,
            method=sc.simulation_method,
            max_parse_retries=env.suite.llm.simulator.max_parse_retries,
            tag=Tag(stage, record.basis, record.feature),
        )
        return ScorerResult(s.scores, [] if env.null else s.rows(record.basis, record.feature))

    @staticmethod
    def _undefined_null(record: FeatureRecord, env: ScoringEnv) -> list[Score]:
        """Undefined shuffled-null rows of a feature no other explanation can serve (the
        basis has one usable explanation, or every other one has the same text)."""
        sc = env.config
        method = "token_match" if env.kind == "floor" else sc.simulation_method
        if method == "auto" and "simulator" in env.clients:
            from autointerp.scoring.simulation import pick_method

            method = pick_method(env.clients["simulator"], "auto")
        return [
            Score(
                record.basis,
                record.feature,
                "simulation",
                v,
                None,
                method=method,
                protocol_id=env.protocol_id,
                status="undefined",
                error=NO_NULL,
                null="shuffled",
            )  # fmt: skip
            for v in sc.variants
        ]


@dataclass(frozen=True)
class ClassifyScorer:
    """Detection / fuzzing: can the scorer LLM tell activating windows (or tokens) from
    others given the explanation (``docs/classification.md``)."""

    name: str
    roles: tuple[str, ...] = ("scorer",)
    nulls: bool = False
    floor: bool = False

    async def score(
        self, record: FeatureRecord, explanation: Explanation | None, env: ScoringEnv
    ) -> ScorerResult:
        text = explanation.text if explanation and explanation.status == "ok" else ""
        if not text:
            err = explanation.error if explanation else "no explanation"
            return ScorerResult(
                [
                    Score(
                        record.basis,
                        record.feature,
                        self.name,
                        "balanced_accuracy",
                        None,
                        protocol_id=env.protocol_id,
                        status="failed",
                        error=f"explanation failed: {err}",
                    )  # fmt: skip
                ]
            )
        if self.name == "detection":
            from autointerp.scoring.detection import score_detection as fn
        else:
            from autointerp.scoring.fuzzing import score_fuzzing as fn
        scores = await fn(
            record,
            text,
            env.client("scorer"),
            examples_per_prompt=env.config.examples_per_prompt,
            tag=Tag(self.name, record.basis, record.feature),
            seed=env.seed,
            protocol_id=env.protocol_id,
        )
        return ScorerResult(scores)


@dataclass(frozen=True)
class IntruderScorer:
    """Can the scorer LLM spot the non-activating window among activating ones (no
    explanation needed)."""

    name: str = "intruder"
    roles: tuple[str, ...] = ("scorer",)
    nulls: bool = False
    floor: bool = False

    async def score(
        self, record: FeatureRecord, explanation: Explanation | None, env: ScoringEnv
    ) -> ScorerResult:
        from autointerp.scoring.intruder import score_intruder

        scores = await score_intruder(
            record,
            env.client("scorer"),
            tag=Tag("intruder", record.basis, record.feature),
            seed=env.seed,
            protocol_id=env.protocol_id,
        )
        return ScorerResult(scores)


register_scorer(SimulationScorer())
register_scorer(ClassifyScorer("detection"))
register_scorer(ClassifyScorer("fuzzing"))
register_scorer(IntruderScorer())

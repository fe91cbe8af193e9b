"""The stages of a suite, one small module each (a value in, a value out, no file paths):

==============  ===========================================  ================================
stage           value                                        module
==============  ===========================================  ================================
tokens          :class:`~autointerp.stages.tokens.Tokens`    :mod:`autointerp.stages.tokens`
activations     :class:`~.activations.Activations`           :mod:`autointerp.stages.activations`
split           :class:`~autointerp.stages.tokens.Split`     :mod:`autointerp.stages.tokens`
gate            ``{basis: GateReport dict}``                 :mod:`autointerp.stages.gate`
bases           ``list[Basis]``                              :mod:`autointerp.stages.bases`
ioi             ``StageColumns`` (IOI patching)              :mod:`autointerp.stages.ioi`
attribution     ``StageColumns`` dict (latent attribution)   :mod:`autointerp.stages.attribution`
absorption      ``StageColumns`` (SAEBench absorption)       :mod:`autointerp.stages.absorption`
metrics         ``list[dict]`` (one row per basis)           :mod:`autointerp.stages.metrics`
density         ``{basis: np.ndarray}``                      :mod:`autointerp.stages.density`
records         :class:`~autointerp.stages.records.RecordSet` :mod:`autointerp.stages.records`
diagnostics     ``list[dict]``                               :mod:`autointerp.stages.records`
ablation        :class:`~autointerp.columns.StageColumns`    :mod:`autointerp.stages.output_side`
output          :class:`~autointerp.columns.StageColumns`    :mod:`autointerp.stages.output_side`
explain         ``{(basis, feature, style): row}``           :mod:`autointerp.stages.explain`
score           ``list[item]`` (rows of every scorer)        :mod:`autointerp.stages.score`
weights         ``{basis: DataFrame}`` (weight statistics)    :mod:`autointerp.stages.weights`
steering        :class:`~autointerp.columns.StageColumns`    :mod:`autointerp.stages.steering`
(plug-ins)      anything                                     :func:`autointerp.run.register_stage`
report          the run's tables                             :mod:`autointerp.stages.outputs`
==============  ===========================================  ================================
"""

from __future__ import annotations

from autointerp.run.stage import Stage, registered_stages
from autointerp.stages.absorption import ABSORPTION
from autointerp.stages.activations import ACTIVATIONS
from autointerp.stages.attribution import ATTRIBUTION
from autointerp.stages.bases import BASES
from autointerp.stages.density import DENSITY
from autointerp.stages.explain import EXPLAIN
from autointerp.stages.gate import GATE
from autointerp.stages.ioi import IOI
from autointerp.stages.metrics import METRICS
from autointerp.stages.output_side import ABLATION, OUTPUT
from autointerp.stages.outputs import REPORT
from autointerp.stages.records import DIAGNOSTICS, RECORDS
from autointerp.stages.score import SCORE
from autointerp.stages.steering import STEERING
from autointerp.stages.tokens import SPLIT, TOKENS
from autointerp.stages.weights import WEIGHTS

BUILTIN_STAGES: tuple[Stage, ...] = (
    TOKENS,
    SPLIT,
    GATE,  # before anything expensive: activations, fits, LLM stages
    ACTIVATIONS,
    BASES,
    IOI,  # causal stages: bases + the subject model, no LLM
    ATTRIBUTION,
    ABSORPTION,  # first-letter absorption: bases + the subject model, no LLM
    METRICS,
    DENSITY,
    RECORDS,
    DIAGNOSTICS,
    ABLATION,  # no LLM: before the LLM stages
    OUTPUT,
    EXPLAIN,
    SCORE,
    WEIGHTS,
    STEERING,  # after score: correlates steerability with the scores
    REPORT,
)

#: the --force names (a plug-in stage adds its own)
FORCE_NAMES = ("tokens", "activations", "bases", "metrics", "records", "explain", "score", "report",
               "ablation", "output", "weights",
               "absorption", "steering")  # fmt: skip


def suite_stages() -> list[Stage]:
    """The graph of a suite: the built-in stages and every registered plug-in stage (run after
    their dependencies and before the report)."""
    plugins = registered_stages()
    report = REPORT
    if plugins:
        from dataclasses import replace

        report = replace(REPORT, deps=REPORT.deps + tuple(p.name for p in plugins))
    return [*BUILTIN_STAGES[:-1], *plugins, report]

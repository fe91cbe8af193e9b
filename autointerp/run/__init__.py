"""Running stages: :class:`Stage` (what a stage is), :class:`RunStore` (the one owner of the
run directory), :class:`Runner` (hashing, caching, resume, journals, lock, timing).

See ``docs/runner.md``.
"""

from autointerp.run.runner import Runner, format_summary, order_stages
from autointerp.run.stage import (
    JSON,
    NPY,
    Artifact,
    Codec,
    Stage,
    StageContext,
    StageReport,
    register_stage,
    registered_stages,
    unregister_stage,
)
from autointerp.run.store import SCHEMA_VERSION, RunStore

__all__ = [
    "JSON",
    "NPY",
    "SCHEMA_VERSION",
    "Artifact",
    "Codec",
    "Runner",
    "RunStore",
    "Stage",
    "StageContext",
    "StageReport",
    "format_summary",
    "order_stages",
    "register_stage",
    "registered_stages",
    "unregister_stage",
]

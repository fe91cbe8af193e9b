"""Leaderboard columns contributed by stages (causal, output-side, ...): typed cells with a CI,
an n and, when the value cannot be computed, the reason.

A stage that adds columns returns (or builds) a :class:`StageColumns` and saves it in the run
directory as ``columns/<stage>.json`` (:func:`save_columns`); the report reads every such file
(:func:`load_columns`) and shows each column ``c`` as ``c``, ``c_ci_low``, ``c_ci_high``, ``c_n``,
with undefined cells listed by reason. Nothing here imports the report or the stages.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

COLUMNS_DIR = "columns"


@dataclass(frozen=True)
class Cell:
    """One basis's value of one column. ``value is None`` means undefined; ``reason`` says why."""

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.value is not None and not math.isfinite(self.value):
            object.__setattr__(self, "reason", self.reason or f"non-finite value {self.value}")
            object.__setattr__(self, "value", None)
        if self.value is None and not self.reason:
            raise ValueError("an undefined cell needs a reason")

    @classmethod
    def undefined(cls, reason: str, n: int | None = None) -> Cell:
        return cls(None, n=n, reason=reason)


@dataclass(frozen=True)
class ColumnDoc:
    """What a column means (the legend), which way is better, and its group in the tables."""

    name: str
    doc: str
    better: Literal["higher", "lower", "none"] = "none"
    group: str = "causal"
    #: format for markdown cells (e.g. ``.3f``, ``.0f``)
    fmt: str = ".3f"


@dataclass
class StageColumns:
    """The columns one stage adds: their docs, and the cells per basis."""

    stage: str
    columns: list[ColumnDoc]
    rows: dict[str, dict[str, Cell]] = field(default_factory=dict)
    #: free-form extra data for reports (e.g. the IOI curve points), JSON-serialisable
    extra: dict[str, Any] = field(default_factory=dict)

    def set(self, basis: str, column: str, cell: Cell) -> None:
        if column not in {c.name for c in self.columns}:
            raise KeyError(f"column {column!r} is not declared by stage {self.stage!r}")
        self.rows.setdefault(basis, {})[column] = cell

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "columns": [asdict(c) for c in self.columns],
            "rows": {b: {c: asdict(v) for c, v in r.items()} for b, r in self.rows.items()},
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageColumns:
        return cls(
            stage=str(d["stage"]),
            columns=[ColumnDoc(**c) for c in d.get("columns") or []],
            rows={
                b: {c: Cell(**v) for c, v in r.items()} for b, r in (d.get("rows") or {}).items()
            },
            extra=dict(d.get("extra") or {}),
        )


def columns_path(run_dir: Path, stage: str) -> Path:
    return Path(run_dir) / COLUMNS_DIR / f"{stage}.json"


def save_columns(run_dir: Path, cols: StageColumns) -> Path:
    """Write ``columns/<stage>.json`` atomically."""
    from autointerp.results import atomic_write_json

    p = columns_path(run_dir, cols.stage)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(p, cols.to_dict())
    return p


def load_columns(run_dir: Path) -> list[StageColumns]:
    """Every ``columns/*.json`` of a run (sorted by stage name); [] if none."""
    d = Path(run_dir) / COLUMNS_DIR
    if not d.is_dir():
        return []
    return [StageColumns.from_dict(json.loads(p.read_text())) for p in sorted(d.glob("*.json"))]

"""The leaderboard of many runs: runs grouped by protocol id (the reference group first, the
others set apart with the protocol fields that differ), each group one sorted table."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from autointerp import stats
from autointerp.columns import ColumnDoc
from autointerp.errors import AutointerpError
from autointerp.report import stage_columns as stage_cols
from autointerp.report.columns import _F, _I, BASE_SCHEMA
from autointerp.report.rows import _nan_to_none, _run_rows, plugin_scorers
from autointerp.report.runs import Run

# ---------------------------------------------------------------------------------------------
# Protocol grouping


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a.b.c": value}; lists and scalars are leaves."""
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def protocol_diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Human-readable differences ``field: a_value vs b_value`` between two protocols."""
    fa, fb = flatten(a), flatten(b)
    out = []
    for k in sorted(set(fa) | set(fb)):
        va, vb = fa.get(k, "(absent)"), fb.get(k, "(absent)")
        if va != vb:
            out.append(f"{k}: {json.dumps(va, default=str)} vs {json.dumps(vb, default=str)}")
    return out


@dataclass
class SetApart:
    """A run kept out of the reference table, and why."""

    run: str
    path: str
    protocol_id: str
    reason: str
    differences: list[str]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Leaderboard:
    """Tables by protocol id (reference protocol first), runs set apart, density bins, notes;
    ``scorer_columns``: the plug-in scorer columns of the tables, {column: (scorer, variant)}."""

    groups: dict[str, pl.DataFrame]
    reference: str | None
    set_apart: list[SetApart]
    protocols: dict[str, dict[str, Any]]
    runs_by_group: dict[str, list[str]]
    density: dict[str, pl.DataFrame]
    notes: list[str]
    n_boot: int
    seed: int
    level: float
    scorer_columns: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: the stage-contributed columns of the runs (``columns/<stage>.json``), {column: doc}
    stage_columns: dict[str, ColumnDoc] = field(default_factory=dict)

    @property
    def table(self) -> pl.DataFrame:
        """The reference group's table (empty frame when there are no runs)."""
        if self.reference is None:
            return pl.DataFrame(schema=BASE_SCHEMA)
        return self.groups[self.reference]

    def all_rows(self) -> pl.DataFrame:
        """Every group's rows stacked (each row keeps its ``protocol_id``)."""
        frames = list(self.groups.values())
        return pl.concat(frames, how="diagonal_relaxed") if frames else self.table

    @property
    def ci_method(self) -> str:
        return (
            f"{round(self.level * 100)}% percentile bootstrap over features "
            f"(n_boot={self.n_boot}, seed={self.seed})"
        )


def _frame(rows: list[dict[str, Any]], typed: dict[str, Any] | None = None) -> pl.DataFrame:
    """Rows -> a table of ``BASE_SCHEMA``, then ``typed`` columns (stage columns), then any
    other column as Float64."""
    typed = {k: v for k, v in (typed or {}).items() if k not in BASE_SCHEMA}
    extra = []
    for r in rows:
        for k in r:
            if k not in BASE_SCHEMA and k not in typed and k not in extra:
                extra.append(k)
    schema = {**BASE_SCHEMA, **typed, **{k: _F for k in extra}}
    norm = []
    for r in rows:
        d = {}
        for k, dt in schema.items():
            v = r.get(k)
            if dt == _F:
                v = None if v is None else float(v)
                v = _nan_to_none(v)
            elif dt == _I:
                v = None if v is None else int(v)
            elif v is not None:
                v = str(v)
            d[k] = v
        norm.append(d)
    return pl.from_dicts(norm, schema=schema) if norm else pl.DataFrame(schema=schema)


def sort_table(df: pl.DataFrame, sort_by: str | None, descending: bool = True) -> pl.DataFrame:
    """Sort by a column (nulls last). Default: lift vs random dirs, then lift vs shuffled,
    then sim score, all descending."""
    if sort_by is None:
        keys = ["lift_vs_random_dirs", "lift_vs_shuffled", "sim_score"]
        return df.sort(keys, descending=True, nulls_last=True, maintain_order=True)
    if sort_by not in df.columns:
        raise AutointerpError(
            f"cannot sort by {sort_by!r}: no such column; choose one of {', '.join(df.columns)}"
        )
    return df.sort(sort_by, descending=descending, nulls_last=True, maintain_order=True)


def _n_boot_from(runs: list[Run]) -> int:
    for r in runs:
        cfg = (r.manifest.get("config") or {}).get("scoring") or {}
        proto = (r.manifest.get("protocol") or {}).get("scoring") or {}
        for src in (proto, cfg):
            if isinstance(src, dict) and src.get("n_bootstrap"):
                return int(src["n_bootstrap"])
    return stats.DEFAULT_N_BOOT


def leaderboard_table(
    runs: list[Run],
    *,
    sort_by: str | None = None,
    descending: bool = True,
    n_boot: int | None = None,
    level: float = stats.DEFAULT_LEVEL,
    seed: int = 0,
) -> Leaderboard:
    """Build the leaderboard of ``runs``.

    Runs are grouped by ``protocol_id``; the reference group is the protocol shared by most runs
    (ties: the first run's). Every run outside it is listed in ``set_apart`` with the protocol
    fields that differ. ``n_boot`` defaults to the protocol's ``scoring.n_bootstrap`` (else 1000).
    Each group's table is sorted by ``sort_by`` (default: lift vs random dirs, descending).
    """
    if n_boot is None:
        n_boot = _n_boot_from(runs)
    notes: list[str] = []
    by_pid: dict[str, list[Run]] = {}
    for r in runs:
        by_pid.setdefault(r.protocol_id, []).append(r)
        notes.extend(f"{r.label}: {n}" for n in r.notes)
    reference = None
    if by_pid:
        first = runs[0].protocol_id
        reference = max(by_pid, key=lambda p: (len(by_pid[p]), p == first))
    order = ([reference] if reference is not None else []) + [p for p in by_pid if p != reference]
    groups, density, protocols, set_apart, runs_by_group = {}, {}, {}, [], {}
    scorer_columns: dict[str, tuple[str, str]] = {}
    docs: dict[str, ColumnDoc] = {}
    for r in runs:
        docs.update(stage_cols.run_columns(r.columns))
    ref_proto = by_pid[reference][0].protocol if reference is not None else {}
    for pid in order:
        rows, drows = [], []
        for r in by_pid[pid]:
            scorer_columns.update(plugin_scorers(r)[0])
            rr, dr = _run_rows(r, n_boot, level, seed, notes)
            rows.extend(rr)
            drows.extend(dr)
            if pid != reference:
                if not pid:
                    reason = "manifest has no protocol_id"
                else:
                    reason = f"protocol_id {pid} differs from the reference {reference}"
                set_apart.append(
                    SetApart(
                        r.label, str(r.path), pid, reason, protocol_diff(ref_proto, r.protocol)
                    )
                )
        protocols[pid] = by_pid[pid][0].protocol
        runs_by_group[pid] = [r.label for r in by_pid[pid]]
        groups[pid] = sort_table(_frame(rows, stage_cols.schema(docs)), sort_by, descending)
        density[pid] = pl.from_dicts(drows) if drows else pl.DataFrame()
    return Leaderboard(
        groups,
        reference,
        set_apart,
        protocols,
        runs_by_group,
        density,
        notes,
        n_boot,
        seed,
        level,
        dict(sorted(scorer_columns.items())),
        docs,
    )

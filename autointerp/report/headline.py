"""The headline table: one row per basis and at most ten columns, the first table of every
leaderboard (markdown, HTML, CSV, JSON).

Which full-table column feeds each headline column is configuration, here, in one place:

- ``HEADLINE_METHODS``: the simulation method whose lift over random directions is the
  interpretability headline (the first one a basis has scores for, in this order);
- ``HEADLINE_CAUSAL``: the stage column that is the causal headline (repoint it when a better
  matched-quantity IOI column lands; a list of fallbacks follows it);
- ``HEADLINE_SOURCES``: candidates for steering and absorption, which appear only when a run
  has such a column (an exact name from the list, else the first column of that group).

A cell that cannot be filled is ``None`` with a reason; renderers show a numbered mark and the
reasons under the table, never an empty cell or a 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from autointerp.columns import ColumnDoc
from autointerp.report import stage_columns as stage_cols
from autointerp.report.columns import fmt_value

#: simulation methods in order of preference for the interpretability lift (any other after)
HEADLINE_METHODS: tuple[str, ...] = ("pmi", "all_at_once", "top_logprobs", "json", "token_match")
#: the causal headline column (an IOI comparison at matched KL); the first one a run has wins
HEADLINE_CAUSAL: str = "ioi_edit_half_kl_heldout"
CAUSAL_FALLBACKS: tuple[str, ...] = ("ioi_edit_half_kl", "ioi_half_kl_features", "ioi_kl_k16_lift")
#: optional headline columns: (candidate names in order; else the first column of this
#: ``ColumnDoc.group``; else the first whose name starts with this prefix)
HEADLINE_SOURCES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "steering": (("steer_act", "steer_pmi"), "steering", "steer"),
    "absorption": (("mean_absorption_fraction_score",), "absorption", "absorption"),
}
#: the column groups of the HTML (each folds); every headline column belongs to one
GROUPS: tuple[str, ...] = ("input side", "causal", "structure", "cost")
NULL_ITSELF = "the random-directions null itself"


@dataclass(frozen=True)
class HeadCol:
    """One headline column: its key (csv/json), header, group, source column, direction."""

    key: str
    header: str
    group: str
    source: str = ""
    better: str = "none"
    fmt: str | None = None
    doc: str = ""

    @property
    def arrow(self) -> str:
        return {"higher": " ↑", "lower": " ↓"}.get(self.better, "")


@dataclass
class Headline:
    """One protocol group's headline: columns, rows (one per run and basis), reasons."""

    columns: list[HeadCol]
    rows: list[dict[str, Any]]
    multi_run: bool = False
    #: the method named in the lift column's header (a row with another one says so)
    method: str = ""
    #: distinct reasons of undefined cells, numbered from 1 in this order
    reasons: list[str] = field(default_factory=list)

    def mark(self, reason: str) -> int:
        if reason not in self.reasons:
            self.reasons.append(reason)
        return self.reasons.index(reason) + 1

    def cell(self, row: dict[str, Any], col: HeadCol) -> str:
        """The cell as text: ``value [low, high]``, or ``undefined (N)`` with its reason N."""
        if col.key == "basis":
            name = f"{row['run']}/{row['basis']}" if self.multi_run else row["basis"]
            return name + (" (null)" if row.get("kind") == "random" else "")
        if col.key == "cost":
            return _cost_text(row)
        v = row.get(col.key)
        if col.key == "interp_lift" and v is not None and row.get("interp_method") != self.method:
            return self._value(row, col, v) + f" ({row.get('interp_method')})"
        if v is None:
            reason = (row.get("reasons") or {}).get(col.key)
            return f"undefined ({self.mark(reason)})" if reason else ""
        return self._value(row, col, v)

    def _value(self, row: dict[str, Any], col: HeadCol, v: Any) -> str:
        s = format(v, col.fmt) if col.fmt else fmt_value(v, col.source)
        lo, hi = row.get(f"{col.key}_ci_low"), row.get(f"{col.key}_ci_high")
        if lo is not None and hi is not None:
            f = (lambda x: format(x, col.fmt)) if col.fmt else (lambda x: fmt_value(x, col.source))
            s += f" [{f(lo)}, {f(hi)}]"
        return s

    def texts(self) -> list[list[str]]:
        """Every row's cells as text (fills ``reasons`` in reading order)."""
        self.reasons.clear()
        return [[self.cell(r, c) for c in self.columns] for r in self.rows]

    def notes(self, numbered: bool = True) -> list[str]:
        """``(N) reason — bases`` lines for the undefined cells (after :meth:`texts`)."""
        out = []
        for i, reason in enumerate(self.reasons, 1):
            who = [
                self.cell(r, self.columns[0])
                for r in self.rows
                if reason in (r.get("reasons") or {}).values()
            ]
            out.append(f"({i}) " * numbered + f"{reason} — {', '.join(who)}")
        return out


def _cost_text(row: dict[str, Any]) -> str:
    calls, tok = row.get("llm_calls"), row.get("llm_tokens")
    if calls is None:
        return "undefined (no LLM usage recorded)"
    s = f"{calls:,} calls, {tok / 1000:.0f}k tok" if tok is not None else f"{calls:,} calls"
    usd = row.get("cost_usd")
    return s + (f", ${usd:.2f}" if usd else "")


def _pick_stage_column(
    docs: dict[str, ColumnDoc], candidates: Iterable[str], group: str = "", prefix: str = ""
) -> ColumnDoc | None:
    for c in candidates:
        if c in docs:
            return docs[c]
    by_group = [d for d in docs.values() if group and d.group == group]
    by_name = [d for d in docs.values() if prefix and d.name.startswith(prefix)]
    return (by_group or by_name or [None])[0]


def _rank(method: str | None) -> int:
    """Place of a method in ``HEADLINE_METHODS``; an unknown one (a plug-in simulator) comes
    just before the no-LLM floor ``token_match``."""
    order = list(HEADLINE_METHODS)
    if method in order:
        i = order.index(method)
        return 2 * i + (2 if method == "token_match" else 0)
    floor = order.index("token_match") if "token_match" in order else len(order)
    return 2 * floor + 1


def _method_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The row whose method ranks first (:func:`_rank`) among those with a lift (else any)."""

    def key(r: dict[str, Any]) -> tuple[int, int]:
        has = r.get("lift_vs_random_dirs") is not None or r.get("kind") == "random"
        return (0 if has else 1, _rank(r.get("method")))

    return sorted(rows, key=key)[0]


def _main_method(df: pl.DataFrame) -> str:
    have = (
        [m for m in df["method"].unique(maintain_order=True) if m] if "method" in df.columns else []
    )
    return min(have, key=_rank) if have else "main method"


def _columns(df: pl.DataFrame, docs: dict[str, ColumnDoc]) -> list[HeadCol]:
    m = _main_method(df)
    cols = [
        HeadCol("basis", "basis", "input side"),
        HeadCol(
            "interp_lift",
            f"interp. lift vs random ({m})",
            "input side",
            "lift_vs_random_dirs",
            "higher",
            doc=f"lift of the {m} simulation score over random directions (density-matched), "
            "with its CI: the main input-side score",
        ),
    ]
    causal = _pick_stage_column(docs, (HEADLINE_CAUSAL, *CAUSAL_FALLBACKS))
    if causal is not None:
        cols.append(
            HeadCol(
                "causal",
                f"causal: {causal.name}",
                "causal",
                causal.name,
                causal.better,
                causal.fmt,
                causal.doc,
            )
        )
    for key, (cands, group, prefix) in HEADLINE_SOURCES.items():
        d = _pick_stage_column(docs, cands, group, prefix)
        if d is not None:
            group = "causal" if key == "steering" else "structure"
            cols.append(HeadCol(key, f"{key}: {d.name}", group, d.name, d.better, d.fmt, d.doc))
    cols += [
        HeadCol("fvu", "FVU", "structure", "fvu", "lower", doc="fraction of variance unexplained"),
        HeadCol(
            "ce_loss_score",
            "CE loss recovered",
            "structure",
            "ce_loss_score",
            "higher",
            doc="share of the CE loss lost by zero-ablation that the reconstruction recovers",
        ),
        HeadCol("l0", "L0", "structure", "l0", "none", ".1f", "active features per token"),
        HeadCol(
            "cost",
            "cost",
            "cost",
            "llm_calls",
            doc="LLM calls and tokens (prompt + completion) of this basis; $ when priced",
        ),
    ]
    return cols


def build_headline(df: pl.DataFrame, docs: dict[str, ColumnDoc]) -> Headline:
    """The headline of one protocol group's table ``df`` (rows per basis and method)."""
    cols = _columns(df, docs)
    multi = "run" in df.columns and (df["run"].n_unique() > 1 or df["suite"].n_unique() > 1)
    by_basis: dict[tuple[Any, Any, str], list[dict[str, Any]]] = {}
    for r in df.iter_rows(named=True):
        by_basis.setdefault((r.get("suite"), r.get("run"), r["basis"]), []).append(r)
    has_null = {
        (s, run)
        for (s, run, _b), rs in by_basis.items()
        if any(r.get("kind") == "random" for r in rs)
    }
    rows = []
    for (suite, run, basis), rs in by_basis.items():
        r = _method_row(rs)
        out: dict[str, Any] = {
            "suite": suite,
            "run": run,
            "protocol_id": r.get("protocol_id"),
            "model": r.get("model"),
            "hookpoint": r.get("hookpoint"),
            "basis": basis,
            "kind": r.get("kind"),
            "interp_method": r.get("method"),
        }
        reasons: dict[str, str] = {}
        for c in cols:
            if c.key in ("basis", "cost"):
                continue
            lo = hi = None
            if c.key == "interp_lift":
                v = r.get("lift_vs_random_dirs")
                lo, hi = r.get("lift_vs_random_dirs_ci_low"), r.get("lift_vs_random_dirs_ci_high")
                if v is None:
                    reasons[c.key] = _lift_reason(r, (suite, run) in has_null)
            elif c.group in ("causal", "structure") and c.source in docs:
                v = r.get(c.source)
                lo, hi = r.get(f"{c.source}_ci_low"), r.get(f"{c.source}_ci_high")
                if v is None:
                    reasons[c.key] = _stage_reason(r, c.source)
                out[f"{c.key}_column"] = c.source
            else:
                v = r.get(c.source)
                if v is None and r.get("recon_na") and c.source != "l0":
                    reasons[c.key] = str(r["recon_na"])  # the null at another L0: n/a, why
                elif v is None:
                    why = (
                        "a causal-only row"
                        if r.get("method") == "causal only"
                        else ("metrics stage not run")
                    )
                    reasons[c.key] = f"no {c.source} for this basis ({why})"
            out[c.key] = v
            if lo is not None or hi is not None:
                out[f"{c.key}_ci_low"], out[f"{c.key}_ci_high"] = lo, hi
        out["llm_calls"] = r.get("llm_calls")
        pt, ct, wt = r.get("prompt_tokens"), r.get("completion_tokens"), r.get("work_tokens")
        if wt is not None and wt == wt:  # the LLM work of the row, cache hits included
            out["llm_tokens"] = int(wt)
        else:  # a run written before work_tokens: the tokens its invocations paid for
            out["llm_tokens"] = None if pt is None and ct is None else (pt or 0) + (ct or 0)
        out["cost_usd"] = r.get("cost_usd")
        out["reasons"] = reasons
        rows.append(out)
    run_rank = {k: i for i, k in enumerate(dict.fromkeys((s, run) for s, run, _ in by_basis))}
    rows.sort(key=lambda r: (run_rank[(r["suite"], r["run"])], *_order(r)))
    return Headline(cols, rows, multi, _main_method(df))


def _lift_reason(r: dict[str, Any], has_null: bool) -> str:
    if r.get("kind") == "random":
        return NULL_ITSELF
    if not has_null:
        return "the run has no random-directions basis"
    if r.get("lift_vs_random_dirs_unmatched") is not None:
        return (
            "no density decade holds features of both this basis and the null (or no firing "
            "densities): no density-matched lift; the unmatched one is in the full table"
        )
    return f"no ok {r.get('method')} score of this basis or of the null"


def _stage_reason(row: dict[str, Any], col: str) -> str:
    why = stage_cols.reasons_of(row.get(stage_cols.UNDEFINED)).get(col)
    return why if why is not None else f"no {col} for this basis"


def _order(r: dict[str, Any]) -> tuple[int, float]:
    """Within a run: null rows last, the others by interpretability lift, descending
    (undefined last). Runs keep the order of the full table."""
    v = r.get("interp_lift")
    return (1 if r.get("kind") == "random" else 0, -v if v is not None else float("inf"))


def flat_rows(h: Headline) -> list[dict[str, Any]]:
    """The rows for csv / json: values, CIs, source columns and ``undefined`` reasons."""
    out = []
    for r in h.rows:
        d = {k: v for k, v in r.items() if k != "reasons"}
        d["undefined"] = "; ".join(f"{k}: {v}" for k, v in r["reasons"].items()) or None
        out.append(d)
    return out


def markdown(h: Headline) -> list[str]:
    """The headline as markdown lines: the table and the numbered reasons under it."""
    texts = h.texts()
    heads = [c.header + c.arrow for c in h.columns]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(t.replace("|", "\\|") for t in row) + " |" for row in texts]
    lines.append("")
    notes = h.notes()
    if notes:
        lines += ["Undefined cells: " + "; ".join(notes) + ".", ""]
    return lines


def legend(h: Headline) -> dict[str, str]:
    """Legend entries of the headline columns."""
    out = {}
    for c in h.columns[1:]:
        src = f" (full-table column `{c.source}`)" if c.source and c.key != "cost" else ""
        out[f"headline: {c.header}"] = (c.doc or c.header) + src
    return out

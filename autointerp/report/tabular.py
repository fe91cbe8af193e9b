"""The leaderboard as CSV and as JSON, the headline table first in both.

CSV: one table; its first column ``table`` is ``headline`` for the headline rows (one per basis,
first) and ``full`` for the full rows (every row and column of every group) after them; a
reader keeps one kind with a filter on ``table``. JSON: ``headline`` (per protocol group: its
columns and rows) before the tables, density bins, protocols, set-apart runs, notes, legend."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from autointerp.report import headline, stage_columns
from autointerp.report.columns import LEGEND, scorer_legend
from autointerp.report.table import Leaderboard


def headlines(board: Leaderboard) -> dict[str, headline.Headline]:
    """The headline of every protocol group (reference first)."""
    return {
        pid: headline.build_headline(df, board.stage_columns) for pid, df in board.groups.items()
    }


def render_csv(board: Leaderboard) -> str:
    """The headline rows (``table=headline``), then all groups' rows (``table=full``, every
    column, protocol_id included), as one CSV."""
    df = board.all_rows()
    head = [r for h in headlines(board).values() for r in headline.flat_rows(h)]
    cols = ["table", *df.columns]
    cols += [k for r in head for k in r if k not in cols and k != "table"]
    cols = list(dict.fromkeys(cols))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in head:
        w.writerow(["headline" if c == "table" else _csv(r.get(c)) for c in cols])
    for row in df.iter_rows(named=True):
        w.writerow(["full" if c == "table" else _csv(row.get(c)) for c in cols])
    return buf.getvalue()


def _csv(v: Any) -> Any:
    return "" if v is None else v


def _clean_json(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, dict):
        return {k: _clean_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean_json(x) for x in v]
    return v


def board_to_dict(board: Leaderboard) -> dict[str, Any]:
    heads = headlines(board)
    head_legend = {k: v for h in heads.values() for k, v in headline.legend(h).items()}
    return _clean_json(
        {
            "reference": board.reference,
            "headline": {
                pid: {
                    "columns": [
                        {
                            "key": c.key,
                            "header": c.header,
                            "group": c.group,
                            "source": c.source,
                            "better": c.better,
                        }
                        for c in h.columns
                    ],
                    "rows": headline.flat_rows(h),
                }
                for pid, h in heads.items()
            },
            "ci": {
                "method": board.ci_method,
                "n_boot": board.n_boot,
                "seed": board.seed,
                "level": board.level,
            },
            "groups": {
                pid: {
                    "protocol": board.protocols.get(pid, {}),
                    "runs": board.runs_by_group[pid],
                    "rows": df.to_dicts(),
                    "density_bins": board.density[pid].to_dicts(),
                }
                for pid, df in board.groups.items()
            },
            "set_apart": [s.to_dict() for s in board.set_apart],
            "notes": board.notes,
            "legend": {
                **head_legend,
                **LEGEND,
                **scorer_legend(board.scorer_columns),
                **stage_columns.legend(board.stage_columns),
            },
        }
    )


def render_json(board: Leaderboard) -> str:
    return json.dumps(board_to_dict(board), indent=2, default=str) + "\n"

"""The leaderboard as CSV (every row and column of every group) and as JSON (tables, density
bins, protocols, set-apart runs, notes, legend)."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from autointerp.report import stage_columns
from autointerp.report.columns import LEGEND, scorer_legend
from autointerp.report.table import Leaderboard


def render_csv(board: Leaderboard) -> str:
    """All groups' rows (every column, protocol_id included) as CSV."""
    df = board.all_rows()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(df.columns)
    for row in df.iter_rows():
        w.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def _clean_json(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, dict):
        return {k: _clean_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean_json(x) for x in v]
    return v


def board_to_dict(board: Leaderboard) -> dict[str, Any]:
    return _clean_json(
        {
            "reference": board.reference,
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
                **LEGEND,
                **scorer_legend(board.scorer_columns),
                **stage_columns.legend(board.stage_columns),
            },
        }
    )


def render_json(board: Leaderboard) -> str:
    return json.dumps(board_to_dict(board), indent=2, default=str) + "\n"

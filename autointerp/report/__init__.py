"""Leaderboards: read run directories, build one table per protocol, render md/csv/json/html.

Only runs with the same ``protocol_id`` are put side by side; the others are set apart with the
protocol fields that differ. Each table has one row per (run, basis) — model and hookpoint come
from the run — and, when one basis holds scores from several methods, one row per method
(methods are never mixed in one number). The headline of each row is its lift over the null
rows: random directions (a basis of kind ``random`` in the same run) and shuffled explanations
(``null == "shuffled"`` scores of the same features). See ``LEGEND`` for every column.

Modules: the model — ``runs`` (run directories), ``columns`` (schema, display columns, legend,
cell formats), ``rows`` (one run's rows), ``table`` (the ``Leaderboard`` of many runs); the
renderers, each depending on the model only — ``markdown``, ``tabular`` (csv, json),
``html_page`` (with ``html_plots`` and ``html_browser``); ``browser`` (with ``browser_page``:
the static per-run feature browser, ``write_browser``); ``command`` (``build``, the
``leaderboard`` command, the leaderboard inside a run directory).
"""

from __future__ import annotations

from autointerp.report.browser import write_browser
from autointerp.report.columns import (
    BASE_SCHEMA,
    DISPLAY,
    FLAG_TEXT,
    HEAD_METRICS,
    LEGEND,
    N_COLUMNS,
    OPTIONAL_COLUMNS,
    OTHER_METRICS,
    SCORER_COLUMNS,
    SIM_VARIANT,
    display_columns,
    fmt_ci,
    fmt_value,
    scorer_column,
    scorer_legend,
)
from autointerp.report.command import FORMATS, build, register, write_run_leaderboard
from autointerp.report.html_browser import browser_data
from autointerp.report.html_page import render_html
from autointerp.report.html_plots import (
    fig_to_data_uri,
    plot_density,
    plot_distributions,
    plot_scatter,
)
from autointerp.report.markdown import render_markdown
from autointerp.report.rows import (
    EXTRA_COUNTS,
    _BasisScores,
    _feature_density,
    _score_rows,
    plugin_scorers,
    sanity_flag,
)
from autointerp.report.runs import SCORE_COLUMNS, Run, find_runs, load_run
from autointerp.report.table import (
    Leaderboard,
    SetApart,
    flatten,
    leaderboard_table,
    protocol_diff,
    sort_table,
)
from autointerp.report.tabular import board_to_dict, render_csv, render_json

__all__ = [
    "BASE_SCHEMA",
    "DISPLAY",
    "EXTRA_COUNTS",
    "FLAG_TEXT",
    "FORMATS",
    "HEAD_METRICS",
    "LEGEND",
    "N_COLUMNS",
    "OPTIONAL_COLUMNS",
    "OTHER_METRICS",
    "SCORER_COLUMNS",
    "SCORE_COLUMNS",
    "SIM_VARIANT",
    "Leaderboard",
    "Run",
    "SetApart",
    "_BasisScores",
    "_feature_density",
    "_score_rows",
    "board_to_dict",
    "browser_data",
    "build",
    "display_columns",
    "fig_to_data_uri",
    "find_runs",
    "flatten",
    "fmt_ci",
    "fmt_value",
    "leaderboard_table",
    "load_run",
    "plot_density",
    "plot_distributions",
    "plot_scatter",
    "plugin_scorers",
    "protocol_diff",
    "register",
    "render_csv",
    "render_html",
    "render_json",
    "render_markdown",
    "sanity_flag",
    "scorer_column",
    "scorer_legend",
    "sort_table",
    "write_browser",
    "write_run_leaderboard",
]

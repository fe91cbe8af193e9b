"""autointerp: explain, simulate and score the features of a language model, offline.

The top-level names are the three calls the command line is built on:

- :func:`run_suite` (``autointerp.pipeline.run_suite``): run a suite file or ``Suite`` end to
  end; returns the run directory.
- :func:`load_checkpoint` (``autointerp.bases.checkpoints.load_checkpoint``): read an SAE
  checkpoint of any supported format as a ``Basis``.
- :func:`leaderboard`: the leaderboard of finished runs, as a table or rendered text.

They are resolved on first use, so ``import autointerp`` loads neither torch nor any other
heavy dependency.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "leaderboard", "load_checkpoint", "run_suite"]

# public name -> (module, attribute), imported on first access
_LAZY = {
    "run_suite": ("autointerp.pipeline", "run_suite"),
    "load_checkpoint": ("autointerp.bases.checkpoints", "load_checkpoint"),
}

if TYPE_CHECKING:  # for type checkers only; never executed
    from autointerp.bases.checkpoints import load_checkpoint
    from autointerp.pipeline import run_suite


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'autointerp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def leaderboard(
    paths: str | Path | list[str | Path],
    format: str | None = None,
    *,
    sort_by: str | None = None,
    descending: bool = True,
    n_boot: int | None = None,
    seed: int = 0,
) -> Any:
    """The leaderboard of the runs found under ``paths``.

    ``paths``: a run directory, a folder searched recursively for runs (``manifest.json``), or a
    list of them. With ``format=None`` the result is an ``autointerp.report.Leaderboard``: its
    ``.table`` is the reference protocol's table (a polars DataFrame, one row per run, basis and
    method), ``.groups`` every protocol's table, ``.set_apart`` the runs left out and why. With
    ``format`` ``"md"``, ``"html"``, ``"csv"`` or ``"json"`` the result is the rendered text, the
    same as ``autointerp leaderboard PATHS --format FORMAT``.

    Example::

        import autointerp
        board = autointerp.leaderboard("results/default")
        print(board.table.select("basis", "sim_score", "lift_vs_shuffled"))
    """
    from autointerp import report

    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if format is not None:
        return report.build(
            items, format, sort_by=sort_by, descending=descending, n_boot=n_boot, seed=seed
        )
    runs = [report.load_run(p) for p in report.find_runs(items)]
    return report.leaderboard_table(
        runs, sort_by=sort_by, descending=descending, n_boot=n_boot, seed=seed
    )

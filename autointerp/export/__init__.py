"""Exports of a finished run to the places researchers publish (docs/publishing.md), one
module per target, each reading only the run directory:

* :mod:`~autointerp.export.saebench`: SAEBench 0.6.0 eval-result JSON (``core``,
  ``autointerp``, ``absorption_first_letter``, and this harness's own eval types from
  :mod:`~autointerp.export.harness_evals`);
* :mod:`~autointerp.export.neuronpedia`: Neuronpedia's export layout, one source per basis;
* :mod:`~autointerp.export.card`: a one-page markdown results card.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from autointerp.errors import AutointerpError


def _saebench(run: Any, out: Path) -> tuple[list[Path], list[str]]:
    from autointerp.export.saebench import export_saebench

    return export_saebench(run, out)


def _neuronpedia(run: Any, out: Path) -> tuple[list[Path], list[str]]:
    from autointerp.export.neuronpedia import export_neuronpedia

    return export_neuronpedia(run, out)


#: export targets by name: (run, out folder) -> (paths written, notes on what was skipped)
TARGETS: dict[str, Callable[[Any, Path], tuple[list[Path], list[str]]]] = {
    "saebench": _saebench,
    "neuronpedia": _neuronpedia,
}


def export_run(run_dir: str | Path, to: str, out: str | Path) -> tuple[list[Path], list[str]]:
    """Export the run at ``run_dir`` to target ``to`` under ``out``."""
    from autointerp.report.runs import load_run

    if to not in TARGETS:
        raise AutointerpError(f"unknown export target {to!r}; use one of {', '.join(TARGETS)}")
    out = Path(out)
    run = load_run(run_dir)
    if out.resolve() == run.path.resolve():
        raise AutointerpError(f"export into a folder of its own, not the run directory {out}")
    return TARGETS[to](run, out)


__all__ = ["TARGETS", "export_run"]

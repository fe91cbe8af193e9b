"""Sweeps: one suite over several hookpoints (``model.hookpoints``), docs/sweep.md.

A sweep is a graph of stages at its root directory: ``tokens`` -> ``sweep-activations`` (one
forward pass per token batch for every hookpoint, :mod:`.activations`) -> one ``member:<hp>``
stage per hookpoint (a whole single-hookpoint run of the suite in ``<root>/<hp>/``, which finds
its activations cached) -> ``sweep-report`` (the leaderboard grouped by hookpoint and the layer
figure, :mod:`.report` and :mod:`.figure`). :mod:`.members` turns a sweep into its per-hookpoint
suites; :mod:`.run` runs the graph.
"""

from __future__ import annotations

from autointerp.sweep.members import hookpoint_folder, layer_of, member_suite, member_suites

__all__ = ["hookpoint_folder", "layer_of", "member_suite", "member_suites"]

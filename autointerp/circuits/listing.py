"""Top edges into each downstream feature, with both features' explanations (markdown)."""

from __future__ import annotations

import numpy as np

from autointerp.circuits.edges import Edges


def _cell(s: str) -> str:
    return s.replace("|", "/").replace("\n", " ") or "(not explained)"


def top_edges_md(
    res: Edges,
    up: str,
    down: str,
    explanations: dict[tuple[str, int], str] | None = None,
    k: int = 5,
) -> str:
    """Per downstream feature of ``res`` (basis ``down``), its ``k`` upstream features (basis
    ``up``) of largest ``|edge|`` and the error node, with ``explanations[(basis, feature)]``;
    each edge's share is ``edge / (m(all) - m(none))`` (undefined when that change is 0)."""
    ex = explanations or {}
    lines: list[str] = []
    for r, j in enumerate(res.feats):
        change = float(res.act[r] - res.base[r])
        lines += [
            f"### {down} #{j}: {_cell(ex.get((down, j), ''))}",
            "",
            f"change from the mean-ablated upstream: {change:+.4g}",
            "",
            "| upstream | edge | share | explanation |",
            "|---|---|---|---|",
        ]
        order = np.argsort(-np.abs(res.edges[r]), kind="stable")[:k]
        rows = [
            (f"{up} #{int(i)}", float(res.edges[r, i]), ex.get((up, int(i)), "")) for i in order
        ]
        rows.append((f"{up} error", float(res.error[r]), "the upstream error term"))
        for name, e, text in rows:
            share = f"{e / change:+.2f}" if change != 0 else "undefined"
            lines.append(f"| {name} | {e:+.4g} | {share} | {_cell(text)} |")
        lines.append("")
    return "\n".join(lines)

"""The layer figure of a sweep: per hookpoint (x: its layer), one line per basis, with CI
bands, in four panels: mean simulation score, lift vs random directions (the random null is
the zero line), FVU and CE loss recovered. Written as PNG and SVG."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from autointerp.sweep.members import layer_of

FLOOR_METHOD = "token_match"  # the no-LLM floor rows: left out when an LLM method exists

#: (panel title, column, CI low, CI high)
PANELS: list[tuple[str, str, str | None, str | None]] = [
    ("mean simulation score", "sim_score", "sim_ci_low", "sim_ci_high"),
    (
        "lift vs random directions (density-matched)",
        "lift_vs_random_dirs",
        "lift_vs_random_dirs_ci_low",
        "lift_vs_random_dirs_ci_high",
    ),
    ("FVU (fraction of variance unexplained)", "fvu", None, None),
    ("CE loss recovered", "ce_loss_score", None, None),
]


@dataclass
class LayerSeries:
    """One basis's values per hookpoint (None where undefined): ``values[column][i]`` at
    ``hookpoints[i]``; ``kind`` and the scoring ``method`` its rows come from."""

    basis: str
    kind: str
    method: str
    values: dict[str, list[float | None]] = field(default_factory=dict)


def _num(v: Any) -> float | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return float(v)


def main_rows(df: pl.DataFrame) -> pl.DataFrame:
    """Per (hookpoint, basis) one row: the LLM method's, or the floor's when it is the only
    one."""
    keep = []
    for r in df.iter_rows(named=True):
        others = df.filter(
            (pl.col("hookpoint") == r["hookpoint"])
            & (pl.col("basis") == r["basis"])
            & (pl.col("method") != FLOOR_METHOD)
        )
        if r["method"] != FLOOR_METHOD or others.is_empty():
            keep.append(r)
    return pl.from_dicts(keep, schema=df.schema) if keep else df.clear()


def layer_series(df: pl.DataFrame, hookpoints: list[str]) -> list[LayerSeries]:
    """The figure's lines from a leaderboard table of the sweep's members (one row per
    hookpoint, basis and method): one :class:`LayerSeries` per basis, in first-seen order."""
    rows = main_rows(df)
    cols = sorted({c for _, c, lo, hi in PANELS for c in (c, lo, hi) if c})
    out: dict[str, LayerSeries] = {}
    for r in rows.iter_rows(named=True):
        if r.get("method") == "causal only":  # the IOI stage's pca-full: no input-side value
            continue
        s = out.setdefault(r["basis"], LayerSeries(r["basis"], r["kind"], r["method"]))
        for c in cols:
            s.values.setdefault(c, [None] * len(hookpoints))
            if r["hookpoint"] in hookpoints:
                s.values[c][hookpoints.index(r["hookpoint"])] = _num(r.get(c))
    return list(out.values())


def x_positions(hookpoints: list[str]) -> tuple[list[float], str]:
    """The x of each hookpoint and the axis label: its layer when every hookpoint names a
    distinct layer, else its position in the sweep."""
    layers = [layer_of(h) for h in hookpoints]
    if None not in layers and len(set(layers)) == len(layers):
        return [float(v) for v in layers], "layer"  # type: ignore[arg-type]
    return [float(i) for i in range(len(hookpoints))], "hookpoint (sweep order)"


def plot_layers(
    series: list[LayerSeries],
    hookpoints: list[str],
    out: Path,
    *,
    title: str = "",
    ci: str = "95% bootstrap CI",
) -> list[Path]:
    """Draw the figure to ``out`` (.png) and its .svg twin; returns both paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from autointerp.results import atomic_write_with

    xs, xlabel = x_positions(hookpoints)
    cmap = plt.get_cmap("tab10")
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True)
    for ax, (ptitle, col, lo, hi) in zip(axes.flat, PANELS, strict=True):
        for i, s in enumerate(series):
            null = s.kind == "random"
            color = "0.35" if null else cmap(i % 10)
            style = dict(color=color, ls="--" if null else "-", marker="o", ms=4)
            label = f"{s.basis} (null)" if null else s.basis
            if col == "lift_vs_random_dirs" and null:  # the null's lift is 0 by definition
                ax.plot(xs, [0.0] * len(xs), label=label, **style)
                continue
            ys = s.values.get(col, [None] * len(xs))
            ax.plot(xs, [math.nan if y is None else y for y in ys], label=label, **style)
            if lo and hi:
                los, his = s.values.get(lo, []), s.values.get(hi, [])
                band = [
                    (x, a, b) for x, a, b in zip(xs, los, his) if a is not None and b is not None
                ]
                if band:
                    bx, bl, bh = zip(*band)
                    ax.fill_between(bx, bl, bh, color=color, alpha=0.15, lw=0)
        ax.set_title(ptitle, fontsize=10)
        ax.grid(alpha=0.3)
        if col == "lift_vs_random_dirs":
            ax.axhline(0, color="k", lw=0.6)
    for ax in axes[1]:
        ax.set_xlabel(xlabel)
        ax.set_xticks(xs)
        if xlabel != "layer":
            ax.set_xticklabels(hookpoints, rotation=30, ha="right", fontsize=7)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), frameon=False)
    methods = sorted({s.method for s in series})
    fig.suptitle(
        (title + ": " if title else "")
        + f"per layer, one line per basis; bands: {ci}; method {', '.join(methods)}",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    paths = [out.with_suffix(".png"), out.with_suffix(".svg")]
    for p in paths:
        atomic_write_with(p, lambda tmp, fmt=p.suffix[1:]: fig.savefig(tmp, format=fmt, dpi=110))
    plt.close(fig)
    return paths

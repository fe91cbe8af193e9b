"""PNG plots of the HTML leaderboard (matplotlib, Agg, embedded as base64 data URIs): L0 vs
score scatter with the Pareto frontier, per-feature score distributions, score by firing
density."""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import polars as pl

from autointerp.report.columns import SIM_VARIANT
from autointerp.report.runs import Run

MAX_BOXES = 30  # boxes in the distribution plot (first rows of the table)
MAX_LINES = 10  # lines in the density plot (first rows of the table)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fig_to_data_uri(fig: Any) -> str:
    """PNG data URI of a matplotlib figure (the figure is closed)."""
    plt = _plt()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _row_label(r: dict[str, Any], multi_run: bool, dups: set[tuple] = frozenset()) -> str:
    """``basis`` (``run/basis`` when several runs), ``(method)`` added when a basis has
    several rows."""
    name = f"{r['run']}/{r['basis']}" if multi_run else str(r["basis"])
    if (r["suite"], r["run"], r["basis"]) in dups:
        name += f" ({r['method']})"
    return name


def _dups(df: pl.DataFrame) -> set[tuple]:
    c = df.group_by("suite", "run", "basis").len().filter(pl.col("len") > 1)
    return {tuple(r) for r in c.select("suite", "run", "basis").rows()}


def _kind_colors(kinds: list[str]) -> dict[str, Any]:
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    return {k: cmap(i % 10) for i, k in enumerate(sorted(set(kinds)))}


def _is_num(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def plot_scatter(df: pl.DataFrame, x: str, y: str, title: str, ylabel: str, ci: bool) -> str | None:
    """One point per row (x vs y, CI error bars on y when ``ci``), coloured by kind, with the
    Pareto frontier (no other row has lower x and higher y) drawn as a step line."""
    rows = [r for r in df.iter_rows(named=True) if _is_num(r.get(x)) and _is_num(r.get(y))]
    if not rows:
        return None
    plt = _plt()
    multi, dups = df["run"].n_unique() > 1, _dups(df)
    colors = _kind_colors([r["kind"] or "" for r in rows])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for kind, color in colors.items():
        sub = [r for r in rows if (r["kind"] or "") == kind]
        xs, ys = [r[x] for r in sub], [r[y] for r in sub]
        yerr = None
        if ci:
            lo = [r[y] - r["sim_ci_low"] if _is_num(r.get("sim_ci_low")) else 0 for r in sub]
            hi = [r["sim_ci_high"] - r[y] if _is_num(r.get("sim_ci_high")) else 0 for r in sub]
            yerr = [lo, hi]
        ax.errorbar(xs, ys, yerr=yerr, fmt="o", color=color, label=kind, capsize=3)
        if len(rows) <= 30:
            for r in sub:
                ax.annotate(
                    _row_label(r, multi, dups),
                    (r[x], r[y]),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
    pts = sorted((r[x], r[y]) for r in rows)
    front, best = [], -math.inf
    for px, py in pts:
        if py > best:
            front.append((px, py))
            best = py
    if len(front) > 1:
        ax.step(
            [p[0] for p in front],
            [p[1] for p in front],
            where="post",
            color="grey",
            lw=1,
            ls="--",
            label="frontier",
        )
    xv = [r[x] for r in rows]
    if min(xv) > 0 and max(xv) / min(xv) > 20:
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig_to_data_uri(fig)


def plot_distributions(df: pl.DataFrame, values: dict[tuple, list[float]]) -> str | None:
    """Box plot + jittered points of per-feature sim scores, one box per row (the first
    ``MAX_BOXES`` rows of the table)."""
    import numpy as np

    rows = [r for r in df.iter_rows(named=True) if values.get(_key(r))][:MAX_BOXES]
    if not rows:
        return None
    plt = _plt()
    multi, dups = df["run"].n_unique() > 1, _dups(df)
    data = [values[_key(r)] for r in rows]
    labels = [_row_label(r, multi, dups) for r in rows]
    colors = _kind_colors([r["kind"] or "" for r in rows])
    fig, ax = plt.subplots(figsize=(max(6.4, 0.5 * len(rows) + 2), 4.2))
    ax.boxplot(data, showfliers=False)
    rng = np.random.default_rng(0)
    xs = np.concatenate([np.full(len(v), i, dtype=float) for i, v in enumerate(data, 1)])
    cs = [colors[r["kind"] or ""] for v, r in zip(data, rows) for _ in v]
    ax.scatter(xs + rng.uniform(-0.15, 0.15, len(xs)), np.concatenate(data), s=8, alpha=0.6, c=cs)
    ax.set_xticks(range(1, len(rows) + 1), labels, rotation=45, ha="right", fontsize=7)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_ylabel(f"simulation score ({SIM_VARIANT})")
    more = sum(1 for r in df.iter_rows(named=True) if values.get(_key(r))) - len(rows)
    ax.set_title("Per-feature simulation scores" + (f" (first {len(rows)} rows)" if more else ""))
    ax.grid(alpha=0.3, axis="y")
    return fig_to_data_uri(fig)


def plot_density(dens: pl.DataFrame, table: pl.DataFrame | None = None) -> str | None:
    """Mean sim score (CI error bars) per firing-density bin, one line per table row (the
    first ``MAX_LINES``)."""
    if dens.is_empty():
        return None
    plt = _plt()
    bins = list(dict.fromkeys(dens["bin"].to_list()))
    multi = dens["run"].n_unique() > 1
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    cols = ("suite", "run", "basis", "method")
    keys = dens.select(cols).unique(maintain_order=True).rows()
    if table is not None:  # in the table's (sorted) order
        have = set(keys)
        keys = [k for k in table.select(cols).rows() if k in have]
    shown = keys[:MAX_LINES]
    kind_of = dict(zip(dens.select(cols).rows(), dens["kind"].fill_null("").to_list()))
    kinds = [kind_of.get(k, "") for k in shown]
    colors = _kind_colors(kinds) if len(set(kinds)) == len(kinds) else {}
    for j, key in enumerate(shown):
        suite, run, basis, method = key
        sub = dens.filter(
            (pl.col("suite") == suite) & (pl.col("run") == run)
            & (pl.col("basis") == basis) & (pl.col("method") == method)
        )  # fmt: skip
        pts = [(bins.index(r["bin"]), r) for r in sub.iter_rows(named=True) if r["n"]]
        if not pts:
            continue
        off = (j - len(shown) / 2) * 0.03
        xs = [p[0] + off for p in pts]
        ys = [p[1]["mean"] for p in pts]
        lo = [p[1]["mean"] - p[1]["ci_low"] for p in pts]
        hi = [p[1]["ci_high"] - p[1]["mean"] for p in pts]
        label = f"{run}/{basis}" if multi else basis
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=label,
                    color=colors.get(kinds[j]))  # fmt: skip
    ax.set_xticks(range(len(bins)), bins)
    ax.set_xlabel("feature firing density")
    ax.set_ylabel("mean simulation score")
    title = "Simulation score by firing density"
    ax.set_title(title + (f" (first {len(shown)} rows)" if len(keys) > len(shown) else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig_to_data_uri(fig)


def plot_ioi_curves(runs: list[Any]) -> str | None:
    """The IOI panels (:mod:`autointerp.report.ioi_panels`): KL(P_cf || P_patched) against the
    features patched and against the edit size, one line per basis with its CI band."""
    from autointerp.report.ioi_panels import ioi_panels_figure

    fig = ioi_panels_figure(runs)
    return None if fig is None else fig_to_data_uri(fig)


def _key(r: dict[str, Any]) -> tuple:
    return (r["suite"], r["run"], r["basis"], r["method"])


def _score_values(df: pl.DataFrame, runs: dict[tuple[str, str], Run]) -> dict[tuple, list[float]]:
    """Real ok sim scores (top_and_random) per table row key."""
    out: dict[tuple, list[float]] = {}
    for r in df.iter_rows(named=True):
        run = runs.get((r["suite"], r["run"]))
        if run is None:
            continue
        s = run.scores.filter(
            (pl.col("basis") == r["basis"])
            & (pl.col("scorer") == "simulation")
            & (pl.col("variant") == SIM_VARIANT)
            & (pl.col("null").fill_null("") == "")
            & (pl.col("status") == "ok")
            & pl.col("value").is_not_null()
        )
        if r["method"] and s["method"].n_unique() > 1:
            s = s.filter(pl.col("method") == r["method"])
        out[_key(r)] = [float(v) for v in s["value"].to_list() if not math.isnan(v)]
    return out

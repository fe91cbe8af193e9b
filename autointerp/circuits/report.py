"""The circuits stage's value as files at a sweep's root and in its member runs:
``columns/circuits.json`` in each downstream run (the ``circ_*`` columns of its causal table,
then its leaderboard is rewritten), ``circuits.png`` (faithfulness vs kept-set size, one line
per basis, one panel per hookpoint pair), ``circuits.md`` (the columns per pair and the top
edges of each downstream feature) and ``circuits.html`` (the graph view,
:mod:`autointerp.circuits.graph`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from autointerp.circuits.summary import curve, pair_cells, stage_columns
from autointerp.columns import save_columns
from autointerp.results import atomic_write_text

FIGURE = "circuits"


def _ig(value: dict[str, Any]) -> bool:
    return bool(value.get("config", {}).get("ig_steps"))


def curves(value: dict[str, Any], ioi: bool = False) -> list[dict[str, Any]]:
    """Per pair, per basis: the figure's curve (mean f with its CI at each kept-set size) of
    the downstream features, or with ``ioi`` of the IOI logit difference."""
    from autointerp.circuits.ioi_summary import ioi_curve

    cfg, seed = value["config"], value.get("seed", 0)
    ks, nb = list(cfg["ks"]), cfg["n_bootstrap"]

    def one(r: dict[str, Any]) -> dict[str, Any]:
        return ioi_curve(r.get("ioi"), ks, nb, seed) if ioi else curve(r["features"], ks, nb, seed)

    return [
        {"up": p["up"], "down": p["down"], "bases": {b: one(r) for b, r in p["bases"].items()}}
        for p in value["pairs"]
    ]


def has_ioi(value: dict[str, Any]) -> bool:
    """Whether any basis of any pair has a measured IOI record."""
    return any(
        r.get("ioi") and not r["ioi"].get("reason")
        for p in value["pairs"]
        for r in p["bases"].values()
    )


def _panel(ax: Any, c: dict[str, Any], kinds: dict[str, str], ylabel: str, title: str) -> None:
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10")
    for i, (b, cv) in enumerate(c["bases"].items()):
        null = kinds.get(b) == "random"
        color = "0.35" if null else cmap(i % 10)
        xs = list(range(len(cv["ks"])))
        ys = [math.nan if y is None else y for y in cv["mean"]]
        n = max((k for k in cv["n"] if k is not None), default=0)
        label = f"{b}{' (null)' if null else ''} n={n}"
        ax.plot(xs, ys, color=color, ls="--" if null else "-", marker="o", ms=4, label=label)
        band = [
            (x, a, h)
            for x, a, h in zip(xs, cv["low"], cv["high"], strict=True)
            if a is not None and h is not None
        ]
        if band:
            bx, bl, bh = zip(*band, strict=True)
            ax.fill_between(bx, bl, bh, color=color, alpha=0.15, lw=0)
    ks = next(iter(c["bases"].values()))["ks"] if c["bases"] else []
    ax.set_xticks(range(len(ks)))
    ax.set_xticklabels([str(k) for k in ks])
    ax.axhline(0.8, color="k", lw=0.6, ls=":")
    ax.axhline(1.0, color="k", lw=0.4)
    ax.set_xlabel("upstream features kept (top |edge|), the rest mean-ablated")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot(value: dict[str, Any], out: Path, kinds: dict[str, str]) -> Path:
    """``circuits.png``: per pair, f(k) per basis with its CI band (random: dashed grey); a
    second row for the IOI logit difference when it was measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from autointerp.results import atomic_write_with

    rows = [(curves(value), "faithfulness f(k), downstream features", "{up} -> {down}")]
    if has_ioi(value):
        rows.append((curves(value, ioi=True), "f(k), IOI logit difference",
                     "{up} -> logit(IO) - logit(S)"))  # fmt: skip
    cs0 = rows[0][0]
    fig, axes = plt.subplots(
        len(rows), len(cs0), figsize=(6.5 * len(cs0), 4.6 * len(rows)), squeeze=False
    )
    for r, (cs, ylabel, title) in enumerate(rows):
        for ax, c in zip(axes[r], cs, strict=True):
            _panel(ax, c, kinds, ylabel, title.format(up=c["up"], down=c["down"]))
    fig.suptitle(
        "circuit faithfulness per basis: mean over downstream features (IOI: over prompts)\n"
        "band: 95% bootstrap CI over features (IOI: over prompts); dotted: 0.8",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.07 / len(rows)))
    p = out.with_suffix(".png")
    atomic_write_with(p, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return p


def _fmt(cell: Any, fmt: str) -> str:
    if cell.value is None:
        return f"undefined ({cell.reason})"
    lo = "?" if cell.ci_low is None else format(cell.ci_low, fmt)
    hi = "?" if cell.ci_high is None else format(cell.ci_high, fmt)
    return f"{format(cell.value, fmt)} [{lo}, {hi}] n={cell.n}"


def _g(v: float | None, fmt: str = "+.4g") -> str:
    return "undefined" if v is None else format(v, fmt)


def _cell(text: str) -> str:
    return (text or "(not explained)").replace("|", "/").replace("\n", " ")


def render_md(value: dict[str, Any], explanations: dict[str, dict]) -> str:
    """``circuits.md``: per pair the ``circ_*`` columns per basis, then per basis the top
    edges of each downstream feature with both features' explanations."""
    cfg, seed = value["config"], value.get("seed", 0)
    ig = _ig(value)
    out = [
        "# Circuits between consecutive hookpoints",
        "",
        f"![faithfulness per basis]({FIGURE}.png)",
        "",
        "Per downstream feature: its top-activating contexts (the metric is its activation "
        "summed over their top tokens), edges = grad x (code - mean code) from every upstream "
        "feature, faithfulness f(k) = share of the change from mean-ablating every upstream "
        "feature that keeping only the top-k |edge| features restores (docs/circuits.md). "
        f"Config: {cfg}. Stage time {value.get('seconds')} s.",
        "",
    ]
    for p in value["pairs"]:
        docs, rows = pair_cells(p, cfg["n_bootstrap"], seed, ig)
        head = ["basis", *(d.name for d in docs)]
        out += [f"## {p['up']} -> {p['down']}", ""]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for b, cells in rows.items():
            out.append("| " + " | ".join([b, *(_fmt(cells[d.name], d.fmt) for d in docs)]) + " |")
        out.append("")
        out += ioi_md(p, explanations.get(p["up"], {}))
        ex_up, ex_down = explanations.get(p["up"], {}), explanations.get(p["down"], {})
        for b, r in p["bases"].items():
            out += [f"### {b}: top edges into each downstream feature", ""]
            if r.get("skipped"):
                out += [f"Skipped: {r['skipped']}", ""]
            for f in r["features"]:
                ch = None if f["act"] is None or f["base"] is None else f["act"] - f["base"]
                fk = ", ".join(
                    f"f({k})={'undef' if v is None else format(v, '.2f')}"
                    for k, v in zip(f["ks"], f["f"], strict=True)
                )
                head = f"**{b} #{f['feature']}** ({_cell(ex_down.get((b, f['feature']), ''))}):"
                out += [
                    f"{head} change {_g(ch)}, error node {_g(f['error'])}, n80 {f['n80']}, "
                    f"lin_r {_g(f['lin_r'], '.2f')}; {fk}",
                    "",
                    "| upstream | edge | share | explanation |",
                    "|---|---|---|---|",
                ]
                for i, e in f["top"]:
                    share = f"{e / ch:+.2f}" if ch and e is not None else "undefined"
                    text = _cell(ex_up.get((b, i), ""))
                    out.append(f"| {b} #{i} | {_g(e)} | {share} | {text} |")
                out.append("")
    return "\n".join(out) + "\n"


def ioi_md(p: dict[str, Any], ex_up: dict) -> list[str]:
    """Per basis with an IOI record: the logit difference with every feature actual and with
    every one at its mean, the error node, f(k) and the top pooled edges."""
    out: list[str] = []
    for b, r in p["bases"].items():
        rec = r.get("ioi")
        if not rec:
            continue
        out += [f"### {b}: the IOI logit difference from {p['up']}", ""]
        if rec.get("reason"):
            out += [f"Not measured: {rec['reason']}", ""]
            continue
        n = rec["n_prompts"]
        act, base = sum(rec["act"]) / n, sum(rec["base"]) / n
        ch = act - base
        fk = [(k, sum(row) / n) for k, row in zip(rec["ks"], rec["m_k"], strict=True)]
        fs = ", ".join(f"f({k})={(m - base) / ch:.2f}" if ch else f"f({k})=undef" for k, m in fk)
        out += [
            f"{n} prompts: mean logit difference {act:+.4g} (every feature actual), {base:+.4g} "
            f"(every feature at its mean, error kept); change {ch:+.4g}; error node "
            f"{sum(rec['error']) / n:+.4g}; sum of the edges {sum(rec['edge_sum']) / n:+.4g} "
            f"(means over prompts); {fs}",
            "",
            "| upstream | pooled edge / prompt | share | explanation |",
            "|---|---|---|---|",
        ]
        for i, e in rec["top"]:
            share = f"{e / n / ch:+.2f}" if ch else "undefined"
            text = _cell(ex_up.get((b, i), ""))
            out.append(f"| {b} #{i} | {e / n:+.4g} | {share} | {text} |")
        out.append("")
    return out


def write_circuits(root: Path, member_dirs: dict[str, Path], value: dict[str, Any]) -> list[Path]:
    """Every file of the circuits stage (see the module docstring); returns the paths."""
    from autointerp.circuits.command import _explanations
    from autointerp.circuits.graph import render_graph
    from autointerp.report.command import write_run_leaderboard

    seed = value.get("seed", 0)
    written: list[Path] = []
    for p in value["pairs"]:
        cols = stage_columns(p, value["config"]["n_bootstrap"], seed, _ig(value))
        written.append(save_columns(member_dirs[p["down"]], cols))
        written += write_run_leaderboard(member_dirs[p["down"]])
    from autointerp.report.browser import write_browser

    for d in member_dirs.values():  # the graph view links each feature to its browser page
        written.append(write_browser(d))
    explanations = {h: _explanations(d) for h, d in member_dirs.items()}
    kinds = _kinds(member_dirs)
    written.append(plot(value, root / FIGURE, kinds))
    md = root / f"{FIGURE}.md"
    atomic_write_text(md, render_md(value, explanations))
    page = root / f"{FIGURE}.html"
    atomic_write_text(page, render_graph(value, explanations, kinds))
    return [*written, md, page]


def _kinds(member_dirs: dict[str, Path]) -> dict[str, str]:
    """basis name -> kind, from the members' manifests."""
    import json

    out: dict[str, str] = {}
    for d in member_dirs.values():
        m = d / "manifest.json"
        if m.exists():
            for b in json.loads(m.read_text()).get("bases") or []:
                if isinstance(b, dict) and "name" in b:
                    out[b["name"]] = str(b.get("kind", ""))
    return out

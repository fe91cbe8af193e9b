"""The IOI headline figure (the paper's panels, docs/causal.md): KL(P_cf || P_patched) against
the features patched, against the paper's edit size (mean per-position ||dx||_2) and against
the edit relative to the full counterfactual edit; one line per basis with its bootstrap CI
band over pairs (in-sample ranking solid, held-out dashed), the greedy elimination's points as
crosses when the run has them, the unpatched KL and its half as grey lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PNG_NAME = "ioi_panels.png"
_STYLE = {"in_sample": ("-", True), "held_out": ("--", False), "per_pair": (":", False)}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ioi_columns(runs: list[Any]) -> list[tuple[Any, Any]]:
    return [
        (r, sc)
        for r in runs
        for sc in getattr(r, "columns", [])
        if sc.stage == "ioi" and sc.extra.get("curves")
    ]


def _per_ranking(c: dict) -> dict[str, dict]:
    """Curves by ranking (runs before the rankings held one flat curve: ``in_sample``)."""
    return {"in_sample": c} if "k" in c else c


def ioi_panels_figure(runs: list[Any], rankings: tuple[str, ...] = ("in_sample", "held_out")):
    """The matplotlib figure, or None when no run has IOI curves."""
    found = _ioi_columns(runs)
    if not found:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), sharey=True)
    names = [b for _, sc in found for b in sc.extra["curves"]]
    cmap = plt.get_cmap("tab10")
    colors = {k: cmap(i % 10) for i, k in enumerate(sorted(set(names)))}
    xs = (("k", "features patched k (last point: all)"),
          ("edit_abs", "edit size: mean per-position ||x_patched - x_clean||_2"),
          ("edit", "edit relative to the full counterfactual edit"))  # fmt: skip
    for r, sc in found:
        for basis, by in sc.extra["curves"].items():
            label0 = basis if len(found) == 1 else f"{r.name}/{basis}"
            for rk, c in _per_ranking(by).items():
                if rk not in rankings:
                    continue
                ls, band = _STYLE.get(rk, ("-", False))
                label = label0 + ("" if rk == "in_sample" else f" ({rk.replace('_', '-')})")
                for ax, (x, _) in zip(axes, xs, strict=True):
                    xv = c.get(x) or c.get("edit")
                    if not xv:  # a curve stored without this axis (older runs): no line
                        continue
                    ax.plot(xv, c["kl"], ls, marker="o", ms=2.5, color=colors[basis],
                            label=label if ax is axes[0] else None)  # fmt: skip
                    lo, hi = c.get("kl_ci_low"), c.get("kl_ci_high")
                    if band and lo and hi and all(v is not None for v in lo + hi):
                        ax.fill_between(xv, lo, hi, color=colors[basis], alpha=0.12)
            g = (sc.extra.get("greedy") or {}).get(basis)
            if g:
                for ax, (x, _) in zip(axes, xs, strict=True):
                    pts = [(a, b) for a, b, k in zip(g[x], g["kl"], g["k"]) if k > 0]
                    ax.scatter(*zip(*pts), marker="x", s=18, color=colors[basis],
                               label=f"{label0} (greedy)" if ax is axes[0] else None)  # fmt: skip
        k0 = sc.extra.get("kl_clean")
        if k0 is not None:
            for ax in axes:
                first = ax is axes[0] and r is found[0][0]
                ax.axhline(k0, color="grey", lw=1, ls=":", label="unpatched KL" if first else None)
                ax.axhline(k0 / 2, color="grey", lw=0.8, ls="-.", label="half" if first else None)
    for ax, (x, lab) in zip(axes, xs, strict=True):
        ax.set_xlabel(lab)
        ax.grid(alpha=0.3)
        if x == "k":
            ax.set_xscale("log", base=2)
    axes[0].set_ylabel("KL(P_cf || P_patched), nats")
    axes[0].set_title("IOI: KL vs features patched")
    axes[1].set_title("IOI: KL vs edit size")
    axes[2].set_title("IOI: KL vs relative edit")
    axes[0].legend(fontsize=6, ncol=2)
    return fig


def write_ioi_panels(run: Any, run_dir: str | Path) -> Path | None:
    """Write :data:`PNG_NAME` into ``run_dir`` (atomically); None when the run has no curves."""
    import io

    from autointerp.results import atomic_write_bytes

    fig = ioi_panels_figure([run])
    if fig is None:
        return None
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    _plt().close(fig)
    path = Path(run_dir) / PNG_NAME
    atomic_write_bytes(path, buf.getvalue())
    return path

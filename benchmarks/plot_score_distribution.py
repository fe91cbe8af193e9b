"""Distribution of per-feature simulation scores of a finished run, one histogram per basis
(and the score against firing density), for runs too large to read feature by feature.

    python benchmarks/plot_score_distribution.py results/all-latents/all-latents \
        --out results/all-latents/score_distribution.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run_dir")
    ap.add_argument("--out", required=True)
    ap.add_argument("--method", default="pmi")
    ap.add_argument("--variant", default="top_and_random")
    a = ap.parse_args()
    run = Path(a.run_dir)
    s = pl.read_parquet(run / "scores.parquet").filter(
        (pl.col("method") == a.method)
        & (pl.col("variant") == a.variant)
        & (pl.col("null") == "")
        & (pl.col("status") == "ok")
    )
    d = pl.read_parquet(run / "density.parquet")
    s = s.join(d, on=["basis", "feature"], how="left")
    fig, (h, sc) = plt.subplots(1, 2, figsize=(12, 4.5))
    bins = np.linspace(-0.4, 1.0, 57)
    for basis, g in s.group_by("basis", maintain_order=True):
        v = g["value"].to_numpy()
        name = basis[0]
        h.hist(
            v, bins=bins, density=True, alpha=0.5, label=f"{name} (n={len(v)}, mean {v.mean():.3f})"
        )
        sc.scatter(g["density"].to_numpy(), v, s=3, alpha=0.3, label=name)
    h.set_xlabel(f"simulation score ({a.method}, {a.variant}: Pearson r pooled over test tokens)")
    h.set_ylabel("density of features")
    h.legend()
    sc.set_xscale("log")
    sc.set_xlabel("firing density")
    sc.set_ylabel("simulation score")
    sc.legend(markerscale=4)
    fig.suptitle(f"{run.parent.name}/{run.name}: every scored feature")
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

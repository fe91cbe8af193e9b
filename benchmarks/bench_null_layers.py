"""The random-directions null per layer: raw vs whitened, against the default SAE.

For each layer runs the default suite (``evals/default.toml``: corpus, SAE training, records,
compact explanations, PMI simulation) with three bases at ``blocks.L.hook_resid_post``: the
TopK SAE, the whitened random null (``random``, the default) and the raw one (``random-raw``,
``space = "raw"``, densities matched to the SAE as before). Prints per layer: how many of the
null's 64 scored features share its most common top token, the mean PMI sim score of each row
(n features), and the SAE's lift over each null (density-stratified, with its 95% CI).

    python benchmarks/bench_null_layers.py [--layers 2 6 14 24] [--results /tmp/null-layers]

Cold, each layer re-caches activations and retrains the SAE (minutes per layer on 2 cores);
a rerun resumes. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from autointerp import stats
from autointerp.config import load_suite, suite_from_dict
from autointerp.pipeline import run_suite
from autointerp.report import _BasisScores, _feature_density, _score_rows, load_run

ROOT = Path(__file__).resolve().parents[1]


def layer_suite(layer: int):
    d = load_suite(ROOT / "evals" / "default.toml").model_dump()
    d["name"] = "null-layers"
    d["model"]["hookpoint"] = f"blocks.{layer}.hook_resid_post"
    d["bases"] = [b for b in d["bases"] if b["kind"] == "sae"] + [
        {"kind": "random", "name": "random"},
        {"kind": "random", "name": "random-raw", "space": "raw", "match": "sae"},
    ]
    d["scoring"]["floor"] = False
    return suite_from_dict(d, f"layer {layer}")


def pmi(run, basis: str) -> dict[int, float | None]:
    rows = [r[:7] for r in _score_rows(run).get(basis, []) if r[7] == "pmi"]
    return _BasisScores(rows).get("simulation", "top_and_random")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, nargs="+", default=[2, 6, 14, 24])
    ap.add_argument("--results", default="/tmp/null-layers")
    args = ap.parse_args()
    lines = [
        "| layer | raw null: features sharing its top token | whitened null: same | SAE PMI sim "
        "| raw null PMI sim | whitened null PMI sim | SAE lift vs raw null | SAE lift vs whitened "
        "null | time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for L in args.layers:
        t = time.perf_counter()
        rd = run_suite(layer_suite(L), results_root=args.results, progress=False)
        run = load_run(rd)
        diag = {d["basis"]: d for d in json.loads((rd / "diagnostics.json").read_text())}
        sae, dens_sae = pmi(run, "sae-topk"), _feature_density(run, "sae-topk")
        cells = []
        for null in ("random-raw", "random"):
            d = diag[null]
            cells.append(f"{d['mode_count']} of {d['n_features']} ({d['mode_token']!r})")
        sims = []
        for b in ("sae-topk", "random-raw", "random"):
            ci = stats.bootstrap_mean_ci(list(pmi(run, b).values()))
            sims.append(f"{ci.mean:.3f} (n={ci.n})")
        lifts = []
        for null in ("random-raw", "random"):
            ref, dr = pmi(run, null), _feature_density(run, null)
            fa, fr = sorted(sae), sorted(ref)
            st = stats.stratified_lift(
                [sae[f] for f in fa], [dens_sae.get(f) for f in fa],
                [ref[f] for f in fr], [dr.get(f) for f in fr],
            )  # fmt: skip
            lifts.append(f"{st.diff:+.3f} [{st.low:+.3f}, {st.high:+.3f}]")
        dt = time.perf_counter() - t
        lines.append(f"| {L} | " + " | ".join(cells + sims + lifts) + f" | {dt:.0f} s |")
        print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

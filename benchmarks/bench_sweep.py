"""A cold sweep over H hookpoints vs H separate single-hookpoint runs of the same work.

    python benchmarks/bench_sweep.py                       # H=3 of evals/layers.toml, small
    python benchmarks/bench_sweep.py --acts-only --hookpoints 10 --n-tokens 4096
                                                           # the forward passes alone
    python benchmarks/bench_sweep.py --hookpoints 10 --n-tokens 102400 --n-features 16 \\
        --metrics-tokens 2048                              # the whole layers suite (long)

Both arms run in this process, one after the other, each on a fresh work dir and a fresh LLM
response cache (nothing computed by one arm is found by the other; the dequantised GGUF in
the user cache is shared). The sweep runs first, so it alone pays the in-process LLM's load
(a bias against the sweep). Arm 1: ``run_suite`` of the sweep (one forward pass for every
hookpoint, the subject model loaded once). Arm 2: one ``SuiteRun`` per hookpoint of the same
member suites (a forward pass and a model load each). Prints wall time, activation time,
model-load time and the rest for each arm side by side, and the largest difference between
the arms' metrics and scores. Figures only, no assertions.

``--acts-only`` times the forward passes alone, on the same token rows in one process:
``sweep_activations`` over the H hookpoints vs ``cache_activations`` once per hookpoint, and
checks the activations are equal.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl


def small_suite(path: str, n_hook: int, n_tokens: int, n_features: int, metrics_tokens: int):
    """The suite at ``n_hook`` of its hookpoints spread over its range (deepest kept), scaled."""
    from autointerp.config import load_suite, suite_from_dict

    s = load_suite(path)
    names = s.model.sweep_hookpoints or [s.model.hookpoint]
    pick = set(np.linspace(len(names) - 1, 0, n_hook).round().astype(int).tolist())
    d = s.model_dump()
    d["model"]["hookpoints"] = [names[i] for i in sorted(pick)]
    d["corpus"]["n_tokens"] = n_tokens
    d["records"]["n_features"] = n_features
    d["metrics"]["n_tokens"] = metrics_tokens
    d["name"] = f"bench-sweep-{n_hook}"
    return suite_from_dict(d, "bench_sweep")


def member_times(run_dir: Path) -> dict[str, float]:
    m = json.loads((run_dir / "manifest.json").read_text())
    acts = next((r["seconds"] for r in m["stages"] if r["stage"] == "activations"), 0.0)
    return {"activations": acts, "model_load": m.get("timings", {}).get("model_load", 0.0)}


def largest_difference(a: pl.DataFrame, b: pl.DataFrame) -> float:
    """The largest absolute difference between two frames' float columns (inf when they
    differ in anything else)."""
    if a.shape != b.shape or a.columns != b.columns:
        return float("inf")
    worst = 0.0
    for c in a.columns:
        if a[c].dtype.is_float():
            x, y = a[c].to_numpy(), b[c].to_numpy()
            if not np.array_equal(np.isnan(x), np.isnan(y)):
                return float("inf")
            m = ~np.isnan(x)
            worst = max(worst, float(np.abs(x[m] - y[m]).max(initial=0.0)))
        elif not a[c].equals(b[c]):
            return float("inf")
    return worst


def acts_only(suite) -> None:
    from autointerp.activations import cache_activations
    from autointerp.corpus import tokenize_corpus
    from autointerp.model import load_model
    from autointerp.sweep.activations import sweep_activations

    sm = load_model(suite.model.name, device="cpu")
    tokens = tokenize_corpus(suite.corpus, sm.tokenizer)
    hps = [sm.hookpoint(h) for h in suite.model.sweep_hookpoints]
    bs = suite.model.batch_size
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        paths = [Path(d) / f"sweep-{i}.npy" for i in range(len(hps))]
        sweep_activations(sm, hps, tokens, paths, batch_size=bs, progress=False)
        sweep_s = time.perf_counter() - t
        t = time.perf_counter()
        singles = [
            cache_activations(sm, hp, tokens, Path(d) / f"single-{i}.npy", batch_size=bs,
                              progress=False)
            for i, hp in enumerate(hps)
        ]  # fmt: skip
        sep_s = time.perf_counter() - t
        same = all(np.array_equal(np.load(p), np.asarray(a)) for p, a in zip(paths, singles))
    print(f"\n== activations of {len(hps)} hookpoints, {tokens.size} tokens (seconds) ==")
    print(f"{'one pass (sweep)':34s} {sweep_s:9.1f}")
    print(f"{'one pass per hookpoint':34s} {sep_s:9.1f}   {sep_s / sweep_s:.2f}x")
    print(f"activations identical: {'yes' if same else 'NO'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", default="evals/layers.toml")
    ap.add_argument("--hookpoints", type=int, default=3, help="H: hookpoints swept (default 3)")
    ap.add_argument("--n-tokens", type=int, default=16384, help="corpus tokens (default 16384)")
    ap.add_argument("--n-features", type=int, default=2, help="scored features per basis")
    ap.add_argument("--metrics-tokens", type=int, default=256, help="held-out metric tokens")
    ap.add_argument("--acts-only", action="store_true", help="time the forward passes alone")
    args = ap.parse_args()

    from autointerp.pipeline import SuiteRun, run_suite
    from autointerp.sweep import member_suites

    suite = small_suite(
        args.suite, args.hookpoints, args.n_tokens, args.n_features, args.metrics_tokens
    )
    if args.acts_only:
        return acts_only(suite)
    members = member_suites(suite)
    bases = ", ".join(b.label for b in suite.bases)
    print(f"sweep {suite.name}: {', '.join(members)}; {args.n_tokens} tokens, "
          f"{args.n_features} features per basis, bases {bases}")  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        kw = dict(results_root=root / "sweep-res", work_dir=root / "sweep-work", progress=False)
        t = time.perf_counter()
        sweep_dir = run_suite(suite, llm_cache=root / "sweep-llm.sqlite", run_name="r", **kw)
        sweep_s = time.perf_counter() - t
        sw = json.loads((sweep_dir / "sweep.json").read_text())
        sweep_acts = next(r["seconds"] for r in sw["stages"] if r["stage"] == "sweep-activations")
        sweep_load = sw["timings"].get("model_load", 0.0)

        t = time.perf_counter()
        sep_dirs, sep_acts, sep_load = {}, 0.0, 0.0
        for i, (h, s) in enumerate(members.items()):
            rd = SuiteRun(s, results_root=root / "sep-res", run_name=f"h{i}",
                          work_dir=root / f"sep-work-{i}", llm_cache=root / f"sep-llm-{i}.sqlite",
                          progress=False).run()  # fmt: skip
            mt = member_times(rd)
            sep_acts += mt["activations"]
            sep_load += mt["model_load"]
            sep_dirs[h] = rd
        sep_s = time.perf_counter() - t
        diff = {
            f: max(
                largest_difference(
                    pl.read_parquet(sweep_dir / sw["members"][h] / f), pl.read_parquet(rd / f)
                )
                for h, rd in sep_dirs.items()
            )
            for f in ("metrics.parquet", "scores.parquet")
        }
    print(f"\n== cold sweep vs {len(members)} separate runs (seconds) ==")
    print(f"{'':34s} {'sweep':>9s} {'separate':>9s} {'ratio':>7s}")
    rows = [
        ("wall, whole run", sweep_s, sep_s),
        ("activations (forward passes)", sweep_acts, sep_acts),
        ("subject model loads", sweep_load, sep_load),
        ("everything else", sweep_s - sweep_acts - sweep_load, sep_s - sep_acts - sep_load),
    ]
    for name, a, b in rows:
        print(f"{name:34s} {a:9.1f} {b:9.1f} {b / a if a else float('nan'):6.2f}x")
    # scores: the in-process simulator's batched passes can differ in the last float digits
    # when an answer comes from the LLM cache, computed in another batch
    worst = ", ".join(f"{f} {v:.2g}" for f, v in diff.items())
    print(f"largest |difference| between the arms: {worst}")


if __name__ == "__main__":
    main()

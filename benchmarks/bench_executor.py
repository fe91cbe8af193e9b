"""A 3-hookpoint tiny sweep under the local executor and under Ray with 2 workers, side by side,
and what a stated model of the stage times predicts for N workers (N GPUs).

    python benchmarks/bench_executor.py [--hookpoints 3] [--workers 2] [--n-tokens 1024]
    python benchmarks/bench_executor.py --case suite [--workers 2]
    python benchmarks/bench_executor.py --case causal [--workers 2]

``--case suite``: one hookpoint, five bases (SAE, PCA, ICA, neurons, random): the local
executor vs Ray making each stage's per-basis items (fits, densities, metrics, records) as
tasks, per stage side by side, and the stated model
``T(N) = T_rest + sum over those stages of ceil(B / N) * t_item`` (``t_item``: a stage's Ray
seconds over its waves of ``workers`` items; ``T_rest``: every other stage, on the driver).

The sweep is the tests' tiny one (a random-weight 4-layer Llama from ``tests/conftest.py``,
SAE / PCA / neurons / random bases, the tiny model as the in-process LLM). Each arm runs on a
fresh cache dir and results root (nothing computed by one is found by the other). Prints, per
arm: wall time, the shared part (tokens + the one-pass activations + the report, run by the
driver) and the members' part; for Ray also its start-up. Then the model

    T(N) = T_shared + ceil(H / N) * t_wave + T_ray

where ``t_wave`` is the time of one wave of members measured in the Ray arm (each member on a
fresh worker: imports, loading the subject model and in-process LLM, then its stages),
``T_shared`` the driver's part and ``T_ray`` the cluster start-up; N workers, one per GPU.
It assumes members of equal cost, one member per worker (one GPU each) and no contention for
the shared filesystem or the LLM server; on this 2-core host the 2 workers share the CPUs the
local arm had to itself, so the measured Ray figure is a floor on the speed-up, not a ceiling.

``--case causal``: one hookpoint of a word-level tiny model (single-token names, so IOI runs)
with the IOI stage (re-ranked replicates on) and the output stage: the local executor vs Ray
making each basis's IOI and output work a task (``StageContext.map``), those stages' seconds
side by side, and whether their stage files are byte-identical apart from the clocks.
Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.append(str(ROOT))  # tests/causal_tiny.py imports tests.conftest


def tiny_sweep(tmp: Path, n_hook: int, n_tokens: int) -> dict:
    from conftest import make_tiny_model

    md = tmp / "tiny"
    sm = make_tiny_model()
    sm.model.config.max_position_embeddings = 4096
    sm.model.save_pretrained(md)
    sm.tokenizer.save_pretrained(md)
    text = tmp / "corpus.txt"
    text.write_text("The cat sat on the mat. A dog ran to 12 red doors. " * 400)
    llm = {"backend": "transformers", "model": str(md), "dtype": "float32", "device": "auto"}
    return {
        "name": "bench-executor",
        "model": {"name": str(md), "hookpoints": [f"blocks.{i}.hook_resid_post"
                                                  for i in range(n_hook)]},
        "corpus": {"source": str(text), "context": 16, "n_tokens": n_tokens},
        "bases": [
            {"kind": "sae", "name": "sae",
             "train": {"expansion": 2, "k": 4, "epochs": 1, "batch_size": 256}},
            {"kind": "pca"}, {"kind": "neurons"}, {"kind": "random"},
        ],
        "records": {"n_features": 3, "n_explain_top": 3, "n_explain_quantile": 2, "n_test_top": 2,
                    "n_test_quantile": 2, "n_test_random": 2, "n_quantiles": 2, "window": 8},
        "metrics": {"n_tokens": 64, "ablations": ["zero"]},
        "explain": {"style": "top_tokens"},
        "scoring": {"n_bootstrap": 100},
        "llm": {"explainer": llm, "simulator": llm, "scorer": llm},
    }  # fmt: skip


def arm(d: dict, tmp: Path, name: str, workers: int) -> dict:
    from autointerp.config import suite_from_dict
    from autointerp.pipeline import SuiteRun
    from autointerp.run.executor import make_executor
    from autointerp.sweep.run import SweepRun

    os.environ["AUTOINTERP_CACHE_DIR"] = str(tmp / f"cache-{name}")
    t0 = time.perf_counter()
    ex = make_executor(name, num_cpus=workers) if name == "ray" else make_executor()
    t_start = time.perf_counter() - t0
    try:
        run = SweepRun(suite_from_dict(d), member_run=SuiteRun, results_root=tmp / f"res-{name}",
                       run_name="r", progress=False, executor=ex)  # fmt: skip
        t1 = time.perf_counter()
        rd = run.run()
        wall = time.perf_counter() - t1
    finally:
        ex.close()
    rows = {r["stage"]: r["seconds"] for r in json.loads((rd / "sweep.json").read_text())["stages"]}
    members = sum(v for k, v in rows.items() if k.startswith("member:"))
    return {"wall": wall, "start": t_start, "shared": wall - members, "members": members}


ITEM_STAGES = ("bases", "density", "metrics", "records")


def arm_suite(d: dict, tmp: Path, name: str, workers: int) -> dict:
    """One single-hookpoint run; the seconds of each stage, the wall time, the start-up."""
    from autointerp.config import suite_from_dict
    from autointerp.pipeline import SuiteRun
    from autointerp.run.executor import make_executor

    os.environ["AUTOINTERP_CACHE_DIR"] = str(tmp / f"cache-suite-{name}")
    t0 = time.perf_counter()
    ex = make_executor(name, num_cpus=workers) if name == "ray" else make_executor()
    t_start = time.perf_counter() - t0
    try:
        run = SuiteRun(suite_from_dict(d), results_root=tmp / f"res-suite-{name}", run_name="r",
                       progress=False, executor=ex)  # fmt: skip
        t1 = time.perf_counter()
        rd = run.run()
        wall = time.perf_counter() - t1
    finally:
        ex.close()
    m = json.loads((rd / "manifest.json").read_text())
    return {
        "wall": wall,
        "start": t_start,
        "stages": {r["stage"]: r["seconds"] for r in m["stages"]},
    }


def main_suite(a: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        d = tiny_sweep(tmp, 3, a.n_tokens)
        d["name"] = "bench-executor-suite"
        d["model"] = {"name": d["model"]["name"], "hookpoint": "blocks.2.hook_resid_post"}
        d["bases"].insert(2, {"kind": "ica"})
        loc = arm_suite(d, tmp, "local", 1)
        ray = arm_suite(d, tmp, "ray", a.workers)
    w, nb = a.workers, len(d["bases"])
    print(f"tiny suite, 1 hookpoint, {nb} bases, {os.cpu_count()} CPUs; seconds")
    print(f"  {'':<28}{'local':>10}{f'ray x{w}':>10}")
    rest = {k: 0.0 for k in ("local", "ray")}
    for st in loc["stages"]:
        a_, b_ = loc["stages"][st], ray["stages"].get(st, float("nan"))
        if st in ITEM_STAGES:
            print(f"  {st + ' (per-basis tasks)':<28}{a_:>10.1f}{b_:>10.1f}")
        else:
            rest["local"] += a_
            rest["ray"] += b_
    print(f"  {'other stages (driver)':<28}{rest['local']:>10.1f}{rest['ray']:>10.1f}")
    print(f"  {'executor start-up':<28}{loc['start']:>10.1f}{ray['start']:>10.1f}")
    total_l, total_r = loc["wall"], ray["wall"] + ray["start"]
    print(f"  {'total':<28}{total_l:>10.1f}{total_r:>10.1f}   speed-up {total_l / total_r:.2f}x")
    # the model: an item's compute (local seconds / B) plus a fixed cost per task (a worker
    # process importing torch and autointerp and reloading the stage's upstream values),
    # measured here as what a wave of the Ray arm took beyond its items' compute
    t_item = {s: loc["stages"][s] / nb for s in ITEM_STAGES}
    waves = math.ceil(nb / w)
    t_0 = sum(max(0.0, ray["stages"][s] / waves - t_item[s]) for s in ITEM_STAGES) / len(t_item)
    print("\nmodel (stated, not measured): "
          "T(N) = T_rest + T_ray + sum_s ceil(B/N) * (t_item_s + t_0)")  # fmt: skip
    print("  t_item (local, per basis): "
          + ", ".join(f"{s} {v:.2f} s" for s, v in t_item.items())
          + f"; t_0 (per task, this host) = {t_0:.1f} s; T_rest = {rest['ray']:.1f} s, "
          f"T_ray = {ray['start']:.1f} s")  # fmt: skip
    for scale in (1, 100):  # items as cheap as here, and 100x dearer (a real model, GPU)
        seq = rest["local"] + nb * scale * sum(t_item.values())
        cells = [
            f"N={n}: {rest['ray'] + ray['start'] + math.ceil(nb / n) * sum(scale * v + t_0 for v in t_item.values()):.0f} s"  # noqa: E501
            for n in (1, 2, 4, 8)
        ]
        print(f"  items x{scale}: local {seq:.0f} s; ray " + ", ".join(cells))
    print(f"  per-basis tasks pay off once an item's compute is well above t_0 = {t_0:.1f} s")


CLOCKS = ("seconds", "seconds_prepare", "seconds_per_basis", "ranking_bootstrap_cost")


def _same_but_clocks(a: Path, b: Path) -> bool:
    def strip(x: object) -> object:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in CLOCKS}
        return [strip(v) for v in x] if isinstance(x, list) else x

    return strip(json.loads(a.read_text())) == strip(json.loads(b.read_text()))


def main_causal(a: argparse.Namespace) -> None:
    from causal_tiny import tiny_word_model

    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        d = tiny_sweep(tmp, 3, a.n_tokens)
        words = tmp / "words"
        sm = tiny_word_model()
        sm.model.save_pretrained(words)
        sm.tokenizer.save_pretrained(words)
        (tmp / "words.txt").write_text(
            "The cat sat on the mat . A dog ran to 12 red doors . " * 400
        )
        d.update(name="bench-executor-causal",
                 model={"name": str(words), "hookpoint": "blocks.1.hook_resid_post"},
                 causal={"ioi": {"n_pairs": 32, "ranking_bootstrap": 4}})  # fmt: skip
        d["corpus"]["source"] = str(tmp / "words.txt")
        got = {ex: arm_suite(d, tmp, ex, a.workers) for ex in ("local", "ray")}
        same = {
            st: all(
                _same_but_clocks(p, tmp / "res-suite-ray" / p.relative_to(tmp / "res-suite-local"))
                for p in (tmp / "res-suite-local").rglob(f"stages/{st}-*.json")
            )
            for st in ("ioi", "output")
        }
    loc, ray = got["local"], got["ray"]
    print(f"tiny causal suite, 1 hookpoint, {len(d['bases'])} bases, {os.cpu_count()} CPUs; "
          "seconds")  # fmt: skip
    print(f"  {'':<28}{'local':>10}{f'ray x{a.workers}':>10}  stage file (clocks aside)")
    for st in ("ioi", "output"):
        same_s = "identical" if same[st] else "DIFFERENT"
        print(f"  {st + ' (a task per basis)':<28}{loc['stages'][st]:>10.1f}"
              f"{ray['stages'][st]:>10.1f}  {same_s}")  # fmt: skip
    total_l, total_r = loc["wall"], ray["wall"] + ray["start"]
    print(f"  {'total (Ray start-up incl.)':<28}{total_l:>10.1f}{total_r:>10.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hookpoints", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--n-tokens", type=int, default=1024)
    ap.add_argument("--case", choices=("sweep", "suite", "causal"), default="sweep")
    a = ap.parse_args()
    if a.case in ("suite", "causal"):
        (main_suite if a.case == "suite" else main_causal)(a)
        return
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        d = tiny_sweep(tmp, a.hookpoints, a.n_tokens)
        loc = arm(d, tmp, "local", 1)
        ray = arm(d, tmp, "ray", a.workers)
    h, w = a.hookpoints, a.workers
    print(f"tiny sweep, {h} hookpoints, {os.cpu_count()} CPUs; seconds")
    print(f"  {'':<28}{'local':>10}{f'ray x{w}':>10}")
    for k, label in (("start", "executor start-up"), ("shared", "shared (tokens, acts, report)"),
                     ("members", "members"), ("wall", "wall (after start-up)")):  # fmt: skip
        print(f"  {label:<28}{loc[k]:>10.1f}{ray[k]:>10.1f}")
    total_l, total_r = loc["wall"], ray["wall"] + ray["start"]
    print(f"  {'total':<28}{total_l:>10.1f}{total_r:>10.1f}   speed-up {total_l / total_r:.2f}x")
    t_member = loc["members"] / h
    t_wave = ray["members"] / math.ceil(h / w)  # one member on a fresh worker, w at a time
    print("\nmodel (stated, not measured): T(N) = T_shared + ceil(H/N) * t_wave + T_ray")
    print(f"  t_wave = {t_wave:.1f} s (Ray arm: a member on a fresh worker, {w} at once; local: "
          f"{t_member:.1f} s a member), T_shared = {ray['shared']:.1f} s, T_ray = "
          f"{ray['start']:.1f} s")  # fmt: skip
    for hh in (h, 10 * h):
        cells = []
        for n in (1, 2, 4, 8, 16):
            tn = ray["shared"] + math.ceil(hh / n) * t_wave + ray["start"]
            cells.append(f"N={n}: {tn:.0f} s")
        seq = loc["shared"] + hh * t_member
        print(f"  H={hh}: local {seq:.0f} s; ray " + ", ".join(cells))


if __name__ == "__main__":
    from _out import recorded  # benchmarks/_out.py: the output, committed with host and date

    with recorded("bench_executor"):
        main()

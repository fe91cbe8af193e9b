"""The model stages' floor on this host: every ``nn.Linear`` call of a cold run's model
stages counted (forward FLOPs ``2 · rows · in · out`` and the seconds spent inside), beside
the host's GEMM rate at the same shapes, measured in the same process. ``FLOPs / GEMM rate``
is the time a stage's products take at the rate these kernels reach alone (same protocol,
same dtype): batching, caching or scheduling can close the gap to it but not pass it; only
fewer FLOPs (a smaller protocol) or another kernel do. Backward passes (IOI's KL gradient,
attribution) count their two products per linear layer (input and weight gradients, where
asked for) at the forward shapes' rate; attention and the bases' own matmuls are not
counted (the floor is low there), while the alone-timing reuses cached weights (high
there). The subject model is loaded before the first stage (not counted in any).

    python benchmarks/bench_flop_floor.py [--stages ioi,attribution,...]

(default: ioi, attribution, metrics, ablation, output, explain, score, steering)

Starts from the committed default run (tokens, activations, bases and records are reused from
it and the work dir) and recomputes each listed stage in turn, the LLM stages against an empty
response cache (a cold run's calls). Run it on an idle machine: it takes about as long as the
stages themselves (~20 min on a 2-core AMD EPYC).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from autointerp.config import load_suite  # noqa: E402
from autointerp.paths import cache_dir  # noqa: E402
from autointerp.run.remote import upstream_of  # noqa: E402
from autointerp.run.runner import Runner  # noqa: E402
from autointerp.run.store import RunStore  # noqa: E402
from autointerp.stages import suite_stages  # noqa: E402
from autointerp.stages.env import SuiteEnv  # noqa: E402

STAGES = ("ioi", "attribution", "metrics", "ablation", "output", "explain", "score", "steering")
CAUSAL = ("ioi", "attribution", "ablation", "output")
REFERENCE_SHAPES = 12  # a stage's shapes (by FLOPs) timed for the GEMM rate; the rest at their mean


class LinearMeter:
    """Forward FLOPs and seconds of every ``nn.Linear`` call, by shape ``(rows, in, out,
    dtype)`` (global module hooks, so the subject model and the LLM copies alike)."""

    def __init__(self) -> None:
        self.flops: Counter = Counter()  # forward
        self.backward: Counter = Counter()  # backward products of calls that record a graph
        self.seconds: Counter = Counter()
        self._t: dict[tuple[int, int], float] = {}
        self._handles = [
            nn.modules.module.register_module_forward_pre_hook(self._pre),
            nn.modules.module.register_module_forward_hook(self._post),
        ]

    def reset(self) -> None:
        self.flops.clear()
        self.backward.clear()
        self.seconds.clear()

    def _pre(self, mod: nn.Module, args: tuple) -> None:
        if isinstance(mod, nn.Linear):
            self._t[(threading.get_ident(), id(mod))] = time.perf_counter()

    def _post(self, mod: nn.Module, args: tuple, out: object) -> None:
        if not isinstance(mod, nn.Linear):
            return
        t0 = self._t.pop((threading.get_ident(), id(mod)), None)
        x = args[0]
        key = (x.numel() // mod.in_features, mod.in_features, mod.out_features, str(x.dtype))
        self.flops[key] += 2 * key[0] * key[1] * key[2]
        if torch.is_grad_enabled():
            n_grads = int(x.requires_grad) + int(mod.weight.requires_grad)
            self.backward[key] += n_grads * 2 * key[0] * key[1] * key[2]
        if t0 is not None:
            self.seconds[key] += time.perf_counter() - t0

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def gemm_rate(rows: int, k: int, n: int, dtype: str, min_seconds: float = 0.25) -> float:
    """FLOP/s of ``F.linear`` at ``[rows, k] x [k, n]`` (best of repeated timings)."""
    dt = getattr(torch, dtype.replace("torch.", ""))
    x, w = torch.randn(rows, k, dtype=dt), torch.randn(n, k, dtype=dt)
    F.linear(x, w)  # warm up
    best, spent = float("inf"), 0.0
    while spent < min_seconds:
        t = time.perf_counter()
        F.linear(x, w)
        dt_s = time.perf_counter() - t
        best, spent = min(best, dt_s), spent + dt_s
    return 2 * rows * k * n / best


def floor_seconds(flops: Counter, rates: dict) -> tuple[float, float]:
    """``(floor s, reference FLOP/s)``: each shape's FLOPs at its own measured rate (the
    shapes not timed at the FLOP-weighted mean rate of those that were)."""
    timed = {s: f for s, f in flops.items() if s in rates}
    mean = sum(timed.values()) / max(1e-9, sum(f / rates[s] for s, f in timed.items()))
    secs = sum(f / rates.get(s, mean) for s, f in flops.items())
    return secs, sum(flops.values()) / max(secs, 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--suite", default=str(REPO / "evals" / "default.toml"))
    a = ap.parse_args()
    todo = [s for s in a.stages.split(",") if s]
    suite = load_suite(a.suite)
    src = next((REPO / "results" / suite.name).glob("run-*"))
    tmp = Path(tempfile.mkdtemp())
    run_dir = tmp / suite.name / src.name
    shutil.copytree(src, run_dir)
    store = RunStore(run_dir, cache_dir() / "work")
    env = SuiteEnv(suite, store, progress=False, llm_cache=tmp / "llm.sqlite")
    every = suite_stages()
    Runner(upstream_of(every, "records"), store, env, progress=False).run()
    _ = env.sm  # the subject model loaded here, not in the first stage's time
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, run {src.name}")
    meter = LinearMeter()
    rates: dict[str, dict[tuple, float]] = {}
    cover: dict[str, float] = {}
    got: dict[str, tuple[float, Counter, Counter, Counter]] = {}
    for name in todo:
        runner = Runner(upstream_of(every, name), store, env, progress=False, force={name})
        meter.reset()
        runner.run()
        row = next(r for r in runner.summary() if r["stage"] == name)
        got[name] = (float(row["seconds"]), Counter(meter.flops), Counter(meter.backward),
                     Counter(meter.seconds))  # fmt: skip
        # the stage's own shapes timed right after it: the same machine state (a shared
        # host's speed drifts by more than the stage-to-floor gap over a long run)
        both = meter.flops + meter.backward
        top = [s for s, _ in both.most_common(REFERENCE_SHAPES)]
        rates[name] = {s: gemm_rate(*s) for s in top}
        cover[name] = sum(both[s] for s in top) / max(1, sum(both.values()))
        print(f"  {name}: {row['seconds']:.1f} s, {sum(meter.flops.values()) / 1e12:.2f} TFLOP "
              f"forward + {sum(meter.backward.values()) / 1e12:.2f} backward in linear layers",
              flush=True)  # fmt: skip
    meter.close()
    print(f"\nGEMM rate: F.linear timed alone (best of repeats), right after each stage, at "
          f"that stage's {REFERENCE_SHAPES} largest shapes by FLOPs (holding "
          f"{min(cover.values()):.0%}-{max(cover.values()):.0%} of a stage's FLOPs; the rest "
          f"at their FLOP-weighted mean rate)\n")  # fmt: skip
    print("| stage | wall s | in linear s (forward) | share | forward TFLOP | in-stage GFLOP/s | "
          "backward TFLOP | GEMM GFLOP/s | floor s | wall / floor |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    tot = {"wall": 0.0, "lin": 0.0, "floor": 0.0, "flops": 0.0}
    causal = {"wall": 0.0, "floor": 0.0}
    for name, (wall, f, bw, sec) in got.items():
        fl, ref = floor_seconds(f + bw, rates[name])
        lin, tf, tb = sum(sec.values()), sum(f.values()), sum(bw.values())
        print(f"| {name} | {wall:.0f} | {lin:.0f} | {lin / max(wall, 1e-9):.0%} | {tf / 1e12:.2f} "
              f"| {tf / max(lin, 1e-9) / 1e9:.0f} | {tb / 1e12:.2f} | {ref / 1e9:.0f} | {fl:.0f} | "
              f"{wall / max(fl, 1e-9):.2f}x |")  # fmt: skip
        tot["wall"] += wall
        tot["lin"] += lin
        tot["floor"] += fl
        tot["flops"] += tf + tb
        if name in CAUSAL:
            causal["wall"] += wall
            causal["floor"] += fl
    print(f"| **all listed** | {tot['wall']:.0f} | {tot['lin']:.0f} | "
          f"{tot['lin'] / max(tot['wall'], 1e-9):.0%} | {tot['flops'] / 1e12:.2f} (both) | | | | "
          f"{tot['floor']:.0f} | {tot['wall'] / max(tot['floor'], 1e-9):.2f}x |")  # fmt: skip
    if any(n in got for n in CAUSAL):
        print(f"\ncausal stages ({', '.join(n for n in CAUSAL if n in got)}): wall "
              f"{causal['wall']:.0f} s, floor {causal['floor']:.0f} s")  # fmt: skip


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _out import recorded  # benchmarks/_out.py: the output, committed with host and date

    with recorded("bench_flop_floor"):
        main()

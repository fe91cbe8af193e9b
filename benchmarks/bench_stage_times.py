"""The default suite's cold stage times, before and after, side by side.

    python benchmarks/bench_stage_times.py RUN_DIR [REFERENCE.json ...] [--loaded S1,S2]

RUN_DIR is a finished run (its ``manifest.json`` holds each stage's seconds and the run's peak
memory, the high-water mark after each stage — the first stage whose figure jumps set it —
and, in runs made since it was recorded, each stage's own peak); each REFERENCE is a JSON
file ``{"source", "host", "stages": {stage: seconds}}`` of an earlier measurement.
``--loaded`` names stages of this run that other work shared the CPU
with (marked ``*``; a second sum leaves them out of every column, so the ratio compares only
stages measured idle) (``benchmarks/results/stage_times_*_before.json``: the committed run before
this change on the Intel host, and the fresh-clone AMD measurement). Prints one column per
source and the ratio of the last reference to the run, and records it with host and date in
``benchmarks/results/bench_stage_times.txt``. A stage time is only comparable on the same host
class: the columns say which CPU each came from.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _out import recorded  # noqa: E402

DEFAULT_REFS = (
    "benchmarks/results/stage_times_intel_before.json",
    "benchmarks/results/stage_times_amd_before.json",
)


def _run_times(run_dir: Path) -> tuple[dict[str, float], dict]:
    man = json.loads((run_dir / "manifest.json").read_text())
    stages = {r["stage"]: float(r["seconds"]) for r in man.get("stages") or [] if "stage" in r}
    first = man.get("timings_first_run")  # the run's first (cold) invocation, per stage
    if isinstance(first, dict):
        stages.update({k: float(v) for k, v in first.items() if k in stages})
    return stages, man


def _per_stage(man: dict, key: str) -> dict[str, float]:
    """``{stage: value}`` of one field of the manifest's stage reports (those that have it)."""
    return {r["stage"]: r[key] for r in man.get("stages") or [] if r.get(key)}


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    loaded: set[str] = set()
    if "--loaded" in argv:
        i = argv.index("--loaded")
        loaded = set(argv[i + 1].split(","))
        argv = argv[:i] + argv[i + 2 :]
    run_dir = Path(argv[0])
    refs = [Path(p) for p in (argv[1:] or DEFAULT_REFS)]
    times, man = _run_times(run_dir)
    cols = []
    for p in refs:
        d = json.loads(p.read_text())
        cols.append((p.stem.removeprefix("stage_times_"), d["host"], d["source"], d["stages"]))
    print(f"run: {run_dir} (this host: see the header above)")
    for name, host, src, _ in cols:
        print(f"{name}: {host}; {src}")
    stages = list(dict.fromkeys([*times, *(s for *_, st in cols for s in st)]))
    peaks = _per_stage(man, "peak_rss_mib")
    head = ["stage", *(c[0] for c in cols), "this run", f"{cols[-1][0]} / this run"]
    own = _per_stage(man, "stage_peak_rss_mib")
    head += ["this run: peak MiB after"] if peaks else []
    head += ["this run: the stage's own peak MiB"] if own else []
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    tot = [0.0] * (len(cols) + 1)
    idle = [0.0] * (len(cols) + 1)
    for s in stages:
        vals = [c[3].get(s) for c in cols] + [times.get(s)]
        for i, v in enumerate(vals):
            tot[i] += v or 0.0
            idle[i] += 0.0 if s in loaded else v or 0.0
        ref, now = vals[-2], vals[-1]
        ratio = f"{ref / now:.2f}x" if ref and now else ""
        cells = [f"{v:.0f}" if v is not None else "" for v in vals]
        mark = " *" if s in loaded else ""
        mem = (f" {peaks[s]:,.0f} |" if s in peaks else " |") if peaks else ""
        mem += (f" {own[s]:,.0f} |" if s in own else " |") if own else ""
        print(f"| {s}{mark} | " + " | ".join(cells) + f" | {ratio} |" + mem)
    ratio = f"{tot[-2] / tot[-1]:.2f}x" if tot[-1] else ""
    pad = " |" * (bool(peaks) + bool(own))
    print("| **sum of stages** | " + " | ".join(f"{t:.0f}" for t in tot) + f" | {ratio} |" + pad)
    if loaded:
        ratio = f"{idle[-2] / idle[-1]:.2f}x" if idle[-1] else ""
        print(
            "| **sum without the * stages** | "
            + " | ".join(f"{t:.0f}" for t in idle)
            + f" | {ratio} |"
            + pad
        )
        print(f"* this run shared the CPU with other work during: {', '.join(sorted(loaded))}")
    peak = man.get("peak_rss_mib") or {}
    if peak:
        print(f"peak resident memory of the run: {json.dumps(peak)} MiB")
    print(f"wall time of the run: {man.get('wall_time_s', float('nan')):.0f} s")


if __name__ == "__main__":
    with recorded("bench_stage_times"):
        main(sys.argv[1:])

"""The IOI stage before and after the speed-up, side by side in one process on the bundled
SmolLM2 and the default run's bases (read from the user cache by their weights' hashes in the
committed run's manifest): the stage's seconds (prepare + every basis's curves under the three
rankings, the full PCA rotation included) and its numbers compared.

* old: ``autointerp/causal/{intervene,patching,ranking}.py`` as of commit ``OLD`` (read from
  git): each patched state runs the whole prompt from the hookpoint, and the unembedding is
  the model's own ``logits_to_keep=1`` head (a batched matrix-vector product per row);
* new: the tree as it is (states run from their first patched column over the clean prompt's
  keys/values; the last hidden states through the head as one matrix product).

Prints seconds per basis and in total, the patched states (the same: de-duplication is
unchanged), and the largest differences of the curves (KL, both edits) and of the ``ioi_*``
cells (values and CI ends) between the two. No assertions.

    python benchmarks/bench_ioi_speed.py --pairs 16          # ~3 CPU-min on 2 AMD cores
    python benchmarks/bench_ioi_speed.py --pairs 64          # the default suite's pairs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autointerp.causal import patching  # noqa: E402
from autointerp.causal.ioi_prompts import ioi_pairs  # noqa: E402
from autointerp.model import load_model  # noqa: E402

HOOK = "blocks.6.hook_resid_post"
OLD = "5f2d356"
RUN = ROOT / "results/default/run-2c069127b7c1"


def _module(name: str, rel: str, subs: dict[str, str]) -> types.ModuleType:
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{OLD}:{rel}"], check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    for a, b in subs.items():
        src = src.replace(a, b)
    mod = types.ModuleType(name)
    sys.modules[name] = mod  # dataclasses look their module up
    exec(compile(src, f"{name}.py", "exec"), mod.__dict__)  # noqa: S102
    return mod


def old_modules() -> types.ModuleType:
    """The ranking module of commit ``OLD`` over that commit's patching and intervene."""
    _module("old_intervene", "autointerp/causal/intervene.py", {})
    _module("old_patching", "autointerp/causal/patching.py",
            {"from autointerp.causal.intervene import": "from old_intervene import"})  # fmt: skip
    sub = {"from autointerp.causal.patching import": "from old_patching import"}
    return _module("old_ranking", "autointerp/causal/ranking.py", sub)


def default_bases(work: Path) -> list:
    """The committed default run's bases: the cached folder whose weights hash is the one
    the run's manifest names (bases are refitted now and then; the names drift)."""
    from autointerp.bases.checkpoints import load_checkpoint
    from autointerp.bases.fingerprint import weights_hash
    from autointerp.bases.linear import load_linear

    want = {b["name"]: b["info"]["weights_hash"] for b in json.loads(
        (RUN / "manifest.json").read_text())["bases"]}  # fmt: skip
    out = []
    for name, h in want.items():
        if name.startswith("sae"):
            cands = [(p, lambda p, n=name: load_checkpoint(p, "native", name=n))
                     for p in sorted((work / "sae").glob(f"{name}-*"))]  # fmt: skip
        else:
            cands = [(p, load_linear) for p in sorted((work / "bases").glob(f"{name}-*"))]
        for p, load in cands:
            b = load(p)
            if weights_hash(b) == h:
                out.append(b)
                break
        else:
            raise SystemExit(f"{name}: no folder under {work} with weights hash {h}")
    return out


def timed(fn, *args):
    """``fn(*args)`` and its (wall, CPU) seconds (CPU: this process, every thread)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, (time.perf_counter() - t, time.process_time() - c)


def stages(old, new, sm, hp, pairs, bases) -> tuple:
    """Both stages' computations interleaved part by part (prepare, then each basis's
    curves, old then new), so both see the same load: data, curves and seconds of each."""
    data, curves, secs = [None, None], [{}, {}], [{}, {}]
    for i, (_rank, prep) in enumerate((old, new)):
        data[i], secs[i]["prepare"] = timed(prep, sm, hp, pairs, 2)
    for b in bases:
        for i, (rank, _prep) in enumerate((old, new)):
            curves[i][b.name], secs[i][b.name] = timed(
                rank.ioi_curves, sm, hp, data[i], b, "pow2", 64, True
            )
    return data, curves, secs


def cells(data, curves, kinds) -> dict:
    from autointerp.causal.summary import ioi_columns

    cols = ioi_columns(data, curves, kinds, 0, None, None)
    return {(b, c): v for b, r in cols.rows.items() for c, v in r.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bases", default="", help="comma-separated subset of the bases' names")
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache/autointerp/work")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, torch threads "
          f"{args.threads}, {args.pairs} pairs, old = commit {OLD}")  # fmt: skip
    from autointerp.causal.ranking import ioi_curves
    from autointerp.stages.ioi import full_rotations

    sm = load_model("smollm2-gguf", device="cpu")
    hp = sm.hookpoint(HOOK)
    pairs = ioi_pairs(sm.tokenizer, args.pairs, 0, sm.bos_token_id)
    bases = default_bases(args.work)
    if args.bases:
        bases = [b for b in bases if b.name in args.bases.split(",")]
    bases += full_rotations(bases)
    kinds = {b.name: b.kind for b in bases}
    old = (old_modules(), sys.modules["old_patching"].prepare)
    (d_old, d_new), (c_old, c_new), (s_old, s_new) = stages(
        old, (types.SimpleNamespace(ioi_curves=ioi_curves), patching.prepare), sm, hp, pairs, bases
    )
    print("\npart              wall s: old    new  new/old | CPU s: old    new  new/old | states")
    for k in s_old:
        st = (
            ""
            if k == "prepare"
            else "{} {}".format(*(c[k]["in_sample"].info["states"] for c in (c_old, c_new)))
        )
        (wo, co), (wn, cn) = s_old[k], s_new[k]
        print(f"{k:15} {wo:13.1f} {wn:6.1f} {wn / wo:7.2f}x | {co:11.1f} {cn:6.1f} "
              f"{cn / co:7.2f}x | {st}")  # fmt: skip
    wo, co = (sum(v[j] for v in s_old.values()) for j in (0, 1))
    wn, cn = (sum(v[j] for v in s_new.values()) for j in (0, 1))
    print(f"{'stage':15} {wo:13.1f} {wn:6.1f} {wn / wo:7.2f}x | {co:11.1f} {cn:6.1f} "
          f"{cn / co:7.2f}x | speed-up {wo / wn:.2f}x wall, {co / cn:.2f}x CPU")  # fmt: skip
    print("\nlargest |old - new| over pairs, k and rankings (KL in nats; edits relative / abs)")
    for name in c_old:
        diffs = []
        for attr in ("kl", "edit", "edit_abs"):
            diffs.append(max(float(np.abs(getattr(c_old[name][r], attr)
                                          - getattr(c_new[name][r], attr)).max())
                             for r in c_old[name]))  # fmt: skip
        print(f"{name:15} KL {diffs[0]:.2e}  edit {diffs[1]:.2e}  edit_abs {diffs[2]:.2e}")
    print(f"unpatched KL: {np.abs(d_old.kl_clean - d_new.kl_clean).max():.2e}; logit diff "
          f"{np.abs(d_old.logit_diff - d_new.logit_diff).max():.2e}")  # fmt: skip
    a, b = cells(d_old, c_old, kinds), cells(d_new, c_new, kinds)
    worst, n_cmp, undef = (0.0, ""), 0, 0
    for key, ca in a.items():
        cb = b[key]
        for f in ("value", "ci_low", "ci_high"):
            va, vb = getattr(ca, f), getattr(cb, f)
            if va is None or vb is None:
                undef += (va is None) != (vb is None)
                continue
            n_cmp += 1
            rel = abs(va - vb) / max(abs(va), 1e-9)
            if rel > worst[0]:
                worst = (rel, f"{key[0]} {key[1]} {f}: {va:.6g} vs {vb:.6g}")
    print(f"ioi_* cells: {n_cmp} numbers compared, {undef} defined in one only; largest "
          f"relative difference {worst[0]:.2e} ({worst[1]})")  # fmt: skip


if __name__ == "__main__":
    from _out import recorded  # benchmarks/_out.py: the output, committed with host and date

    with recorded("bench_ioi_speed"):
        main()

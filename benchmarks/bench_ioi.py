"""The IOI stage, old vs new, side by side in one process on the bundled SmolLM2.

* old: the stage as committed before the paper's panels (grid 1, 2, ..., 128 + all, one
  pooled ranking by |attribution|; its patching module is read from git, commit ``OLD``);
* new: the stage as it is now (grid: every power of two + all; signed order; in-sample,
  held-out and per-pair rankings; the full PCA rotation as an extra row; states
  de-duplicated per pair).

Both prepare the same pairs (the clean / counterfactual runs and the gradient at the
hookpoint: old at the clean point, new on ``--ig-steps`` path points), timed and added to
each total.
Bases: the committed default run's from the work dir when there (``--work``; found by the
weights hashes in the run's manifest, :func:`bench_ioi_speed.default_bases`), else stand-ins
of the same shapes: a TopK SAE with random unit decoder rows (4608 features, k = 32), PCA fitted on
the prompts' own activations (top-32 codes), the neurons (top-32) and random signed directions
(top-32). Prints seconds and patched states per basis and in total, old and new, then the new
curves' matched readings. No assertions.

    python benchmarks/bench_ioi.py --pairs 6 --bases sae-standin,pca   # ~3 CPU-min
    python benchmarks/bench_ioi.py --pairs 64        # the default suite's pair count
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autointerp.causal import patching  # noqa: E402
from autointerp.causal.ioi_prompts import ioi_pairs  # noqa: E402
from autointerp.model import load_model  # noqa: E402

HOOK = "blocks.6.hook_resid_post"
OLD = "e2fb9b7"
OLD_KS = [1, 2, 4, 8, 16, 32, 64, 128]


def old_patching() -> types.ModuleType:
    """The committed patching module of commit ``OLD`` (its ``ioi_curve``)."""
    src = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{OLD}:autointerp/causal/patching.py"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    mod = types.ModuleType("old_patching")
    sys.modules["old_patching"] = mod  # dataclasses look their module up
    exec(compile(src, "old_patching.py", "exec"), mod.__dict__)  # noqa: S102
    return mod


def load_bases(work: Path, x: torch.Tensor) -> list:
    from bench_ioi_speed import default_bases  # the committed run's bases, found by hash

    try:
        return default_bases(work)
    except SystemExit as e:  # not in this cache (another host): stand-ins of the same shapes
        print(f"{e}; using stand-ins")
    from autointerp.bases.linear import SignedLinearBasis, fit_pca, neuron_basis
    from autointerp.bases.sae import SAE

    d = x.shape[-1]
    g = torch.Generator().manual_seed(0)
    dec = torch.randn(4608, d, generator=g)
    dec = dec / dec.norm(dim=1, keepdim=True)
    sae = SAE(dec.T.contiguous(), torch.zeros(4608), dec, x.mean(0), architecture="topk", k=32,
              name="sae-standin")  # fmt: skip
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    rnd = SignedLinearBasis("random-standin", "random", q, q.T, x.mean(0), 32)
    return [sae, fit_pca(x, k=32, name="pca"), neuron_basis(d, k=32), rnd]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ig-steps", type=int, default=2)
    ap.add_argument("--bases", default="", help="comma-separated subset of the bases' names")
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache/autointerp/work")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, "
          f"torch threads {args.threads}, {args.pairs} pairs")  # fmt: skip
    sm = load_model("smollm2-gguf", device="cpu")
    hp = sm.hookpoint(HOOK)
    pairs = ioi_pairs(sm.tokenizer, args.pairs, 0, sm.bos_token_id)
    old = old_patching()
    t = time.perf_counter()
    data_old = old.prepare(sm, hp, pairs)
    t_prep_old = time.perf_counter() - t
    t = time.perf_counter()
    data = patching.prepare(sm, hp, pairs, args.ig_steps)
    t_prep = time.perf_counter() - t
    x = torch.cat(
        [g.x_clean[g.patch] for g in data.groups] + [g.x_cf[g.patch] for g in data.groups]
    )
    bases = load_bases(args.work, x)
    if args.bases:
        bases = [b for b in bases if b.name in args.bases.split(",")]
    print(f"prepare: old {t_prep_old:.1f} s, new {t_prep:.1f} s; resumed at layer {data.skip}")

    from autointerp.causal.ranking import ioi_curves
    from autointerp.causal.summary import readings
    from autointerp.stages.ioi import full_rotations

    rows = []
    new_curves = {}
    for b in bases:
        t = time.perf_counter()
        oc = old.ioi_curve(sm, hp, data_old, b, OLD_KS, 64, "pooled")
        t_old = time.perf_counter() - t
        t = time.perf_counter()
        nc = ioi_curves(sm, hp, data, b, "pow2", 64)
        t_new = time.perf_counter() - t
        new_curves[b.name] = nc
        n_new = nc["in_sample"].info["states"]
        rows.append((b.name, t_old, len(oc.ks) * args.pairs, t_new, n_new, len(nc["in_sample"].ks)))
    for b in full_rotations(bases):
        t = time.perf_counter()
        nc = ioi_curves(sm, hp, data, b, "pow2", 64)
        new_curves[b.name] = nc
        rows.append((b.name, 0.0, 0, time.perf_counter() - t, nc["in_sample"].info["states"],
                     len(nc["in_sample"].ks)))  # fmt: skip
    print("\nbasis            old s  old states |  new s  new states (grid k x 3 rankings)")
    for name, to, no, tn, nn, nk in rows:
        print(f"{name:15} {to:7.1f} {no:10d} | {tn:6.1f} {nn:10d} ({nk} k)")
    to, tn = sum(r[1] for r in rows) + t_prep_old, sum(r[3] for r in rows) + t_prep
    print(f"{'stage (+prepare)':15} {to:7.1f} {'':10} | {tn:6.1f}   new / old {tn / to:.2f}x")
    print("\nnew, in-sample / held-out: features for half KL, edit at half KL, AUC")
    for name, by in new_curves.items():
        vals = [readings(by[r], data.kl_clean) for r in ("in_sample", "held_out")]
        print(f"{name:15} " + " | ".join(
            f"k* {v[0]:7.1f}  edit {v[1]:6.2f}  auc {v[4]:.3f}" for v in vals))  # fmt: skip


if __name__ == "__main__":
    from _out import recorded  # benchmarks/_out.py: the output, committed with host and date

    with recorded("bench_ioi"):
        main()

"""The IOI patching stage and latent attribution on the bundled SmolLM2 with the default
suite's five bases (read from the work dir's cache when there: sae-topk, pca, ica, neurons,
random), against the baseline the issue names: one full forward per (pair, basis, k).

Prints, side by side: the batched, resumed stage time (all pairs x bases x k) and the
baseline's time (measured on a few pairs of one basis, scaled to the same count); then the
figures (the model's own IOI logit difference, KL at k = 1 / 4 / 16, features for half KL,
edit size, attribution concentration). No assertions.

    python benchmarks/bench_ioi.py                         # 64 pairs, 5 bases, 2 threads
    python benchmarks/bench_ioi.py --pairs 16 --baseline-pairs 2 --no-attribution
    python benchmarks/bench_ioi.py --ranking per_pair --no-attribution --baseline-pairs 0
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autointerp.causal import patching  # noqa: E402
from autointerp.causal.intervene import decode_with_error, encode_with_error, kl_last  # noqa: E402
from autointerp.causal.ioi_prompts import ioi_pairs  # noqa: E402
from autointerp.causal.summary import ioi_columns  # noqa: E402
from autointerp.model import load_model, splice  # noqa: E402

HOOK = "blocks.6.hook_resid_post"
KS = [1, 2, 4, 8, 16, 32, 64, 128]
#: the default suite's bases in the work dir (stage hashes of results/default)
DEFAULT = {"sae-topk": "sae/sae-topk-fea5a642f796", "pca": "bases/pca-7da8816cf5da",
           "ica": "bases/ica-b0645c550e4e", "neurons": "bases/neurons-887b980c6f47",
           "random": "bases/random-23f5961e7923"}  # fmt: skip


def load_bases(work: Path) -> list:
    from autointerp.bases.checkpoints import load_checkpoint
    from autointerp.bases.linear import load_linear

    out = []
    for name, rel in DEFAULT.items():
        p = work / rel
        if not p.exists():
            sys.exit(f"{p} missing: run the default suite once (or pass --work)")
        b = load_checkpoint(p, "native", name=name) if name == "sae-topk" else load_linear(p)
        out.append(b)
    return out


def baseline(sm, hp, data, basis, curve, n_pairs: int) -> float:
    """Seconds for one full spliced forward per (pair, k) on the first ``n_pairs`` pairs."""
    t = time.perf_counter()
    done = 0
    for g in data.groups:
        c, err = encode_with_error(basis, g.x_clean)
        c_cf, _ = encode_with_error(basis, g.x_cf)
        delta = (c_cf - c) * g.patch[..., None]
        for r in range(len(g.rows)):
            if done >= n_pairs:
                return time.perf_counter() - t
            for k in curve.ks:
                m = torch.zeros(basis.n_features)
                m[torch.from_numpy(curve.order[:k].copy())] = 1
                x = decode_with_error(basis, c[r : r + 1] + delta[r : r + 1] * m, err[r : r + 1])
                with torch.no_grad(), splice(hp, lambda a, x=x: x.to(a.dtype)):
                    lg = sm.model(input_ids=g.clean[r : r + 1], use_cache=False).logits[:, -1]
                kl_last(g.logp_cf[r : r + 1], torch.log_softmax(lg.float(), -1))
            done += 1
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--baseline-pairs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache/autointerp/work")
    ap.add_argument("--no-attribution", action="store_true")
    ap.add_argument("--no-ioi", action="store_true", help="only the attribution part")
    ap.add_argument("--ranking", choices=["pooled", "per_pair"], default="pooled")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, "
          f"torch threads {args.threads}")  # fmt: skip
    sm = load_model("smollm2-gguf", device="cpu")
    hp = sm.hookpoint(HOOK)
    bases = load_bases(args.work)
    t0 = time.perf_counter()
    data = patching.prepare(sm, hp, ioi_pairs(sm.tokenizer, args.pairs, 0, sm.bos_token_id))
    t_prep = time.perf_counter() - t0
    print(f"prepare (clean / counterfactual states, gradient at the hookpoint) {t_prep:.1f} s")
    if not args.no_ioi:
        ioi_part(args, sm, hp, data, bases, t0, t_prep)
    if not args.no_attribution:
        attribution_part(args, sm, hp, data, bases)


def ioi_part(args, sm, hp, data, bases, t0: float, t_prep: float) -> None:
    curves, per = [], {}
    for b in bases:
        t = time.perf_counter()
        curves.append(patching.ioi_curve(sm, hp, data, b, KS, 64, args.ranking))
        per[b.name] = time.perf_counter() - t
    t_stage = time.perf_counter() - t0
    n_states = sum(len(c.ks) for c in curves) * args.pairs
    tb = baseline(sm, hp, data, bases[1], curves[1], args.baseline_pairs)
    per_state = tb / max(1, args.baseline_pairs * len(curves[1].ks))
    n_k = n_states // args.pairs // len(bases)
    print(f"\nIOI: {args.pairs} pairs x {len(bases)} bases x ~{n_k} k = {n_states} patched "
          f"states; resumed at layer {data.skip}")  # fmt: skip
    print(
        f"  batched + resumed (this stage) {t_stage:8.1f} s  (prepare {t_prep:.1f} s; "
        + ", ".join(f"{k} {v:.1f}" for k, v in per.items())
        + ")"
    )
    if args.baseline_pairs:
        print(
            f"  one full forward per state     {per_state * n_states:8.1f} s  (measured "
            f"{tb:.1f} s on {args.baseline_pairs} pairs x {len(curves[1].ks)} k, scaled)"
        )
    cols = ioi_columns(data, curves, {b.name: b.kind for b in bases}, 0)
    print("\n" + cols.extra["notes"][0])
    names = [c.name for c in cols.columns]
    print("basis      " + "  ".join(f"{n[4:]:>16}" for n in names))
    for b in bases:
        row = cols.rows[b.name]
        cells = []
        for n in names:
            c = row[n]
            cells.append(f"{c.value:16.3f}" if c.value is not None else f"{'undefined':>16}")
        print(f"{b.name:10} " + "  ".join(cells))
    for c in curves:
        print(f"  {c.basis:9} KL by k {dict(zip(c.ks, np.round(c.kl.mean(1), 3).tolist()))}")


def attribution_part(args, sm, hp, data, bases) -> None:
    from autointerp.causal.attribution import concentration, ioi_attribution, loss_attribution
    from autointerp.stages.tokens import held_out_rows

    tok = np.load(next(args.work.glob("tokens-*.npy")))
    acts = np.load(next(args.work.glob("acts-*.npy")), mmap_mode="r")
    rows = held_out_rows(len(tok), math.ceil(2048 / tok.shape[1]))
    ids = torch.from_numpy(tok[rows].astype(np.int64))
    ex = ids == sm.bos_token_id
    t = time.perf_counter()
    la = loss_attribution(sm, hp, bases, ids, torch.from_numpy(np.array(acts[rows])), ex, 7, 8)
    t_loss = time.perf_counter() - t
    t = time.perf_counter()
    ia = {b.name: ioi_attribution(sm, hp, data, b) for b in bases}
    t_ioi = time.perf_counter() - t
    print(f"\nattribution: loss over {len(rows)} rows {t_loss:.1f} s, IOI {t_ioi:.1f} s")
    print("basis      ioi top1%  ioi top10  loss top1%  loss top10")
    for b in bases:
        i1, i10 = concentration(ia[b.name])
        l1, l10 = concentration(la[b.name])
        print(f"{b.name:10} {i1:9.3f} {i10:10.3f} {l1:11.3f} {l10:11.3f}")


if __name__ == "__main__":
    from _out import recorded  # benchmarks/_out.py: the output, committed with host and date

    with recorded("bench_ioi"):
        main()

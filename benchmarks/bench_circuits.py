"""Cost of circuit edges: one backward pass per batch of downstream features against one per
feature (the same edges), side by side in one process, plus one faithfulness curve.

    OMP_NUM_THREADS=2 python benchmarks/bench_circuits.py [--model smollm2-gguf] [--feats 8]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from autointerp.bases.linear import neuron_basis
from autointerp.circuits.edges import edges, mean_codes
from autointerp.circuits.faithfulness import faithfulness
from autointerp.circuits.forward import Pair
from autointerp.model import load_model

TEXT = "When Mary and John went to the store, John gave a drink to Mary. The cat sat on the mat."
OTHER = "A dog ran to twelve red doors while the rain fell on the quiet town in the morning."


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-gguf")
    ap.add_argument("--up", default="blocks.3.hook_resid_post")
    ap.add_argument("--down", default="blocks.5.hook_resid_post")
    ap.add_argument("--feats", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=16)
    a = ap.parse_args()
    sm = load_model(a.model, device="cuda" if torch.cuda.is_available() else "cpu")
    hp1, hp2 = sm.hookpoint(a.up), sm.hookpoint(a.down)
    pair = Pair(sm, hp1, hp2, neuron_basis(hp1.width, k=None), neuron_basis(hp2.width, k=None))
    ids = sm.tokenizer(TEXT, return_tensors="pt").input_ids[:, : a.tokens]
    cbar, ebar = mean_codes(pair, sm.tokenizer(OTHER, return_tensors="pt").input_ids)
    w = torch.ones(ids.shape)
    c, _ = pair.upstream(ids)
    feats = [int(i) for i in torch.argsort(-c.sum((0, 1)))[: a.feats]]
    t = time.perf_counter()
    batched = edges(pair, ids, w, cbar, ebar, feats, batch_feats=len(feats))
    tb = time.perf_counter() - t
    t = time.perf_counter()
    single = [edges(pair, ids, w, cbar, ebar, [f], batch_feats=1) for f in feats]
    ts = time.perf_counter() - t
    diff = max(float(np.abs(s.edges[0] - batched.edges[k]).max()) for k, s in enumerate(single))
    print(f"model {sm.name}, {a.up} -> {a.down}, {ids.shape[1]} tokens, {len(feats)} features")
    print(f"edges, one backward per batch : {tb:6.2f} s ({batched.backward_passes} backward)")
    print(f"edges, one backward per feature: {ts:6.2f} s ({len(feats)} backward)")
    print(f"max |batched - single| edge: {diff:.2e}")
    t = time.perf_counter()
    fa = faithfulness(pair, ids, w, cbar, feats[0], batched.edges[0], ks=[1, 4, 16, 64, 256])
    tf = time.perf_counter() - t
    fs = ", ".join(f"k={k}: {'undef' if v is None else f'{v:.3f}'}" for k, v in zip(fa.ks, fa.f))
    print(f"faithfulness of feature {feats[0]} ({tf:.2f} s): {fs}; n80={fa.n80}; "
          f"linear-vs-actual r={fa.lin_r}; error node {batched.error[0]:+.3g}")  # fmt: skip


if __name__ == "__main__":
    main()

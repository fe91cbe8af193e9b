"""Cost of the IOI logit-difference edges: one backward pass per batch of prompts against one
per prompt (the same edges), side by side in one process, plus the faithfulness runs of one
basis (kept sets and single-feature ablations).

    OMP_NUM_THREADS=2 python benchmarks/bench_circuits_ioi.py [--model smollm2-gguf] [--prompts 16]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from autointerp.bases.linear import neuron_basis
from autointerp.causal.intervene import encode_with_error, hidden
from autointerp.causal.ioi_prompts import ioi_pairs
from autointerp.circuits.ioi import ioi_circuit, ioi_edges, prompts
from autointerp.model import load_model

OTHER = "A dog ran to twelve red doors while the rain fell on the quiet town in the morning."


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-gguf")
    ap.add_argument("--up", default="blocks.3.hook_resid_post")
    ap.add_argument("--prompts", type=int, default=16)
    a = ap.parse_args()
    sm = load_model(a.model, device="cuda" if torch.cuda.is_available() else "cpu")
    hp = sm.hookpoint(a.up)
    basis = neuron_basis(hp.width, k=None)
    pr = prompts(ioi_pairs(sm.tokenizer, a.prompts, 0, sm.bos_token_id), sm.tokenizer.eos_token_id)
    c, e = encode_with_error(
        basis, hidden(sm, hp, sm.tokenizer(OTHER, return_tensors="pt").input_ids)
    )
    cbar, ebar = c[0, 1:].mean(0), e[0, 1:].mean(0)
    t = time.perf_counter()
    batched = ioi_edges(sm, hp, basis, pr, cbar, ebar, batch=len(pr))
    tb = time.perf_counter() - t
    t = time.perf_counter()
    single = ioi_edges(sm, hp, basis, pr, cbar, ebar, batch=1)
    ts = time.perf_counter() - t
    diff = float(np.abs(single.edges - batched.edges).max())
    n = basis.n_features
    print(f"model {sm.name}, {a.up} -> logit(IO) - logit(S), {len(pr)} prompts, {n} features")
    print(f"edges, one backward per batch : {tb:6.2f} s ({batched.backward_passes} backward)")
    print(f"edges, one backward per prompt: {ts:6.2f} s ({single.backward_passes} backward)")
    big = float(np.abs(batched.edges).max())
    print(f"max |batched - single| edge: {diff:.2e} (largest |edge| {big:.3g})")
    t = time.perf_counter()
    ioi_circuit(sm, hp, basis, pr, cbar, ebar, ks=[1, 4, 16, 64, basis.n_features],
                      n_linear=6, top_edges=5, batch=len(pr))  # fmt: skip
    tf = time.perf_counter() - t
    print(
        f"whole IOI circuit of the basis (edges, 5 kept sets, none, 6 single ablations): {tf:.2f} s"
    )


if __name__ == "__main__":
    from _out import recorded  # benchmarks/_out.py: the output, committed with host and date

    with recorded("bench_circuits_ioi"):
        main()

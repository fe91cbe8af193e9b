"""The gate's every-layer search against the old one-layer window, side by side in one process.

A random TopK SAE of the default suite's width (576 x 4608, k 32) on SmolLM2-135M at
blocks.6.hook_resid_post; the default reference batch (2048 tokens). Prints the seconds of:

* the forward pass: old (hooks on the 5 readings around the hookpoint, stopping after layer 7)
  vs new (hooks on all 33 candidates, through every layer; the layers above the hookpoint's
  run on the 256 search tokens);
* the reconstructions: old (5 readings on 2048 tokens) vs new (33 readings, the hookpoint on
  2048 tokens and the others on 256);
* ``check_basis`` end to end (new), model load and tokenising excluded.

Run: ``OMP_NUM_THREADS=2 python benchmarks/bench_gate_search.py`` (figures in the report).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from autointerp.bases.inspect import reference_tokens
from autointerp.bases.sae import sae_from_tensors
from autointerp.gate import N_SEARCH_TOKENS, N_TOKENS, capture, check_basis
from autointerp.gate.alternatives import _recon, _select_rows, candidate_hookpoints
from autointerp.model import load_model

HOOK = "blocks.6.hook_resid_post"
OLD = [HOOK, "blocks.5.hook_resid_post", "blocks.7.hook_resid_post", "blocks.6.hook_mlp_out",
       "blocks.6.hook_attn_out"]  # fmt: skip


def main() -> None:
    sm = load_model("smollm2-gguf", device="cpu")
    tokens, mask = reference_tokens(sm, N_TOKENS)
    n_rows = _select_rows(mask, N_TOKENS)
    ids = torch.from_numpy(tokens[:n_rows].astype(np.int64))
    ex = torch.from_numpy(mask[:n_rows])
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4608, 576, generator=g)
    w = w / w.norm(dim=1, keepdim=True)
    t = {
        "W_enc": w.T.contiguous(),
        "b_enc": torch.zeros(4608),
        "W_dec": w,
        "b_dec": torch.zeros(576),
    }
    cfg = {"architecture": "topk", "d_in": 576, "d_sae": 4608, "k": 32}
    sae = sae_from_tensors(t, cfg, name="bench")
    names = candidate_hookpoints(sm, HOOK, 576)
    n_search = _select_rows(mask[:n_rows], N_SEARCH_TOKENS)
    rows = []
    for label, hooks, keep in (("old", OLD, None), ("new", names, n_search)):
        s = time.perf_counter()
        acts = capture(sm, [sm.hookpoint(h) for h in hooks], ids,
                       rows={h: keep for h in hooks[1:]} if keep else None)  # fmt: skip
        fwd = time.perf_counter() - s
        s = time.perf_counter()
        for h in hooks:
            x = acts[h]
            _recon(x, ex[: len(x)], sae)
        rec = time.perf_counter() - s
        rows.append((label, len(hooks), fwd, rec))
    s = time.perf_counter()
    check_basis(sm, sae, tokens, mask, HOOK)
    total = time.perf_counter() - s
    print(f"{'search':<8}{'readings':>9}{'forward s':>11}{'recon s':>9}")
    for label, n, fwd, rec in rows:
        print(f"{label:<8}{n:>9}{fwd:>11.2f}{rec:>9.2f}")
    print(f"check_basis end to end (new): {total:.2f} s")


if __name__ == "__main__":
    main()

"""Is the random-directions null collapsed? Raw vs whitened random directions, per layer.

One forward pass of the bundled SmolLM2 over ``--rows`` rows of the default corpus (BOS + 64
tokens each) gives the residual stream after several layers. Per layer it prints

* what the first principal component is: its share of the variance, how much of its loading
  sits in the 3 largest dimensions ("massive activations"), the share of its variance that is
  between documents (rows) rather than within them, its correlation with the token position,
  and the tokens where its projection is most extreme;
* for 4,608 random directions drawn in raw activation space and 4,608 drawn in the whitened
  space (both density-matched to log-uniform targets in [1e-3, 1e-1], as the suite matches
  them to the bases), over a seeded sample of 64 of them: distinct features (groups of
  features whose activations correlate at r >= 0.5), mean |r|, and how many share the most
  common top token (mode of the max-activating token over each feature's 10 top windows).

No LLM is called; the PMI scores of the nulls come from suite runs (``--set
model.hookpoint=...``). Prints figures; asserts nothing.

    python benchmarks/bench_nulls.py [--layers 2 6 14 24] [--rows 400]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np
import torch

from autointerp.bases.linear import fit_random
from autointerp.config import CorpusConfig
from autointerp.corpus import tokenize_corpus
from autointerp.diagnostics import distinct_groups
from autointerp.model import load_model

WINDOW = 16


def residuals(sm, tokens: np.ndarray, layers: list[int]) -> dict[int, np.ndarray]:
    """Residual stream after each of ``layers`` (``hidden_states[L + 1]``), [rows, T, d]."""
    out: dict[int, list[np.ndarray]] = {L: [] for L in layers}
    with torch.no_grad():
        for s in range(0, len(tokens), 16):
            ids = torch.from_numpy(tokens[s : s + 16].astype(np.int64))
            hs = sm.model(input_ids=ids, output_hidden_states=True).hidden_states
            for L in layers:
                out[L].append(hs[L + 1].float().numpy())
    return {L: np.concatenate(v) for L, v in out.items()}


def pc1_report(x: np.ndarray, toks: list[list[str]]) -> None:
    """x: [rows, T, d] without BOS."""
    rows, T, d = x.shape
    flat = x.reshape(-1, d).astype(np.float64)
    mu = flat.mean(0)
    xc = flat - mu
    evals, evecs = np.linalg.eigh(xc.T @ xc / (len(flat) - 1))
    pc1, share = evecs[:, -1], evals[-1] / evals.sum()
    top3 = np.argsort(-np.abs(pc1))[:3]
    p = xc @ pc1
    pr = p.reshape(rows, T)
    between = pr.mean(1).var() / pr.var()
    pos_r = np.corrcoef(np.tile(np.arange(T), rows), p)[0, 1]
    big = np.argsort(-np.abs(mu))[:3]
    print(
        f"  PC1 {share:.1%} of variance; {np.sum(pc1[top3] ** 2):.1%} of its loading in dims "
        f"{top3.tolist()}; largest mean |x| dims {big.tolist()} ({np.abs(mu[big]).round(1)} "
        f"vs median {np.median(np.abs(mu)):.2f}); between-document share of its variance "
        f"{between:.1%}; r(position) {pos_r:+.2f}"
    )
    for sign, name in ((1, "high"), (-1, "low")):
        idx = np.argsort(-sign * p)[:12]
        shown = [repr(toks[i // T][i % T]) for i in idx]
        print(f"  PC1 {name} on: {' '.join(shown)}")


def null_report(x: np.ndarray, toks: list[list[str]], space: str, seed: int = 0) -> None:
    rows, T, d = x.shape
    flat = torch.from_numpy(x.reshape(-1, d))
    n_f = 4608
    rng = np.random.default_rng(seed)
    target = 10 ** rng.uniform(-3, -1, n_f)
    b = fit_random(flat, n_features=n_f, target_density=target, seed=seed, space=space)
    feats = torch.from_numpy(np.sort(rng.choice(n_f, 64, replace=False)))
    codes = b.encode_features(flat, feats).numpy()  # [N, 64]
    distinct, mean_r = distinct_groups(codes)
    n_win = T // WINDOW
    win = codes.reshape(rows, n_win, WINDOW, -1)
    wmax = win.max(2).reshape(rows * n_win, -1)
    modes = []
    for j in range(codes.shape[1]):
        top = np.argsort(-wmax[:, j])[:10]
        tk = []
        for w in top:
            r, c = divmod(int(w), n_win)
            a = win[r, c, :, j]
            if a.max() > 0:
                tk.append(toks[r][c * WINDOW + int(a.argmax())])
        if tk:
            modes.append(Counter(tk).most_common(1)[0][0])
    tok, cnt = Counter(modes).most_common(1)[0]
    print(
        f"  {space:>8} null: {distinct:>2} distinct of 64, mean |r| {mean_r:.2f}, "
        f"{cnt:>2} of 64 share the top token {tok!r}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, nargs="+", default=[2, 6, 14, 24])
    ap.add_argument("--rows", type=int, default=400)
    args = ap.parse_args()
    t0 = time.perf_counter()
    sm = load_model("smollm2-gguf", device="cpu")
    tokens = tokenize_corpus(CorpusConfig(n_tokens=args.rows * 64), sm.tokenizer)
    toks = [[sm.tokenizer.decode([int(i)]) for i in row[1:]] for row in tokens]
    acts = residuals(sm, tokens, sorted(args.layers))
    print(
        f"{len(tokens)} rows x 64 tokens, layers {args.layers} ({time.perf_counter() - t0:.0f} s)"
    )
    for L in sorted(args.layers):
        x = acts[L][:, 1:]  # BOS left out, as the suite does
        print(f"blocks.{L}.hook_resid_post")
        pc1_report(x, toks)
        for space in ("raw", "whitened"):
            null_report(x, toks, space)


if __name__ == "__main__":
    main()

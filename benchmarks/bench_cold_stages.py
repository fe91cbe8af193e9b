"""The cold default run's model-heavy hot functions, old path vs new path, side by side in one
process on the real SmolLM2 (reduced workloads; the full cold run is timed by the runner's
stage summary):

- ``ablation``: :func:`ablation_effects_many` with full passes (old) and with the ablated rows
  started at their first edited position on the original run's keys/values (new), on rows of
  real text and a top-k PCA basis at the suite's L0 (32) fitted on them;
- ``explain``: :func:`greedy_generate` of the compact explanation prompts built from the
  committed run's records, prefilling every prompt in full (old) and the batch's shared
  leading tokens once (new).

Times are CPU seconds of this process (``time.process_time``), not wall seconds: the machine
is shared, and CPU time is what a stage costs an idle host of the same kind. Also printed: the
largest difference between the two paths' numbers.

    python benchmarks/bench_cold_stages.py [--features 48] [--prompts 64] [--only ablation]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from autointerp.model import load_model, run_to_hookpoint  # noqa: E402
from autointerp.types import Example, FeatureRecord  # noqa: E402

RUN = REPO / "results" / "default" / "run-41a41fcd8cea"
BASES = ["sae-topk", "pca", "ica", "neurons", "random"]


def _records(basis: str) -> list[dict]:
    return [json.loads(line) for line in (RUN / "records" / f"{basis}.jsonl").open()]


def cpu(fn, *a, **kw):
    t = time.process_time()
    out = fn(*a, **kw)
    return out, time.process_time() - t


def bench_ablation(sm, n_features: int, n_rows: int = 64, T: int = 64) -> list[str]:
    from autointerp.bases.linear import fit_pca
    from autointerp.causal.ablation import ablation_effects_many
    from autointerp.causal.hook_forward import HookForward

    hp = sm.hookpoint("blocks.6.hook_resid_post")
    windows = [w["token_ids"] for r in _records("sae-topk") for w in r["explain"]]
    per = -(-(T - 1) // 16)  # windows per row (16 tokens each)
    rows = [
        [sm.bos_token_id] + sum(windows[i * per : (i + 1) * per], [])[: T - 1]
        for i in range(n_rows)
    ]
    ids = torch.tensor(rows)
    exclude = torch.zeros_like(ids, dtype=torch.bool)
    exclude[:, 0] = True
    acts = run_to_hookpoint(sm, hp, ids)
    basis = fit_pca(acts[~exclude], k=32)
    codes = basis.encode(acts.reshape(-1, hp.width)).reshape(n_rows, T, -1)
    codes[exclude] = 0
    alive = torch.nonzero(codes.amax((0, 1)) > 0)[:, 0]
    g = torch.Generator().manual_seed(0)
    feats = alive[torch.randperm(len(alive), generator=g)[:n_features]].tolist()
    recs = []
    for f in feats:
        tops = []
        for q in range(n_rows):
            t = int(codes[q, :, f].argmax())
            if codes[q, t, f] > 0:
                tops.append(Example(["t"], [0], [float(codes[q, t, f])], "top", seq=q, start=t))
        recs.append(FeatureRecord(basis.name, f, 0.1, 1.0, test_top=tops))
    fwd = HookForward(sm, hp)
    args = (fwd, {basis.name: (basis, recs)}, ids.numpy(), acts.numpy(), exclude.numpy())
    kw = dict(n_contexts=4, n_positions=4, n_logit_tokens=5, batch_size=32)
    old, t_old = cpu(ablation_effects_many, *args, reuse_prefix=False, **kw)
    new, t_new = cpu(ablation_effects_many, *args, reuse_prefix=True, **kw)
    dk = max(abs(a.kl - b.kl) for a, b in zip(new[basis.name], old[basis.name]) if b.kl)
    dc = max(abs(a.ce_delta - b.ce_delta) for a, b in zip(new[basis.name], old[basis.name]) if b.kl)
    n_ctx = sum(e.n_contexts for e in old[basis.name])
    return [
        f"ablation ({len(feats)} features, {n_ctx} contexts, PCA top-32 on {n_rows} rows of "
        f"{T} tokens)",
        f"  old: full passes            {t_old:7.1f} CPU s",
        f"  new: prefix keys/values     {t_new:7.1f} CPU s   x{t_old / t_new:.2f}",
        f"  max |diff|: kl {dk:.1e}, ce_delta {dc:.1e} nats",
    ]


def bench_explain(n_prompts: int) -> list[str]:
    from autointerp.explain import build_messages
    from autointerp.llm.config import LLMConfig
    from autointerp.llm.greedy import greedy_generate
    from autointerp.llm.transformers_backend import TransformersClient

    def rec(d: dict) -> FeatureRecord:
        ex = [Example(**e) for e in d["explain"]]
        return FeatureRecord(d["basis"], d["feature"], d["density"], d["max_act"], explain=ex)

    recs = [rec(d) for b in BASES for d in _records(b)[: max(1, n_prompts // len(BASES))]]
    c = TransformersClient(LLMConfig(backend="transformers", model="smollm2-gguf", dtype="auto"))
    seqs = [c._chat_ids(build_messages(r, "compact", 10), 48) for r in recs]
    kw = dict(max_new_tokens=48, ends=c._ends, pad_id=c._pad)
    old, t_old = cpu(greedy_generate, c.sm.model, seqs, share_prefix=False, **kw)
    new, t_new = cpu(greedy_generate, c.sm.model, seqs, share_prefix=True, **kw)
    same = sum(a == b for a, b in zip(old, new))
    lens = [len(s) for s in seqs]
    return [
        f"explain ({len(seqs)} compact prompts, {np.mean(lens):.0f} tokens on average, "
        f"dtype {c.dtype}, 48 new tokens at most)",
        f"  old: full prefill           {t_old:7.1f} CPU s",
        f"  new: shared prefix once     {t_new:7.1f} CPU s   x{t_old / t_new:.2f}",
        f"  identical answers: {same} of {len(seqs)}",
    ]


def bench_kv_memory() -> list[str]:
    """The explainer's key/value cache for the default suite's 320 compact prompts (all five
    bases' 64 scored features), one batch vs the groups ``KV_BYTES`` allows: arithmetic on
    the real prompt lengths, no forward pass."""
    from autointerp.explain import build_messages
    from autointerp.llm.greedy import KV_BYTES, _kv_groups
    from autointerp.model import load_tokenizer

    tok = load_tokenizer("smollm2-gguf")

    def rec(d: dict) -> FeatureRecord:
        ex = [Example(**e) for e in d["explain"]]
        return FeatureRecord(d["basis"], d["feature"], d["density"], d["max_act"], explain=ex)

    seqs = []
    for b in BASES:
        for d in _records(b):
            ids = tok.apply_chat_template(
                build_messages(rec(d), "compact", 10), add_generation_prompt=True, tokenize=True
            )
            seqs.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
    cfg = type("C", (), dict(num_attention_heads=9, num_key_value_heads=3, head_dim=64,
                             hidden_size=576, num_hidden_layers=30))()  # fmt: skip
    model = type("M", (), dict(config=cfg, dtype=torch.float32))()  # SmolLM2-135M's shapes
    per = 2 * 30 * 3 * 64 * 4

    def gib(group: list[int]) -> float:
        return len(group) * (max(len(seqs[i]) for i in group) + 48) * per / 2**30

    groups = _kv_groups(model, seqs, 48, KV_BYTES)
    return [
        f"explain key/value cache ({len(seqs)} prompts, {min(map(len, seqs))}-"
        f"{max(map(len, seqs))} tokens, float32)",
        f"  old: one batch              {gib(list(range(len(seqs)))):7.2f} GiB",
        f"  new: {len(groups)} groups of "
        + "/".join(str(len(g)) for g in groups)
        + f" rows  {max(gib(g) for g in groups):5.2f} GiB at most",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", type=int, default=48)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--only", choices=["ablation", "explain", "memory"], default=None)
    args = ap.parse_args()
    print(f"torch threads {torch.get_num_threads()}, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}")  # fmt: skip
    lines: list[str] = []
    if args.only in (None, "memory"):
        lines += bench_kv_memory()
    if args.only in (None, "ablation"):
        sm = load_model("smollm2-gguf", device="cpu")
        with torch.inference_mode():
            lines += bench_ablation(sm, args.features)
    if args.only in (None, "explain"):
        lines += bench_explain(args.prompts)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Cost of the steering stage on the real SmolLM2-135M-Instruct (blocks.6 residual), measured on a
reduced set of targets and extrapolated to the default suite's knobs; side by side in one
process: the same steering rows generated with the KV-cached batched generator vs a cache-free
baseline (the whole sequence re-run each step), on a few rows.

Targets are random directions (the cost does not depend on the basis: one encode per
continuation). The default suite has 5 bases x ``n_features`` targets.

    python benchmarks/bench_steering.py [--targets 4] [--bases 5] [--features 16] [--pmi]
        [--prompting-cost] [--suite evals/steering.toml]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import torch

from autointerp.bases.linear import neuron_basis
from autointerp.config import load_suite
from autointerp.model import load_model, splice
from autointerp.steering.experiment import ARMS, Settings, Target, run_experiment
from autointerp.steering.generate import prompt_ids, steered_generate
from autointerp.steering.interventions import Steer, unit_scale
from autointerp.steering.prompts import instructions, split_prompts


def _no_cache(sm, hp, ids, vec, n):
    seq = list(ids)
    for _ in range(n):
        with splice(hp, lambda a: a + vec.to(a.dtype)):
            logits = sm.model(input_ids=torch.tensor([seq]), use_cache=False).logits
        seq.append(int(logits[0, -1].argmax()))
    return seq[len(ids) :]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", type=int, default=4)
    ap.add_argument("--bases", type=int, default=5)
    ap.add_argument("--features", type=int, default=None, help="default: the suite's")
    ap.add_argument("--pmi", action="store_true", help="also the explanation-PMI passes")
    ap.add_argument("--suite", default="evals/default.toml", help="whose steering knobs")
    ap.add_argument("--prompting-cost", action="store_true",
                    help="the stage without and with the prompting arm, then stop")  # fmt: skip
    a = ap.parse_args()
    cfg = load_suite(a.suite).causal.steering
    n_feat = a.features or cfg.n_features
    sm = load_model("smollm2-gguf", device="cpu")
    hp = sm.hookpoint("blocks.6.hook_resid_post")
    d = sm.d_model
    basis = neuron_basis(d, k=None)
    g = torch.Generator().manual_seed(0)
    dirs = [torch.randn(d, generator=g) for _ in range(a.targets)]
    m = 50.0
    tg = [Target(basis, i, v, float(unit_scale(v[None], m)[0]), 1.0, "the weather",
                 (m / v.norm()) * v) for i, v in enumerate(dirs)]  # fmt: skip
    sel, rep = split_prompts(cfg.n_prompts, 0)
    client = None
    if a.pmi:
        from autointerp.llm import LLMConfig, make_client

        client = make_client(LLMConfig(backend="transformers", model="smollm2-gguf"))
    runs = [cfg.prompting] if not a.prompting_cost else [False, True]
    for prompting in runs:  # --prompting-cost: without and with the prompting arm, side by side
        s = Settings(
            cfg.factors, cfg.max_new_tokens, cfg.nll_budget, cfg.repeat_budget,
            batch_size=cfg.batch_size, prompting=prompting, pmi=a.pmi and cfg.pmi,
        )  # fmt: skip
        t, c = time.perf_counter(), time.process_time()
        res = asyncio.run(run_experiment(sm, hp, tg, sel, rep, s, client))
        dt, cpu = time.perf_counter() - t, time.process_time() - c
        per, per_cpu = dt / a.targets, cpu / a.targets
        n_nonzero = sum(f > 0 for f in cfg.factors)
        n_report = cfg.n_prompts - cfg.n_prompts // 2  # the prompting arm answers these only
        rows = cfg.n_prompts * len(ARMS) * n_nonzero + n_report * prompting
        print(
            f"{a.targets} targets, {res['n_generated']} rows ({rows} per target), "
            f"{cfg.max_new_tokens} new tokens, pmi={s.pmi}, prompting={prompting}: "
            f"{dt:.1f} s wall, {cpu:.1f} s CPU ({per:.2f} s wall, {per_cpu:.2f} s CPU / target; "
            f"torch threads {torch.get_num_threads()})"
        )
        total = a.bases * n_feat
        print(
            f"extrapolated to {a.bases} bases x {n_feat} features = {total} targets: "
            f"{per * total:.0f} s wall, {per_cpu * total:.0f} s CPU"
        )
    if a.prompting_cost:
        return
    # KV cache vs cache-free, same rows (4 of them)
    ps = [prompt_ids(sm, q) for q in instructions()[:4]]
    vs = [2 * m / v.norm() * v for v in dirs[:1]] * 4
    t = time.perf_counter()
    steered_generate(sm, hp, ps, [Steer(v) for v in vs], max_new_tokens=cfg.max_new_tokens)
    t_kv = time.perf_counter() - t
    t = time.perf_counter()
    for p, v in zip(ps, vs, strict=True):
        _no_cache(sm, hp, p, v, cfg.max_new_tokens)
    t_nc = time.perf_counter() - t
    print(
        f"4 rows x {cfg.max_new_tokens} tokens: kv-cached batched {t_kv:.2f} s, "
        f"cache-free one by one {t_nc:.2f} s"
    )


if __name__ == "__main__":
    from _out import recorded  # benchmarks/_out.py: the output, committed with host and date

    with recorded("bench_steering"):
        main()

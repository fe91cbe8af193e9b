"""Stages ``ablation`` and ``output`` on the default suite (bundled SmolLM2, 5 bases x 64
features): their own time, next to a naive baseline measured in the same run (one full forward
per (feature, context), spliced, with full-vocabulary logits at every position), extrapolated
from a sample to all the ablation's contexts. Also prints the leaderboard cells.

Reuses the committed run's upstream stages (records) and the work dir's activations and bases
(fitted once when missing), so only the two stages are computed:

    python benchmarks/bench_output_side.py [--suite evals/default.toml] [--baseline-n 16]

``--null-check N`` instead measures, on the real SmolLM2 (blocks.6.hook_resid_post) with N
features per basis and the repository's own prose as neutral text, the logit-lens output score
and the held-out TokenChange score side by side for random directions, PCA and the neurons
(no committed run or cached bases needed; a few CPU minutes):

    python benchmarks/bench_output_side.py --null-check 12
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from autointerp.config import load_suite  # noqa: E402
from autointerp.model import cache_dir, splice  # noqa: E402
from autointerp.run.runner import Runner  # noqa: E402
from autointerp.run.store import RunStore  # noqa: E402
from autointerp.stages import suite_stages  # noqa: E402
from autointerp.stages.env import SuiteEnv  # noqa: E402

UPSTREAM = {"tokens", "split", "gate", "activations", "bases", "density", "records"}


def naive_seconds(env, runner, n: int) -> tuple[float, int]:
    """Seconds per (feature, context) of the naive way, and the number of contexts."""
    from autointerp.causal.ablation import ablated, top_contexts

    v = runner.values
    ids, acts, mask = v["tokens"].ids, v["activations"].acts, v["split"].mask
    cfg = env.suite.causal.ablation
    hp = env.sm.hookpoint(env.suite.model.hookpoint)
    jobs = []
    for b in v["bases"]:
        for r in v["records"].records[b.name]:
            for c in top_contexts(r, cfg.n_contexts, cfg.n_positions, mask):
                jobs.append((b, c))
    t = time.perf_counter()
    for b, c in jobs[:n]:
        row = torch.from_numpy(ids[c.seq : c.seq + 1].astype(np.int64))
        x = torch.from_numpy(np.array(acts[c.seq : c.seq + 1], dtype=np.float32))
        keep = torch.from_numpy(np.asarray(mask[c.seq : c.seq + 1]))
        with torch.no_grad():
            lp0 = F.log_softmax(env.sm.model(input_ids=row).logits.float(), -1)
            xa = ablated(b, x, torch.tensor([c.feature]), keep)
            with splice(hp, lambda a, xa=xa: xa.to(a.dtype)):
                lp1 = F.log_softmax(env.sm.model(input_ids=row).logits.float(), -1)
        (lp0.exp() * (lp0 - lp1)).sum(-1)
    return (time.perf_counter() - t) / max(1, min(n, len(jobs))), len(jobs)


def _prose_rows(tok, n_rows: int, T: int) -> np.ndarray:
    """Rows of ``T`` tokens (BOS first) of the repository's docs/*.md prose."""
    import re

    text = " ".join(
        re.sub(r"[`|#*_]+", " ", p.read_text()) for p in sorted((REPO / "docs").glob("*.md"))
    )
    ids = tok.encode(" ".join(text.split()), add_special_tokens=False)
    rows = [[tok.bos_token_id, *ids[i : i + T - 1]] for i in range(0, len(ids) - T, T - 1)]
    return np.asarray(rows[:n_rows], dtype=np.int64)


def _ci(v) -> str:
    from autointerp.stats import bootstrap_mean_ci

    c = bootstrap_mean_ci(list(v), seed=0)
    return f"{c.mean:7.3f} [{c.low:6.3f}, {c.high:6.3f}]"


def null_check(n_feat: int) -> None:
    """Logit-lens vs TokenChange output scores of random directions, PCA and neurons."""
    from autointerp.bases.linear import fit_pca, fit_random, neuron_basis
    from autointerp.causal.hook_forward import HookForward
    from autointerp.causal.logit_lens import feature_directions, logit_lens
    from autointerp.causal.output_score import amplification_gains, derangement
    from autointerp.causal.token_change import (
        Prompts,
        arad_scores,
        calibrate_strength,
        set_gains,
        token_change,
        unit_shifts,
    )
    from autointerp.model import load_model, run_to_hookpoint

    t0 = time.perf_counter()
    sm = load_model("smollm2-gguf")
    hp = sm.hookpoint("blocks.6.hook_resid_post")
    ids = _prose_rows(sm.tokenizer, 160, 32)
    acts = torch.cat([run_to_hookpoint(sm, hp, torch.from_numpy(ids[s : s + 16])).float()
                      for s in range(0, len(ids), 16)])  # fmt: skip
    mask = np.zeros(ids.shape, dtype=bool)
    mask[:, 0] = True
    fit = acts[16:][:, 1:].reshape(-1, acts.shape[-1])  # rows 16..: fit; rows 0..15: prompts
    bases = {
        "random": fit_random(fit, n_features=4608, seed=0, space="whitened"),
        "pca": fit_pca(fit, k=None),
        "neurons": neuron_basis(acts.shape[-1], k=None),
    }
    fwd = HookForward(sm, hp)
    rng = np.random.default_rng(0)
    x, idn = acts.numpy(), ids
    pa = Prompts(fwd, idn[0:16:2], x[0:16:2], mask[0:16:2], 16)  # explain prompts
    pb = Prompts(fwd, idn[1:16:2], x[1:16:2], mask[1:16:2], 16)  # held-out score prompts
    print(f"SmolLM2 blocks.6 resid_post; {len(fit)} fit tokens of docs/ prose; {n_feat} features "
          f"per basis; 8 explain + 8 held-out prompts of 16 tokens; setup "
          f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
    print(
        "basis     | logit-lens score   | logit-lens lift    | TokenChange held-out score | "
        "TokenChange lift   | strength (KL) | Arad score | Arad lift"
    )
    for name, b in bases.items():
        t = time.perf_counter()
        feats = sorted(rng.choice(b.n_features // (2 if name == "pca" else 1), n_feat, False))
        lens = logit_lens(sm, hp, b, feats, 10)
        own = [ln.top_ids for ln in lens]
        perm = derangement(n_feat, 0)
        g, _ = amplification_gains(fwd, b, feats, [own, [own[j] for j in perm]], idn, x, mask,
                                   np.arange(1, 16, 2), prompt_len=16, strength=1.0)  # fmt: skip
        dirs = feature_directions(b, feats).cpu()
        ua, ub = unit_shifts(dirs, pa.m), unit_shifts(dirs, pb.m)
        s, kl = calibrate_strength(pa, ua[: min(8, n_feat)], 1.0, 64)
        toks = token_change(pa, s * ua, 10, 64)
        tg = set_gains(pb, 0.5 * s * ub, [toks, toks[perm]], 64)
        with torch.no_grad():
            mx = b.encode(fit)[:, torch.as_tensor(feats)].amax(0).clamp(min=0)[:, None]
        own_a = [np.asarray(o) for o in own]
        ar = arad_scores(pb, 10.0 * mx * dirs, [own_a, [own_a[j] for j in perm]], 64)
        print(
            f"{name:9s} | {_ci(g[0])} | {_ci(g[0] - g[1])} | {_ci(tg[0])}         | "
            f"{_ci(tg[0] - tg[1])} | {s:.3f} ({kl:.2f}) | {_ci(ar[0])} | {_ci(ar[0] - ar[1])}"
            f"  [{time.perf_counter() - t:.0f} s]"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default=str(REPO / "evals" / "default.toml"))
    ap.add_argument("--run", default=None, help="committed run dir to start from")
    ap.add_argument("--baseline-n", type=int, default=16)
    ap.add_argument(
        "--null-check",
        type=int,
        default=0,
        metavar="N",
        help="only the output scores' null check on SmolLM2, N features per basis",
    )
    a = ap.parse_args()
    if a.null_check:
        null_check(a.null_check)
        return
    suite = load_suite(a.suite)
    src = Path(a.run) if a.run else next((REPO / "results" / suite.name).glob("run-*"))
    tmp = Path(tempfile.mkdtemp())
    run_dir = tmp / suite.name / src.name
    shutil.copytree(src, run_dir)
    store = RunStore(run_dir, cache_dir() / "work")
    env = SuiteEnv(suite, store, progress=False, llm_cache=tmp / "llm.sqlite")
    stages = [s for s in suite_stages() if s.name in UPSTREAM | {"ablation", "output"}]
    runner = Runner(stages, store, env, progress=False)
    t = time.perf_counter()
    runner.run()
    wall = time.perf_counter() - t
    rows = {r["stage"]: r for r in runner.summary()}
    print(f"torch threads {torch.get_num_threads()}, wall {wall:.1f} s (incl. upstream)")
    for name in ("bases", "records", "ablation", "output"):
        r = rows[name]
        print(f"  {name:9s} {r['seconds']:8.1f} s  {r['status']}")
    per, n_jobs = naive_seconds(env, runner, a.baseline_n)
    abl = runner.values["ablation"]
    print(
        f"ablation: {n_jobs} (feature, context) pairs in {rows['ablation']['seconds']:.1f} s "
        f"(batched, from the hookpoint) vs naive {per:.2f} s each -> ~{per * n_jobs:.0f} s"
    )
    for stage in ("ablation", "output"):
        cols = runner.values[stage]
        print(f"{stage} (per-basis seconds {cols.extra.get('seconds')})")
        for basis, cells in cols.rows.items():
            txt = ", ".join(
                f"{c} {v.value:.4f} [{v.ci_low:.4f}, {v.ci_high:.4f}] n={v.n}"
                if v.value is not None
                else f"{c} undefined ({v.reason})"
                for c, v in cells.items()
            )
            print(f"  {basis:10s} {txt}")
    del abl
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    from _out import recorded  # benchmarks/_out.py: the output, committed with host and date

    with recorded("bench_output_side"):
        main()

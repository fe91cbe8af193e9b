"""Where the absorption stage's time goes, and the forward-pass saving, side by side.

    python benchmarks/bench_absorption_cost.py [--suite evals/absorption.toml] [--words 400]
                                               [--forward 128]

Loads the suite's subject model and its bases (the default run's, from the work cache: the
tokens / activations / bases stages are reused, not recomputed), takes a seeded ``--words``
sample of the all-alphabetic vocabulary, and times each step of the eval on it: building and
tokenizing the prompts, the forward passes, the ground-truth probe, and per basis the codes,
the L1 probe, the k-sparse fits and the per-word absorption. The forward pass is timed three
ways on the same ``--forward`` prompts: the whole model on whole prompts, stopped at the
hookpoint, and stopped at the hookpoint with each prompt cut after the word (what the stage
runs); the activations read must agree (max |diff| printed). CPU seconds of this process
(``time.process_time``) and wall seconds; the machine is shared, so compare the ratios.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _out import recorded  # noqa: E402


class Timer:
    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float]] = []

    def __call__(self, name: str, fn, *a, **kw):
        c, w = time.process_time(), time.perf_counter()
        out = fn(*a, **kw)
        self.rows.append((name, time.process_time() - c, time.perf_counter() - w))
        print(f"  {name}: {self.rows[-1][1]:.2f} s CPU, {self.rows[-1][2]:.2f} s wall", flush=True)
        return out


def load_bases(suite, results: Path):
    """The suite's bases, through the runner (cached stages reused from the work dir)."""
    from autointerp.pipeline import SuiteRun
    from autointerp.run.runner import Runner
    from autointerp.stages.env import SuiteEnv

    run = SuiteRun(suite, results_root=results, progress=False)
    keep = {"tokens", "split", "activations", "bases"}
    stages = [s for s in run.stages if s.name in keep]
    env = SuiteEnv(suite, run.store, progress=False, llm_cache=run.llm_cache)
    r = Runner(stages, run.store, env, progress=False)
    r.run()
    return env, r.values["bases"]


@torch.no_grad()
def whole_model(sm, hp, ids, pos, batch_size: int) -> np.ndarray:
    """Baseline: every layer of the model runs; the hookpoint's output is read by a hook."""
    from autointerp.model import splice

    got: list[torch.Tensor] = []

    def grab(x: torch.Tensor) -> torch.Tensor:
        got.append(x.detach())
        return x

    out = np.zeros((len(ids), hp.width), dtype=np.float32)
    pad = sm.tokenizer.pad_token_id or 0
    order = np.argsort([len(t) for t in ids], kind="stable")
    for s in range(0, len(ids), batch_size):
        rows = order[s : s + batch_size]
        width = max(len(ids[r]) for r in rows)
        x = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, r in enumerate(rows):
            x[j, : len(ids[r])] = torch.as_tensor(ids[r])
            mask[j, : len(ids[r])] = 1
        got.clear()
        with splice(hp, grab):
            sm.model(input_ids=x.to(sm.device), attention_mask=mask.to(sm.device), use_cache=False)
        a = got[0]
        at = torch.as_tensor(pos[rows], device=a.device)
        out[rows] = a[torch.arange(len(rows), device=a.device), at].float().cpu().numpy()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", default="evals/absorption.toml")
    ap.add_argument("--words", type=int, default=400)
    ap.add_argument("--forward", type=int, default=128)
    args = ap.parse_args()

    from autointerp.absorption.acts import word_activations
    from autointerp.absorption.evaluate import decoder_directions, encode_all, evaluate_basis
    from autointerp.absorption.groundtruth import build_ground_truth
    from autointerp.absorption.sparse import k_sparse_probing, l1_probe
    from autointerp.absorption.vocab import alpha_words, icl_prompt, word_positions
    from autointerp.config import load_suite

    suite = load_suite(args.suite)
    cfg = suite.absorption.model_copy(update={"max_words": args.words})
    print(f"torch threads: {torch.get_num_threads()}; {args.words} words; suite {args.suite}")
    t = Timer()
    with tempfile.TemporaryDirectory() as tmp:
        env, bases = t("load model + bases (cached)", load_bases, suite, Path(tmp))
    sm = env.sm
    hp = sm.hookpoint(suite.model.hookpoint)
    bos = sm.bos_token_id if suite.corpus.prepend_bos else None

    # the forward pass three ways, on the same prompts
    rng = random.Random(0)
    vocab = t("vocabulary", alpha_words, sm.tokenizer)
    words = rng.sample(vocab, args.forward)
    prompts = [icl_prompt(w, vocab, cfg.prompt_template, cfg.max_icl_examples, rng) for w in words]
    ids, pos = t("tokenize prompts (forward sample)", word_positions, sm.tokenizer, prompts, bos)
    n_tok = sum(len(x) for x in ids)
    n_cut = sum(int(p) + 1 for p in pos)
    print(f"  {len(ids)} prompts, {n_tok / len(ids):.1f} tokens each, {n_cut / len(ids):.1f} up "
          "to the word")  # fmt: skip
    bs = cfg.batch_size
    a0 = t("forward: whole model, whole prompts", whole_model, sm, hp, ids, pos, bs)
    a1 = t("forward: to the hookpoint, whole prompts", word_activations, sm, hp, ids, pos, bs,
           truncate=False)  # fmt: skip
    a2 = t("forward: to the hookpoint, cut after the word", word_activations, sm, hp, ids, pos, bs)
    scale = float(np.abs(a0).max())
    print(f"  max |diff| vs whole model: stopped {np.abs(a1 - a0).max():.2e}, "
          f"cut {np.abs(a2 - a0).max():.2e} (activations up to {scale:.1f})")  # fmt: skip
    f = {name: c for name, c, _ in t.rows}
    base = f["forward: whole model, whole prompts"]
    for k in ("forward: to the hookpoint, whole prompts",
              "forward: to the hookpoint, cut after the word"):  # fmt: skip
        print(f"  {k}: {base / f[k]:.2f}x faster than the whole model (CPU), "
              f"{f[k] / len(ids) * 1e3:.1f} ms CPU per prompt")  # fmt: skip

    # the whole ground truth on the sample, then each basis
    gt = t(f"ground truth ({args.words} words: prompts, forward, probe)", build_ground_truth,
           sm, hp, cfg, suite.seed, bos)  # fmt: skip
    n_prompts = len(gt.train_words) + len(gt.test_words) + len(gt.abs_idx)
    print(f"  {n_prompts} prompts; {len(gt.kept_letters(cfg.min_probe_f1))} letters kept")
    dev = sm.device
    from autointerp.absorption.probe import one_hot, train_probe

    kw = dict(epochs=cfg.probe_epochs, lr=cfg.probe_lr, end_lr=cfg.probe_end_lr,
              weight_decay=cfg.probe_weight_decay, batch_size=cfg.probe_batch_size)  # fmt: skip
    x, y = torch.from_numpy(gt.train_acts).to(dev), one_hot(gt.train_labels, 26).to(dev)
    t("  of which the ground-truth probe alone", train_probe, x, y, seed=suite.seed, **kw)
    low = cfg.model_copy(update={"min_letters": 1})  # the per-basis steps, whatever is kept
    for b in bases:
        print(f"basis {b.name} ({b.n_features} latents)")
        tr = t("  codes", encode_all, b, gt.train_acts)
        t("  decoder directions", decoder_directions, b)
        t("  L1 probe", l1_probe, tr.to(b.device), gt.train_labels, low, suite.seed)
        te = encode_all(b, gt.test_acts).numpy()
        t("  k-sparse probing (L1 probe + fits)", k_sparse_probing, tr.to(b.device),
          gt.train_labels, te, gt.test_labels, list(range(26)), low, suite.seed)  # fmt: skip
        t("  evaluate_basis (all of it)", evaluate_basis, b, gt, low, suite.seed)
    print("| step | CPU s | wall s |\n|---|---|---|")
    for name, c, w in t.rows:
        print(f"| {name.strip()} | {c:.2f} | {w:.2f} |")


if __name__ == "__main__":
    with recorded("bench_absorption_cost"):
        main()

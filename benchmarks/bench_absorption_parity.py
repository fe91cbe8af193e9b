"""Parity of the absorption eval (autointerp/absorption/) with SAEBench 0.6.0's own functions.

Both sides get the same inputs — the prompts' activations and labels, the basis's codes of
every activation and its decoder directions, the seed — and each trains its own probes and
computes everything from there:

* SAEBench: ``probing.train_multi_probe`` (ground-truth probe, as ``train_linear_probe_for_task``
  calls it), ``k_sparse_probing.train_k_sparse_probes`` / ``eval_probe_and_sae_k_sparse_raw_scores``
  / ``sae_k_sparse_metadata`` / ``build_metrics_df`` / ``add_feature_splits_to_metrics_df``,
  ``feature_absorption.get_stats_and_likely_false_negative_tokens`` /
  ``calculate_projection_and_cos_sims`` with its ``FeatureAbsorptionCalculator``, and
  ``main._aggregate_results_df`` (read from SAEBench's file: ``main.py`` imports SAELens);
* autointerp: :func:`autointerp.absorption.evaluate.evaluate_basis` after the same probe.

Cases: the planted-absorption synthetic world (absorption fractions 1 and 0.5 planted) and,
with ``--real``, SmolLM2-135M at blocks.6.hook_resid_post with a PCA and a random-directions
basis fitted on the prompts' activations.

SAEBench runs in a side environment: this interpreter if it imports ``sae_bench``, else
``$SAEBENCH_PYTHON``; without either the script says so and exits 0. The side environment
needs torch, numpy, pandas, scikit-learn, pyarrow, tqdm and ``pip install --no-deps
sae-bench==0.6.0``; SAELens, TransformerLens and transformers, which the absorption modules
import for type hints only, are replaced by empty stand-ins when absent (the model is never
run by SAEBench here: its ``run_with_cache`` is a stand-in returning the given activations).

    python benchmarks/bench_absorption_parity.py [--real] [--words N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SEED = 0

# --------------------------------------------------------------------------- SAEBench side

_STUBS = {
    "sae_lens/__init__.py": "class SAE:\n    pass\n",
    "transformer_lens/__init__.py": "class HookedTransformer:\n    pass\n",
    "transformers/__init__.py": "class PreTrainedTokenizerFast:\n    pass\n",
    "transformers/tokenization_utils_fast.py": "from transformers import PreTrainedTokenizerFast\n",
}


def _stub_missing(tmp: Path) -> list[str]:
    import importlib.util

    stubbed = []
    for rel, text in _STUBS.items():
        pkg = rel.split("/")[0]
        if importlib.util.find_spec(pkg) is None or pkg in stubbed:
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
            if pkg not in stubbed:
                stubbed.append(pkg)
    sys.path.insert(0, str(tmp))
    return stubbed


def saebench_side(inp: Path, out: Path) -> None:
    """Run SAEBench's functions on the inputs in ``inp`` (npz); write their outputs."""
    import ast
    import random

    import pandas as pd
    import torch

    stubbed = _stub_missing(Path(tempfile.mkdtemp()))
    from sae_bench.evals.absorption import feature_absorption as fa
    from sae_bench.evals.absorption import k_sparse_probing as ksp
    from sae_bench.evals.absorption.feature_absorption_calculator import (
        FeatureAbsorptionCalculator,
    )
    from sae_bench.evals.absorption.probing import train_multi_probe
    from sae_bench.evals.absorption.prompting import first_letter_formatter

    d = np.load(inp, allow_pickle=False)
    x_tr, x_te, x_ab = (torch.from_numpy(d[k]) for k in ("train_acts", "test_acts", "abs_acts"))
    y_tr, y_te = d["train_labels"].tolist(), d["test_labels"].tolist()
    w_tr, w_te, w_ab = (d[k].tolist() for k in ("train_words", "test_words", "abs_words"))
    rows = np.concatenate([d["train_acts"], d["test_acts"], d["abs_acts"]])
    codes = np.concatenate([d["train_codes"], d["test_codes"], d["abs_codes"]])
    lookup = {r.tobytes(): c for r, c in zip(rows, codes)}

    class Cfg:
        d_sae = codes.shape[1]

    class SAE:  # the basis: the given codes for the given activations, its decoder rows
        device, dtype, cfg = torch.device("cpu"), torch.float32, Cfg()
        W_dec = torch.from_numpy(d["directions"])
        W_enc = W_dec.T.contiguous()  # only SAEBench's metadata (cos with the encoder) reads it

        def encode(self, x):
            return torch.from_numpy(np.stack([lookup[r.tobytes()] for r in x.numpy()]))

    sae = SAE()
    # ground-truth probe (train_linear_probe_for_task's call, after the common seed)
    torch.manual_seed(SEED)
    y1h = torch.nn.functional.one_hot(torch.tensor(y_tr), num_classes=26)
    probe = train_multi_probe(
        x_train=x_tr.clone(), y_train=y1h, num_probes=26, batch_size=int(d["probe_batch"]),
        num_epochs=int(d["epochs"]), lr=1e-2, weight_decay=float(d["probe_wd"]),
        show_progress=False, device=torch.device("cpu"),
    )  # fmt: skip
    torch.manual_seed(SEED)
    kprobes = ksp.train_k_sparse_probes(
        sae, list(zip(w_tr, y_tr)), x_tr, ks=list(range(1, int(d["max_k"]) + 1)),
        num_epochs=int(d["epochs"]),
    )  # fmt: skip
    raw = ksp.eval_probe_and_sae_k_sparse_raw_scores(sae, probe, kprobes, list(zip(w_te, y_te)),
                                                     x_te)  # fmt: skip
    meta = ksp.sae_k_sparse_metadata(sae, probe, kprobes, sae_name="basis", layer=6)
    metrics = ksp.build_metrics_df(raw, meta, max_k_value=int(d["max_k"]))
    ksp.add_feature_splits_to_metrics_df(metrics, max_k_value=int(d["max_k"]))
    tmp = Path(tempfile.mkdtemp())
    raw.to_parquet(tmp / ksp.get_sparse_probing_raw_results_filename("basis", 6), index=False)
    likely = fa.get_stats_and_likely_false_negative_tokens(metrics, "basis", 6, tmp)

    acts_of = dict(zip(w_ab, x_ab))

    class Model:  # run_with_cache -> the given activation of each prompt's word at -6
        tokenizer = "stand-in"  # only checked for None

        def to_tokens(self, s):
            return torch.zeros(1, 6, dtype=torch.long)

        def run_with_cache(self, prompts, names_filter):
            tpl = str(d["template"]).split("{word}")[1]
            x = torch.stack([acts_of[p.split("\n")[-1][: -len(tpl)]] for p in prompts])
            out = torch.zeros(len(prompts), 6, x.shape[1])
            out[:, -6] = x
            return None, {names_filter[0]: out}

    random.seed(SEED)
    calc = FeatureAbsorptionCalculator(
        model=Model(), icl_word_list=w_tr + w_te, max_icl_examples=10,
        base_template=str(d["template"]), answer_formatter=first_letter_formatter(),
        word_token_pos=-6,
        full_absorption_probe_cos_sim_threshold=fa.FULL_ABSORPTION_PROBE_COS_THRESHOLD,
        absorption_fraction_probe_cos_sim_threshold=fa.ABSORPTION_FRACTION_PROBE_COS_THRESHOLD,
        probe_projection_proportion_threshold=fa.ABSORPTION_PROBE_PROJECTION_PROPORTION_THRESHOLD,
        absorption_fraction_max_absorbing_latents=fa.ABSORPTION_FRACTION_MAX_ABSORBING_LATENTS,
    )  # fmt: skip
    kept = metrics[metrics["f1_probe"] > 0.6]["letter"].tolist()
    likely = {k: v for k, v in likely.items() if k in kept}
    per_word = fa.calculate_projection_and_cos_sims(calc, sae, probe, 6, likely)
    # main._aggregate_results_df, from SAEBench's file (main.py itself imports SAELens)
    src = (Path(fa.__file__).parent / "main.py").read_text()
    fn = next(n for n in ast.parse(src).body if getattr(n, "name", "") == "_aggregate_results_df")
    ns = {"pd": pd}
    exec(compile(ast.Module([fn], []), "main.py", "exec"), ns)
    agg = ns["_aggregate_results_df"](per_word) if len(per_word) else pd.DataFrame()
    res = {
        "stubbed": stubbed,
        "probe_W": probe.weights.detach().numpy().tolist(),
        "probe_b": probe.biases.detach().numpy().tolist(),
        "f1_probe": dict(zip(metrics["letter"], metrics["f1_probe"])),
        "f1_sparse": {
            r["letter"]: [r[f"f1_sparse_sae_{k}"] for k in range(1, int(d["max_k"]) + 1)]
            for _, r in metrics.iterrows()
        },  # fmt: skip
        "feats": {
            r["letter"]: [
                list(map(int, r[f"sparse_sae_k_{k}_feats"])) for k in range(1, int(d["max_k"]) + 1)
            ]
            for _, r in metrics.iterrows()
        },  # fmt: skip
        "main": {r["letter"]: list(map(int, r["split_feats"])) for _, r in metrics.iterrows()},
        "words": [
            [
                r["letter"],
                r["token"],
                float(r["absorption_fraction"]),
                bool(r["is_full_absorption"]),
            ]
            for _, r in per_word.iterrows()
        ],  # fmt: skip
        "letters": {
            r["letter"]: [
                float(r["mean_absorption_fraction"]),
                float(r["full_absorption_rate"]),
                int(r["num_split_feats"]),
            ]
            for _, r in agg.iterrows()
        },  # fmt: skip
    }
    out.write_text(json.dumps(res))


# --------------------------------------------------------------------------- autointerp side


def saebench_python() -> tuple[str | None, str]:
    import importlib.util

    if importlib.util.find_spec("sae_bench") is not None:
        return sys.executable, "this interpreter"
    env = os.environ.get("SAEBENCH_PYTHON")
    if env:
        ok = subprocess.run([env, "-c", "import sae_bench"], capture_output=True).returncode == 0
        if ok:
            return env, f"$SAEBENCH_PYTHON ({env})"
        return None, f"$SAEBENCH_PYTHON={env} cannot import sae_bench"
    return None, "sae-bench is not installed here and $SAEBENCH_PYTHON is not set"


def compare(name: str, gt, basis, py: str, cfg) -> dict:
    import time

    from autointerp.absorption.evaluate import decoder_directions, encode_all, evaluate_basis
    from autointerp.absorption.vocab import LETTERS

    t = time.perf_counter()
    ours = evaluate_basis(basis, gt, cfg, SEED)
    t_ours = time.perf_counter() - t
    abs_words = gt.test_words[gt.abs_idx]
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "in.npz", Path(tmp) / "out.json"
        np.savez(
            inp, train_acts=gt.train_acts, test_acts=gt.test_acts, abs_acts=gt.abs_acts,
            train_labels=gt.train_labels, test_labels=gt.test_labels,
            train_words=gt.train_words, test_words=gt.test_words, abs_words=abs_words,
            train_codes=encode_all(basis, gt.train_acts).numpy(),
            test_codes=encode_all(basis, gt.test_acts).numpy(),
            abs_codes=encode_all(basis, gt.abs_acts).numpy(),
            directions=decoder_directions(basis).numpy(), max_k=cfg.max_k,
            epochs=cfg.probe_epochs, probe_batch=cfg.probe_batch_size,
            probe_wd=cfg.probe_weight_decay, template=cfg.prompt_template,
        )  # fmt: skip
        t = time.perf_counter()
        r = subprocess.run([py, __file__, "--saebench-side", str(inp), str(out)],
                           capture_output=True, text=True)  # fmt: skip
        t_sb = time.perf_counter() - t
        if r.returncode:
            raise SystemExit(f"SAEBench side failed:\n{r.stderr[-4000:]}")
        sb = json.loads(out.read_text())
    kept = [LETTERS[c] for c in gt.kept_letters(cfg.min_probe_f1)]
    d_w = float(np.abs(np.array(sb["probe_W"]) - gt.W).max())
    d_f1 = max(abs(sb["f1_probe"][k] - gt.probe_f1[i]) for i, k in enumerate(LETTERS)
               if np.isfinite(gt.probe_f1[i]))  # fmt: skip
    same_feats = all(sb["feats"][k] == [ours.sparse[k]["feats"][str(j)] for j in
                     range(1, cfg.max_k + 1)] for k in ours.sparse)  # fmt: skip
    d_ksp = max((abs(sb["f1_sparse"][k][j - 1] - ours.sparse[k]["f1"][str(j)])
                 for k in ours.sparse for j in range(1, cfg.max_k + 1)), default=0.0)  # fmt: skip
    same_main = all(sb["main"][k] == ours.sparse[k]["main"] for k in ours.sparse)
    by = {a.letter: a for a in ours.letters}
    d_let = max((abs(v - w) for k, (a, f, n) in sb["letters"].items() if k in by for v, w in
                 ((a, by[k].mean_absorption_fraction), (f, by[k].full_absorption_rate),
                  (n, by[k].num_split_features))), default=0.0)  # fmt: skip
    sb_sum = {
        "mean_absorption_fraction_score": np.mean([v[0] for k, v in sb["letters"].items()]),
        "mean_full_absorption_score": np.mean([v[1] for k, v in sb["letters"].items()]),
        "mean_num_split_features": np.mean([v[2] for k, v in sb["letters"].items()]),
    }
    summ = ours.summary()
    return {
        "case": name, "letters kept": f"{len(kept)} / {len(sb['letters'])} (SAEBench)",
        "probe max|dW|": d_w, "probe F1 max|d|": d_f1, "same latents (all k, letters)": same_feats,
        "k-sparse F1 max|d|": d_ksp, "same main latents": same_main,
        "per-letter max|d|": d_let, "words (SAEBench / ours)":
            f"{len(sb['words'])} / {sum(a.num_probe_true_positives for a in ours.letters)}",
        **{f"{m} (SAEBench / ours)": f"{sb_sum[m]:.6f} / {summ[m]:.6f}" for m in sb_sum},
        "seconds (SAEBench / ours)": f"{t_sb:.1f} / {t_ours:.1f}", "stubbed": sb["stubbed"],
    }  # fmt: skip


def with_trained_probe(gt, cfg):
    """The synthetic world with the ground-truth probe trained as build_ground_truth trains
    it (instead of the exact letter axes), and its probe-positive test words."""
    import torch

    from autointerp.absorption.probe import f1, one_hot, train_probe

    probe = train_probe(
        torch.from_numpy(gt.train_acts), one_hot(gt.train_labels, 26), epochs=cfg.probe_epochs,
        lr=cfg.probe_lr, end_lr=cfg.probe_end_lr, weight_decay=cfg.probe_weight_decay,
        batch_size=cfg.probe_batch_size, seed=SEED,
    )  # fmt: skip
    gt.W, gt.b = probe.W, probe.b
    lg = probe.logits(gt.test_acts)
    gt.probe_f1 = np.array([f1(gt.test_labels == c, lg[:, c] > 0) if (gt.test_labels == c).any()
                            else np.nan for c in range(26)])  # fmt: skip
    gt.abs_idx = np.flatnonzero(lg[np.arange(len(gt.test_labels)), gt.test_labels] > 0)
    gt.abs_acts = gt.test_acts[gt.abs_idx]
    return gt


def real_case(n_words: int, saved: str | None):
    """SmolLM2 at blocks.6.hook_resid_post: the prompts' activations (``build_ground_truth``,
    or a saved one) and two bases fitted on them. SAEBench's metrics need every letter among
    the train and the test words: a letter missing from the test words gets one train word
    moved over (copied, when it is the letter's only word). The absorption
    prompts are the test prompts themselves (both sides get the same activations)."""
    import torch

    from autointerp.absorption.config import AbsorptionConfig
    from autointerp.absorption.groundtruth import GroundTruth, build_ground_truth
    from autointerp.bases.linear import fit_pca, fit_random

    cfg = AbsorptionConfig(max_words=n_words, min_letters=1)
    if saved:
        gt = GroundTruth.from_arrays(dict(np.load(saved)))
    else:
        from autointerp.model import load_model

        sm = load_model("smollm2-gguf", device="cpu")
        hp = sm.hookpoint("blocks.6.hook_resid_post")
        gt = build_ground_truth(sm, hp, cfg, SEED, sm.bos_token_id)
    for c in range(26):
        if not (gt.test_labels == c).any() and (gt.train_labels == c).any():
            i = int(np.flatnonzero(gt.train_labels == c)[0])
            keep = np.arange(len(gt.train_labels)) != i
            if keep.sum() == len(keep) - 1 and not (gt.train_labels[keep] == c).any():
                keep[i] = True  # the letter's only word: in both splits (SAEBench needs both)
            gt.test_words = np.append(gt.test_words, gt.train_words[i])
            gt.test_labels = np.append(gt.test_labels, c)
            gt.test_acts = np.concatenate([gt.test_acts, gt.train_acts[i : i + 1]])
            gt.train_words, gt.train_labels = gt.train_words[keep], gt.train_labels[keep]
            gt.train_acts = gt.train_acts[keep]
    gt = with_trained_probe(gt, cfg)
    x = torch.from_numpy(np.concatenate([gt.train_acts, gt.test_acts]))
    pca = fit_pca(x, k=32)
    rnd = fit_random(x, n_features=4608, seed=SEED, name="random", space="whitened")
    return gt, [pca, rnd], cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--saebench-side", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--real", action="store_true", help="also SmolLM2 at blocks.6 (a few min)")
    ap.add_argument("--words", type=int, default=1000, help="words prompted in the real case")
    ap.add_argument("--only-real", action="store_true", help="skip the synthetic cases")
    ap.add_argument("--gt", help="real case: a saved GroundTruth (.npz) instead of prompting")
    a = ap.parse_args()
    if a.saebench_side:
        saebench_side(Path(a.saebench_side[0]), Path(a.saebench_side[1]))
        return
    py, why = saebench_python()
    if py is None:
        print(
            f"bench_absorption_parity: skipped: {why}. To run it: python3 -m venv /tmp/sbvenv "
            "&& /tmp/sbvenv/bin/pip install torch numpy pandas scikit-learn pyarrow tqdm && "
            "/tmp/sbvenv/bin/pip install --no-deps sae-bench==0.6.0; then "
            "SAEBENCH_PYTHON=/tmp/sbvenv/bin/python python benchmarks/bench_absorption_parity.py"
        )
        return
    from autointerp.absorption.config import AbsorptionConfig
    from autointerp.absorption.synthetic import planted_world

    print(f"SAEBench: {why}")
    rows = []
    for absorb in () if a.only_real else (True, False):
        cfg = AbsorptionConfig()
        gt, basis = planted_world(absorb)
        gt = with_trained_probe(gt, cfg)
        rows.append(compare(f"synthetic, {basis.name}", gt, basis, py, cfg))
    if a.real or a.only_real:
        gt, bases, cfg = real_case(a.words, a.gt)
        for b in bases:
            rows.append(compare(f"SmolLM2 blocks.6, {b.name}", gt, b, py, cfg))
    for r in rows:
        print()
        for k, v in r.items():
            print(f"  {k:<48} {v if not isinstance(v, float) else f'{v:.3g}'}")


if __name__ == "__main__":
    main()

"""The always-"yes" baseline of the absorption stage's k-sparse probes, from the committed run.

A classifier that answers "yes" for every test word has, for a letter with ``n`` of the ``N``
test words, precision ``n / N`` and recall 1, so F1 ``2n / (n + N)``. This prints that F1 per
kept letter of the committed absorption run (its seed and word sample, rebuilt from the
tokenizer's vocabulary exactly as the stage samples it), their mean, and beside them every
basis's k-sparse probe F1 at k = 1 over the same letters (``extra.details`` of the run's
``columns/absorption.json``): a probe at or below the baseline has found no letter feature.

    python benchmarks/bench_absorption_baseline.py [--run results/absorption/run-3db1d71050f6]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="results/absorption/run-3db1d71050f6")
    args = ap.parse_args()
    from autointerp.absorption.groundtruth import sample_words
    from autointerp.absorption.vocab import alpha_words, first_letter
    from autointerp.config import Suite
    from autointerp.model import load_model

    run = Path(args.run)
    suite = Suite.model_validate_json((run / "suite.json").read_text())
    extra = json.loads((run / "columns" / "absorption.json").read_text())["extra"]
    sm = load_model(suite.model.name, device="cpu")
    vocab = alpha_words(sm.tokenizer)
    _, test, _, _ = sample_words(vocab, suite.absorption, suite.seed)
    letters = list(extra["letters_kept"])
    n_test = len(test)
    counts = {c: sum(first_letter(w) == c for w in test) for c in letters}
    base = {c: 2 * counts[c] / (counts[c] + n_test) for c in letters}
    print(f"run: {run}; seed {suite.seed}; {n_test} test words (committed: "
          f"{extra['words']['test']}); {len(letters)} kept letters")  # fmt: skip
    print("| letter | test words | always-yes F1 |\n|---|---|---|")
    for c in letters:
        print(f"| {c} | {counts[c]} | {base[c]:.3f} |")
    mean = float(np.mean(list(base.values())))
    print(f"\nalways-yes F1 over the kept letters: mean {mean:.3f}, "
          f"min {min(base.values()):.3f}, max {max(base.values()):.3f}")  # fmt: skip
    print("\n| basis | k = 1 F1 mean | min | max | letters at or below their always-yes F1 |")
    print("|---|---|---|---|---|")
    for basis, d in extra["details"].items():
        f1 = {c: d["k_sparse"][c]["f1"]["1"] for c in letters if c in d.get("k_sparse", {})}
        if not f1:
            continue
        below = sum(v <= base[c] for c, v in f1.items())
        vals = list(f1.values())
        print(f"| {basis} | {np.mean(vals):.3f} | {min(vals):.3f} | {max(vals):.3f} | "
              f"{below} of {len(f1)} |")  # fmt: skip


if __name__ == "__main__":
    from _out import recorded  # benchmarks/_out.py: the output, committed with host and date

    with recorded("bench_absorption_baseline"):
        main()

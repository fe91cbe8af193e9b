"""Everything the absorption eval needs from the subject model, computed once per hookpoint:
the words and their split, the activations of their first-letter prompts, the ground-truth
probe and its test F1 per letter, and the probe-positive test words re-prompted with fresh
in-context examples (SAEBench measures absorption on those second prompts).

Each prompt depends on its word, role and the seed only (:mod:`autointerp.absorption.store`):
a train word's examples come from the whole vocabulary's train split, a test word's from its
test split (SAEBench, with every word), a second prompt's from all the words.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from autointerp.absorption.config import AbsorptionConfig
from autointerp.absorption.probe import Probe, f1, one_hot, train_probe
from autointerp.absorption.store import PromptActs
from autointerp.absorption.vocab import (
    LETTERS,
    alpha_words,
    icl_prompt,
    letter_class,
    split_words,
    word_positions,
)


@dataclass
class GroundTruth:
    """The hookpoint's first-letter data (arrays; words as str arrays)."""

    train_words: np.ndarray
    train_labels: np.ndarray
    train_acts: np.ndarray  # [N_train, d]
    test_words: np.ndarray
    test_labels: np.ndarray
    test_acts: np.ndarray  # [N_test, d]
    W: np.ndarray  # ground-truth probe [26, d]
    b: np.ndarray  # [26]
    probe_f1: np.ndarray  # [26] test F1 (NaN: no test word of that letter)
    abs_idx: np.ndarray  # test-word index of each absorption prompt (probe-positive words)
    abs_acts: np.ndarray  # [N_abs, d] activations of the re-prompted words
    rel_positions: np.ndarray  # distinct (position - prompt length) values seen
    n_vocab_words: int

    @property
    def probe(self) -> Probe:
        return Probe(self.W, self.b)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_arrays(cls, d) -> GroundTruth:
        kw = {k: d[k] for k in cls.__dataclass_fields__}
        kw["n_vocab_words"] = int(kw["n_vocab_words"])
        return cls(**kw)

    def kept_letters(self, min_f1: float) -> list[int]:
        """Letters whose probe test F1 is above ``min_f1`` (SAEBench: strictly)."""
        return [c for c in range(len(LETTERS)) if np.isfinite(self.probe_f1[c])
                and self.probe_f1[c] > min_f1]  # fmt: skip


def sample_words(vocab: list[str], cfg: AbsorptionConfig, seed: int):
    """``(train, test, train pool, test pool)``: SAEBench's seeded 80 / 20 split of the whole
    vocabulary (the pools the in-context examples come from), and with ``max_words`` the
    first ``max_words · train_fraction`` train and the rest test words of it (a uniform
    sample; a larger one contains a smaller one)."""
    pool_tr, pool_te = split_words(vocab, cfg.train_fraction, random.Random(seed))
    if not cfg.max_words or cfg.max_words >= len(vocab):
        return pool_tr, pool_te, pool_tr, pool_te
    n_tr = int(cfg.max_words * cfg.train_fraction)
    return pool_tr[:n_tr], pool_te[: cfg.max_words - n_tr], pool_tr, pool_te


def build_ground_truth(
    sm, hp, cfg: AbsorptionConfig, seed: int, bos: int | None, store: PromptActs | None = None
) -> GroundTruth:
    """Prompts, activations and the ground-truth probe (module docstring). ``store``: the
    prompts' activations computed by earlier runs (only the missing ones are run)."""
    from autointerp.absorption.acts import word_activations

    store = store if store is not None else PromptActs(None, hp.width)
    vocab = alpha_words(sm.tokenizer)
    train, test, pool_tr, pool_te = sample_words(vocab, cfg, seed)
    pools = {"train": pool_tr, "test": pool_te, "abs": vocab}

    def acts(role: str, words: list[str]):
        def compute(missing: list[str]):
            prompts = [
                icl_prompt(w, pools[role], cfg.prompt_template, cfg.max_icl_examples,
                           random.Random(f"{seed}:{role}:{w}"))
                for w in missing
            ]  # fmt: skip
            ids, pos = word_positions(sm.tokenizer, prompts, bos)
            rel = np.array([int(p) - len(t) for p, t in zip(pos, ids)], dtype=np.int64)
            return word_activations(sm, hp, ids, pos, cfg.batch_size), rel

        return store.get(role, words, compute)

    xtr, rel1 = acts("train", train)
    xte, rel2 = acts("test", test)
    ytr = np.array([letter_class(w) for w in train], dtype=np.int64)
    yte = np.array([letter_class(w) for w in test], dtype=np.int64)
    dev = sm.device
    probe = train_probe(
        torch.from_numpy(xtr).to(dev), one_hot(ytr, len(LETTERS)).to(dev),
        epochs=cfg.probe_epochs, lr=cfg.probe_lr, end_lr=cfg.probe_end_lr,
        weight_decay=cfg.probe_weight_decay, batch_size=cfg.probe_batch_size, seed=seed,
    )  # fmt: skip
    logits = probe.logits(xte)
    f1s = np.full(len(LETTERS), np.nan)
    for c in range(len(LETTERS)):
        if (yte == c).any():
            f1s[c] = f1(yte == c, logits[:, c] > 0.0)
    fires = logits[np.arange(len(yte)), yte] > 0.0
    abs_idx = np.flatnonzero(fires)
    xab, rel3 = acts("abs", [test[i] for i in abs_idx])
    return GroundTruth(
        np.array(train, dtype=str), ytr, xtr, np.array(test, dtype=str), yte, xte,
        probe.W, probe.b, f1s, abs_idx.astype(np.int64), xab,
        np.array(sorted(rel1 | rel2 | rel3), dtype=np.int64), len(vocab),
    )  # fmt: skip

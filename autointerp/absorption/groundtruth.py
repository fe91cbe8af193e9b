"""Everything the absorption eval needs from the subject model, computed once per hookpoint:
the words and their split, the activations of their first-letter prompts, the ground-truth
probe and its test F1 per letter, and the probe-positive test words re-prompted with fresh
in-context examples (SAEBench measures absorption on those second prompts).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from autointerp.absorption.config import AbsorptionConfig
from autointerp.absorption.probe import Probe, f1, one_hot, train_probe
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


def _prompt_acts(sm, hp, prompts, cfg: AbsorptionConfig, bos):
    from autointerp.absorption.acts import word_activations

    ids, pos = word_positions(sm.tokenizer, prompts, bos)
    rel = {int(p) - len(t) for p, t in zip(pos, ids)}
    return word_activations(sm, hp, ids, pos, cfg.batch_size), rel


def build_ground_truth(sm, hp, cfg: AbsorptionConfig, seed: int, bos: int | None) -> GroundTruth:
    """Prompts, activations and the ground-truth probe (module docstring)."""
    rng = random.Random(seed)
    vocab = alpha_words(sm.tokenizer)
    words = vocab if not cfg.max_words or len(vocab) <= cfg.max_words else sorted(
        rng.sample(vocab, cfg.max_words), key=vocab.index
    )  # fmt: skip
    train, test = split_words(words, cfg.train_fraction, rng)
    n_ex, tpl = cfg.max_icl_examples, cfg.prompt_template
    p_train = [icl_prompt(w, train, tpl, n_ex, rng) for w in train]
    p_test = [icl_prompt(w, test, tpl, n_ex, rng) for w in test]
    xtr, rel1 = _prompt_acts(sm, hp, p_train, cfg, bos)
    xte, rel2 = _prompt_acts(sm, hp, p_test, cfg, bos)
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
    p_abs = [icl_prompt(test[i], words, tpl, n_ex, rng) for i in abs_idx]
    xab, rel3 = _prompt_acts(sm, hp, p_abs, cfg, bos)
    return GroundTruth(
        np.array(train, dtype=str), ytr, xtr, np.array(test, dtype=str), yte, xte,
        probe.W, probe.b, f1s, abs_idx.astype(np.int64), xab,
        np.array(sorted(rel1 | rel2 | rel3), dtype=np.int64), len(vocab),
    )  # fmt: skip

"""A tiny random-weight Llama with a word-level tokenizer whose vocabulary holds the IOI
templates' words and the names (each name one token), so the IOI stage runs on it."""

from __future__ import annotations

import re

from autointerp.causal.ioi_prompts import NAMES, TEMPLATES


def word_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>"]
    text = " ".join(TEMPLATES) + " The cat sat on the mat. A dog ran to 12 red doors."
    for w in re.findall(r"\w+|[^\w\s]", text.replace("{A}", " ").replace("{B}", " ")):
        words.append(w)
    words += [n.strip() for n in NAMES]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>"
    )


def tiny_word_model(n_layers: int = 3, d_model: int = 32, seed: int = 0):
    from tests.conftest import make_tiny_model

    return make_tiny_model(
        n_layers,
        d_model,
        seed,
        tok=word_tokenizer(),
        name="tiny-words",
        initializer_range=0.3,  # logits far from uniform: KLs well above float noise
    )

"""The first-letter task's words and prompts, and where the word sits in the tokenized prompt.

Words: every token of the tokenizer whose text (one leading space allowed) is ASCII letters
only, as SAEBench's ``get_alpha_tokens``. A prompt is ``"\\n"`` + up to ``n`` in-context
examples ``"<template(ex)> <EX'S FIRST LETTER>"`` joined by ``"\\n"`` + ``"\\n"`` +
``template(word)`` (SAEBench's ``create_icl_prompt`` with ``prepend_separator_to_first_example``).

SAEBench reads the activation at a fixed ``prompt_token_pos = -6``, right for tokenizers that
keep the word one token and split " has the first letter:" into five; here the position is
computed per prompt from the tokenizer's character offsets (the token holding the word's last
character), so it is right for any tokenizer, and variable-length prompts batch together.
"""

from __future__ import annotations

import random
import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autointerp.errors import AutointerpError

LETTERS = string.ascii_lowercase
_ALPHA = frozenset(string.ascii_letters)
SEPARATOR = "\n"


def token_text(tokenizer, token: str) -> str:
    """A vocabulary entry's text (a SentencePiece ``▁`` start kept as a space)."""
    text = tokenizer.convert_tokens_to_string([token])
    if token.startswith("\u2581") and not text.startswith(" "):
        text = " " + text
    return text


def is_alpha_word(text: str) -> bool:
    w = text[1:] if text.startswith(" ") else text
    return bool(w) and all(c in _ALPHA for c in w)


def alpha_words(tokenizer) -> list[str]:
    """The all-alphabetic tokens' texts, in token-id order, each once."""
    vocab = tokenizer.get_vocab()
    out: dict[str, None] = {}
    for tok, _ in sorted(vocab.items(), key=lambda kv: kv[1]):
        text = token_text(tokenizer, tok)
        if is_alpha_word(text):
            out.setdefault(text, None)
    return list(out)


def first_letter(word: str) -> str:
    """The word's first letter, lower case (its class)."""
    return next(c for c in word if c.isalpha()).lower()


def letter_class(word: str) -> int:
    return LETTERS.index(first_letter(word))


def render(template: str, word: str) -> str:
    return template.replace("{word}", word)


@dataclass(frozen=True)
class Prompt:
    """One prompt: its text, the word, and the character just past the word's end."""

    text: str
    word: str
    word_end: int


def icl_prompt(
    word: str, examples: Sequence[str], template: str, n_examples: int, rng: random.Random
) -> Prompt:
    """``word``'s prompt with ``n_examples`` in-context examples drawn from ``examples``
    (never the word itself): the first ``n_examples`` of a uniform draw of one more, the word
    left out (a uniform draw from the others, without copying a whole-vocabulary pool)."""
    drawn = rng.sample(examples, min(n_examples + 1, len(examples)))
    chosen = [e for e in drawn if e != word][:n_examples]
    lines = [f"{render(template, ex)} {first_letter(ex).upper()}" for ex in chosen]
    head = SEPARATOR + "".join(line + SEPARATOR for line in lines)
    last = render(template, word)
    text = head + last
    return Prompt(text, word, len(head) + template.index("{word}") + len(word))


def split_words(words: Sequence[str], train_fraction: float, rng: random.Random):
    """``(train, test)``: a shuffled ``train_fraction`` / rest split of the words."""
    shuffled = rng.sample(list(words), len(words))
    cut = int(len(shuffled) * train_fraction)
    return shuffled[:cut], shuffled[cut:]


def word_positions(tokenizer, prompts: Sequence[Prompt], bos: int | None):
    """``(ids, positions)``: each prompt's token ids (``bos`` first when given) and the index of
    the token holding its word's last character. Character offsets where the tokenizer gives
    them, else the length of the tokenized text up to the word's end."""
    ids: list[list[int]] = []
    pos = np.zeros(len(prompts), dtype=np.int64)
    lead = [] if bos is None else [bos]
    for i, p in enumerate(prompts):
        toks, at = _locate(tokenizer, p)
        ids.append(lead + toks)
        pos[i] = at + len(lead)
    return ids, pos


def _locate(tokenizer, p: Prompt) -> tuple[list[int], int]:
    last = p.word_end - 1
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(p.text, add_special_tokens=False, return_offsets_mapping=True)
        hits = [j for j, (a, b) in enumerate(enc["offset_mapping"]) if a <= last < b]
        if hits:
            return list(enc["input_ids"]), hits[-1]
        toks = list(enc["input_ids"])
    else:
        toks = list(tokenizer(p.text, add_special_tokens=False)["input_ids"])
    head = list(tokenizer(p.text[: p.word_end], add_special_tokens=False)["input_ids"])
    if not head or toks[: len(head) - 1] != head[:-1]:
        raise AutointerpError(
            f"absorption: cannot find the word {p.word!r} in the tokenized prompt (its tokens "
            "change with the text after it); use a tokenizer with offsets (a fast tokenizer)"
        )
    return toks, len(head) - 1

"""A tiny random-weight Llama with a word-level tokenizer whose vocabulary holds the IOI
templates' words and the names (each name one token), so the IOI stage runs on it."""

from __future__ import annotations

import re

import torch

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
    from transformers import LlamaConfig, LlamaForCausalLM

    from autointerp.model import SubjectModel

    tok = word_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=d_model,
        intermediate_size=2 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        initializer_range=0.3,  # logits far from uniform: KLs well above float noise
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model = LlamaForCausalLM(cfg).eval().requires_grad_(False)
    return SubjectModel(model=model, tokenizer=tok, name="tiny-words", device=torch.device("cpu"))

"""Shared fixtures.

Fast unit tests use ``tiny_model``: a random-weight 4-layer Llama with a character-level
tokenizer built in memory (no downloads, < 1 s). Tests marked ``slow`` use the real SmolLM2 GGUF
(``real_model``) or the real local LLM (``local_llm_path``).
"""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import torch


def make_char_tokenizer():
    """A real ``PreTrainedTokenizerFast`` over printable characters (+ <s>, </s>, <unk>)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = list(dict.fromkeys(string.printable))
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>"
    )


def make_tiny_model(
    n_layers: int = 4,
    d_model: int = 32,
    seed: int = 0,
    *,
    tok=None,
    name: str = "tiny-llama",
    **config,
):
    """A random-weight Llama on ``tok`` (default: the character tokenizer); ``config``
    overrides LlamaConfig fields (e.g. ``initializer_range``)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from autointerp.model import SubjectModel

    tok = tok or make_char_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=d_model,
        intermediate_size=2 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        **config,
    )
    model = LlamaForCausalLM(cfg).eval().requires_grad_(False)
    return SubjectModel(model=model, tokenizer=tok, name=name, device=torch.device("cpu"))


SENTENCE = "The cat sat on the mat. A dog ran to 12 red doors. "


def save_tiny_files(
    tmp_path: Path, sm, sentence: str = SENTENCE, repeat: int = 200
) -> tuple[Path, Path]:
    """``(model_dir, corpus)``: ``sm`` saved as an HF folder ``tmp_path/tiny`` (once) and a text
    corpus of ``sentence`` repeated, for suites that load both by path."""
    model_dir = tmp_path / "tiny"
    if not model_dir.exists():
        sm.model.save_pretrained(model_dir)
        sm.tokenizer.save_pretrained(model_dir)
    text = tmp_path / "corpus.txt"
    text.write_text(sentence * repeat)
    return model_dir, text


@pytest.fixture
def tiny_model():
    return make_tiny_model()


@pytest.fixture(scope="session")
def real_model():
    """SmolLM2-135M-Instruct from the bundled GGUF (dequantised once, cached)."""
    from autointerp.model import load_model

    return load_model("smollm2-gguf", device="cpu")


@pytest.fixture(scope="session")
def local_llm_path() -> str:
    from autointerp.model import smollm2_gguf_path

    return str(smollm2_gguf_path())

"""The absorption stage's settings (``[absorption]`` in a suite; docs/absorption.md).

Defaults are SAEBench 0.6.0's (``sae_bench/evals/absorption``) except ``max_words``: SAEBench
prompts every all-alphabetic token of the vocabulary; a seeded sample keeps the stage within
minutes of CPU on a 2-core host (``max_words = 0``: the whole vocabulary; evals/absorption.toml
says what its sample keeps).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class AbsorptionConfig(BaseModel):
    """First-letter feature absorption (Chanin et al. 2024, SAEBench's protocol)."""

    model_config = ConfigDict(extra="forbid")

    #: opt-in: a prompt costs ~70 ms of CPU up to blocks.6 of SmolLM2 (docs/absorption.md)
    enabled: bool = False
    #: words prompted: a seeded sample of the all-alphabetic tokens (0: all of them, SAEBench)
    max_words: int = Field(5000, ge=0)
    prompt_template: str = "{word} has the first letter:"
    #: in-context examples before the word (each "<template> <LETTER>", one per line)
    max_icl_examples: int = Field(10, ge=0)
    #: words in the training split (the rest are the test words absorption is measured on)
    train_fraction: float = Field(0.8, gt=0, lt=1)
    # ground-truth probe (26 one-vs-rest logistic regressions on the activations)
    probe_epochs: int = Field(50, gt=0)
    probe_lr: float = Field(1e-2, gt=0)
    probe_end_lr: float = Field(1e-5, gt=0)
    probe_weight_decay: float = Field(1e-4, ge=0)
    probe_batch_size: int = Field(64, gt=0)
    #: letters whose ground-truth probe has test F1 <= this are dropped
    min_probe_f1: float = Field(0.6, ge=0, le=1)
    #: the eval is undefined when fewer letters than this survive
    min_letters: int = Field(20, ge=1, le=26)
    # k-sparse probing (an L1 probe on the codes picks the latents)
    sparse_l1: float = Field(0.01, ge=0)
    sparse_weight_decay: float = Field(1e-6, ge=0)
    sparse_epochs: int = Field(50, gt=0)
    sparse_batch_size: int = Field(4096, gt=0)
    max_k: int = Field(10, gt=0)
    #: feature splitting: k grows while the k-sparse probe's F1 rises by more than this
    f1_jump: float = Field(0.03, ge=0)
    #: prompts per forward pass of the subject model
    batch_size: int = Field(64, gt=0)

    @field_validator("prompt_template")
    @classmethod
    def _has_word(cls, v: str) -> str:
        if v.count("{word}") != 1:
            raise ValueError('prompt_template must contain "{word}" exactly once')
        return v

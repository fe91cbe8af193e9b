"""The random-model null (Heap et al. 2025): re-initialise a subject model's non-embedding
weights, seeded, in memory (the dequantised model cache on disk is never touched).

Rule (HF ``_init_weights`` semantics of Llama-family models, docs/random-model.md):

- kept: every ``nn.Embedding``'s parameters (token and, where a model has them, position
  embeddings) and the output embedding (the unembedding; SmolLM2 ties it to the token
  embedding, so it is the same tensor);
- norm layers (a module whose class name ends in ``Norm``, e.g. ``LlamaRMSNorm`` — the final
  norm included): weight 1, bias 0;
- every other parameter: biases (1-D) 0, matrices ~ N(0, ``config.initializer_range``).

Each parameter is drawn on the CPU from its own generator seeded by ``(seed, parameter
name)``, so the result depends on the seed alone (not on the device or parameter order).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ReinitReport:
    """What :func:`reinit_model` did: parameter names kept, set to constants, redrawn."""

    kept: tuple[str, ...]
    constant: tuple[str, ...]
    redrawn: tuple[str, ...]
    std: float


def _param_seed(seed: int, name: str) -> int:
    h = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def _kept_ids(model: nn.Module) -> set[int]:
    keep: set[int] = set()
    for mod in model.modules():
        if isinstance(mod, nn.Embedding):
            keep.update(id(p) for p in mod.parameters(recurse=False))
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        fn = getattr(model, getter, None)
        emb = fn() if fn is not None else None
        if emb is not None:
            keep.update(id(p) for p in emb.parameters(recurse=False))
    return keep


def init_std(model: nn.Module) -> float:
    """``config.initializer_range`` (HF's standard deviation for weight matrices)."""
    std = getattr(getattr(model, "config", None), "initializer_range", None)
    if std is None:
        raise ValueError(
            f"{type(model).__name__} has no config.initializer_range: cannot re-initialise it "
            "with its own init scale; use an HF causal LM (Llama, Qwen, GPT-2, ...)"
        )
    return float(std)


@torch.no_grad()
def reinit_model(model: nn.Module, seed: int) -> ReinitReport:
    """Re-initialise ``model``'s non-embedding parameters in place (see the module doc)."""
    std = init_std(model)
    keep = _kept_ids(model)
    norm_params = {
        id(p)
        for mod in model.modules()
        if type(mod).__name__.endswith("Norm")
        for p in mod.parameters(recurse=False)
    }
    kept, constant, redrawn = [], [], []
    for name, p in model.named_parameters():  # tied parameters appear once
        if id(p) in keep:
            kept.append(name)
        elif id(p) in norm_params or p.ndim < 2:
            fill = 1.0 if id(p) in norm_params and name.endswith("weight") else 0.0
            p.fill_(fill)
            constant.append(name)
        else:
            g = torch.Generator().manual_seed(_param_seed(seed, name))
            w = torch.empty(p.shape, dtype=torch.float32).normal_(0.0, std, generator=g)
            p.copy_(w.to(device=p.device, dtype=p.dtype))
            redrawn.append(name)
    return ReinitReport(tuple(kept), tuple(constant), tuple(redrawn), std)

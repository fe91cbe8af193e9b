"""Hookpoint and model names: equivalent spellings compare equal.

Checkpoints record where they were trained in their library's own words (TransformerLens
``blocks.6.hook_resid_post``, Hugging Face ``model.layers.6``, dictionary_learning's
``layer`` + ``submodule_name``); these helpers map them onto one TransformerLens-style name.
"""

from __future__ import annotations

import re

_TL_RE = re.compile(
    r"^blocks\.(\d+)\.(hook_resid_pre|hook_resid_post|hook_mlp_out|hook_attn_out|mlp\.hook_post)$"
)
_HF_RE = re.compile(
    r"^(?:model\.|transformer\.|gpt_neox\.|model\.model\.)?(?:layers|h|blocks)\.(\d+)"
    r"(\.mlp|\.self_attn|\.attn|\.attention|\.mlp\.down_proj|\.mlp\.c_proj)?(:input)?$"
)


def canonical_hookpoint(name: str | None) -> str | None:
    """A TransformerLens-style name for equivalent hookpoint spellings.

    ``model.layers.6`` / ``layers.6`` / ``transformer.h.6`` -> ``blocks.6.hook_resid_post``;
    ``...6.mlp`` -> ``hook_mlp_out``; ``...6.self_attn`` -> ``hook_attn_out``;
    ``...6:input`` and ``blocks.7.hook_resid_pre`` -> ``blocks.6.hook_resid_post``
    (the input of block L is the output of block L-1); ``...6.mlp.down_proj:input`` ->
    ``blocks.6.mlp.hook_post``. Other names come back unchanged.
    """
    if name is None:
        return None
    name = str(name).strip()
    m = _TL_RE.match(name)
    if m:
        layer, kind = int(m.group(1)), m.group(2)
    else:
        m = _HF_RE.match(name)
        if not m:
            return name
        layer, sub, inp = int(m.group(1)), m.group(2) or "", bool(m.group(3))
        if sub in (".mlp.down_proj", ".mlp.c_proj"):
            if not inp:
                return name
            kind = "mlp.hook_post"
        elif sub == ".mlp" and not inp:
            kind = "hook_mlp_out"
        elif sub in (".self_attn", ".attn", ".attention") and not inp:
            kind = "hook_attn_out"
        elif sub == "":
            kind = "hook_resid_pre" if inp else "hook_resid_post"
        else:
            return name
    if kind == "hook_resid_pre" and layer > 0:
        layer, kind = layer - 1, "hook_resid_post"
    return f"blocks.{layer}.{kind}"


def same_hookpoint(a: str | None, b: str | None) -> bool:
    """True when two hookpoint names denote the same activation (see canonical_hookpoint)."""
    return canonical_hookpoint(a) == canonical_hookpoint(b)


_MODEL_ALIASES = {"smollm2": "smollm2-135m-instruct"}


def _norm_model(name: str) -> str:
    n = str(name).strip().lower().rstrip("/").split("/")[-1]
    n = re.sub(r"(\.gguf|-gguf)$", "", n)
    n = re.sub(r"[.-](q\d(_\d|_k(_[sml])?)?|f16|f32|bf16)$", "", n)
    return _MODEL_ALIASES.get(n, n)


def same_model(a: str | None, b: str | None) -> bool:
    """Model names compared without the owner prefix, case, and GGUF/quantisation suffixes;
    ``smollm2-gguf`` (the default spec) equals ``HuggingFaceTB/SmolLM2-135M-Instruct``."""
    if a is None or b is None:
        return True
    return _norm_model(a) == _norm_model(b)


def layer_submodule_hookpoint(layer: int | None, submodule_name: str | None) -> str | None:
    """dictionary_learning's ``layer`` + ``submodule_name`` as a TransformerLens name.

    The layer comes from ``layer`` or else the first number in ``submodule_name``;
    ``resid_pre`` / ``mlp`` / ``attn`` in the submodule name pick the hook, anything else is
    the library's default submodule, the block output (``hook_resid_post``).
    """
    sub = str(submodule_name or "")
    if layer is None:
        m = re.search(r"(\d+)", sub)
        layer = int(m.group(1)) if m else None
    if layer is None:
        return None
    for key, kind in (
        ("resid_pre", "hook_resid_pre"),
        ("mlp", "hook_mlp_out"),
        ("attn", "hook_attn_out"),
    ):
        if key in sub:
            return f"blocks.{layer}.{kind}"
    return f"blocks.{layer}.hook_resid_post"

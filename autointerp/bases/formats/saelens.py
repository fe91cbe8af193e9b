"""SAELens: ``cfg.json`` + ``sae_weights.safetensors`` in the canonical layout.

``W_enc [d_in, d_sae]``, ``b_enc``, ``W_dec [d_sae, d_in]``, ``b_dec`` (+ ``threshold`` /
``b_gate, r_mag, b_mag``). Config v6 (``metadata`` or ``meta`` dict with ``hook_name``,
``model_name``) or older flat (``hook_name`` / ``hook_point``, ``activation_fn_str``,
``activation_fn_kwargs.k``); an older ``scaling_factor`` tensor is folded into ``W_dec``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from autointerp.bases.formats.common import (
    Parsed,
    arch_or_fail,
    check_canonical,
    check_finite,
    f32,
    fail,
    read_json,
    read_safetensors,
    require_int_fields,
    to_int,
)
from autointerp.bases.sae import NORMALISATIONS

CFG, WEIGHTS = "cfg.json", "sae_weights.safetensors"


def detect(path: Path) -> bool:
    """A folder with SAELens's two files."""
    return (path / CFG).exists() and (path / WEIGHTS).exists()


def load(path: Path) -> Parsed:
    """Read a SAELens folder."""
    cfg_file, w_file = path / CFG, path / WEIGHTS
    c = read_json(cfg_file)
    meta = c.get("metadata") or c.get("meta") or {}
    if not isinstance(meta, dict):
        meta = {}
    arch_name = c.get("architecture")
    k = None
    if arch_name is None:  # older flat configs: activation_fn_str decides
        act = c.get("activation_fn_str", "relu")
        arch_name = "topk" if act == "topk" else ("relu" if act == "relu" else act)
        fld = "activation_fn_str"
    else:
        fld = "architecture"
    arch = arch_or_fail(arch_name, cfg_file, fld)
    if arch in ("topk", "batchtopk"):
        k = c.get("k")
        if k is None:
            k = (c.get("activation_fn_kwargs") or {}).get("k")
        if k is None and arch == "topk":
            raise fail(f"{cfg_file}: topk SAE without 'k' (or activation_fn_kwargs.k)")
    require_int_fields(c, ("d_in", "d_sae"), cfg_file)
    d_in, d_sae = int(c["d_in"]), int(c["d_sae"])
    raw = read_safetensors(w_file)
    # finetuning scaling factor of older SAELens: all ones -> drop, else fold into W_dec
    scaling = raw.pop("scaling_factor", None)
    if scaling is not None and tuple(scaling.shape) != (d_sae,):
        raise fail(
            f"{w_file}: tensor 'scaling_factor' has shape {list(scaling.shape)}, expected [{d_sae}]"
        )
    check_canonical(raw, arch, d_in, d_sae, w_file, f"d_in={d_in}, d_sae={d_sae} in {cfg_file}")
    tensors = {n: f32(t) for n, t in raw.items()}
    if scaling is not None:
        check_finite({"scaling_factor": scaling}, w_file)
        tensors["W_dec"] = tensors["W_dec"] * f32(scaling)[:, None]
    norm = c.get("normalize_activations") or "none"
    if norm not in NORMALISATIONS:
        raise fail(
            f"{cfg_file}: field 'normalize_activations' is {norm!r}; known: "
            f"{', '.join(NORMALISATIONS)}"
        )
    factor = None
    if norm == "expected_average_only_in":
        factor = _scaling_factor(path, c)
        if factor is None:
            warnings.warn(
                f"{cfg_file}: normalize_activations='expected_average_only_in' but no scaling "
                "factor recorded (cfg 'norm_scaling_factor' or activation_scaler.json); "
                "using the SAE on raw activations as SAELens does",
                stacklevel=3,
            )
            norm = "none"
    if c.get("reshape_activations", "none") not in ("none", None):
        raise fail(
            f"{cfg_file}: reshape_activations={c['reshape_activations']!r} (attention hook_z "
            "SAEs) is not supported; use a residual/MLP SAE"
        )
    hook = meta.get("hook_name") or c.get("hook_name") or c.get("hook_point")
    model = meta.get("model_name") or c.get("model_name")
    cfg = {
        "architecture": arch,
        "k": to_int(k),
        "apply_b_dec_to_input": bool(c.get("apply_b_dec_to_input", True)),
        "normalisation": norm,
        "scaling_factor": factor,
        "rescale_acts_by_decoder_norm": bool(c.get("rescale_acts_by_decoder_norm", False)),
    }
    info = {
        "hookpoint": hook,
        "model": model,
        "context_size": meta.get("context_size", c.get("context_size")),
        "saelens_version": meta.get("sae_lens_version", c.get("sae_lens_version")),
        "config_layout": "v6" if ("metadata" in c or "meta" in c) else "flat",
        "files": [str(cfg_file), str(w_file)],
    }
    return Parsed(tensors, cfg, info)


def _scaling_factor(path: Path, c: dict[str, Any]) -> float | None:
    """The fixed input scaling of ``expected_average_only_in``, if recorded."""
    for key in ("norm_scaling_factor", "normalization_scaling_factor", "scaling_factor"):
        v = c.get(key)
        if isinstance(v, (int, float)):
            return float(v)
    f = path / "activation_scaler.json"
    if f.exists():
        v = read_json(f).get("scaling_factor")
        if isinstance(v, (int, float)):
            return float(v)
    return None

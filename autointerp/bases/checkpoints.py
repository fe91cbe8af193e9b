"""Load SAE checkpoints of the common formats into one :class:`~autointerp.bases.sae.SAE`.

Formats (detected from the files; ``format=`` overrides):

* ``saelens``: ``cfg.json`` + ``sae_weights.safetensors`` with ``W_enc [d_in, d_sae]``,
  ``b_enc``, ``W_dec [d_sae, d_in]``, ``b_dec`` (+ ``threshold`` / ``b_gate, r_mag, b_mag``).
  Config v6 (``metadata`` or ``meta`` dict with ``hook_name``, ``model_name``) or older flat
  (``hook_name`` / ``hook_point``, ``activation_fn_str``, ``activation_fn_kwargs.k``).
* ``dictionary_learning``: ``ae.pt`` (a state dict, or the mid-training dict
  ``{step, ae, optimizer, config, norm_factor}``) + optional ``config.json``
  (``trainer.dict_class``, ``activation_dim``, ``dict_size``, ``layer``, ``lm_name``, ``k``).
  Read with ``torch.load(weights_only=True)`` only.
* ``sparsify`` (EleutherAI): a folder per hookpoint with ``cfg.json`` (``k``, ``num_latents``
  or ``expansion_factor``, ``d_in``) + ``sae.safetensors`` (``encoder.weight [F, d_in]``,
  ``encoder.bias``, ``W_dec [F, d_in]``, ``b_dec``); TopK.
* ``native``: ``autointerp.json`` + ``weights.safetensors`` in the canonical layout
  (:func:`save_native`).
* any format registered by a plugin (entry-point group ``autointerp.bases``).

A folder whose subfolders are checkpoints (e.g. a sparsify run with one folder per hookpoint)
loads the subfolder matching ``expected_hookpoint``. Sources ``hf://owner/repo[/sub][@rev]``
are fetched with ``huggingface_hub.snapshot_download``.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from autointerp.bases.base import Basis
from autointerp.bases.sae import (
    ARCH_TENSORS,
    ARCHITECTURES,
    NORMALISATIONS,
    OPTIONAL_TENSORS,
    SAE,
    canonical_architecture,
    sae_from_tensors,
)
from autointerp.errors import CheckpointError

log = logging.getLogger(__name__)

FORMATS = ("saelens", "dictionary_learning", "sparsify", "native")
FORMAT_ALIASES = {
    "saelens": "saelens",
    "sae_lens": "saelens",
    "sae-lens": "saelens",
    "dictionary_learning": "dictionary_learning",
    "dictionary-learning": "dictionary_learning",
    "dl": "dictionary_learning",
    "sparsify": "sparsify",
    "eleuther": "sparsify",
    "native": "native",
    "autointerp": "native",
}
NATIVE_CFG = "autointerp.json"
NATIVE_WEIGHTS = "weights.safetensors"
NATIVE_FORMAT_VERSION = 1


# --------------------------------------------------------------------------- hookpoint names

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


# --------------------------------------------------------------------------- parsed checkpoint


@dataclass
class _Parsed:
    """A checkpoint read from disk, before it becomes an SAE."""

    tensors: dict[str, torch.Tensor]
    cfg: dict[str, Any]  # SAE.config() keys
    info: dict[str, Any] = field(default_factory=dict)


def _fail(msg: str) -> CheckpointError:
    return CheckpointError(msg)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise _fail(f"{path}: file missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _fail(f"{path}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise _fail(f"{path}: expected a JSON object, found {type(d).__name__}")
    return d


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.exists():
        raise _fail(f"{path}: weights file missing")
    try:
        return load_file(str(path), device="cpu")
    except Exception as e:  # safetensors raises its own error types
        raise _fail(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from None


def _read_torch(path: Path) -> Any:
    if not path.exists():
        raise _fail(f"{path}: weights file missing")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise _fail(
            f"{path}: holds pickled Python objects, not a plain state dict, and is refused "
            f"(only torch.load(weights_only=True) is used; {first}). Re-save it with "
            "torch.save(model.state_dict(), 'ae.pt')"
        ) from None
    except Exception as e:
        raise _fail(f"{path}: cannot be read by torch.load ({type(e).__name__}: {e})") from None


def _int(v: Any) -> int | None:
    if v is None:
        return None
    if isinstance(v, torch.Tensor):
        return int(v.item())
    return int(v)


def _check_keys(
    raw: dict[str, Any], required: set[str], optional: set[str], file: Path, what: str
) -> None:
    present = set(raw)
    missing = sorted(required - present)
    extra = sorted(present - required - optional)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing tensors {missing}")
        if extra:
            parts.append(f"unexpected tensors {extra}")
        raise _fail(
            f"{file}: {' and '.join(parts)} for {what}; expected exactly "
            f"{sorted(required)}" + (f" (optionally {sorted(optional)})" if optional else "")
        )


def _check_shapes(
    raw: dict[str, torch.Tensor], shapes: dict[str, tuple], file: Path, dims: str
) -> None:
    for key, shape in shapes.items():
        if key not in raw:
            continue
        found = tuple(raw[key].shape)
        if found != tuple(shape):
            raise _fail(
                f"{file}: tensor {key!r} has shape {list(found)}, expected {list(shape)} ({dims})"
            )


_INT_OK = {"k", "step", "num_batches_tracked"}  # integer buffers some formats keep


def _check_finite(raw: dict[str, torch.Tensor], file: Path) -> None:
    """Every weight is a floating-point tensor with no NaN/Inf (an int32 ``W_enc`` would load
    as an all-zero encoder after a silent cast)."""
    for key, t in raw.items():
        if isinstance(t, torch.Tensor) and not t.is_floating_point() and key not in _INT_OK:
            raise _fail(
                f"{file}: tensor {key!r} has dtype {str(t.dtype).removeprefix('torch.')}; SAE "
                "weights must be floating point (float32, float16 or bfloat16): re-save the "
                "checkpoint with float tensors"
            )
    for key, t in raw.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            bad = ~torch.isfinite(t)
            n = int(bad.sum())
            if n:
                n_nan = int(torch.isnan(t).sum())
                raise _fail(
                    f"{file}: tensor {key!r} has {n} non-finite values ({n_nan} NaN, "
                    f"{n - n_nan} Inf) of {t.numel()}; the checkpoint is corrupt or diverged "
                    "in training"
                )


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float32).contiguous()


def _arch_or_fail(name: Any, file: Path, fld: str) -> str:
    arch = canonical_architecture(str(name)) if name is not None else None
    if arch is None:
        raise _fail(
            f"{file}: unknown architecture {name!r} in field {fld!r}; known: "
            f"{', '.join(ARCHITECTURES)} (aliases: standard=relu, batch_topk=batchtopk)"
        )
    return arch


def _canonical_checked(
    raw: dict[str, torch.Tensor], arch: str, d_in: int, d_sae: int, file: Path, dims: str
) -> None:
    """Keys, shapes and finiteness of a canonical-layout state dict (saelens, native)."""
    required = {"W_enc", "W_dec", "b_dec", *ARCH_TENSORS[arch]}
    optional = set(OPTIONAL_TENSORS.get(arch, ()))
    _check_keys(raw, required, optional, file, f"architecture {arch!r}")
    shapes = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    for n in ARCH_TENSORS[arch] + OPTIONAL_TENSORS.get(arch, ()):
        shapes[n] = (d_sae,)
    if arch == "batchtopk" and "threshold" in raw and raw["threshold"].dim() == 0:
        shapes.pop("threshold")
    _check_shapes(raw, shapes, file, dims)
    _check_finite(raw, file)


# --------------------------------------------------------------------------- SAELens


def _load_saelens(path: Path) -> _Parsed:
    cfg_file, w_file = path / "cfg.json", path / "sae_weights.safetensors"
    c = _read_json(cfg_file)
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
    arch = _arch_or_fail(arch_name, cfg_file, fld)
    if arch in ("topk", "batchtopk"):
        k = c.get("k")
        if k is None:
            k = (c.get("activation_fn_kwargs") or {}).get("k")
        if k is None and arch == "topk":
            raise _fail(f"{cfg_file}: topk SAE without 'k' (or activation_fn_kwargs.k)")
    for fld in ("d_in", "d_sae"):
        if not isinstance(c.get(fld), int):
            raise _fail(f"{cfg_file}: field {fld!r} missing or not an integer: {c.get(fld)!r}")
    d_in, d_sae = int(c["d_in"]), int(c["d_sae"])
    raw = _read_safetensors(w_file)
    # finetuning scaling factor of older SAELens: all ones -> drop, else fold into W_dec
    scaling = raw.pop("scaling_factor", None)
    if scaling is not None and tuple(scaling.shape) != (d_sae,):
        raise _fail(
            f"{w_file}: tensor 'scaling_factor' has shape {list(scaling.shape)}, expected [{d_sae}]"
        )
    _canonical_checked(raw, arch, d_in, d_sae, w_file, f"d_in={d_in}, d_sae={d_sae} in {cfg_file}")
    tensors = {n: _f32(t) for n, t in raw.items()}
    if scaling is not None:
        _check_finite({"scaling_factor": scaling}, w_file)
        tensors["W_dec"] = tensors["W_dec"] * _f32(scaling)[:, None]
    norm = c.get("normalize_activations") or "none"
    if norm not in NORMALISATIONS:
        raise _fail(
            f"{cfg_file}: field 'normalize_activations' is {norm!r}; known: "
            f"{', '.join(NORMALISATIONS)}"
        )
    factor = None
    if norm == "expected_average_only_in":
        factor = _saelens_scaling_factor(path, c)
        if factor is None:
            warnings.warn(
                f"{cfg_file}: normalize_activations='expected_average_only_in' but no scaling "
                "factor recorded (cfg 'norm_scaling_factor' or activation_scaler.json); "
                "using the SAE on raw activations as SAELens does",
                stacklevel=3,
            )
            norm = "none"
    if c.get("reshape_activations", "none") not in ("none", None):
        raise _fail(
            f"{cfg_file}: reshape_activations={c['reshape_activations']!r} (attention hook_z "
            "SAEs) is not supported; use a residual/MLP SAE"
        )
    hook = meta.get("hook_name") or c.get("hook_name") or c.get("hook_point")
    model = meta.get("model_name") or c.get("model_name")
    cfg = {
        "architecture": arch,
        "k": _int(k),
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
    return _Parsed(tensors, cfg, info)


def _saelens_scaling_factor(path: Path, c: dict[str, Any]) -> float | None:
    for key in ("norm_scaling_factor", "normalization_scaling_factor", "scaling_factor"):
        v = c.get(key)
        if isinstance(v, (int, float)):
            return float(v)
    f = path / "activation_scaler.json"
    if f.exists():
        v = _read_json(f).get("scaling_factor")
        if isinstance(v, (int, float)):
            return float(v)
    return None


# --------------------------------------------------------------------------- dictionary_learning

# dict_class -> (architecture, layout)
_DL_CLASSES = {
    "AutoEncoder": ("relu", "ae"),
    "AutoEncoderNew": ("relu", "ae_new"),
    "AutoEncoderTopK": ("topk", "topk"),
    "TopKSAE": ("topk", "topk"),
    "BatchTopKSAE": ("batchtopk", "topk"),
    "JumpReluAutoEncoder": ("jumprelu", "jump"),
    "GatedAutoEncoder": ("gated", "gated"),
}

# layout -> {raw key: (canonical, transpose?)}
_DL_KEYS: dict[str, dict[str, tuple[str, bool]]] = {
    "ae": {
        "encoder.weight": ("W_enc", True),
        "encoder.bias": ("b_enc", False),
        "decoder.weight": ("W_dec", True),
        "bias": ("b_dec", False),
    },
    "ae_new": {
        "encoder.weight": ("W_enc", True),
        "encoder.bias": ("b_enc", False),
        "decoder.weight": ("W_dec", True),
        "decoder.bias": ("b_dec", False),
    },
    "topk": {
        "encoder.weight": ("W_enc", True),
        "encoder.bias": ("b_enc", False),
        "decoder.weight": ("W_dec", True),
        "b_dec": ("b_dec", False),
    },
    "jump": {
        "W_enc": ("W_enc", False),
        "b_enc": ("b_enc", False),
        "W_dec": ("W_dec", False),
        "b_dec": ("b_dec", False),
        "threshold": ("threshold", False),
    },
    "gated": {
        "encoder.weight": ("W_enc", True),
        "decoder.weight": ("W_dec", True),
        "decoder_bias": ("b_dec", False),
        "gate_bias": ("b_gate", False),
        "r_mag": ("r_mag", False),
        "mag_bias": ("b_mag", False),
    },
}


def _dl_layout_from_keys(keys: set[str]) -> str:
    if "W_enc" in keys:
        return "JumpReluAutoEncoder"
    if "gate_bias" in keys:
        return "GatedAutoEncoder"
    if "b_dec" in keys:
        return "AutoEncoderTopK"
    if "decoder.bias" in keys:
        return "AutoEncoderNew"
    return "AutoEncoder"


def _dl_hookpoint(trainer: dict[str, Any]) -> str | None:
    sub = str(trainer.get("submodule_name") or "")
    layer = trainer.get("layer")
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
    return f"blocks.{layer}.hook_resid_post"  # the library's default submodule: the block output


def _load_dictionary_learning(path: Path) -> _Parsed:
    if path.is_file():
        w_file, folder = path, path.parent
    else:
        w_file, folder = path / "ae.pt", path
    obj = _read_torch(w_file)
    if not isinstance(obj, dict):
        raise _fail(
            f"{w_file}: expected a state dict (a dict of tensors), found {type(obj).__name__}"
        )
    info: dict[str, Any] = {}
    trainer: dict[str, Any] = {}
    norm_factor = None
    if "ae" in obj and isinstance(obj["ae"], dict):  # mid-training checkpoint
        info["step"] = _int(obj.get("step"))
        norm_factor = obj.get("norm_factor")
        if isinstance(obj.get("config"), dict):
            trainer = obj["config"].get("trainer", obj["config"])
        info["mid_training"] = True
        raw = obj["ae"]
    else:
        raw = obj
    non_tensor = [k for k, v in raw.items() if not isinstance(v, torch.Tensor)]
    if non_tensor:
        raise _fail(
            f"{w_file}: entries {non_tensor[:5]} are not tensors; expected a state dict of an "
            "AutoEncoder / AutoEncoderTopK / BatchTopKSAE / JumpReluAutoEncoder / "
            "GatedAutoEncoder"
        )
    cfg_file = folder / "config.json"
    if cfg_file.exists():
        c = _read_json(cfg_file)
        trainer = c.get("trainer", c) if isinstance(c.get("trainer", c), dict) else {}
    dict_class = trainer.get("dict_class") or _dl_layout_from_keys(set(raw))
    if dict_class not in _DL_CLASSES:
        raise _fail(
            f"{cfg_file if cfg_file.exists() else w_file}: unknown architecture "
            f"dict_class={dict_class!r} in field 'trainer.dict_class'; known: "
            f"{', '.join(_DL_CLASSES)}"
        )
    arch, layout = _DL_CLASSES[dict_class]
    keys = _DL_KEYS[layout]
    optional = {"k", "threshold"} if layout == "topk" else set()
    _check_keys(raw, set(keys), optional, w_file, f"dictionary_learning {dict_class}")
    # dims: from config when present, else from the encoder weight
    enc_key = "W_enc" if layout == "jump" else "encoder.weight"
    enc = raw[enc_key]
    if enc.dim() != 2:
        raise _fail(f"{w_file}: tensor {enc_key!r} must be 2-D, has shape {list(enc.shape)}")
    d_sae, d_in = (enc.shape[1], enc.shape[0]) if layout == "jump" else tuple(enc.shape)
    src = "the encoder weight"
    if trainer.get("activation_dim") is not None and trainer.get("dict_size") is not None:
        d_in, d_sae, src = int(trainer["activation_dim"]), int(trainer["dict_size"]), "config"
    shapes = {}
    for rk, (cn, tr) in keys.items():
        s = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}.get(cn, (d_sae,))
        shapes[rk] = tuple(reversed(s)) if tr else s
    if "threshold" in raw and layout == "topk":
        if raw["threshold"].numel() != 1:
            shapes["threshold"] = (d_sae,)
    _check_shapes(raw, shapes, w_file, f"activation_dim={d_in}, dict_size={d_sae} from {src}")
    _check_finite(raw, w_file)
    tensors = {}
    for rk, (cn, tr) in keys.items():
        t = _f32(raw[rk])
        tensors[cn] = t.T.contiguous() if tr else t
    k = _int(raw.get("k")) if "k" in raw else _int(trainer.get("k"))
    if arch == "batchtopk" and "threshold" in raw:
        tensors["threshold"] = _f32(raw["threshold"])
    if arch in ("topk", "batchtopk"):
        if k is None and not (arch == "batchtopk" and "threshold" in tensors):
            raise _fail(f"{w_file}: {dict_class} without a 'k' buffer or trainer.k in config")
        if "threshold" in raw:
            info["threshold"] = float(raw["threshold"].float().mean())
    norm, factor = "none", None
    if norm_factor is not None:
        nf = float(norm_factor)
        if not math.isfinite(nf) or nf <= 0:
            raise _fail(f"{w_file}: field 'norm_factor' must be a positive number, found {nf}")
        if nf != 1.0:
            # trained on x / norm_factor: scale in, unscale out
            norm, factor = "expected_average_only_in", 1.0 / nf
        info["norm_factor"] = nf
    cfg = {
        "architecture": arch,
        "k": k,
        "apply_b_dec_to_input": layout not in ("ae_new", "jump"),
        "normalisation": norm,
        "scaling_factor": factor,
        "rescale_acts_by_decoder_norm": False,
    }
    info.update(
        {
            "dict_class": dict_class,
            "layer": trainer.get("layer"),
            "submodule_name": trainer.get("submodule_name"),
            "hookpoint": _dl_hookpoint(trainer),
            "model": trainer.get("lm_name"),
            "files": [str(w_file)] + ([str(cfg_file)] if cfg_file.exists() else []),
        }
    )
    return _Parsed(tensors, cfg, info)


# --------------------------------------------------------------------------- sparsify


def _load_sparsify(path: Path) -> _Parsed:
    cfg_file, w_file = path / "cfg.json", path / "sae.safetensors"
    c = _read_json(cfg_file)
    if c.get("transcode"):
        raise _fail(f"{cfg_file}: field 'transcode' is true: transcoders are not supported")
    act = c.get("activation", "topk")
    if act != "topk":
        raise _fail(
            f"{cfg_file}: unknown architecture activation={act!r} in field 'activation'; "
            "known: topk"
        )
    if not isinstance(c.get("k"), int):
        raise _fail(f"{cfg_file}: field 'k' missing or not an integer: {c.get('k')!r}")
    raw = _read_safetensors(w_file)
    if "W_skip" in raw or c.get("skip_connection"):
        raise _fail(f"{w_file}: skip connections (W_skip) are not supported")
    _check_keys(
        raw, {"encoder.weight", "encoder.bias", "W_dec", "b_dec"}, set(), w_file, "sparsify TopK"
    )
    enc = raw["encoder.weight"]
    if enc.dim() != 2:
        raise _fail(f"{w_file}: tensor 'encoder.weight' must be 2-D, has {list(enc.shape)}")
    d_in = c.get("d_in", enc.shape[1])
    d_sae = c.get("num_latents") or (
        d_in * c["expansion_factor"] if c.get("expansion_factor") else enc.shape[0]
    )
    d_in, d_sae = int(d_in), int(d_sae)
    shapes = {
        "encoder.weight": (d_sae, d_in),
        "encoder.bias": (d_sae,),
        "W_dec": (d_sae, d_in),
        "b_dec": (d_in,),
    }
    _check_shapes(raw, shapes, w_file, f"d_in={d_in}, num_latents={d_sae} from {cfg_file}")
    _check_finite(raw, w_file)
    tensors = {
        "W_enc": _f32(raw["encoder.weight"]).T.contiguous(),
        "b_enc": _f32(raw["encoder.bias"]),
        "W_dec": _f32(raw["W_dec"]),
        "b_dec": _f32(raw["b_dec"]),
    }
    cfg = {"architecture": "topk", "k": int(c["k"]), "apply_b_dec_to_input": True}
    model = None
    for parent_cfg in (path.parent / "config.json",):
        if parent_cfg.exists():
            try:
                pc = json.loads(parent_cfg.read_text())
                model = pc.get("model") if isinstance(pc, dict) else None
            except (json.JSONDecodeError, OSError):
                model = None
    info = {
        "hookpoint": path.name,
        "model": model,
        "files": [str(cfg_file), str(w_file)],
    }
    return _Parsed(tensors, cfg, info)


# --------------------------------------------------------------------------- native


def _load_native(path: Path) -> _Parsed:
    cfg_file, w_file = path / NATIVE_CFG, path / NATIVE_WEIGHTS
    c = _read_json(cfg_file)
    arch = _arch_or_fail(c.get("architecture"), cfg_file, "architecture")
    for fld in ("d_in", "d_sae"):
        if not isinstance(c.get(fld), int):
            raise _fail(f"{cfg_file}: field {fld!r} missing or not an integer: {c.get(fld)!r}")
    d_in, d_sae = c["d_in"], c["d_sae"]
    raw = _read_safetensors(w_file)
    _canonical_checked(raw, arch, d_in, d_sae, w_file, f"d_in={d_in}, d_sae={d_sae} in {cfg_file}")
    norm = c.get("normalisation", "none")
    if norm not in NORMALISATIONS:
        raise _fail(
            f"{cfg_file}: field 'normalisation' is {norm!r}; known: {', '.join(NORMALISATIONS)}"
        )
    cfg = {
        "architecture": arch,
        "k": c.get("k"),
        "apply_b_dec_to_input": bool(c.get("apply_b_dec_to_input", True)),
        "normalisation": norm,
        "scaling_factor": c.get("scaling_factor"),
        "rescale_acts_by_decoder_norm": bool(c.get("rescale_acts_by_decoder_norm", False)),
    }
    info = {
        "hookpoint": c.get("hookpoint"),
        "model": c.get("model"),
        "training": c.get("training"),
        "config_hash": c.get("config_hash"),
        "files": [str(cfg_file), str(w_file)],
    }
    for key, val in c.items():
        if key not in cfg and key not in info and key not in ("format", "format_version"):
            info.setdefault(key, val)
    return _Parsed({n: _f32(t) for n, t in raw.items()}, cfg, info)


def save_native(sae: SAE, directory: str | Path, **meta: Any) -> Path:
    """Write ``sae`` as ``autointerp.json`` + ``weights.safetensors`` (atomically).

    ``meta`` (JSON-serialisable) is stored alongside, e.g. ``hookpoint``, ``model``,
    ``training`` (stats dict), ``config_hash``. Returns the directory.
    """
    from safetensors.torch import save

    from autointerp.results import atomic_write_bytes, atomic_write_json

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {n: t.detach().cpu().contiguous() for n, t in sae.tensors().items()}
    meta = dict(meta)
    for key in ("hookpoint", "model"):
        if meta.get(key) is None and sae.info.get(key) is not None:
            meta[key] = sae.info[key]
    doc = {"format": "autointerp", "format_version": NATIVE_FORMAT_VERSION, **meta}
    doc.update(sae.config())
    atomic_write_bytes(d / NATIVE_WEIGHTS, save(tensors))
    atomic_write_json(d / NATIVE_CFG, doc)
    return d


# --------------------------------------------------------------------------- detection

_LOADERS = {
    "saelens": _load_saelens,
    "dictionary_learning": _load_dictionary_learning,
    "sparsify": _load_sparsify,
    "native": _load_native,
}


def detect_format(path: Path) -> str | None:
    """The built-in format whose files are in ``path`` (a folder, or a file in it)."""
    if path.is_file():
        if path.suffix == ".pt":
            return "dictionary_learning"
        path = path.parent
    if (path / NATIVE_CFG).exists():
        return "native"
    if (path / "cfg.json").exists() and (path / "sae_weights.safetensors").exists():
        return "saelens"
    if (path / "cfg.json").exists() and (path / "sae.safetensors").exists():
        return "sparsify"
    if (path / "ae.pt").exists():
        return "dictionary_learning"
    return None


def _detect_any(path: Path) -> str | None:
    fmt = detect_format(path)
    if fmt is not None:
        return fmt
    from autointerp.bases.registry import detect_plugin

    return detect_plugin(path)


def _pick_subfolder(path: Path, expected_hookpoint: str | None) -> Path | None:
    """A parent folder holding one checkpoint per hookpoint: choose by hookpoint name."""
    subs = sorted(p for p in path.iterdir() if p.is_dir() and _detect_any(p) is not None)
    if not subs:
        return None
    if expected_hookpoint is None:
        if len(subs) == 1:
            return subs[0]
        raise _fail(
            f"{path}: holds {len(subs)} checkpoints ({', '.join(p.name for p in subs)}); choose "
            "one by passing its subfolder (path/NAME or hf://owner/repo/NAME) or the "
            "hookpoint (expected_hookpoint / the suite's model.hookpoint)"
        )
    for p in subs:
        if p.name == expected_hookpoint or same_hookpoint(p.name, expected_hookpoint):
            return p
    raise _fail(
        f"{path}: no checkpoint for hookpoint {expected_hookpoint!r}; available: "
        f"{', '.join(p.name for p in subs)}"
    )


# --------------------------------------------------------------------------- sources


def parse_hf_source(source: str) -> tuple[str, str | None, str | None]:
    """``hf://owner/repo[/sub/folder][@revision]`` -> (repo_id, subfolder, revision)."""
    rest = source[len("hf://") :]
    revision = None
    if "@" in rest:
        rest, revision = rest.rsplit("@", 1)
        revision = revision or None
    parts = [p for p in rest.split("/") if p]
    if len(parts) < 2:
        raise _fail(f"bad hub source {source!r}: expected hf://owner/repo[/subfolder][@revision]")
    repo_id = "/".join(parts[:2])
    sub = "/".join(parts[2:]) or None
    return repo_id, sub, revision


def fetch_hf(source: str) -> Path:
    """Download (or find in the local HF cache) the files of a ``hf://`` source."""
    repo_id, sub, revision = parse_hf_source(source)
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=[f"{sub}/*"] if sub else None,
        )
    except Exception as e:  # offline, DNS failure, 401/404, ...
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise _fail(
            f"cannot fetch {source!r} from the Hugging Face Hub ({type(e).__name__}: {msg}). "
            "The hub is unreachable or offline (HF_HUB_OFFLINE) and the files are not in the "
            "local HF cache, or the repo/revision does not exist. Download the folder where "
            "there is network access and pass its local path instead"
        ) from None
    path = Path(local) / sub if sub else Path(local)
    if not path.exists():
        raise _fail(f"{source!r}: subfolder {sub!r} not found in {repo_id}")
    return path


def resolve_source(source: str | Path) -> Path:
    """Local path for a source (``hf://`` fetched); a clear error when it does not exist."""
    s = str(source)
    if s.startswith("hf://"):
        return fetch_hf(s)
    p = Path(s).expanduser()
    if not p.exists():
        raise _fail(
            f"checkpoint {s!r} does not exist (give a local folder/file or hf://owner/repo[/sub])"
        )
    return p


# --------------------------------------------------------------------------- entry point


def load_checkpoint(
    source: str | Path,
    format: str | None = None,
    *,
    device: str | torch.device | None = None,
    expected_d_in: int | None = None,
    expected_hookpoint: str | None = None,
    expected_model: str | None = None,
    allow_mismatch: bool = False,
    name: str | None = None,
) -> Basis:
    """Load an SAE checkpoint (any supported or plugin format) as a :class:`Basis`.

    ``expected_*`` describe where it will be used: a width other than ``expected_d_in`` is
    always an error; a recorded hookpoint or model other than the expected one is an error
    unless ``allow_mismatch`` (then a warning). ``info`` gets format, architecture,
    hookpoint, model, source, k, d_in, d_sae and format-specific fields.
    """
    path = resolve_source(source)
    fmt = None
    if format is not None:
        fmt = FORMAT_ALIASES.get(format.strip().lower(), format.strip())
    plugin = None
    if fmt is not None and fmt not in FORMATS:
        from autointerp.bases.registry import get_plugin, plugins

        plugin = get_plugin(fmt)
        if plugin is None:
            raise _fail(
                f"unknown checkpoint format {format!r}; known: {', '.join(FORMATS)}"
                + (f", plugins: {', '.join(plugins())}" if plugins() else "")
            )
    if path.is_dir() and fmt is None and _detect_any(path) is None:
        sub = _pick_subfolder(path, expected_hookpoint)
        if sub is not None:
            path = sub
    elif path.is_dir() and fmt in FORMATS and detect_format(path) is None:
        sub = _pick_subfolder(path, expected_hookpoint)
        if sub is not None:
            path = sub
    if fmt is None:
        fmt = detect_format(path)
        if fmt is None:
            from autointerp.bases.registry import detect_plugin, get_plugin

            pname = detect_plugin(path)
            if pname is not None:
                fmt, plugin = pname, get_plugin(pname)
    if fmt is None:
        listing = (
            ", ".join(sorted(p.name for p in path.iterdir())[:12]) if path.is_dir() else path.name
        )
        raise _fail(
            f"{path}: not a recognised SAE checkpoint (found: {listing}). Expected SAELens "
            "(cfg.json + sae_weights.safetensors), dictionary_learning (ae.pt [+ config.json]), "
            f"sparsify (cfg.json + sae.safetensors) or native ({NATIVE_CFG} + {NATIVE_WEIGHTS}); "
            "or pass format="
        )
    if plugin is not None:
        basis = _load_plugin(plugin, fmt, path, device, expected_d_in)
    else:
        if path.is_file() and fmt != "dictionary_learning":
            path = path.parent
        parsed = _LOADERS[fmt](path)
        cfg = {
            "apply_b_dec_to_input": True,
            "normalisation": "none",
            "scaling_factor": None,
            "rescale_acts_by_decoder_norm": False,
            **parsed.cfg,
        }
        d_in = int(parsed.tensors["W_enc"].shape[0])
        _check_d_in(d_in, expected_d_in, parsed.info.get("files", [str(path)])[0])
        info = {
            "format": fmt,
            "architecture": cfg["architecture"],
            "source": str(source),
            "path": str(path),
            "d_in": d_in,
            "d_sae": int(parsed.tensors["W_enc"].shape[1]),
            "k": cfg.get("k"),
            "normalisation": cfg["normalisation"],
            "apply_b_dec_to_input": cfg["apply_b_dec_to_input"],
            **parsed.info,
        }
        basis = sae_from_tensors(parsed.tensors, cfg, name=name or _default_name(path), info=info)
    _check_recorded(basis, expected_hookpoint, expected_model, allow_mismatch, path)
    basis.requires_grad_(False)
    if device is not None:
        basis = basis.to(device)
    return basis


def _default_name(path: Path) -> str:
    return path.stem if path.is_file() else path.name


def _check_d_in(d_in: int, expected: int | None, file: str) -> None:
    if expected is not None and int(expected) != d_in:
        raise _fail(
            f"{file}: d_in is {d_in} but the hookpoint's activations have width {expected}; "
            "this checkpoint was trained on another model or hookpoint"
        )


def _check_recorded(
    basis: Basis,
    expected_hookpoint: str | None,
    expected_model: str | None,
    allow_mismatch: bool,
    path: Path,
) -> None:
    problems = []
    hp = basis.info.get("hookpoint")
    if (
        expected_hookpoint is not None
        and hp is not None
        and not same_hookpoint(hp, expected_hookpoint)
    ):
        problems.append(f"hookpoint {hp!r} (expected {expected_hookpoint!r})")
    model = basis.info.get("model")
    if expected_model is not None and model is not None and not same_model(model, expected_model):
        problems.append(f"model {model!r} (expected {expected_model!r})")
    if not problems:
        return
    msg = f"{path}: checkpoint was recorded for {' and '.join(problems)}"
    if not allow_mismatch:
        raise _fail(msg + "; pass allow_mismatch=True (suite: allow_mismatch = true) to use it")
    log.warning("%s; used anyway (allow_mismatch)", msg)
    warnings.warn(msg + "; used anyway (allow_mismatch)", stacklevel=3)
    basis.info["mismatch"] = problems


def _load_plugin(plugin: Any, fmt: str, path: Path, device: Any, expected_d_in: int | None):
    cfg = {"format": fmt, "device": None if device is None else str(device)}
    try:
        basis = plugin.load(path, cfg)
    except CheckpointError:
        raise
    except Exception as e:
        raise _fail(f"{path}: plugin {fmt!r} failed to load it ({type(e).__name__}: {e})") from e
    if not isinstance(basis, Basis):
        raise _fail(
            f"plugin {fmt!r} returned {type(basis).__name__}, expected an "
            "autointerp.bases.base.Basis"
        )
    _check_d_in(basis.d_in, expected_d_in, str(path))
    basis.info.setdefault("format", fmt)
    basis.info.setdefault("source", str(path))
    basis.info.setdefault("d_in", basis.d_in)
    basis.info.setdefault("d_sae", basis.n_features)
    return basis


__all__ = [
    "FORMATS",
    "SAE",
    "canonical_hookpoint",
    "detect_format",
    "load_checkpoint",
    "parse_hf_source",
    "same_hookpoint",
    "same_model",
    "save_native",
]

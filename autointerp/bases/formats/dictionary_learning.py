"""dictionary_learning (saprmarks): ``ae.pt`` state dicts + the trainer's ``config.json``.

Layouts written by ``trainSAE`` (one folder per trainer)::

    trainer_0/config.json               {"trainer": {dict_class, activation_dim, dict_size,
                                          k, layer, lm_name, submodule_name, ...}, "buffer": ...}
    trainer_0/ae.pt                     final state dict
    trainer_0/checkpoints/ae_<step>.pt  mid-training state dicts (config.json one folder up)

Newer versions also back up ``ae.pt`` as ``{step, ae, optimizer, config, norm_factor}`` (the
weights then expect ``x / norm_factor``). Only ``torch.load(weights_only=True)`` is used.

Each class's ``encode`` in canonical terms (``x`` one token):

* AutoEncoder:      ``relu(W_e (x - bias) + b_e)``
* AutoEncoderNew:   ``relu(W_e x + b_e)``, decoder with its own bias
* AutoEncoderTopK:  per-token top-k of ``relu(W_e (x - b_dec) + b_e)``
* BatchTopKSAE and MatryoshkaBatchTopKSAE (all groups active, as loaded):
  ``post = relu(W_e (x - b_dec) + b_e)``, ``post * [post > threshold]`` (a scalar learnt in
  training; while it is still -1, before ``threshold_start_step``, per-token top-k instead)
* JumpReluAutoEncoder: ``relu(pre) * [pre > threshold]``, ``pre = x W_enc + b_enc`` (no b_dec)
* GatedAutoEncoder: ``[h + gate_bias > 0] * relu(exp(r_mag) h + mag_bias)``,
  ``h = W_e (x - decoder_bias)``
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch

from autointerp.bases.formats.common import (
    Parsed,
    check_finite,
    check_keys,
    check_shapes,
    f32,
    fail,
    read_json,
    read_torch,
    to_int,
)
from autointerp.bases.formats.hookpoints import layer_submodule_hookpoint

FINAL = "ae.pt"
CONFIG = "config.json"
CHECKPOINTS = "checkpoints"  # the trainer folder's subfolder of mid-training checkpoints
_STEP_RE = re.compile(r"^ae_(\d+)\.pt$")

# dict_class -> (architecture, layout)
CLASSES: dict[str, tuple[str, str]] = {
    "AutoEncoder": ("relu", "ae"),
    "AutoEncoderNew": ("relu", "ae_new"),
    "AutoEncoderTopK": ("topk", "topk"),
    "TopKSAE": ("topk", "topk"),
    "BatchTopKSAE": ("batchtopk", "topk"),
    "MatryoshkaBatchTopKSAE": ("batchtopk", "matryoshka"),
    "JumpReluAutoEncoder": ("jumprelu", "jump"),
    "GatedAutoEncoder": ("gated", "gated"),
}

_CANONICAL = {n: (n, False) for n in ("W_enc", "b_enc", "W_dec", "b_dec")}

# layout -> {raw key: (canonical, transpose?)}
KEYS: dict[str, dict[str, tuple[str, bool]]] = {
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
    "matryoshka": {**_CANONICAL, "group_sizes": ("group_sizes", False)},
    "jump": {**_CANONICAL, "threshold": ("threshold", False)},
    "gated": {
        "encoder.weight": ("W_enc", True),
        "decoder.weight": ("W_dec", True),
        "decoder_bias": ("b_dec", False),
        "gate_bias": ("b_gate", False),
        "r_mag": ("r_mag", False),
        "mag_bias": ("b_mag", False),
    },
}
# buffers beside the weights: k (int) and the learnt batch threshold (scalar)
OPTIONAL: dict[str, set[str]] = {"topk": {"k", "threshold"}, "matryoshka": {"k", "threshold"}}
_NOT_WEIGHTS = {"group_sizes"}  # read into info, not SAE tensors


def class_from_keys(keys: set[str]) -> str:
    """The class whose state dict has these keys (without config; AutoEncoderTopK and
    BatchTopKSAE have the same keys: AutoEncoderTopK is assumed)."""
    if "group_sizes" in keys:
        return "MatryoshkaBatchTopKSAE"
    if "W_enc" in keys:
        return "JumpReluAutoEncoder"
    if "gate_bias" in keys:
        return "GatedAutoEncoder"
    if "b_dec" in keys:
        return "AutoEncoderTopK"
    if "decoder.bias" in keys:
        return "AutoEncoderNew"
    return "AutoEncoder"


def is_step_name(name: str) -> bool:
    """True for a mid-training file name ``ae_<step>.pt``."""
    return _STEP_RE.match(name) is not None


def step_files(folder: Path) -> list[Path]:
    """``ae_<step>.pt`` files of a folder, by step."""
    if not folder.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in folder.iterdir()
        if (m := _STEP_RE.match(p.name)) and p.is_file()
    ]
    return [p for _, p in sorted(found)]


def detect(path: Path) -> bool:
    """A trainer folder (``ae.pt``, or only ``checkpoints/ae_<step>.pt`` so far) or its
    ``checkpoints`` folder."""
    return (path / FINAL).exists() or bool(step_files(path)) or bool(step_files(path / CHECKPOINTS))


def weights_file(path: Path) -> Path:
    """The ``.pt`` file to read for ``path`` (a file, a trainer folder or ``checkpoints``)."""
    if path.is_file() or (path / FINAL).exists():
        return path if path.is_file() else path / FINAL
    steps = step_files(path) or step_files(path / CHECKPOINTS)
    if len(steps) == 1:
        return steps[0]
    if steps:
        raise fail(
            f"{path}: no final {FINAL}, and {len(steps)} mid-training checkpoints "
            f"({', '.join(p.name for p in steps[:8])}{', ...' if len(steps) > 8 else ''}); "
            f"pass one file, e.g. {steps[-1]}"
        )
    return path / FINAL  # missing: read_torch names it


def config_file(w_file: Path) -> Path | None:
    """The trainer's ``config.json``: beside the weights, or one folder up for
    ``checkpoints/ae_<step>.pt``."""
    cands = [w_file.parent / CONFIG]
    if w_file.parent.name == CHECKPOINTS:
        cands.append(w_file.parent.parent / CONFIG)
    return next((c for c in cands if c.exists()), None)


def _state_dict(w_file: Path, info: dict[str, Any]) -> tuple[dict, dict, Any]:
    """(state dict, trainer config from the file, norm_factor) of a ``.pt`` file."""
    obj = read_torch(w_file)
    if not isinstance(obj, dict):
        raise fail(
            f"{w_file}: expected a state dict (a dict of tensors), found {type(obj).__name__}"
        )
    trainer: dict[str, Any] = {}
    norm_factor = None
    raw = obj
    if "ae" in obj and isinstance(obj["ae"], dict):  # training backup
        info["step"] = to_int(obj.get("step"))
        norm_factor = obj.get("norm_factor")
        if isinstance(obj.get("config"), dict):
            trainer = obj["config"].get("trainer", obj["config"])
        info["mid_training"] = True
        raw = obj["ae"]
    elif m := _STEP_RE.match(w_file.name):  # checkpoints/ae_<step>.pt
        info["step"] = int(m.group(1))
        info["mid_training"] = True
    non_tensor = [k for k, v in raw.items() if not isinstance(v, torch.Tensor)]
    if non_tensor:
        raise fail(
            f"{w_file}: entries {non_tensor[:5]} are not tensors; expected a state dict of "
            + " / ".join(CLASSES)
        )
    return raw, trainer, norm_factor


def load(path: Path) -> Parsed:
    """Read a dictionary_learning checkpoint (a ``.pt`` file or a folder, see module doc)."""
    w_file = weights_file(path)
    info: dict[str, Any] = {}
    raw, trainer, norm_factor = _state_dict(w_file, info)
    cfg_file = config_file(w_file)
    if cfg_file is not None:
        c = read_json(cfg_file)
        trainer = c.get("trainer", c) if isinstance(c.get("trainer", c), dict) else {}
    dict_class = trainer.get("dict_class") or class_from_keys(set(raw))
    if dict_class not in CLASSES:
        raise fail(
            f"{cfg_file or w_file}: unknown architecture dict_class={dict_class!r} in field "
            f"'trainer.dict_class'; known: {', '.join(CLASSES)}"
        )
    arch, layout = CLASSES[dict_class]
    keys = KEYS[layout]
    check_keys(
        raw, set(keys), OPTIONAL.get(layout, set()), w_file, f"dictionary_learning {dict_class}"
    )
    d_in, d_sae, src = _dims(raw, keys, trainer, w_file)
    shapes = {}
    for rk, (cn, tr) in keys.items():
        s = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}.get(cn, (d_sae,))
        shapes[rk] = tuple(reversed(s)) if tr else s
    shapes.pop("group_sizes", None)
    if "threshold" in raw and layout in OPTIONAL and raw["threshold"].numel() != 1:
        shapes["threshold"] = (d_sae,)
    check_shapes(raw, shapes, w_file, f"activation_dim={d_in}, dict_size={d_sae} from {src}")
    check_finite(raw, w_file)
    tensors = {}
    for rk, (cn, tr) in keys.items():
        if rk not in _NOT_WEIGHTS:
            t = f32(raw[rk])
            tensors[cn] = t.T.contiguous() if tr else t
    if "group_sizes" in raw:
        info["group_sizes"] = _group_sizes(raw["group_sizes"], d_sae, w_file)
    k = to_int(raw.get("k")) if "k" in raw else to_int(trainer.get("k"))
    if arch == "batchtopk" and "threshold" in raw:
        tensors["threshold"] = f32(raw["threshold"])
    if arch in ("topk", "batchtopk"):
        if k is None and not (arch == "batchtopk" and "threshold" in tensors):
            raise fail(f"{w_file}: {dict_class} without a 'k' buffer or trainer.k in config")
        if "threshold" in raw:
            info["threshold"] = float(raw["threshold"].float().mean())
    norm, factor = _norm(norm_factor, w_file, info)
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
            "hookpoint": layer_submodule_hookpoint(
                trainer.get("layer"), trainer.get("submodule_name")
            ),
            "model": trainer.get("lm_name"),
            "files": [str(w_file)] + ([str(cfg_file)] if cfg_file is not None else []),
        }
    )
    return Parsed(tensors, cfg, info)


def _dims(
    raw: dict[str, torch.Tensor], keys: dict[str, tuple[str, bool]], trainer: dict, w_file: Path
) -> tuple[int, int, str]:
    """(d_in, d_sae, where from): the config when it has them, else the encoder weight."""
    enc_key, (_, transposed) = next((rk, v) for rk, v in keys.items() if v[0] == "W_enc")
    enc = raw[enc_key]
    if enc.dim() != 2:
        raise fail(f"{w_file}: tensor {enc_key!r} must be 2-D, has shape {list(enc.shape)}")
    d_sae, d_in = tuple(enc.shape) if transposed else (enc.shape[1], enc.shape[0])
    if trainer.get("activation_dim") is not None and trainer.get("dict_size") is not None:
        return int(trainer["activation_dim"]), int(trainer["dict_size"]), "config"
    return int(d_in), int(d_sae), "the encoder weight"


def _group_sizes(t: torch.Tensor, d_sae: int, w_file: Path) -> list[int]:
    """Matryoshka group sizes: positive integers summing to ``dict_size``."""
    if t.dim() != 1 or t.is_floating_point():
        raise fail(
            f"{w_file}: tensor 'group_sizes' must be a 1-D integer tensor, has dtype "
            f"{str(t.dtype).removeprefix('torch.')} and shape {list(t.shape)}"
        )
    sizes = [int(s) for s in t.tolist()]
    if not sizes or min(sizes) <= 0 or sum(sizes) != d_sae:
        raise fail(
            f"{w_file}: tensor 'group_sizes' is {sizes}; expected positive sizes summing to "
            f"dict_size={d_sae}"
        )
    return sizes


def _norm(norm_factor: Any, w_file: Path, info: dict[str, Any]) -> tuple[str, float | None]:
    """Normalisation of a training backup's weights, trained on ``x / norm_factor``."""
    if norm_factor is None:
        return "none", None
    nf = float(norm_factor)
    if not math.isfinite(nf) or nf <= 0:
        raise fail(f"{w_file}: field 'norm_factor' must be a positive number, found {nf}")
    info["norm_factor"] = nf
    if nf == 1.0:
        return "none", None
    return "expected_average_only_in", 1.0 / nf  # scale in, unscale out

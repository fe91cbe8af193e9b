"""sparsify (EleutherAI): one folder per hookpoint, named after it, holding ``cfg.json``
(``k``, ``num_latents`` or ``expansion_factor``, ``d_in``) + ``sae.safetensors``
(``encoder.weight [F, d_in]``, ``encoder.bias``, ``W_dec [F, d_in]``, ``b_dec``); TopK.
The run folder above may hold a ``config.json`` naming the ``model``.
"""

from __future__ import annotations

import json
from pathlib import Path

from autointerp.bases.formats.common import (
    Parsed,
    check_finite,
    check_keys,
    check_shapes,
    f32,
    fail,
    read_json,
    read_safetensors,
)

CFG, WEIGHTS = "cfg.json", "sae.safetensors"


def detect(path: Path) -> bool:
    """A folder with sparsify's two files."""
    return (path / CFG).exists() and (path / WEIGHTS).exists()


def load(path: Path) -> Parsed:
    """Read one sparsify hookpoint folder."""
    cfg_file, w_file = path / CFG, path / WEIGHTS
    c = read_json(cfg_file)
    if c.get("transcode"):
        raise fail(f"{cfg_file}: field 'transcode' is true: transcoders are not supported")
    act = c.get("activation", "topk")
    if act != "topk":
        raise fail(
            f"{cfg_file}: unknown architecture activation={act!r} in field 'activation'; "
            "known: topk"
        )
    if not isinstance(c.get("k"), int):
        raise fail(f"{cfg_file}: field 'k' missing or not an integer: {c.get('k')!r}")
    raw = read_safetensors(w_file)
    if "W_skip" in raw or c.get("skip_connection"):
        raise fail(f"{w_file}: skip connections (W_skip) are not supported")
    check_keys(
        raw, {"encoder.weight", "encoder.bias", "W_dec", "b_dec"}, set(), w_file, "sparsify TopK"
    )
    enc = raw["encoder.weight"]
    if enc.dim() != 2:
        raise fail(f"{w_file}: tensor 'encoder.weight' must be 2-D, has {list(enc.shape)}")
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
    check_shapes(raw, shapes, w_file, f"d_in={d_in}, num_latents={d_sae} from {cfg_file}")
    check_finite(raw, w_file)
    tensors = {
        "W_enc": f32(raw["encoder.weight"]).T.contiguous(),
        "b_enc": f32(raw["encoder.bias"]),
        "W_dec": f32(raw["W_dec"]),
        "b_dec": f32(raw["b_dec"]),
    }
    cfg = {"architecture": "topk", "k": int(c["k"]), "apply_b_dec_to_input": True}
    model = None
    parent_cfg = path.parent / "config.json"  # the run's config, if any
    if parent_cfg.exists():
        try:
            pc = json.loads(parent_cfg.read_text())
            model = pc.get("model") if isinstance(pc, dict) else None
        except (json.JSONDecodeError, OSError, UnicodeDecodeError):
            model = None
    info = {
        "hookpoint": path.name,
        "model": model,
        "files": [str(cfg_file), str(w_file)],
    }
    return Parsed(tensors, cfg, info)

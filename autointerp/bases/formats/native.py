"""Native format: ``autointerp.json`` + ``weights.safetensors`` in the canonical layout,
written by :func:`save_native` (``train-sae``) and read back with every SAE option."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autointerp.bases.formats.common import (
    Parsed,
    arch_or_fail,
    check_canonical,
    f32,
    fail,
    read_json,
    read_safetensors,
    require_int_fields,
)
from autointerp.bases.sae import NORMALISATIONS, SAE

NATIVE_CFG = "autointerp.json"
NATIVE_WEIGHTS = "weights.safetensors"
NATIVE_FORMAT_VERSION = 1


def detect(path: Path) -> bool:
    """A folder with ``autointerp.json``."""
    return (path / NATIVE_CFG).exists()


def load(path: Path) -> Parsed:
    """Read a native folder."""
    cfg_file, w_file = path / NATIVE_CFG, path / NATIVE_WEIGHTS
    c = read_json(cfg_file)
    arch = arch_or_fail(c.get("architecture"), cfg_file, "architecture")
    require_int_fields(c, ("d_in", "d_sae"), cfg_file)
    d_in, d_sae = c["d_in"], c["d_sae"]
    raw = read_safetensors(w_file)
    check_canonical(raw, arch, d_in, d_sae, w_file, f"d_in={d_in}, d_sae={d_sae} in {cfg_file}")
    norm = c.get("normalisation", "none")
    if norm not in NORMALISATIONS:
        raise fail(
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
    return Parsed({n: f32(t) for n, t in raw.items()}, cfg, info)


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

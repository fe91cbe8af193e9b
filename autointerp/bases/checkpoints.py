"""Load SAE checkpoints of the common formats into one :class:`~autointerp.bases.sae.SAE`.

Formats (detected from the files; ``format=`` overrides), one module each under
:mod:`autointerp.bases.formats`, registered in its ``BUILTIN`` table:

* ``saelens``: ``cfg.json`` + ``sae_weights.safetensors`` (canonical layout).
* ``dictionary_learning``: ``ae.pt`` + the trainer's ``config.json``, or mid-training
  ``checkpoints/ae_<step>.pt`` with the config one folder up. ``torch.load(weights_only=True)``.
* ``sparsify`` (EleutherAI): a folder per hookpoint with ``cfg.json`` + ``sae.safetensors``.
* ``native``: ``autointerp.json`` + ``weights.safetensors`` (:func:`save_native`).
* any format registered by a plugin (entry-point group ``autointerp.bases``).

A folder (or hub repo) holding a family of checkpoints, one per hookpoint (a SAELens release,
a dictionary_learning trainer tree, a sparsify run, native folders), loads the member whose
own metadata records ``expected_hookpoint`` (:mod:`autointerp.bases.families`). Sources ``hf://owner/repo[/sub][@rev]``
are fetched with ``huggingface_hub.snapshot_download``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import torch

from autointerp.bases.base import Basis
from autointerp.bases.families import pick_member
from autointerp.bases.formats import (
    BUILTIN,
    BY_NAME,
    FORMAT_ALIASES,
    FORMATS,
    canonical_format,
    detect_format,
    load_path,
)
from autointerp.bases.formats.common import fail
from autointerp.bases.formats.hookpoints import canonical_hookpoint, same_hookpoint, same_model
from autointerp.bases.formats.native import (
    NATIVE_CFG,
    NATIVE_FORMAT_VERSION,
    NATIVE_WEIGHTS,
    save_native,
)
from autointerp.bases.formats.sources import fetch_hf, parse_hf_source, resolve_source
from autointerp.bases.sae import SAE, sae_from_tensors
from autointerp.errors import CheckpointError

log = logging.getLogger(__name__)


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
    fmt = canonical_format(format) if format is not None else None
    plugin = None
    if fmt is not None and fmt not in FORMATS:
        from autointerp.bases.registry import get_plugin, plugins

        plugin = get_plugin(fmt)
        if plugin is None:
            raise fail(
                f"unknown checkpoint format {format!r}; known: {', '.join(FORMATS)}"
                + (f", plugins: {', '.join(plugins())}" if plugins() else "")
            )
    family = str(source)
    source = pick_member(source, expected_hookpoint, fmt)  # a family: its member
    path = resolve_source(source)
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
        raise fail(
            f"{path}: not a recognised SAE checkpoint (found: {listing}). Expected "
            + ", ".join(f.describe for f in BUILTIN)
            + "; or pass format="
        )
    if plugin is not None:
        basis = _load_plugin(plugin, fmt, path, device, expected_d_in)
    else:
        spec = BY_NAME[fmt]
        path = load_path(spec, path)
        parsed = spec.load(path)
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
    if source != family:
        basis.info["family"] = family
    _check_recorded(basis, expected_hookpoint, expected_model, allow_mismatch, path)
    basis.requires_grad_(False)
    if device is not None:
        basis = basis.to(device)
    return basis


def _default_name(path: Path) -> str:
    return path.stem if path.is_file() else path.name


def _check_d_in(d_in: int, expected: int | None, file: str) -> None:
    if expected is not None and int(expected) != d_in:
        raise fail(
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
        raise fail(msg + "; pass allow_mismatch=True (suite: allow_mismatch = true) to use it")
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
        raise fail(f"{path}: plugin {fmt!r} failed to load it ({type(e).__name__}: {e})") from e
    if not isinstance(basis, Basis):
        raise fail(
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
    "FORMAT_ALIASES",
    "NATIVE_CFG",
    "NATIVE_FORMAT_VERSION",
    "NATIVE_WEIGHTS",
    "SAE",
    "canonical_hookpoint",
    "detect_format",
    "fetch_hf",
    "load_checkpoint",
    "parse_hf_source",
    "resolve_source",
    "same_hookpoint",
    "same_model",
    "save_native",
]

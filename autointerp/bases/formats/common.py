"""Helpers shared by the format readers: safe file reading and tensor checks.

Every problem becomes one :class:`~autointerp.errors.CheckpointError` naming the file, the
field or tensor, and what was expected vs found.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from autointerp.bases.sae import (
    ARCH_TENSORS,
    ARCHITECTURES,
    OPTIONAL_TENSORS,
    canonical_architecture,
)
from autointerp.errors import CheckpointError


@dataclass
class Parsed:
    """A checkpoint read from disk, before it becomes an SAE.

    ``tensors`` are canonical (``W_enc [d_in, d_sae]`` ...), ``cfg`` holds
    :meth:`~autointerp.bases.sae.SAE.config` keys, ``info`` goes to ``basis.info``.
    """

    tensors: dict[str, torch.Tensor]
    cfg: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)


def fail(msg: str) -> CheckpointError:
    """The error to raise for a checkpoint problem."""
    return CheckpointError(msg)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``."""
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise fail(f"{path}: file missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise fail(f"{path}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise fail(f"{path}: expected a JSON object, found {type(d).__name__}")
    return d


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, on the CPU."""
    from safetensors.torch import load_file

    if not path.exists():
        raise fail(f"{path}: weights file missing")
    try:
        return load_file(str(path), device="cpu")
    except Exception as e:  # safetensors raises its own error types
        raise fail(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from None


def read_torch(path: Path) -> Any:
    """A ``.pt`` file read with ``torch.load(weights_only=True)`` only (no code runs)."""
    if not path.exists():
        raise fail(f"{path}: weights file missing")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise fail(
            f"{path}: holds pickled Python objects, not a plain state dict, and is refused "
            f"(only torch.load(weights_only=True) is used; {first}). Re-save it with "
            "torch.save(model.state_dict(), 'ae.pt')"
        ) from None
    except Exception as e:
        raise fail(f"{path}: cannot be read by torch.load ({type(e).__name__}: {e})") from None


def to_int(v: Any) -> int | None:
    """An int from a number or a one-element tensor (``None`` stays ``None``)."""
    if v is None:
        return None
    if isinstance(v, torch.Tensor):
        return int(v.item())
    return int(v)


def f32(t: torch.Tensor) -> torch.Tensor:
    """A detached, contiguous float32 copy."""
    return t.detach().to(torch.float32).contiguous()


def check_keys(
    raw: dict[str, Any], required: set[str], optional: set[str], file: Path, what: str
) -> None:
    """Exactly the ``required`` tensors, plus any of ``optional``."""
    present = set(raw)
    missing = sorted(required - present)
    extra = sorted(present - required - optional)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing tensors {missing}")
        if extra:
            parts.append(f"unexpected tensors {extra}")
        raise fail(
            f"{file}: {' and '.join(parts)} for {what}; expected exactly "
            f"{sorted(required)}" + (f" (optionally {sorted(optional)})" if optional else "")
        )


def check_shapes(
    raw: dict[str, torch.Tensor], shapes: dict[str, tuple], file: Path, dims: str
) -> None:
    """Each tensor named in ``shapes`` (when present) has that shape; ``dims`` says why."""
    for key, shape in shapes.items():
        if key not in raw:
            continue
        found = tuple(raw[key].shape)
        if found != tuple(shape):
            raise fail(
                f"{file}: tensor {key!r} has shape {list(found)}, expected {list(shape)} ({dims})"
            )


# integer buffers some formats keep (dictionary_learning: k, Matryoshka group_sizes)
INT_OK = {"k", "step", "num_batches_tracked", "group_sizes"}


def check_finite(raw: dict[str, torch.Tensor], file: Path) -> None:
    """Every weight is a floating-point tensor with no NaN/Inf (an int32 ``W_enc`` would load
    as an all-zero encoder after a silent cast)."""
    for key, t in raw.items():
        if isinstance(t, torch.Tensor) and not t.is_floating_point() and key not in INT_OK:
            raise fail(
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
                raise fail(
                    f"{file}: tensor {key!r} has {n} non-finite values ({n_nan} NaN, "
                    f"{n - n_nan} Inf) of {t.numel()}; the checkpoint is corrupt or diverged "
                    "in training"
                )


def arch_or_fail(name: Any, file: Path, fld: str) -> str:
    """The canonical architecture for ``name`` read from field ``fld`` of ``file``."""
    arch = canonical_architecture(str(name)) if name is not None else None
    if arch is None:
        raise fail(
            f"{file}: unknown architecture {name!r} in field {fld!r}; known: "
            f"{', '.join(ARCHITECTURES)} (aliases: standard=relu, batch_topk=batchtopk)"
        )
    return arch


def check_canonical(
    raw: dict[str, torch.Tensor], arch: str, d_in: int, d_sae: int, file: Path, dims: str
) -> None:
    """Keys, shapes and finiteness of a canonical-layout state dict (saelens, native)."""
    required = {"W_enc", "W_dec", "b_dec", *ARCH_TENSORS[arch]}
    optional = set(OPTIONAL_TENSORS.get(arch, ()))
    check_keys(raw, required, optional, file, f"architecture {arch!r}")
    shapes = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    for n in ARCH_TENSORS[arch] + OPTIONAL_TENSORS.get(arch, ()):
        shapes[n] = (d_sae,)
    if arch == "batchtopk" and "threshold" in raw and raw["threshold"].dim() == 0:
        shapes.pop("threshold")
    check_shapes(raw, shapes, file, dims)
    check_finite(raw, file)


def require_int_fields(c: dict[str, Any], fields: tuple[str, ...], file: Path) -> None:
    """Each of ``fields`` is present in ``c`` and an integer."""
    for fld in fields:
        if not isinstance(c.get(fld), int):
            raise fail(f"{file}: field {fld!r} missing or not an integer: {c.get(fld)!r}")

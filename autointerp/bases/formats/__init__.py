"""The built-in checkpoint formats: one module each, registered in :data:`BUILTIN` below.

A format module provides ``detect(folder) -> bool`` and ``load(path) -> Parsed`` (canonical
tensors + SAE config + info, see :mod:`~autointerp.bases.formats.common`). Adding a format is
one module plus one :class:`Format` line here; third-party formats use the plugin entry
points instead (:mod:`autointerp.bases.registry`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autointerp.bases.formats import dictionary_learning, native, saelens, sparsify
from autointerp.bases.formats.common import Parsed


@dataclass(frozen=True)
class Format:
    """A built-in format.

    ``detect`` sees a folder; a file whose suffix is in ``file_suffixes`` is itself a
    checkpoint of this format and is passed to ``load`` as it is (other formats get the
    file's folder).
    """

    name: str
    aliases: tuple[str, ...]
    detect: Callable[[Path], bool]
    load: Callable[[Path], Parsed]
    file_suffixes: tuple[str, ...] = ()
    describe: str = ""  # the files, for the "not a recognised checkpoint" message


# Detection order: the first whose detect() is true wins.
BUILTIN: tuple[Format, ...] = (
    Format(
        "native",
        ("autointerp",),
        native.detect,
        native.load,
        describe=f"native ({native.NATIVE_CFG} + {native.NATIVE_WEIGHTS})",
    ),
    Format(
        "saelens",
        ("sae_lens", "sae-lens"),
        saelens.detect,
        saelens.load,
        describe="SAELens (cfg.json + sae_weights.safetensors)",
    ),
    Format(
        "sparsify",
        ("eleuther",),
        sparsify.detect,
        sparsify.load,
        describe="sparsify (cfg.json + sae.safetensors)",
    ),
    Format(
        "dictionary_learning",
        ("dictionary-learning", "dl"),
        dictionary_learning.detect,
        dictionary_learning.load,
        file_suffixes=(".pt",),
        describe="dictionary_learning (ae.pt [+ config.json], or checkpoints/ae_<step>.pt)",
    ),
)

BY_NAME: dict[str, Format] = {f.name: f for f in BUILTIN}
FORMATS: tuple[str, ...] = tuple(BY_NAME)
FORMAT_ALIASES: dict[str, str] = {a: f.name for f in BUILTIN for a in (f.name, *f.aliases)}


def canonical_format(name: str) -> str:
    """A built-in format's name for any of its aliases (other names come back stripped)."""
    key = name.strip()
    return FORMAT_ALIASES.get(key.lower(), key)


def detect_format(path: Path) -> str | None:
    """The built-in format whose files are in ``path`` (a folder, or a file in it)."""
    if path.is_file():
        for f in BUILTIN:
            if path.suffix in f.file_suffixes:
                return f.name
        path = path.parent
    for f in BUILTIN:
        if f.detect(path):
            return f.name
    return None


def load_path(fmt: Format, path: Path) -> Path:
    """What ``fmt.load`` receives for ``path``: a file it reads itself, else the folder."""
    if path.is_file() and not fmt.file_suffixes:
        return path.parent
    return path


__all__ = [
    "BUILTIN",
    "BY_NAME",
    "FORMATS",
    "FORMAT_ALIASES",
    "Format",
    "Parsed",
    "canonical_format",
    "detect_format",
    "load_path",
]

"""Basis kinds by name: ``kind = "pca"`` in a suite names a :class:`BasisKind` registered here.

A kind is a build function ``build(b: BasisBuild) -> Basis`` plus how the bases stage treats
it: ``order`` (0: built first — SAEs, whose L0 and feature count the others match; 1: the
rest; 2: last — nulls matched to every other basis), ``reference`` (the first basis of such a
kind sets the default ``l0`` and the random null's count), ``uses_l0`` (``b.k`` is resolved
for it), and ``save`` / ``load`` (when given, the built basis is kept in the work dir under
``bases/<label>-<hash>/`` and reused by any run with the same hash).

Built-in kinds (``sae``, ``pca``, ``ica``, ``neurons``, ``random``) live in
:mod:`autointerp.bases.builtin_kinds`; a third-party package registers more with
:func:`register_basis_kind` or the entry-point group ``autointerp.basis_kinds``
(``NAME = "package.module:KIND"``, a :class:`BasisKind`). Importing this module imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autointerp.registry import Registry

if TYPE_CHECKING:
    import numpy as np
    import torch

    from autointerp.bases.base import Basis
    from autointerp.config import BasisConfig

#: change when a built-in baseline's fit procedure changes (part of every linear basis's hash)
FIT_VERSION = "ica8192x100f32-pca-all-random32768f32"


@dataclass
class BasisBuild:
    """What a kind's build function sees (one basis of the suite)."""

    cfg: BasisConfig
    k: int | None  # top-k per token: the basis's ``l0``, else the reference SAE's
    width: int  # activation width at the hookpoint
    seed: int
    device: Any
    progress: bool
    first_sae: Basis | None  # the first basis of a reference kind, if any
    built: list[Basis]  # the bases built before this one
    #: up to n non-special fit-row activations (seeded); float32 by default and shared,
    #: another dtype a fresh copy the caller owns
    fit_tokens: Callable[..., torch.Tensor]
    density: Callable[[Basis], np.ndarray]  # a built basis's firing density over the corpus
    acts_hash: str
    model_name: str
    hookpoint: str
    corpus_source: str
    work_dir: Path  # for kinds with their own cache (trained SAEs)


@dataclass(frozen=True)
class BasisKind:
    """One basis kind (see the module docstring)."""

    name: str
    build: Callable[[BasisBuild], Basis]
    order: int = 1
    reference: bool = False
    uses_l0: bool = True
    save: Callable[[Basis, Path], None] | None = None
    load: Callable[[Path], Basis] | None = None
    #: extra entries of the basis's cache hash (default: ``{"sae": None, "matched": None}``)
    hash_extra: Callable[[BasisBuild], dict[str, Any]] | None = None
    doc: str = ""


def _check(name: str, obj: Any) -> None:
    if not isinstance(obj, BasisKind):
        raise TypeError(f"basis kind {name!r}: {obj!r} is not an autointerp BasisKind")


BUILTIN = {k: "autointerp.bases.builtin_kinds" for k in ("sae", "pca", "ica", "neurons", "random")}

BASIS_KINDS: Registry[BasisKind] = Registry(
    "basis kind", "autointerp.basis_kinds", BUILTIN, check=_check
)


def register_basis_kind(kind: BasisKind, *, replace: bool = False) -> BasisKind:
    """Make ``kind = "<kind.name>"`` usable in suites (no edit to autointerp)."""
    return BASIS_KINDS.register(kind.name, kind, replace=replace)  # type: ignore[return-value]


def get_basis_kind(name: str) -> BasisKind:
    return BASIS_KINDS.get(name)

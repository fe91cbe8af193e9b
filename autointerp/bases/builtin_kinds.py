"""The built-in basis kinds: ``sae`` (a checkpoint, or trained on the suite's activations),
``pca``, ``ica``, ``neurons`` and the ``random`` null (see :mod:`autointerp.bases.kinds`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from autointerp.bases.base import Basis
from autointerp.bases.kinds import BasisBuild, BasisKind, register_basis_kind
from autointerp.bases.linear import (
    fit_ica,
    fit_pca,
    fit_random,
    load_linear,
    mixture_target_density,
    neuron_basis,
    random_target_density,
    save_linear,
)
from autointerp.errors import ConfigError
from autointerp.results import stable_hash


def load_plugged(bc, *, device, width: int, hookpoint: str, model_name: str) -> Basis:
    """The checkpoint of an ``sae`` basis with a ``path``, checked against the model, the
    hookpoint and its width (``allow_mismatch`` turns the recorded-model/hookpoint refusal
    into a warning). A ``path`` holding a family of checkpoints (one per hookpoint) loads
    the member whose metadata records ``hookpoint`` (:mod:`autointerp.bases.families`)."""
    from autointerp.bases.checkpoints import load_checkpoint

    return load_checkpoint(
        bc.path,
        bc.format,
        device=device,
        expected_d_in=width,
        expected_hookpoint=hookpoint,
        expected_model=model_name,
        allow_mismatch=bc.allow_mismatch,
        name=bc.label,
    )


def checkpoint_files_hash(basis: Basis) -> str:
    """Content hash of the files a checkpoint was loaded from (its format's ``files``, else
    its ``path``), by file name and bytes; the tensors' hash when no file is known."""
    from pathlib import Path

    from autointerp.bases.fingerprint import files_hash, weights_hash

    files = basis.info.get("files") or [basis.info.get("path")]
    paths = [Path(f) for f in files if f]
    if not paths or not all(p.exists() for p in paths):
        return weights_hash(basis)
    return stable_hash(sorted([p.name, files_hash(p)] for p in paths), 16)


def build_sae(b: BasisBuild) -> Basis:
    """A checkpoint (``path``), checked against the model, hookpoint and width; or an SAE
    trained on the fit rows (``train``), kept in ``work/sae/<label>-<acts hash>/``."""
    bc = b.cfg
    if bc.path:
        sae = load_plugged(
            bc, device=b.device, width=b.width, hookpoint=b.hookpoint, model_name=b.model_name
        )
        sae.info["files_hash"] = checkpoint_files_hash(sae)
        # keyed by the files' contents, not their path: the same files anywhere share results,
        # and a checkpoint edited in place (same path) is a new key
        sae.info["config_hash"] = stable_hash({"files": sae.info["files_hash"], "fmt": bc.format})
        sae.info["stage_hash"] = sae.info["config_hash"]
        return sae
    if bc.train is None:
        raise ConfigError(
            f"bases.{bc.label}: an sae basis needs `path` (a checkpoint) or `train` "
            '(e.g. train = {{ architecture = "topk", expansion = 8, k = 32 }})'
        )
    from autointerp.train import train_or_load

    out = b.work_dir / "sae" / f"{bc.label}-{b.acts_hash}"
    meta = {"model": b.model_name, "hookpoint": b.hookpoint, "corpus": b.corpus_source}
    sae = train_or_load(
        b.fit_tokens(10**9), bc.train, out, meta, device=b.device, progress=b.progress,
        name=bc.label,
    )  # fmt: skip
    sae.info["stage_hash"] = sae.info.get("config_hash", "")
    return sae


def build_pca(b: BasisBuild) -> Basis:
    x = b.fit_tokens(10**9, torch.float64)  # its own float64 copy, centred in place
    return fit_pca(x, k=b.k, name=b.cfg.label, overwrite=True)


def build_ica(b: BasisBuild) -> Basis:
    return fit_ica(b.fit_tokens(8192), k=b.k, name=b.cfg.label, seed=b.seed)


def build_neurons(b: BasisBuild) -> Basis:
    return neuron_basis(b.width, k=b.k, name=b.cfg.label)


def random_target(b: BasisBuild) -> tuple[int, np.ndarray | None]:
    """(count, per-feature target densities) of a random null: the first SAE's count (else
    8x the width); densities the SAE's (``match = "sae"``) or an equal mixture of every
    other basis's (``match = "bases"``, ``docs/nulls.md``)."""
    n_f = b.first_sae.n_features if b.first_sae is not None else 8 * b.width
    others = [x for x in b.built if x.kind != "random"]
    if b.cfg.match == "bases" and others:
        return n_f, mixture_target_density([b.density(x) for x in others], n_f, b.seed)
    if b.first_sae is not None:
        return n_f, random_target_density(b.density(b.first_sae), n_f, b.seed)
    return n_f, None


def build_random(b: BasisBuild) -> Basis:
    n_f, target = random_target(b)
    basis = fit_random(
        b.fit_tokens(32768),
        n_features=n_f,
        target_density=target,
        seed=b.seed,
        name=b.cfg.label,
        space=b.cfg.space or "whitened",
    )
    basis.info["match"] = b.cfg.match
    return basis


def random_hash_extra(b: BasisBuild) -> dict[str, Any]:
    """The random null depends on the SAE it is counted from and the bases it is matched to."""
    return {
        "sae": b.first_sae.info.get("stage_hash", b.first_sae.name) if b.first_sae else None,
        "matched": [x.info.get("stage_hash", x.name) for x in b.built]
        if b.cfg.match == "bases"
        else None,
    }


_LINEAR = dict(save=save_linear, load=load_linear)

register_basis_kind(BasisKind("sae", build_sae, order=0, reference=True, uses_l0=False))
register_basis_kind(BasisKind("pca", build_pca, **_LINEAR))
register_basis_kind(BasisKind("ica", build_ica, **_LINEAR))
register_basis_kind(BasisKind("neurons", build_neurons, **_LINEAR))
register_basis_kind(
    BasisKind("random", build_random, order=2, hash_extra=random_hash_extra, **_LINEAR)
)

"""Stage ``bases``: every basis of the suite, built by its kind (:mod:`autointerp.bases.kinds`).

Kinds of order 0 (SAEs) first — they set the L0 the others are top-k'd to —, the random null
last (its densities match the others). A kind with ``save``/``load`` is kept in
``work/bases/<label>-<h>/`` keyed by the activations, its config, ``k``, the fit version and
the seed (``--force bases`` refits it); SAEs keep their own cache (``work/sae/``). Every
basis's ``info["stage_hash"]`` (the key of every later stage) adds the hash of its weights
(``info["weights_hash"]``; a plugged-in checkpoint's: its files' contents)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from autointerp.bases.base import Basis
from autointerp.bases.fingerprint import weights_hash
from autointerp.bases.kinds import FIT_VERSION, BasisBuild, BasisKind, get_basis_kind
from autointerp.errors import ConfigError
from autointerp.results import stable_hash
from autointerp.run.stage import Artifact, FileCodec, Stage, StageContext
from autointerp.stages.density import density_of
from autointerp.stages.env import model_salt


class BasisCodec(FileCodec):
    """A basis folder written by the kind's ``save`` (complete once ``basis.json`` exists)."""

    def __init__(self, kind: BasisKind) -> None:
        self.kind = kind

    def exists(self, path: Path) -> bool:
        return (path / "basis.json").exists()

    def save(self, path: Path, value: Basis) -> None:
        self.kind.save(value, path)

    def load(self, path: Path) -> Basis:
        return self.kind.load(path)


def fit_tokens(
    acts, mask, fit_rows, n: int, seed: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Up to ``n`` non-special activations from the fit rows (seeded subsample), as ``dtype``
    (float64 holds the same values exactly: PCA's copy, made without a float32 one)."""
    keep = ~mask[fit_rows]  # [rows, T]
    total = int(keep.sum())
    take = None
    if total > n:  # the seeded subsample, as indices into the kept tokens in row order
        g = torch.Generator().manual_seed(seed)
        take = torch.randperm(total, generator=g)[:n].sort().values.numpy()
    # filled in place, 256 rows at a time: no list of pieces and no second full copy
    x = torch.empty((total if take is None else len(take), acts.shape[-1]), dtype=dtype)
    at = got = 0
    for s in range(0, len(fit_rows), 256):
        r = fit_rows[s : s + 256]
        piece = np.asarray(acts[r])[keep[s : s + 256]]
        if take is not None:
            lo, hi = np.searchsorted(take, [at, at + len(piece)])
            piece = piece[take[lo:hi] - at]
        x[got : got + len(piece)] = torch.from_numpy(np.ascontiguousarray(piece, np.float32))
        at += int(keep[s : s + 256].sum())
        got += len(piece)
    return x


def default_l0(ctx: StageContext, sae: Basis | None, acts, mask, rows) -> int:
    """The reference SAE's L0: its ``k`` (topk), else its mean firing count on ``rows``."""
    if sae is None:
        raise ConfigError(
            "bases: a linear basis needs `l0` (top-k per token) when the suite has no SAE "
            'to match; e.g. { kind = "pca", l0 = 32 }'
        )
    if "k" in sae.info and sae.info.get("architecture") == "topk":
        return int(sae.info["k"])
    d = density_of(ctx, sae, acts, mask, rows)
    return max(1, int(round(float(d.sum()))))


def fit_waves(cfgs: list, kinds: dict[str, BasisKind]) -> dict[str, int]:
    """label -> its wave: consecutive bases (in build order) of one order whose kind is kept in
    the work dir and whose key does not depend on the bases built before it (no
    ``hash_extra``) share a wave and can be fitted at once; any other basis is a wave alone."""
    wave, out, prev = -1, {}, None
    for bc in cfgs:
        k = kinds[bc.kind]
        free = k.save is not None and k.load is not None and k.hash_extra is None
        if not (free and prev == k.order):
            wave += 1
        prev = k.order if free else None
        out[bc.label] = wave
    return out


def compute_bases(ctx: StageContext, inputs: dict[str, Any]) -> list[Basis]:
    return build_bases(ctx, inputs)


def fit_one(ctx: StageContext, inputs: dict[str, Any], label: str) -> None:
    """One basis's fit (an executor task): the bases before its wave are loaded, its
    siblings in the wave are left to their own tasks (:func:`fit_waves`)."""
    build_bases(ctx, inputs, only=label)


def build_bases(ctx: StageContext, inputs: dict[str, Any], only: str | None = None) -> list[Basis]:
    """Every basis in build order (``only``: up to that one, skipping its wave's others).
    Under a parallel executor, each wave's fits missing from the work dir are made as tasks
    first (:meth:`StageContext.prefetch`); the loop then loads them."""
    env = ctx.env
    suite = env.suite
    salt = model_salt(suite)

    def keyed(b: Basis, h: str) -> None:
        """Set ``b``'s hash for every stage after this one (density, records, metrics, the
        causal stages): its build key ``h`` and the hash of its weights (a plugged-in
        checkpoint: of its files), so results made for other weights are never reused; under
        a re-initialised model the model's salt is added (nothing shared with the trained
        model's runs)."""
        wh = b.info.get("files_hash") or weights_hash(b)
        b.info["weights_hash"] = wh
        b.info["stage_hash"] = stable_hash({"basis": h, "weights": wh, **salt})
        ctx.item_hashes.append(b.info["stage_hash"])

    acts, width = inputs["activations"].acts, inputs["activations"].width
    split = inputs["split"]
    mask = split.mask
    cfgs = suite.bases
    names = [b.label for b in cfgs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"bases: duplicate names {sorted(dup)}; give each a distinct `name`")
    fits: dict[int, torch.Tensor] = {}

    def fit_x(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """float32: kept for the next basis that asks. Another dtype (PCA's float64): a fresh
        copy the caller may overwrite, made after the kept ones are let go (they are rebuilt
        from the map in about a second), so the two copies never coexist."""
        if dtype != torch.float32:
            fits.clear()
            return fit_tokens(acts, mask, split.fit_rows, n, suite.seed, dtype)
        if n not in fits:
            fits[n] = fit_tokens(acts, mask, split.fit_rows, n, suite.seed)
        return fits[n]

    kinds = {bc.kind: get_basis_kind(bc.kind) for bc in cfgs}
    ordered = sorted(cfgs, key=lambda b: kinds[b.kind].order)
    waves = fit_waves(ordered, kinds)
    bases: list[Basis] = []
    first_sae: Basis | None = None

    def plan(bc: Any) -> tuple[BasisBuild, str | None, Artifact | None]:
        """The build of ``bc`` and, for a kind kept in the work dir, its key and artifact."""
        kind = kinds[bc.kind]
        k = None
        if kind.uses_l0:
            k = bc.l0 if bc.l0 is not None else default_l0(
                ctx, first_sae, acts, mask, split.metric_rows
            )  # fmt: skip
        build = BasisBuild(
            cfg=bc, k=k, width=width, seed=suite.seed, device=env.device, progress=ctx.progress,
            first_sae=first_sae, built=list(bases), fit_tokens=fit_x,
            density=lambda b: density_of(ctx, b, acts, mask, split.all_rows),
            acts_hash=ctx.upstream["activations"], model_name=env.sm_name,
            hookpoint=suite.model.hookpoint, corpus_source=suite.corpus.source,
            work_dir=env.store.work_dir,
        )  # fmt: skip
        if kind.save is None or kind.load is None:
            return build, None, None
        extra = kind.hash_extra(build) if kind.hash_extra else {"sae": None, "matched": None}
        h = stable_hash(
            {
                "acts": build.acts_hash,
                "cfg": bc.model_dump(),
                "k": k,
                "fit": FIT_VERSION,
                **extra,
                "seed": suite.seed,
            }
        )
        art = Artifact(
            BasisCodec(kind),
            place=lambda s, h, label=bc.label: s.work("bases", f"{label}-{h}"),
            shared=False,
        )
        return build, h, art

    seen: set[int] = set()
    for bc in ordered:
        w = waves[bc.label]
        if only is not None and bc.label != only and w == waves[only]:
            continue  # a sibling in the wave: its own task fits it
        if only is None and ctx.parallel and w not in seen:
            seen.add(w)
            todo = []
            for sib in (c for c in ordered if waves[c.label] == w):
                _, h, art = plan(sib)
                if h is not None and not ctx.available(f"bases-{sib.label}", h, art):
                    todo.append(sib.label)
            ctx.prefetch(fit_one, todo)  # fits: CPU tasks
        kind = kinds[bc.kind]
        build, h, art = plan(bc)
        if h is not None and art is not None:
            b = ctx.cached(
                f"bases-{bc.label}", h, lambda build=build, kind=kind: kind.build(build), art
            )
            keyed(b, h)
        else:
            b = kind.build(build)
            keyed(b, str(b.info.get("stage_hash", b.info.get("config_hash", ""))))
            if b.info.get("reused") or bc.path:
                ctx.report.cached += 1
            else:
                ctx.report.computed += 1
        if kind.reference and first_sae is None:
            first_sae = b
        b.to(env.device)
        bases.append(b)
        if bc.label == only:
            return bases
    order = {n: i for i, n in enumerate(names)}
    return sorted(bases, key=lambda b: order[b.name])


BASES = Stage(
    "bases",
    compute_bases,
    deps=("activations", "split"),
    doc="activations -> SAEs, PCA, ICA, neurons, random directions (by kind)",
)

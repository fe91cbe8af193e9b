"""Stage ``density``: each basis's per-feature firing fraction over the corpus
(``stages/density-<h>.npy``). Encoding the whole corpus once, it keeps the non-zero codes of a
basis the records stage would otherwise encode in full again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from autointerp.bases.base import Basis
from autointerp.results import stable_hash
from autointerp.run.stage import NPY, Artifact, Stage, StageContext

DENSITY_ARTIFACT = Artifact(NPY)


def iter_rows(rows: np.ndarray, batch_rows: int = 32) -> Iterator[np.ndarray]:
    for s in range(0, len(rows), batch_rows):
        yield np.asarray(rows[s : s + batch_rows])


def rows_x(acts, mask, r: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.array(acts[r])), torch.from_numpy(mask[r])


def iter_x(acts, mask, rows, batch_rows: int = 32) -> Iterator[tuple]:
    for r in iter_rows(rows, batch_rows):
        yield rows_x(acts, mask, r)


def density_key(basis: Basis, rows: np.ndarray) -> str:
    return f"{basis.name}-{basis.info.get('stage_hash', '')}-{stable_hash(rows.tolist())}"


def token_codes(nz: list[tuple[np.ndarray, ...]], shape: tuple[int, int]):
    from autointerp.records import TokenCodes

    def cat(i: int, dtype) -> np.ndarray:
        return np.concatenate([p[i] for p in nz]).astype(dtype) if nz else np.zeros(0, dtype)

    return TokenCodes(shape, cat(0, np.int32), cat(1, np.int32), cat(2, np.float32))


@torch.no_grad()
def count_density(env: Any, basis: Basis, acts, mask, rows: np.ndarray, key: str) -> np.ndarray:
    """Firing fraction of each feature over the non-special tokens of ``rows``."""
    counts = torch.zeros(basis.n_features, dtype=torch.float64)
    n = 0
    # Over the whole corpus, a basis that records would encode in full again keeps its
    # non-zero codes for the records stage (~80 MB for a topk-32 SAE on 205k tokens).
    keep = len(rows) == len(mask) and not basis.separable_features
    T = mask.shape[1]
    nz: list[tuple[np.ndarray, ...]] = []
    for r in iter_rows(rows):
        x, ex = rows_x(acts, mask, r)
        x = x[~ex].to(env.device)
        tok = (r[:, None] * T + np.arange(T))[~ex.numpy()]
        for s in range(0, len(x), 4096):
            c = basis.encode(x[s : s + 4096])
            fired = c > 0
            counts += fired.sum(0, dtype=torch.int32).double().cpu()
            if keep:
                i, j = (c != 0).nonzero(as_tuple=True)
                v = c[i, j].float().cpu().numpy()
                nz.append((tok[s : s + 4096][i.cpu().numpy()], j.cpu().numpy(), v))
        n += len(x)
    if keep:
        env.codes[key] = token_codes(nz, mask.shape)
    return (counts / max(n, 1)).numpy()


def density_of(ctx: StageContext, basis: Basis, acts, mask, rows: np.ndarray) -> np.ndarray:
    """The density of ``basis`` over ``rows``, cached (``--force metrics`` redoes it) and held
    in memory for the rest of the run (the bases stage asks for some before this stage)."""
    key = density_key(basis, rows)
    return ctx.cached(
        "density",
        stable_hash(key),
        lambda: count_density(ctx.env, basis, acts, mask, rows, key),
        DENSITY_ARTIFACT,
        forced_by=("metrics",),
        memo=True,
    )


def density_one(ctx: StageContext, inputs: dict[str, Any], name: str) -> None:
    """One basis's density (an executor task)."""
    acts, split = inputs["activations"].acts, inputs["split"]
    b = next(b for b in inputs["bases"] if b.name == name)
    density_of(ctx, b, acts, split.mask, split.all_rows)


def compute_density(ctx: StageContext, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    acts, split = inputs["activations"].acts, inputs["split"]
    if ctx.parallel:
        ctx.prefetch(density_one, [
            b.name for b in inputs["bases"]
            if not ctx.available("density", stable_hash(density_key(b, split.all_rows)),
                                 DENSITY_ARTIFACT)
        ])  # fmt: skip
    return {b.name: density_of(ctx, b, acts, split.mask, split.all_rows) for b in inputs["bases"]}


DENSITY = Stage(
    "density",
    compute_density,
    deps=("bases", "activations", "split"),
    forced_by=("metrics",),
    doc="bases -> per-feature firing density over the corpus",
)

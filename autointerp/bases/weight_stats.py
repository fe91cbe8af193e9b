"""Per-feature weight statistics of a basis, as SAEBench's ``core`` eval reports them
(docs/publishing.md), and each feature's decoder vector and nearest decoder neighbours.

Every basis is read as an encoder ``W_enc [d_in, F]`` with bias ``b [F]`` (pre-activation
``x @ W_enc + b``) and a decoder ``W_dec [F, d_in]``:

* SAE: its own ``W_enc``, ``b_enc`` (``b_mag`` for a gated SAE, zeros when it has neither,
  as SAEBench does) and ``W_dec``;
* signed linear bases (PCA, ICA, neurons): feature ``j < m`` is direction ``j`` read with
  ``+E[:, j]``, bias ``-(mu @ E)_j``, decoder ``+D[j]``; feature ``m + j`` the same negated;
* random directions: ``R[:, i]``, bias ``-(mu @ R)_i - t_i``, decoder ``scale * Dr[:, i]``;
* any other basis: decoder ``decode(e_i) - decode(0)``, no encoder (its encoder fields are
  undefined, written as NaN).

Then ``encoder_norm_i = ||W_enc[:, i]||``, ``encoder_decoder_cosine_sim_i = cos(W_enc[:, i],
W_dec[i])`` (NaN for a zero vector), and ``max_encoder_cosine_sim_i = max_{j != i}
cos(W_enc[:, i], W_enc[:, j])`` (``max_decoder_cosine_sim`` the same over decoder rows; a zero
vector has cosine 0 there, as in SAEBench's ``calculate_max_cosine_sim``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
import torch

from autointerp.bases.base import Basis

#: nearest decoder neighbours kept per recorded feature (Neuronpedia's ``topkCosSim``)
TOP_K_COS = 10
STAT_COLUMNS = (
    "encoder_norm",
    "encoder_bias",
    "encoder_decoder_cosine_sim",
    "max_encoder_cosine_sim",
    "max_decoder_cosine_sim",
)


@torch.no_grad()
def encoder_decoder(basis: Basis) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """``(W_enc [d, F] or None, bias [F] or None, W_dec [F, d])`` (module docstring)."""
    from autointerp.bases.linear import RandomDirections, SignedLinearBasis
    from autointerp.bases.sae import SAE

    if isinstance(basis, SAE):
        if basis.architecture == "gated" and basis.b_mag is not None:
            bias = basis.b_mag
        elif basis.b_enc is not None:
            bias = basis.b_enc
        else:
            bias = torch.zeros(basis.n_features, device=basis.W_enc.device)
        return basis.W_enc.float(), bias.float(), basis.W_dec.float()
    if isinstance(basis, SignedLinearBasis):
        e, d, mu = basis.E.float(), basis.D.float(), basis.mu.float()
        shift = mu @ e
        return torch.cat([e, -e], 1), torch.cat([-shift, shift]), torch.cat([d, -d], 0)
    if isinstance(basis, RandomDirections):
        r = basis.R.float()
        return r, -(basis.mu.float() @ r) - basis.t.float(), basis.scale * basis.Dr.float().T
    from autointerp.causal.logit_lens import feature_directions

    n, step = basis.n_features, 1024  # one-hot decodes in chunks: never an F x F matrix
    rows = [feature_directions(basis, range(s, min(s + step, n))) for s in range(0, n, step)]
    return None, None, torch.cat(rows, 0)


def _unit_columns(w: torch.Tensor) -> torch.Tensor:
    n = w.norm(dim=0, keepdim=True)
    return w / torch.where(n > 0, n, torch.full_like(n, float("nan")))


def max_cosine_sim(w: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """``[F]``: each column's largest cosine similarity with any other column of ``w [d, F]``
    (chunked: never an F x F matrix). Columns are normalised as SAEBench does
    (``F.normalize``: a zero column has cosine 0 with every other)."""
    u = torch.nn.functional.normalize(w.float(), dim=0)
    n = u.shape[1]
    out = torch.full((n,), float("nan"), dtype=torch.float32, device=u.device)
    if n < 2:
        return out
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        sims = u[:, s:e].T @ u
        sims[torch.arange(e - s, device=u.device), torch.arange(s, e, device=u.device)] = float(
            "-inf"
        )
        out[s:e] = sims.max(dim=1).values
    return out


def top_cosine(
    w: torch.Tensor, features: Sequence[int], k: int = TOP_K_COS
) -> tuple[list[list[int]], list[list[float]]]:
    """For each of ``features``: the ``k`` other columns of ``w [d, F]`` with the largest cosine
    similarity (indices, values; best first; the feature itself left out)."""
    u = torch.nn.functional.normalize(w.float(), dim=0)
    f = torch.as_tensor(list(features), dtype=torch.long, device=u.device)
    if not len(f):
        return [], []
    sims = u[:, f].T @ u
    sims[torch.arange(len(f), device=u.device), f] = float("-inf")
    vals, idx = sims.topk(min(k, max(u.shape[1] - 1, 0)), dim=1)
    return idx.cpu().tolist(), vals.cpu().double().tolist()


@torch.no_grad()
def weight_stats(basis: Basis, features: Sequence[int]) -> pl.DataFrame:
    """One row per feature of ``basis``: ``index``, the :data:`STAT_COLUMNS` (NaN when the
    basis has no encoder) and, for ``features`` only (else null), ``decoder`` (its decoder
    row), ``topk_cos_indices`` / ``topk_cos_values`` (nearest decoder rows)."""
    w_enc, bias, w_dec = encoder_decoder(basis)
    n = basis.n_features
    nan = np.full(n, np.nan)

    def arr(t: torch.Tensor) -> np.ndarray:
        return t.detach().double().cpu().numpy()

    dec_t = w_dec.T  # [d, F]
    cols: dict[str, np.ndarray] = {"max_decoder_cosine_sim": arr(max_cosine_sim(dec_t))}
    if w_enc is None or bias is None:
        cols |= {c: nan for c in STAT_COLUMNS if c != "max_decoder_cosine_sim"}
    else:
        enc_u, dec_u = _unit_columns(w_enc), _unit_columns(dec_t)
        cols |= {
            "encoder_norm": arr(w_enc.norm(dim=0)),
            "encoder_bias": arr(bias),
            "encoder_decoder_cosine_sim": arr((enc_u * dec_u).sum(0)),
            "max_encoder_cosine_sim": arr(max_cosine_sim(w_enc)),
        }
    feats = sorted({int(f) for f in features})
    idx, vals = top_cosine(dec_t, feats)
    dec = w_dec[torch.as_tensor(feats, dtype=torch.long, device=w_dec.device)].cpu().tolist()
    at = {f: i for i, f in enumerate(feats)}
    return pl.DataFrame(
        {
            "index": np.arange(n, dtype=np.int64),
            **{c: cols[c] for c in STAT_COLUMNS},
            "decoder": [dec[at[i]] if i in at else None for i in range(n)],
            "topk_cos_indices": [idx[at[i]] if i in at else None for i in range(n)],
            "topk_cos_values": [vals[at[i]] if i in at else None for i in range(n)],
        },
        schema={
            "index": pl.Int64,
            **{c: pl.Float64 for c in STAT_COLUMNS},
            "decoder": pl.List(pl.Float32),
            "topk_cos_indices": pl.List(pl.Int64),
            "topk_cos_values": pl.List(pl.Float64),
        },
    )

"""Latent attribution as gradient x Δ (docs/attribution.md): the first-order change of a metric
m when feature i moves from a baseline code ``b`` to its actual code ``c``, with the error term
held fixed (``x = decode(c) + e``), summed over positions:

    a_i = sum_t (c[t, i] - b[t, i]) * dm/dc[t, i]          (at the actual point)

Baselines: ``zero`` (b = 0: gradient x activation, the effect of zero-ablating the feature),
``mean`` (b = the feature's mean code over corpus tokens: OpenAI 2025's latent attribution,
whose ``δ_{i,t} = −(g_t·d_i)((a_t − ā)·d_i)`` is ``−a`` for the loss when the encoder is the
transpose of an orthonormal decoder) and, for IOI, ``cf`` (b = the counterfactual prompt's code:
attribution patching, Marks et al. 2024, whose effect ``(c_patch − c_clean)·∂m/∂c`` is ``−a``).
Metrics:

* ``ioi``: m = logit(IO) - logit(S) at the last position of each clean IOI prompt (one row per
  prompt, summed over its positions, BOS left out);
* ``loss``: m = the summed next-token cross-entropy of a held-out corpus row (one row per
  corpus row, over its positions that are neither special tokens nor the last one).

Pooled over rows, ``A_i = sum_rows a[row, i]``; concentration is the share of
``sum_i |A_i|`` held by the ``ceil(1% * F)`` and the 10 features of largest ``|A_i|``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from autointerp.bases.base import Basis
from autointerp.causal.intervene import encode_with_error
from autointerp.causal.patching import Group, IOIData, decoder_grad, grad_at
from autointerp.metrics import _resume_at
from autointerp.model import Hookpoint, SubjectModel, splice

BASELINES = ("zero", "mean", "cf")


def _check(baselines: Sequence[str], mean: torch.Tensor | None, ioi: bool) -> None:
    allowed = BASELINES if ioi else BASELINES[:2]
    bad = [b for b in baselines if b not in allowed]
    if bad:
        raise ValueError(f"attribution baselines {bad} unknown; use {list(allowed)}")
    if "mean" in baselines and mean is None:
        raise ValueError("the mean baseline needs the basis's mean codes (mean_codes())")


@torch.no_grad()
def mean_codes(basis: Basis, acts, mask: np.ndarray, rows: np.ndarray) -> torch.Tensor:
    """``[F]``: each feature's mean code over the non-special tokens of ``rows``."""
    tot = torch.zeros(basis.n_features, dtype=torch.float64)
    n = 0
    for s in range(0, len(rows), 32):
        r = np.asarray(rows[s : s + 32])
        x = torch.from_numpy(np.array(acts[r], dtype=np.float32))[~torch.from_numpy(mask[r])]
        for j in range(0, len(x), 4096):
            c, _ = encode_with_error(basis, x[j : j + 4096])
            tot += c.double().sum(0).cpu()
        n += len(x)
    return (tot / max(n, 1)).float()


def ioi_attributions(
    sm: SubjectModel,
    hp: Hookpoint,
    data: IOIData,
    basis: Basis,
    baselines: Sequence[str] = ("zero",),
    mean: torch.Tensor | None = None,
) -> dict[str, np.ndarray]:
    """Per baseline ``[P, F]``: grad x Δ of the IOI logit difference, per prompt (BOS, when
    the prompts start with it, is not counted: its codes are not features of the text). The
    gradient at the hookpoint is computed once per group and shared by every basis and
    baseline."""
    _check(baselines, mean, ioi=True)
    out = {k: np.zeros((len(data.pairs), basis.n_features)) for k in baselines}
    bos = sm.bos_token_id
    for g in data.groups:
        gx = _ld_grad(sm, hp, data, g)
        with torch.no_grad():
            c, _err = encode_with_error(basis, g.x_clean)
        w = (g.clean != bos) if bos is not None else torch.ones_like(g.clean, dtype=torch.bool)
        gc = decoder_grad(basis, c, gx) * w[..., None].to(c)
        for k in baselines:
            if k == "zero":
                d = c
            elif k == "mean":
                d = c - mean.to(c)  # type: ignore[union-attr]
            else:
                with torch.no_grad():
                    d = c - encode_with_error(basis, g.x_cf)[0]
            out[k][g.rows] = (d * gc).sum(1).double().cpu().numpy()
    return out


def ioi_attribution(sm: SubjectModel, hp: Hookpoint, data: IOIData, basis: Basis) -> np.ndarray:
    """``[P, F]``: the zero-baseline (gradient x activation) IOI attribution."""
    return ioi_attributions(sm, hp, data, basis, ("zero",))["zero"]


def _ld_grad(sm: SubjectModel, hp: Hookpoint, data: IOIData, g: Group) -> torch.Tensor:
    got = getattr(g, "_grad_ld", None)
    if got is None:
        io = torch.tensor([data.pairs[i].io_id for i in g.rows])
        s = torch.tensor([data.pairs[i].s_id for i in g.rows])
        ar = torch.arange(len(g.rows))

        def metric(lp: torch.Tensor) -> torch.Tensor:
            return (lp[ar, io.to(lp.device)] - lp[ar, s.to(lp.device)]).sum()

        got = grad_at(sm, hp, g, data.skip, metric)
        g._grad_ld = got  # type: ignore[attr-defined]
    return got


def loss_attributions(
    sm: SubjectModel,
    hp: Hookpoint,
    bases: list[Basis],
    ids: torch.Tensor,
    acts: torch.Tensor,
    exclude: torch.Tensor,
    skip: int,
    batch_size: int = 8,
    baselines: Sequence[str] = ("zero",),
    means: dict[str, torch.Tensor] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Per basis and baseline ``[rows, F]``: grad x Δ of each row's summed next-token CE.
    ``acts`` are the cached activations at ``hp`` for ``ids``; codes at ``exclude`` positions
    (special tokens) are not counted, nor are the predictions made from them. One backward
    pass per batch, shared by every basis; ``means[basis]`` the mean codes of the ``mean``
    baseline."""
    means = means or {}
    for b in bases:
        _check(baselines, means.get(b.name), ioi=False)
    out = {b.name: {k: np.zeros((len(ids), b.n_features)) for k in baselines} for b in bases}
    dtype = next(sm.model.parameters()).dtype
    for s in range(0, len(ids), batch_size):
        b_ids = ids[s : s + batch_size].to(sm.device)
        ex = exclude[s : s + batch_size].to(sm.device)
        x = acts[s : s + batch_size].to(sm.device, torch.float32).requires_grad_(True)
        with torch.enable_grad():
            if skip:
                with _resume_at(sm, skip, x.to(dtype)):
                    logits = sm.model(input_ids=b_ids, use_cache=False).logits
            else:
                with splice(hp, lambda a, x=x: x.to(a.dtype)):
                    logits = sm.model(input_ids=b_ids, use_cache=False).logits
            lp = F.log_softmax(logits[:, :-1].float(), -1)
            nll = -lp.gather(-1, b_ids[:, 1:, None]).squeeze(-1)
            (nll * (~ex[:, :-1])).sum().backward()
        assert x.grad is not None
        for b in bases:
            with torch.no_grad():
                c, _err = encode_with_error(b, x.detach())
            gc = decoder_grad(b, c, x.grad) * (~ex)[..., None].to(c)
            for k in baselines:
                d = c if k == "zero" else c - means[b.name].to(c)
                out[b.name][k][s : s + batch_size] = (d * gc).sum(1).double().cpu().numpy()
    return out


def loss_attribution(
    sm: SubjectModel,
    hp: Hookpoint,
    bases: list[Basis],
    ids: torch.Tensor,
    acts: torch.Tensor,
    exclude: torch.Tensor,
    skip: int,
    batch_size: int = 8,
) -> dict[str, np.ndarray]:
    """Per basis ``[rows, F]``: the zero-baseline (gradient x activation) loss attribution."""
    got = loss_attributions(sm, hp, bases, ids, acts, exclude, skip, batch_size)
    return {k: v["zero"] for k, v in got.items()}


def concentration(a: np.ndarray) -> tuple[float | None, float | None]:
    """Share of ``sum_i |A_i|`` in the top ``ceil(1% F)`` and top 10 features, ``A = a.sum(0)``
    for ``a [rows, F]``; (None, None) when every ``A_i`` is 0."""
    return _shares(np.abs(a.sum(0))[None, :])[0]


def _shares(absA: np.ndarray) -> list[tuple[float | None, float | None]]:
    n = absA.shape[1]
    top1 = max(1, math.ceil(0.01 * n))
    srt = -np.sort(-absA, axis=1)
    tot = srt.sum(1)
    out = []
    for i in range(len(absA)):
        if tot[i] <= 0:
            out.append((None, None))
        else:
            out.append((float(srt[i, :top1].sum() / tot[i]), float(srt[i, :10].sum() / tot[i])))
    return out


def boot_concentration(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``[n_boot, 2]`` concentrations of row resamples ``idx [n_boot, rows]`` (NaN when
    undefined)."""
    counts = np.stack([np.bincount(i, minlength=len(a)) for i in idx]).astype(a.dtype)
    sh = _shares(np.abs(counts @ a))
    return np.array([[np.nan if v is None else v for v in s] for s in sh])

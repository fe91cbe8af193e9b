"""Reconstruction, sparsity and downstream (CE-loss / KL) metrics of a basis.

Names follow SAEBench / SAELens core eval. Two entry points:

``reconstruction_metrics(x_batches, basis)``
    streams over activation batches, encoding ``batch_size`` tokens at a time; memory is
    O(batch_size * n_features) for the codes plus O(d + n_features) accumulators (float64),
    never all codes at once.
``downstream_metrics(sm, hp, input_ids, bases)``
    splices each basis's reconstruction into the forward pass and compares next-token CE loss
    and KL divergence against the clean model and against zero / mean ablation. The clean and
    ablation passes run once per batch for all bases.

Excluded tokens (BOS / special / padding) are given as boolean masks with ``True`` = exclude.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from autointerp.bases.base import Basis
from autointerp.errors import AutointerpError
from autointerp.model import Hookpoint, SubjectModel, run_to_hookpoint, splice

log = logging.getLogger(__name__)

RECONSTRUCTION_COLUMNS: tuple[str, ...] = (
    "l0",
    "l1",
    "mse",
    "explained_variance",
    "explained_variance_legacy",
    "fvu",
    "cossim",
    "l2_ratio",
    "relative_reconstruction_bias",
    "frac_alive",
    "dead_frac",
    "freq_over_1_percent",
    "freq_over_10_percent",
)
"""Scalar columns of ``metrics.parquet`` produced by :func:`reconstruction_metrics`."""

DOWNSTREAM_COLUMNS: tuple[str, ...] = (
    "ce_clean",
    "ce_zero_abl",
    "ce_mean_abl",
    "ce_recon",
    "ce_loss_score",
    "ce_loss_score_mean_abl",
    "kl_zero_abl",
    "kl_mean_abl",
    "kl_recon",
    "kl_div_score",
    "kl_div_score_mean_abl",
    "n_tokens_metrics",
)
"""Columns of ``metrics.parquet`` produced by :func:`downstream_metrics` (per basis)."""

ABLATIONS = ("zero", "mean")

_NAN = float("nan")


def _div(a: float, b: float) -> float:
    """``a / b``, NaN (undefined) when ``b`` is 0 or either side is NaN."""
    if b == 0 or math.isnan(a) or math.isnan(b):
        return _NAN
    return a / b


# --------------------------------------------------------------------------- reconstruction


def _split_item(item: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(item, torch.Tensor):
        return item, None
    if isinstance(item, (tuple, list)) and len(item) == 2:
        x, ex = item
        return x, (None if ex is None else torch.as_tensor(ex))
    raise AutointerpError(
        f"reconstruction_metrics: each batch must be a tensor x [..., d] or a pair "
        f"(x, exclude_mask [...]) with exclude_mask True for excluded tokens; got {type(item)}"
    )


class _ReconAccumulator:
    """Running float64 sums from which every reconstruction metric is finalised."""

    def __init__(self, n_features: int, d: int) -> None:
        f64 = torch.float64
        self.n = 0
        self.sum_l0 = 0.0
        self.sum_l1 = 0.0
        self.sum_sq_err = 0.0  # sum ||x - x_hat||^2
        self.sum_x = torch.zeros(d, dtype=f64)  # sum x
        self.sum_sq_x = 0.0  # sum ||x||^2
        self.sum_sq_xhat = 0.0  # sum ||x_hat||^2
        self.sum_dot = 0.0  # sum x . x_hat
        self.sum_cos = 0.0
        self.sum_l2_ratio = 0.0
        self.sum_norm_in = 0.0
        self.sum_norm_out = 0.0
        self.sum_legacy = 0.0
        self.counts = torch.zeros(n_features, dtype=torch.int64)
        self.d = d

    def add(self, x: torch.Tensor, codes: torch.Tensor, x_hat: torch.Tensor, mu: torch.Tensor):
        """Add one chunk of kept tokens; ``mu`` is the mean of the enclosing batch (legacy EV)."""
        x64, xh64 = x.to(torch.float64), x_hat.to(torch.float64)
        err = (x64 - xh64).pow(2).sum(-1)
        n_in = x64.norm(dim=-1)
        n_out = xh64.norm(dim=-1)
        dot = (x64 * xh64).sum(-1)
        self.n += x.shape[0]
        self.sum_l0 += float((codes != 0).sum())
        self.sum_l1 += float(codes.sum(dtype=torch.float64))
        self.sum_sq_err += float(err.sum())
        self.sum_x += x64.sum(0).cpu()
        self.sum_sq_x += float(n_in.pow(2).sum())
        self.sum_sq_xhat += float(n_out.pow(2).sum())
        self.sum_dot += float(dot.sum())
        denom = n_in * n_out
        cos = torch.where(denom > 0, dot / denom.clamp_min(1e-300), torch.zeros_like(dot))
        self.sum_cos += float(cos.sum())
        self.sum_l2_ratio += float((n_out / torch.where(n_in < 1e-4, 1.0, n_in)).sum())
        self.sum_norm_in += float(n_in.sum())
        self.sum_norm_out += float(n_out.sum())
        var_tok = (x64 - mu.to(x64.device)).pow(2).sum(-1)
        self.sum_legacy += float((1.0 - err / var_tok).sum())
        self.counts += (codes > 0).sum(0).cpu()

    def finish(self) -> dict[str, Any]:
        n = self.n
        if n == 0:
            raise AutointerpError(
                "reconstruction_metrics got no tokens (empty input or every token excluded)"
            )
        density = self.counts.to(torch.float64) / n
        mean_sq_err = self.sum_sq_err / n
        total_var = self.sum_sq_x / n - float((self.sum_x / n).pow(2).sum())
        ev = 1.0 - mean_sq_err / total_var if total_var > 0 else _NAN
        frac_alive = float((self.counts > 0).to(torch.float64).mean())
        return {
            "l0": _div(self.sum_l0, n),
            "l1": _div(self.sum_l1, n),
            "mse": _div(mean_sq_err, self.d),
            "explained_variance": ev,
            "explained_variance_legacy": _div(self.sum_legacy, n),
            "fvu": 1.0 - ev,
            "cossim": _div(self.sum_cos, n),
            "l2_ratio": _div(self.sum_l2_ratio, n),
            "relative_reconstruction_bias": _div(self.sum_sq_xhat, self.sum_dot),
            "frac_alive": frac_alive,
            "dead_frac": 1.0 - frac_alive,
            "freq_over_1_percent": float((density > 0.01).to(torch.float64).mean()),
            "freq_over_10_percent": float((density > 0.1).to(torch.float64).mean()),
            "l2_norm_in": _div(self.sum_norm_in, n),
            "l2_norm_out": _div(self.sum_norm_out, n),
            "n_tokens": n,
            "density": density,
        }


@torch.no_grad()
def reconstruction_metrics(
    x_batches: Iterable[torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]],
    basis: Basis,
    *,
    batch_size: int = 4096,
) -> dict[str, Any]:
    """Reconstruction and sparsity metrics of ``basis`` over streamed activations.

    Each item of ``x_batches`` is ``x [..., d]`` or ``(x, exclude [...])`` where ``exclude`` is
    True for tokens (BOS / special / padding) that must not count; leading dims are flattened.
    Kept tokens are encoded ``batch_size`` at a time, so memory stays bounded by
    ``batch_size * n_features`` codes whatever the total token count. With N kept tokens
    x_i, reconstructions x̂_i = decode(encode(x_i)), codes c_i [F] and width d:

    - ``l0`` = (1/N) Σ_i #{f : c_if ≠ 0};  ``l1`` = (1/N) Σ_i Σ_f c_if.
    - ``mse`` = (1/N) Σ_i ||x_i − x̂_i||² / d  (SAEBench instead divides each token's squared
      error by the batch's token count, a known bug; we use the per-element mean).
    - ``explained_variance`` = 1 − E||x − x̂||² / E||x − μ||², μ = mean over ALL N tokens, with
      E||x − μ||² = E||x||² − ||μ||² from streamed float64 sums (as SAELens'
      ExplainedVarianceCalculator); NaN when the inputs have zero variance. ``fvu`` = 1 − that.
    - ``explained_variance_legacy`` (SAELens / SAEBench core "legacy" formula):
      (1/N) Σ_i [1 − ||x_i − x̂_i||² / ||x_i − μ_b||²] with μ_b the mean of the kept tokens of
      the batch (item of ``x_batches``) token i came from. It therefore depends on how the
      caller batches tokens (SAEBench: one batch of prompts); it does not depend on
      ``batch_size``. A token equal to its batch mean gives ±inf / NaN, as in SAEBench.
    - ``cossim`` = (1/N) Σ_i x_i·x̂_i / (||x_i|| ||x̂_i||), taking 0 when either norm is 0.
    - ``l2_ratio`` = (1/N) Σ_i ||x̂_i|| / ||x_i|| (||x_i|| < 1e-4 replaced by 1, as SAEBench).
    - ``relative_reconstruction_bias`` = E||x̂||² / E[x·x̂] over all tokens (Marks et al. eq. 10;
      SAEBench averages a per-batch ratio instead).
    - ``density`` [F] (float64 tensor) = fraction of kept tokens with c_f > 0;
      ``frac_alive`` = fraction of features with density > 0, ``dead_frac`` = 1 − frac_alive,
      ``freq_over_1_percent`` / ``freq_over_10_percent`` = fraction of features with
      density > 0.01 / > 0.1.

    Also returned: ``l2_norm_in`` / ``l2_norm_out`` (mean ||x||, ||x̂||) and ``n_tokens`` (N).
    """
    if batch_size < 1:
        raise AutointerpError(f"batch_size must be >= 1, got {batch_size}")
    acc = _ReconAccumulator(basis.n_features, basis.d_in)
    dev = basis.device
    for item in x_batches:
        x, ex = _split_item(item)
        basis.check_input(x)
        x = x.reshape(-1, x.shape[-1])
        if ex is not None:
            ex = ex.reshape(-1).to(torch.bool)
            if ex.shape[0] != x.shape[0]:
                raise AutointerpError(
                    f"exclude mask has {ex.shape[0]} entries for {x.shape[0]} tokens: it must "
                    "have the shape of the activations without their last dim"
                )
            x = x[~ex.to(x.device)]
        if x.shape[0] == 0:
            continue
        mu_b = x.to(torch.float64).mean(0)
        for s in range(0, x.shape[0], batch_size):
            xc = x[s : s + batch_size].to(dev)
            codes = basis.encode(xc)
            x_hat = basis.decode(codes)
            acc.add(xc, codes, x_hat, mu_b)
            del codes, x_hat
    return acc.finish()


# --------------------------------------------------------------------------- activations


@torch.no_grad()
def iter_activations(
    sm: SubjectModel,
    hp: Hookpoint,
    input_ids: torch.Tensor,
    *,
    exclude_mask: torch.Tensor | None = None,
    batch_size: int = 8,
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield ``(activations [b, T, width], exclude [b, T])`` per ``batch_size`` sequences,
    ready for :func:`reconstruction_metrics`. The forward stops after the hooked layer."""
    for s in range(0, input_ids.shape[0], batch_size):
        x = run_to_hookpoint(sm, hp, input_ids[s : s + batch_size])
        yield x, None if exclude_mask is None else exclude_mask[s : s + batch_size]


@torch.no_grad()
def mean_activation(
    sm: SubjectModel,
    hp: Hookpoint,
    input_ids: torch.Tensor,
    *,
    exclude_mask: torch.Tensor | None = None,
    batch_size: int = 8,
) -> torch.Tensor:
    """Mean activation ``[width]`` at ``hp`` over the non-excluded tokens (float32);
    pass the train tokens to get ``mean_act`` for mean ablation."""
    total: torch.Tensor | None = None
    n = 0
    for x, ex in iter_activations(
        sm, hp, input_ids, exclude_mask=exclude_mask, batch_size=batch_size
    ):
        x = x.reshape(-1, x.shape[-1]).to(torch.float64)
        if ex is not None:
            x = x[~ex.reshape(-1).to(torch.bool).to(x.device)]
        total = x.sum(0) if total is None else total + x.sum(0)
        n += x.shape[0]
    if total is None or n == 0:
        raise AutointerpError("mean_activation: no non-excluded tokens to average over")
    return (total / n).to(torch.float32).cpu()


# --------------------------------------------------------------------------- downstream


class _Sums:
    """Float64 sums of per-position CE and KL over counted positions."""

    __slots__ = ("ce", "kl")

    def __init__(self) -> None:
        self.ce = 0.0
        self.kl = 0.0


def _accumulate(
    lp: torch.Tensor,
    lp_clean: torch.Tensor,
    targets: torch.Tensor,
    counted: torch.Tensor,
    sums: _Sums,
) -> None:
    """Add the CE of ``lp`` [B, T-1, V] at ``targets`` and KL(clean || lp) over ``counted``."""
    nll = -lp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    sums.ce += float(nll[counted].sum(dtype=torch.float64))
    if lp is not lp_clean:
        # exp(lp_clean) * (lp_clean - lp) in one fused pass over [B, T-1, V] (no copies of
        # the counted rows, no separate exp / difference / product temporaries)
        kl = F.kl_div(lp, lp_clean, reduction="none", log_target=True).sum(-1)
        sums.kl += float(kl[counted].sum(dtype=torch.float64))


def _check_ids(
    input_ids: torch.Tensor, exclude_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    if input_ids.ndim != 2:
        raise AutointerpError(
            f"input_ids must be [batch, seq] token ids, got shape {tuple(input_ids.shape)}"
        )
    if input_ids.shape[1] < 2:
        raise AutointerpError("input_ids need at least 2 tokens per row to score next tokens")
    if exclude_mask is None:
        exclude_mask = torch.zeros_like(input_ids, dtype=torch.bool)
    if exclude_mask.shape != input_ids.shape:
        raise AutointerpError(
            f"exclude_mask shape {tuple(exclude_mask.shape)} must equal input_ids shape "
            f"{tuple(input_ids.shape)} (True = BOS/special/pad, kept and not scored)"
        )
    return input_ids, exclude_mask.to(torch.bool)


_Fn = Callable[[torch.Tensor], torch.Tensor]


def _replace(keep_orig: torch.Tensor, make: _Fn) -> _Fn:
    """``fn(act)``: ``act`` with the positions not in ``keep_orig`` replaced by ``make(...)``."""

    def fn(act: torch.Tensor) -> torch.Tensor:
        out = act.clone()
        sel = ~keep_orig.to(act.device)
        if sel.any():
            out[sel] = make(act[sel]).to(act.dtype).to(act.device)
        return out

    return fn


def _basis_fn(basis: Basis) -> _Fn:
    def make(x: torch.Tensor) -> torch.Tensor:
        return basis.decode(basis.encode(x.to(basis.device)))

    return make


def _ablate_fn(kind: str, mean_act: torch.Tensor | None) -> _Fn:
    def make(x: torch.Tensor) -> torch.Tensor:
        if kind == "zero":
            return torch.zeros_like(x)
        assert mean_act is not None
        return mean_act.to(x.device, x.dtype).expand_as(x)

    return make


class _Given(torch.nn.Module):
    """Stands in for a decoder layer before the hookpoint: the first returns the given
    residual, the others pass their input on."""

    def __init__(self, value: torch.Tensor | None) -> None:
        super().__init__()
        self.value = value

    def forward(self, hidden_states: torch.Tensor, *_a: Any, **_kw: Any) -> torch.Tensor:
        return hidden_states if self.value is None else self.value


def _n_skippable(sm: SubjectModel, hp: Hookpoint) -> int:
    """How many leading decoder layers a run can skip when the residual at ``hp`` is given
    (0 when ``hp`` is not a residual-stream hookpoint)."""
    layers = sm.layers
    if 0 <= hp.layer < len(layers) and hp.module is layers[hp.layer]:
        return hp.layer + 1 if hp.io == "output" else hp.layer
    return 0


@contextlib.contextmanager
def _resume_at(sm: SubjectModel, n: int, h: torch.Tensor) -> Iterator[None]:
    """Within the context the first ``n`` decoder layers are skipped and the forward goes on
    from ``h``, the residual stream after layer ``n - 1``."""
    layers = sm.layers
    saved = [layers[i] for i in range(n)]
    try:
        for i in range(n):
            layers[i] = _Given(h if i == 0 else None)
        yield
    finally:
        for i, m in enumerate(saved):
            layers[i] = m


@torch.no_grad()
def downstream_metrics(
    sm: SubjectModel,
    hp: Hookpoint,
    input_ids: torch.Tensor,
    bases: Sequence[Basis],
    *,
    ablations: Sequence[str] = ABLATIONS,
    mean_act: torch.Tensor | None = None,
    exclude_mask: torch.Tensor | None = None,
    batch_size: int = 8,
    acts: torch.Tensor | None = None,
) -> dict[str, dict[str, float]]:
    """CE loss recovered and KL divergence when each basis's reconstruction replaces the
    activation at ``hp`` (SAEBench core eval, with mean ablation added).

    Splicing: at every position where ``exclude_mask`` is False the activation a_t is replaced
    by x̂_t = decode(encode(a_t)) (or by 0 / ``mean_act`` for the ablations); positions where
    ``exclude_mask`` is True (BOS / special / padding) keep their original activation in every
    run, ablations included (SAEBench zero-ablates those too).

    Counted positions: (b, t) with t < T−1 and ``exclude_mask[b, t]`` False, i.e. predictions
    made *from* a spliced input position; the predicted token is ``input_ids[b, t+1]`` (as
    SAEBench, which drops the CE of positions whose input token is ignored). KL is taken at
    the same positions (SAEBench also includes the last position in KL). Over those M
    positions:

    - ``ce_*`` = (1/M) Σ −log p(input_ids[t+1] | ·) for the clean (``ce_clean``), zero-ablated
      (``ce_zero_abl``), mean-ablated (``ce_mean_abl``) and reconstructed (``ce_recon``) runs.
    - ``kl_*`` = (1/M) Σ KL(P_clean ‖ P_run) = Σ_v p_clean(v) (log p_clean(v) − log p_run(v)).
    - ``ce_loss_score`` = (ce_zero_abl − ce_recon) / (ce_zero_abl − ce_clean);
      ``ce_loss_score_mean_abl`` the same with ``ce_mean_abl``.
    - ``kl_div_score`` = (kl_zero_abl − kl_recon) / kl_zero_abl;
      ``kl_div_score_mean_abl`` the same with ``kl_mean_abl``.
    - ``n_tokens_metrics`` = M.

    Ablations not requested give NaN columns, as do scores with a zero denominator. The clean
    and ablation runs are done once per batch of ``batch_size`` sequences for all bases.
    ``mean_act`` [width] (mean activation over train tokens, see :func:`mean_activation`) is
    required when ``"mean"`` is in ``ablations``.

    ``acts`` [B, T, width], optional: the activations at ``hp`` for ``input_ids`` (e.g. the
    activation cache). When ``hp`` is in the residual stream, every run then starts from them
    (spliced as above) and skips the layers before ``hp``; the first batch's clean run is
    checked against a full forward (log-probs within 1e-3, 5e-2 below float32), else the full
    forwards are used.

    Returns ``{basis.name: {column: value}}`` with the columns of ``DOWNSTREAM_COLUMNS``.
    """
    input_ids, exclude_mask = _check_ids(input_ids, exclude_mask)
    bad = [a for a in ablations if a not in ABLATIONS]
    if bad:
        raise AutointerpError(f"unknown ablation(s) {bad}; choose from {list(ABLATIONS)}")
    if "mean" in ablations:
        if mean_act is None:
            raise AutointerpError(
                "mean ablation needs mean_act (the mean activation over the train tokens): "
                "compute it with autointerp.metrics.mean_activation(sm, hp, train_ids), or "
                "pass ablations=('zero',)"
            )
        mean_act = torch.as_tensor(mean_act).reshape(-1)
        if mean_act.shape[0] != hp.width:
            raise AutointerpError(
                f"mean_act has width {mean_act.shape[0]}, hookpoint {hp.name!r} has width "
                f"{hp.width}: compute it at the same hookpoint"
            )
    names = [b.name for b in bases]
    if len(set(names)) != len(names):
        raise AutointerpError(f"basis names must be unique, got {names}")
    for b in bases:
        if b.d_in != hp.width:
            raise AutointerpError(
                f"basis {b.name!r} has d_in={b.d_in} but hookpoint {hp.name!r} has width "
                f"{hp.width}: use the hookpoint the basis was built for"
            )
    if batch_size < 1:
        raise AutointerpError(f"batch_size must be >= 1, got {batch_size}")

    model = sm.model
    clean = _Sums()
    abl = {a: _Sums() for a in ablations}
    rec = {b.name: _Sums() for b in bases}
    m_total = 0

    def logprobs(ids: torch.Tensor) -> torch.Tensor:
        out = model(input_ids=ids, use_cache=False)
        return F.log_softmax(out.logits.float(), dim=-1)[:, :-1]  # no copy of a strided slice

    skip = _n_skippable(sm, hp) if acts is not None else 0
    if acts is not None and tuple(acts.shape) != (*input_ids.shape, hp.width):
        raise AutointerpError(
            f"acts has shape {tuple(acts.shape)}, expected {(*input_ids.shape, hp.width)} "
            f"(the activations at {hp.name!r} for input_ids)"
        )
    dtype = next(model.parameters()).dtype
    checked = False

    def run(ids: torch.Tensor, given: torch.Tensor | None, fn: _Fn | None) -> torch.Tensor:
        if given is not None:  # start at the hookpoint from the given (spliced) activations
            with _resume_at(sm, skip, given if fn is None else fn(given)):
                return logprobs(ids)
        if fn is None:
            return logprobs(ids)
        with splice(hp, fn):
            return logprobs(ids)

    for s in range(0, input_ids.shape[0], batch_size):
        ids = input_ids[s : s + batch_size].to(sm.device)
        keep = exclude_mask[s : s + batch_size].to(sm.device)
        counted = ~keep[:, :-1]
        m = int(counted.sum())
        if m == 0:
            continue
        m_total += m
        targets = ids[:, 1:]
        given = acts[s : s + batch_size].to(sm.device, dtype) if skip else None
        lp_clean = run(ids, given, None)
        if given is not None and not checked:
            full = logprobs(ids)
            tol = 1e-3 if dtype == torch.float32 else 5e-2
            if not torch.allclose(lp_clean[counted], full[counted], atol=tol, rtol=0):
                log.warning(
                    "downstream metrics: runs started from the given activations differ from "
                    "the full forward (max |dlogp| %.2g); using full forwards",
                    float((lp_clean[counted] - full[counted]).abs().max()),
                )
                skip, given, lp_clean = 0, None, full
            checked = True

        _accumulate(lp_clean, lp_clean, targets, counted, clean)
        for a in ablations:
            lp = run(ids, given, _replace(keep, _ablate_fn(a, mean_act)))
            _accumulate(lp, lp_clean, targets, counted, abl[a])
        for b in bases:
            lp = run(ids, given, _replace(keep, _basis_fn(b)))
            _accumulate(lp, lp_clean, targets, counted, rec[b.name])
        del lp_clean

    def mean(x: float) -> float:
        return _div(x, m_total)

    ce_clean = mean(clean.ce)
    ce_zero = mean(abl["zero"].ce) if "zero" in abl else _NAN
    ce_mean = mean(abl["mean"].ce) if "mean" in abl else _NAN
    kl_zero = mean(abl["zero"].kl) if "zero" in abl else _NAN
    kl_mean = mean(abl["mean"].kl) if "mean" in abl else _NAN
    out: dict[str, dict[str, float]] = {}
    for b in bases:
        ce_r, kl_r = mean(rec[b.name].ce), mean(rec[b.name].kl)
        out[b.name] = {
            "ce_clean": ce_clean,
            "ce_zero_abl": ce_zero,
            "ce_mean_abl": ce_mean,
            "ce_recon": ce_r,
            "ce_loss_score": _div(ce_zero - ce_r, ce_zero - ce_clean),
            "ce_loss_score_mean_abl": _div(ce_mean - ce_r, ce_mean - ce_clean),
            "kl_zero_abl": kl_zero,
            "kl_mean_abl": kl_mean,
            "kl_recon": kl_r,
            "kl_div_score": _div(kl_zero - kl_r, kl_zero),
            "kl_div_score_mean_abl": _div(kl_mean - kl_r, kl_mean),
            "n_tokens_metrics": m_total,
        }
    return out

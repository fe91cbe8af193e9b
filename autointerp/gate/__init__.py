"""Sanity gate for a plugged-in basis: catch a checkpoint read at the wrong place or scale
before a run spends anything on it.

:func:`check_basis` reads a small reference batch (~2k tokens) at the hookpoint and computes,
with :mod:`autointerp.metrics`, FVU, L0, the dead fraction (on the batch), the mean ratio of
reconstruction norm to input norm (``l2_ratio``) and CE loss recovered (zero ablation) on a
few hundred tokens. Limits that say "this cannot be right":

* ``FVU > 1`` (the reconstruction is worse than predicting the mean activation),
* ``L0 == 0`` or ``L0 == d_sae`` (nothing fires / everything fires),
* norm ratio outside ``[1/2, 2]``,
* CE loss recovered ``< 0`` (splicing the reconstruction hurts more than zero ablation),
* ``alternatives``: another plausible reading reconstructs clearly better (FVU below 0.9x
  the current one and at least 0.01 lower, on the same tokens). Adjacent residual layers are
  so alike that an SAE read one layer off keeps a sane FVU (SmolLM2-135M, a TopK SAE of
  layer 5: FVU 0.122 at layer 5, 0.154 read at layer 6, 0.128 at layer 4), so the absolute
  limits alone miss it.

Alternatives (:mod:`autointerp.gate.alternatives`), all read from ONE forward pass with
hooks on every candidate hookpoint: the hookpoint's kind at every layer (the residual
stream at every ``hidden_states`` index: ``blocks.L.hook_resid_pre`` =
``blocks.{L-1}.hook_resid_post`` = ``hidden_states[L]``, counted once) and ``mlp_out`` /
``attn_out`` / MLP neurons / the residual stream of its own layer (those of the basis's
width), compared on the first ``n_search_tokens`` (256) of the batch; each as
loaded, and at the current, the best other and the diagnosed hookpoint also scaled by
``sqrt(d) / E||x||`` (SAELens' ``expected_average_only_in``), with the checkpoint's own
factor dropped or inverted, and, for an SAE whose decoder rows are not unit-norm, with
unit-norm rows. On failure the report names the best reading, its FVU, the runner-up and the
fix, e.g. ``the checkpoint was trained at blocks.5.hook_resid_post ... fix: rerun with
--hookpoint blocks.5.hook_resid_post``. An SAE reads the layers below its own almost as well
as its own (0.124 two layers down, 0.115 three down, above) and the layers above clearly
worse, so the reading named is the simplest, then deepest, of those no other beats clearly
(:func:`~autointerp.gate.alternatives._ranked`): a label above the trained layer by any
number of layers is diagnosed in one step; so is a label below it wherever the SAE reads
its own layer clearly better (one it reads within 10% of its own passes).

:func:`gate_plugged_basis` is what a runner calls: it raises :class:`GateError` on failure
unless ``allow_mismatch`` (then it logs a warning).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from autointerp.bases.base import Basis
from autointerp.bases.checkpoints import canonical_hookpoint
from autointerp.errors import ConfigError
from autointerp.gate.alternatives import (
    _alternatives,
    _clearly_better,
    _diagnose,
    _ranked,
    _recon,
    _select_rows,
    candidate_hookpoints,
    capture,
    resolve_name,
)
from autointerp.gate.report import (
    _NAN,
    ALT_REL,
    CE_MIN,
    FVU_MAX,
    NORM_RATIO_MAX,
    Alternative,
    Check,
    GateError,
    GateReport,
    _f,
    _finite,
)
from autointerp.metrics import downstream_metrics
from autointerp.model import SubjectModel

log = logging.getLogger(__name__)

N_TOKENS = 2048
N_CE_TOKENS = 256
N_SEARCH_TOKENS = 256  # every other hookpoint (every layer) is compared on these

__all__ = [
    "Alternative",
    "Check",
    "GateError",
    "GateReport",
    "candidate_hookpoints",
    "capture",
    "check_basis",
    "gate_plugged_basis",
]


def _checks(
    report: GateReport, basis: Basis, current: Alternative, best: Alternative | None
) -> list[Check]:
    """The five verdicts; ``current`` and ``best`` are read on the same (diagnosis) tokens."""
    fvu, l0, ratio, ce, d_sae = (
        report.fvu,
        report.l0,
        report.l2_ratio,
        report.ce_loss_score,
        report.d_sae,
    )
    checks = []
    ok = _finite(fvu) and fvu <= FVU_MAX
    why = (
        "FVU undefined (the activations have no variance)"
        if not _finite(fvu)
        else f"FVU {fvu:.3g} > 1 (reconstruction worse than predicting the mean)"
    )
    checks.append(Check("FVU", fvu, "<= 1", ok, "" if ok else why))
    if l0 <= 0:
        why = "L0 0: no feature fires on any token (inputs on the wrong scale or hookpoint)"
    elif l0 >= d_sae - 1e-6:
        why = (
            f"L0 {l0:.4g} = d_sae: every feature fires on every token (TopK / threshold not "
            "applied, or inputs on the wrong scale)"
        )
    else:
        why = ""
    checks.append(Check("L0", l0, f"0 < L0 < {d_sae}", not why, why))
    ok = _finite(ratio) and 1 / NORM_RATIO_MAX <= ratio <= NORM_RATIO_MAX
    why = ""
    if not ok:
        dec = getattr(basis, "W_dec", None)
        rows = (
            f"; mean decoder row norm {float(dec.detach().norm(dim=-1).mean()):.3g}"
            if isinstance(dec, torch.Tensor)
            else ""
        )
        why = (
            f"norm ratio {_f(ratio)}: reconstructions are {_f(ratio)}x the input norm, off by "
            f"more than {NORM_RATIO_MAX:g}x (decoder not unit-norm, or a scaling factor "
            f"missing{rows})"
        )
    checks.append(Check("norm ratio", ratio, "0.5 .. 2", ok, why))
    ok = not _finite(ce) or ce >= CE_MIN
    why = (
        ""
        if ok
        else f"CE loss recovered {ce:.3g} < 0 (splicing the reconstruction hurts more than "
        "zero-ablating the activation)"
    )
    checks.append(Check("CE recovered", ce, ">= 0", ok, why))
    cur = current.fvu
    ok = best is None or not _clearly_better(best, current)
    why = ""
    if not ok and best is not None:
        why = (
            f"FVU {cur:.3g} here but {best.fvu:.3g} at {best.hookpoint} ({best.variant}): "
            "another reading fits clearly better"
        )
    limit = f"none < {ALT_REL:g}x FVU"
    checks.append(Check("alternatives", best.fvu if best else _NAN, limit, ok, why))
    return checks


@contextlib.contextmanager
def _count_forwards(sm: SubjectModel) -> Iterator[list[int]]:
    calls: list[int] = []
    h = sm.model.register_forward_pre_hook(lambda _m, _a: calls.append(1))
    try:
        yield calls
    finally:
        h.remove()


@torch.no_grad()
def check_basis(
    sm: SubjectModel,
    basis: Basis,
    token_rows: np.ndarray,
    exclude_mask: np.ndarray,
    hookpoint: str,
    *,
    n_tokens: int = N_TOKENS,
    n_ce_tokens: int = N_CE_TOKENS,
    n_search_tokens: int = N_SEARCH_TOKENS,
) -> GateReport:
    """Run the gate on the leading rows of ``token_rows`` (int ids ``[rows, T]``) holding
    ``n_tokens`` tokens not in ``exclude_mask`` (True = BOS / special). One forward pass reads
    the hookpoint on them and every candidate hookpoint (every layer) on the first rows
    holding ``n_search_tokens``, where all alternatives are compared; CE loss recovered (zero
    ablation) takes three more (clean, ablated, spliced) on the first rows holding
    ``n_ce_tokens`` tokens."""
    t0 = time.perf_counter()
    token_rows, exclude_mask = np.asarray(token_rows), np.asarray(exclude_mask, dtype=bool)
    if token_rows.ndim != 2 or exclude_mask.shape != token_rows.shape:
        raise ConfigError(
            f"gate: token_rows must be [rows, T] ids with an exclude mask of the same shape, got "
            f"{token_rows.shape} and {exclude_mask.shape}"
        )
    hookpoint = resolve_name(sm, hookpoint)
    hp = sm.hookpoint(hookpoint)
    if hp.width != basis.d_in:
        raise ConfigError(
            f"basis {basis.name!r} reads width {basis.d_in} but {hookpoint} has width "
            f"{hp.width}: use the hookpoint (and model) the checkpoint was trained for"
        )
    n_rows = _select_rows(exclude_mask, n_tokens)
    ids = torch.from_numpy(token_rows[:n_rows].astype(np.int64))
    ex = torch.from_numpy(exclude_mask[:n_rows])
    names = candidate_hookpoints(sm, hookpoint, basis.d_in)
    hps = [hp] + [sm.hookpoint(n) for n in names[1:]]
    n_search = _select_rows(exclude_mask[:n_rows], n_search_tokens)
    timings: dict[str, float] = {}
    with _count_forwards(sm) as calls:
        t = time.perf_counter()
        acts = capture(sm, hps, ids, rows={n: n_search for n in names[1:] if n != hookpoint})
        timings["forward"] = time.perf_counter() - t
        t = time.perf_counter()
        x = acts[hookpoint]
        r = _recon(x, ex, basis)
        n_ce = _select_rows(exclude_mask[:n_rows], n_ce_tokens)
        timings["reconstruction"] = time.perf_counter() - t
        t = time.perf_counter()
        down = downstream_metrics(
            sm,
            hp,
            ids[:n_ce],
            [basis],
            ablations=("zero",),
            exclude_mask=ex[:n_ce],
            batch_size=max(n_ce, 1),
        )[basis.name]
        timings["ce"] = time.perf_counter() - t
    report = GateReport(
        basis=basis.name,
        hookpoint=hookpoint,
        model=sm.name,
        d_sae=basis.n_features,
        n_tokens=int(r["n_tokens"]),
        n_ce_tokens=int(down["n_tokens_metrics"]),
        fvu=float(r["fvu"]),
        l0=float(r["l0"]),
        dead_frac=float(r["dead_frac"]),
        l2_ratio=float(r["l2_ratio"]),
        ce_loss_score=float(down["ce_loss_score"]),
        forward_passes=len(calls),
    )
    t = time.perf_counter()
    report.alternatives = _alternatives(basis, names, acts, ex, n_search)
    report.n_search_tokens = int((~ex[:n_search]).sum())
    report.n_hookpoints = len(names)
    timings["alternatives"] = time.perf_counter() - t
    here = canonical_hookpoint(hookpoint) or hookpoint
    for a in report.alternatives:
        a.current = a.hookpoint == here and a.variant == "as loaded"
    current = next(a for a in report.alternatives if a.current)
    others = [a for a in report.alternatives if not a.current and a.sane]
    best = others[0] if others else None
    report.checks = _checks(report, basis, current, best)
    ranked = _ranked(others, current)
    likely = ranked[0] if ranked else None
    if not report.passed and likely is not None and not likely.fvu >= current.fvu:
        report.likely = likely
        report.runner_up = next((a for a in ranked if a.hookpoint != likely.hookpoint), None)
        report.cause, report.fix = _diagnose(report, basis, likely, current.fvu)
    report.seconds = time.perf_counter() - t0
    report.timings = {k: round(v, 3) for k, v in timings.items()}
    return report


def gate_plugged_basis(
    sm: SubjectModel,
    basis: Basis,
    tokens: np.ndarray,
    mask: np.ndarray,
    hookpoint: str,
    allow_mismatch: bool = False,
    **kw: Any,
) -> GateReport:
    """The runner's call before any expensive stage: :func:`check_basis`, then raise
    :class:`GateError` when it fails, unless ``allow_mismatch`` (then a warning, and
    ``report.allowed_mismatch`` is set). Store ``report.to_dict()`` in the manifest."""
    report = check_basis(sm, basis, tokens, mask, hookpoint, **kw)
    log.info("sanity gate for %s:\n%s", basis.name, report.format_table())
    if not report.passed:
        if not allow_mismatch:
            raise GateError(report.error_message())
        report.allowed_mismatch = True
        log.warning("%s (used anyway: allow_mismatch)", report.error_message())
    return report

"""The alternatives the gate tries: candidate hookpoints read in one forward pass, input
scalings and a unit-norm decoder, and the diagnosis (likely cause and fix) they give."""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from autointerp.bases.base import Basis
from autointerp.bases.checkpoints import canonical_hookpoint
from autointerp.bases.sae import SAE, sae_from_tensors
from autointerp.errors import ConfigError, HookpointError
from autointerp.gate.report import (
    _NAN,
    ALT_ABS,
    ALT_REL,
    Alternative,
    GateReport,
    _finite,
)
from autointerp.metrics import reconstruction_metrics
from autointerp.model import Hookpoint, SubjectModel, splice

_TL = re.compile(r"^blocks\.(\d+)\.(.+)$")
_KINDS = ("hook_resid_pre", "hook_resid_post", "hook_mlp_out", "hook_attn_out", "mlp.hook_post")


class _Rescaled(Basis):
    """``basis`` reading ``x * scale`` and giving back ``x_hat / scale``."""

    def __init__(self, inner: Basis, scale: float) -> None:
        super().__init__(inner.name, inner.kind, inner.info)
        self.inner = inner
        self.scale = float(scale)

    @property
    def d_in(self) -> int:
        return self.inner.d_in

    @property
    def n_features(self) -> int:
        return self.inner.n_features

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.encode(x * self.scale)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.inner.decode(codes) / self.scale


class _Stop(Exception):
    pass


def _residual_alias(name: str) -> str:
    """``= blocks.{L+1}.hook_resid_pre = hidden_states[L+1]`` for a resid_post name."""
    m = _TL.match(name)
    if not m:
        return ""
    L, kind = int(m.group(1)), m.group(2)
    if kind == "hook_resid_post":
        return f"(= blocks.{L + 1}.hook_resid_pre = hidden_states[{L + 1}])"
    if kind == "hook_resid_pre":
        return f"(= hidden_states[{L}])"
    return ""


def resolve_name(sm: SubjectModel, hookpoint: str) -> str:
    """``hookpoint`` when the model resolves it, else its canonical TransformerLens name
    (e.g. sparsify's folder name ``layers.6`` -> ``blocks.6.hook_resid_post``)."""
    try:
        sm.hookpoint(hookpoint)
        return hookpoint
    except HookpointError:
        alt = canonical_hookpoint(hookpoint)
        if not alt or alt == hookpoint:
            raise
        sm.hookpoint(alt)
        return alt


def _hidden_index(name: str) -> int | None:
    """``hidden_states`` index of a residual-stream name (resid_pre L -> L, post L -> L+1)."""
    m = _TL.match(name)
    if not m or m.group(2) not in ("hook_resid_pre", "hook_resid_post"):
        return None
    return int(m.group(1)) + (m.group(2) == "hook_resid_post")


def depth(name: str) -> float:
    """Where a canonical hookpoint reads the residual stream, in layers: resid_pre L -> L,
    attn_out L -> L + 0.25, MLP neurons L -> L + 0.5, mlp_out L -> L + 0.75, resid_post L ->
    L + 1 (other names: -1)."""
    m = _TL.match(name)
    if not m:
        return -1.0
    offset = {"hook_resid_pre": 0.0, "hook_attn_out": 0.25, "mlp.hook_post": 0.5,
              "hook_mlp_out": 0.75, "hook_resid_post": 1.0}  # fmt: skip
    return int(m.group(1)) + offset.get(m.group(2), 0.5)


def candidate_hookpoints(sm: SubjectModel, hookpoint: str, width: int) -> list[str]:
    """``hookpoint`` first, then the other hookpoints of activation width ``width``
    (canonical TransformerLens names; resid_pre of L > 0 is named resid_post of L-1): the
    hookpoint's own kind at EVERY layer (for a residual-stream hookpoint: every
    ``hidden_states`` index), and mlp_out / attn_out / MLP neurons / the residual stream of
    its own layer. All are read in one forward pass (:func:`capture`), so a label off by any
    number of layers is found in one step. Other kinds at other layers are left out: some
    (e.g. SmolLM2's mlp_out of layer 2, dominated by a few huge directions) give any basis a
    low FVU and would be named instead of the right reading."""
    canon = canonical_hookpoint(hookpoint) or hookpoint
    m = _TL.match(canon)
    if not m:
        return [hookpoint]
    L, own = int(m.group(1)), m.group(2)
    resid = _hidden_index(canon) is not None
    seen = {canon}
    out = [hookpoint]
    for layer in range(sm.n_layers):
        for kind in _KINDS:
            is_resid = kind in ("hook_resid_pre", "hook_resid_post")
            if not (layer == L or kind == own or (resid and is_resid)):
                continue
            name = canonical_hookpoint(f"blocks.{layer}.{kind}") or f"blocks.{layer}.{kind}"
            if name in seen:
                continue
            seen.add(name)
            try:
                if sm.hookpoint(name).width == width:
                    out.append(name)
            except HookpointError:  # a kind this architecture lacks
                continue
    return out


@torch.no_grad()
def capture(
    sm: SubjectModel,
    hookpoints: list[Hookpoint],
    input_ids: torch.Tensor,
    rows: dict[str, int] | None = None,
) -> dict[str, torch.Tensor]:
    """Activations ``[B, T, width]`` at every hookpoint from ONE forward pass, which stops
    after the last decoder layer any of them needs; ``rows[name]``: keep only that many
    leading rows of ``name`` (a cheap wide search). The layers above the last one a
    whole-batch hookpoint needs run on those leading rows only (:func:`_cut_rows`)."""
    got: dict[str, torch.Tensor] = {}
    rows = rows or {}
    full_layers = [hp.layer for hp in hookpoints if rows.get(hp.name) is None]
    n_keep = max(rows.values(), default=None)

    def grab(name: str):
        n = rows.get(name)

        def fn(x: torch.Tensor) -> torch.Tensor:
            got[name] = (x if n is None else x[:n]).detach().float().cpu()
            return x

        return fn

    def stop(x: torch.Tensor) -> torch.Tensor:
        raise _Stop

    last = max((hp.layer for hp in hookpoints), default=-1)
    all_in_layers = all(hp.layer >= 0 for hp in hookpoints)
    with contextlib.ExitStack() as stack:
        for hp in hookpoints:
            stack.enter_context(splice(hp, grab(hp.name)))
        if all_in_layers and last >= 0:
            stack.enter_context(splice(sm.hookpoint(f"blocks.{last}.hook_resid_post"), stop))
        if n_keep is not None and n_keep < len(input_ids) and full_layers:
            for layer in sm.layers[max(full_layers) + 1 : last + 1]:
                stack.enter_context(_cut_rows(layer, len(input_ids), n_keep))
        with contextlib.suppress(_Stop):
            sm.model(input_ids=input_ids.to(sm.device), use_cache=False)
    missing = [hp.name for hp in hookpoints if hp.name not in got]
    if missing:
        raise ConfigError(f"hookpoints {missing} were never reached in the forward pass")
    return got


@contextlib.contextmanager
def _cut_rows(layer: torch.nn.Module, batch: int, n: int) -> Iterator[None]:
    """Within the context, ``layer`` runs on the first ``n`` of ``batch`` rows: every tensor
    argument of at least two dimensions whose first is ``batch`` (hidden states, a causal
    mask, per-row positions) is cut. Rows are independent (no padding; causal attention
    within a row), so the kept rows' activations are those of the whole batch."""

    def cut(x: Any) -> Any:
        if isinstance(x, torch.Tensor) and x.ndim >= 2 and x.shape[0] == batch:
            return x[:n]
        if isinstance(x, tuple):
            return tuple(cut(v) for v in x)
        return x

    def pre(_m: torch.nn.Module, args: tuple, kwargs: dict) -> Any:
        return tuple(cut(a) for a in args), {k: cut(v) for k, v in kwargs.items()}

    h = layer.register_forward_pre_hook(pre, with_kwargs=True)
    try:
        yield
    finally:
        h.remove()


def _select_rows(mask: np.ndarray, n_tokens: int) -> int:
    """How many leading rows hold ``n_tokens`` non-excluded tokens (at least 1)."""
    kept = np.cumsum((~mask).sum(1))
    return int(min(len(mask), np.searchsorted(kept, n_tokens) + 1))


def _recon(x: torch.Tensor, ex: torch.Tensor, basis: Basis) -> dict[str, Any]:
    r = reconstruction_metrics([(x, ex)], basis, batch_size=4096)
    r.pop("density", None)
    return r


def _variants(basis: Basis) -> list[tuple[str, Basis | None, float]]:
    """``(label, basis or None for the per-hookpoint estimated scale, scale)`` beyond as-loaded."""
    out: list[tuple[str, Basis | None, float]] = []
    norm = getattr(basis, "normalisation", "none")
    factor = getattr(basis, "scaling_factor", None)
    if norm == "expected_average_only_in" and factor:
        out.append((f"without its scaling factor {factor:.4g}", None, 1 / factor))
        out.append((f"scaling factor inverted (1/{factor:.4g})", None, 1 / factor**2))
    if norm in ("none", "expected_average_only_in"):
        out.append(("estimated", None, _NAN))  # scaled by sqrt(d)/E||x|| at each hookpoint
    if isinstance(basis, SAE):
        norms = basis.W_dec.detach().norm(dim=-1)
        mean = float(norms.mean())
        if abs(mean - 1) > 0.1 and mean > 0:
            t = basis.tensors()
            t["W_dec"] = t["W_dec"] / norms.clamp_min(1e-12)[:, None]
            unit = sae_from_tensors(t, basis.config(), name=basis.name, info=basis.info)
            out.append((f"decoder rows unit-norm (mean row norm {mean:.3g})", unit, 1.0))
    return out


def _estimated_scale(x: torch.Tensor, ex: torch.Tensor, basis: Basis) -> float:
    """SAELens' ``sqrt(d) / E||x||`` on this batch, relative to the basis's own factor."""
    n = float(x[~ex].norm(dim=-1).mean())
    s = math.sqrt(x.shape[-1]) / max(n, 1e-12)
    factor = getattr(basis, "scaling_factor", None)
    if getattr(basis, "normalisation", "none") == "expected_average_only_in" and factor:
        s = s / factor
    return s


def _evaluate(
    basis: Basis,
    variants: list[tuple[str, Basis | None, float]],
    hookpoint: str,
    x: torch.Tensor,
    ex: torch.Tensor,
    with_variants: bool,
) -> list[Alternative]:
    alias = _residual_alias(hookpoint)
    todo: list[tuple[str, Basis, float]] = [("as loaded", basis, 1.0)]
    if with_variants:
        for label, b, s in variants:
            if label == "estimated":
                s = _estimated_scale(x, ex, basis)
                if abs(math.log(s)) < math.log(1.25):
                    continue  # indistinguishable from as loaded
                base_label = "scaled by sqrt(d)/E||x||"
                if getattr(basis, "normalisation", "none") == "expected_average_only_in":
                    base_label = "its scaling factor replaced by sqrt(d)/E||x||"
                label = f"{base_label} (x {s:.4g})"
            todo.append((label, b if b is not None else basis, s))
    out = []
    for label, b, s in todo:
        use = b if s == 1.0 else _Rescaled(b, s)
        r = _recon(x, ex, use)
        out.append(Alternative(hookpoint, label, r["fvu"], r["l0"], r["l2_ratio"], s, alias))
    return out


def _sort_key(a: Alternative) -> tuple[bool, float]:
    return (not _finite(a.fvu), a.fvu if _finite(a.fvu) else 0.0)


def _clearly_better(a: Alternative, b: Alternative) -> bool:
    """``a`` reconstructs clearly better than ``b`` (the ``alternatives`` check's rule)."""
    if not _finite(b.fvu):
        return _finite(a.fvu)
    return a.fvu < ALT_REL * b.fvu and b.fvu - a.fvu >= ALT_ABS


def _changes(a: Alternative, current: Alternative) -> int:
    return int(a.hookpoint != current.hookpoint) + int(a.variant != "as loaded")


def _ranked(others: list[Alternative], current: Alternative) -> list[Alternative]:
    """The readings in the order the diagnosis names them. First the plausible ones (no other
    reading reconstructs clearly better), simplest first (fewest changes: hookpoint,
    variant), then the deepest: the residual stream accumulates, so an SAE reads the layers
    below its own almost as well as its own (their directions persist) but the layers above
    clearly worse (new directions are written); the deepest layer it reads as well as its
    best is the one it was trained at. Then the rest, best FVU first."""
    plausible = [a for a in others if not any(_clearly_better(b, a) for b in others)]
    first = sorted(
        plausible, key=lambda a: (_changes(a, current), -depth(a.hookpoint), *_sort_key(a))
    )
    rest = sorted((a for a in others if a not in first), key=_sort_key)
    return first + rest


def _diagnose(
    report: GateReport, basis: Basis, best: Alternative, current_fvu: float
) -> tuple[str, str]:
    """(cause, fix) for the best alternative that differs from the current reading."""
    here = canonical_hookpoint(report.hookpoint) or report.hookpoint
    causes, fixes = [], []
    if best.hookpoint != here:
        c = f"the checkpoint was trained at {best.hookpoint}, not {report.hookpoint}"
        m, mh = _TL.match(best.hookpoint), _TL.match(here)
        resid = m and mh and "resid" in m.group(2) and "resid" in mh.group(2)
        if resid:
            c += _off_by_one(best.hookpoint, here)
        causes.append(c)
        fixes.append(
            f'rerun with --hookpoint {best.hookpoint} (suite: model.hookpoint = "{best.hookpoint}")'
        )
    v = best.variant
    if v.startswith("without its scaling factor"):
        causes.append("the checkpoint reads raw activations but its scaling factor was applied")
        fixes.append("drop normalize_activations / the scaling factor from its config")
    elif v.startswith("scaling factor inverted"):
        causes.append(
            "its scaling factor is inverted (SAELens multiplies by it, dictionary_learning's "
            "norm_factor divides)"
        )
        fixes.append(f"record the factor as {best.scale * basis_factor(basis):.4g}")
    elif v.startswith("its scaling factor replaced"):
        s = best.scale * basis_factor(basis)
        causes.append(
            f"its scaling factor {basis_factor(basis):.4g} does not fit these activations "
            f"(sqrt(d)/E||x|| here: {s:.4g})"
        )
        fixes.append(f"record the scaling factor the checkpoint was trained with (~{s:.4g})")
    elif "sqrt(d)/E||x||" in v:
        s = best.scale * basis_factor(basis)
        causes.append(
            "the activations miss the dataset-wide scaling factor the checkpoint was trained "
            "with (SAELens normalize_activations = expected_average_only_in)"
        )
        fixes.append(
            f"give the checkpoint its scaling factor (~{s:.4g}: SAELens cfg.json "
            f'"normalize_activations": "expected_average_only_in" with "norm_scaling_factor": '
            f"{s:.4g}; native autointerp.json the same as normalisation / scaling_factor; "
            f"dictionary_learning norm_factor {1 / s:.4g})"
        )
    elif v.startswith("decoder rows unit-norm"):
        causes.append(f"the decoder rows are not unit-norm {v[len('decoder rows unit-norm ') :]}")
        fixes.append(
            "divide W_dec's rows by their norms (or drop a decoder scaling folded in by mistake)"
        )
    cause = "; ".join(causes)
    fix = " and ".join(fixes)
    n = f" on {report.n_search_tokens:,} tokens" if report.n_search_tokens else ""
    why = f"FVU {best.fvu:.3g} there vs {current_fvu:.3g} as read now{n}"
    r = report.runner_up
    if r is not None:
        why += f"; runner-up {r.hookpoint} ({r.variant}) FVU {r.fvu:.3g}"
    return f"{cause} ({why})", fix


def _off_by_one(best: str, here: str) -> str:
    """The index confusion a one-layer residual mislabel suggests, by its direction ("" for
    any other pair): a label one layer deep is ``hidden_states[j]`` recorded as layer ``j``
    (it is ``blocks.{j-1}.hook_resid_post``); one layer shallow is the other way round."""
    j, i = _hidden_index(best), _hidden_index(here)
    if j is None or i is None or abs(i - j) != 1:
        return ""
    if i == j + 1:
        return (
            f" (hidden_states[{j}] recorded as layer {j}? hidden_states[{j}] is "
            f"blocks.{j}.hook_resid_pre = {best})"
        )
    return (
        f" (a layer index one too low? {best} = blocks.{j}.hook_resid_pre = hidden_states[{j}], "
        f"the label reads hidden_states[{i}])"
    )


def basis_factor(basis: Basis) -> float:
    """The basis's own input scaling factor (1 when it has none)."""
    f = getattr(basis, "scaling_factor", None)
    if getattr(basis, "normalisation", "none") == "expected_average_only_in" and f:
        return float(f)
    return 1.0


def _alternatives(
    basis: Basis,
    names: list[str],
    acts: dict[str, torch.Tensor],
    ex: torch.Tensor,
    n_rows: int,
) -> list[Alternative]:
    """Every candidate hookpoint as loaded, plus the scaling / decoder variants at the current
    hookpoint, at the best other one and at the deepest plausible one (:func:`_ranked`); all
    on the same (search) tokens: the first ``n_rows`` rows."""
    variants = _variants(basis)
    canon = [canonical_hookpoint(n) or n for n in names]
    x_of = {c: acts[n][:n_rows] for n, c in zip(names, canon)}
    ex = ex[:n_rows]
    res: dict[str, list[Alternative]] = {}
    for i, c in enumerate(canon):
        res[c] = _evaluate(basis, variants, c, x_of[c], ex, with_variants=i == 0)
    loaded = {k: v[0] for k, v in res.items()}
    cur = loaded[canon[0]]
    others = [a for k, a in loaded.items() if k != canon[0]]
    sane = [a for a in others if a.sane]
    pick = sorted(others, key=_sort_key)[:1] + _ranked(sane, cur)[:1]
    for a in pick:
        if len(res[a.hookpoint]) == 1:
            res[a.hookpoint] = _evaluate(basis, variants, a.hookpoint, x_of[a.hookpoint], ex, True)
    return sorted((a for v in res.values() for a in v), key=_sort_key)

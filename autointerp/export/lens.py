"""Each exported feature's logit-lens row over the full vocabulary, for Neuronpedia's logits
histogram (docs/publishing.md).

The row is the output stage's logit lens (:mod:`autointerp.causal.logit_lens`, docs/output.md):
``W_U (g ⊙ r)``, ``r`` the feature's direction carried to the residual stream, ``g`` the final
norm's weight. The direction is the decoder row of ``weights/<basis>.parquet``, the subject model
the run's (``manifest.config.model``: name, dtype, random-model null), loaded for its weights
only: no forward pass. Where the run has the output stage, its top and bottom logits are the
check: a basis whose decoder rows give other values (an SAE whose decoder rescales its output,
so that ``W_dec[i]`` is not ``decode(e_i) − decode(0)``) gets no logits histogram, and says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from autointerp.errors import AutointerpError
from autointerp.report.runs import Run

#: top / bottom tokens written when the run has no output stage (Neuronpedia's pages show 10)
N_LENS = 10
#: agreement with the output stage's logits (which it stores to 4 decimals)
RTOL, ATOL = 1e-3, 2e-3


@dataclass
class Lens:
    """Per feature: its logits histogram (heights, centres) and, when computed here, ``top`` /
    ``bottom`` ([token, logit] pairs); ``reason`` when the lens of a basis is left out."""

    hist: dict[int, tuple[list[int], list[float]]] = field(default_factory=dict)
    top: dict[int, list[list[Any]]] = field(default_factory=dict)
    bottom: dict[int, list[list[Any]]] = field(default_factory=dict)
    reason: str | None = None


class SubjectLens:
    """The run's subject model, loaded on first use (once per export)."""

    def __init__(self, run: Run, sm: Any = None) -> None:
        self.run = run
        self._sm = sm
        self._why: str | None = None

    def model(self) -> Any:
        """The SubjectModel, or raises :class:`AutointerpError` saying why it is unavailable."""
        if self._sm is not None:
            return self._sm
        if self._why is not None:
            raise AutointerpError(self._why)
        cfg = (self.run.manifest.get("config") or {}).get("model") or {}
        if not cfg.get("name"):
            self._why = "the run's manifest names no subject model (config.model.name)"
            raise AutointerpError(self._why)
        from autointerp.model import load_model, resolve_device

        try:
            sm = load_model(
                str(cfg["name"]),
                device=resolve_device(str(cfg.get("device") or "auto")),
                dtype=getattr(torch, str(cfg.get("dtype") or "float32")),
            )
        except (AutointerpError, OSError, ValueError) as e:
            self._why = f"cannot load the subject model {cfg['name']!r}: {e}"
            raise AutointerpError(self._why) from e
        reinit = cfg.get("reinit")
        if reinit is not None:
            from autointerp.reinit import reinit_model

            reinit_model(sm.model, int(reinit.get("seed", 0)))
        self._sm = sm
        return sm


@torch.no_grad()
def basis_lens(
    lens: SubjectLens, decoders: dict[int, list[float]], stage: dict[int, dict], chunk: int = 256
) -> Lens:
    """The logits histograms of ``decoders`` (feature -> decoder row), checked against the
    output stage's ``stage`` (feature -> its entry with ``top`` / ``bottom``) where it has
    them; ``chunk`` features at a time (a row is the whole vocabulary)."""
    if not decoders:
        return Lens(reason="no decoder rows (weights/<basis>.parquet)")
    feats = sorted(decoders)
    out = Lens()
    try:
        sm = lens.model()
        hp = sm.hookpoint(lens.run.hookpoint)
        for s in range(0, len(feats), chunk):
            why = _chunk(sm, hp, feats[s : s + chunk], decoders, stage, out)
            if why is not None:
                return Lens(reason=why)
    except AutointerpError as e:
        return Lens(reason=str(e))
    return out


def _chunk(
    sm: Any,
    hp: Any,
    feats: list[int],
    decoders: dict[int, list[float]],
    stage: dict[int, dict],
    out: Lens,
) -> str | None:
    """Histograms (and tops) of ``feats`` into ``out``; the reason when a check fails."""
    from autointerp.causal.logit_lens import lens_logits, to_residual, token_strings
    from autointerp.export.histograms import logit_histogram

    dirs = torch.tensor([decoders[f] for f in feats], dtype=torch.float32)
    if dirs.shape[1] != hp.width:
        return (
            f"decoder rows have width {dirs.shape[1]}, hookpoint {hp.name!r} of the subject "
            f"model has {hp.width}: the run's weights are not of this model"
        )
    rows = lens_logits(sm, to_residual(sm, hp, dirs.to(sm.device))).double().cpu()
    n = min(N_LENS, rows.shape[1])
    for j, f in enumerate(feats):
        row = rows[j]
        if f in stage:
            why = disagreement(row, stage[f])
            if why is not None:
                return f"feature {f}: {why}"
        else:
            top, bot = row.topk(n), (-row).topk(n)
            ts = token_strings(sm.tokenizer, top.indices.tolist())
            bs = token_strings(sm.tokenizer, bot.indices.tolist())
            out.top[f] = [[t, round(float(v), 4)] for t, v in zip(ts, top.values.tolist())]
            out.bottom[f] = [[t, round(-float(v), 4)] for t, v in zip(bs, bot.values.tolist())]
        out.hist[f] = logit_histogram(row.numpy())
    return None


def disagreement(row: torch.Tensor, want: dict[str, Any]) -> str | None:
    """Why ``row`` is not the output stage's logit lens (its top and bottom values, compared
    in order: ties make the tokens, not the values, depend on the kernel), or None."""
    for key, sign in (("top", 1.0), ("bottom", -1.0)):
        vals = [float(v) for _, v in want.get(key) or []]
        if not vals:
            continue
        got = (sign * row).topk(len(vals)).values.mul(sign).tolist()
        for g, w in zip(got, vals):
            if not math.isclose(g, w, rel_tol=RTOL, abs_tol=ATOL):
                return (
                    f"the decoder row's logit lens ({key} logit {g:.4f}) is not the output "
                    f"stage's ({w:.4f}): the decoder row is not the feature's direction "
                    "(decode(e_i) - decode(0))"
                )
    return None

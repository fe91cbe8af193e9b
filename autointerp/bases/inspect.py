"""``autointerp inspect CKPT``: what a checkpoint is, without running anything; with
``--check``, the sanity gate (:mod:`autointerp.gate`) on a reference batch of the default
corpus at the hookpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from autointerp.bases.checkpoints import load_checkpoint
from autointerp.bases.families import describe_family, pick_member, scan_family

if TYPE_CHECKING:
    import numpy as np

    from autointerp.gate import GateReport
    from autointerp.model import SubjectModel


def _stats(t: torch.Tensor) -> dict[str, float]:
    t = t.detach().float().flatten()
    return {"min": float(t.min()), "mean": float(t.mean()), "max": float(t.max())}


def inspect_checkpoint(source: str | Path, format: str | None = None) -> dict[str, Any]:
    """Summary of a checkpoint: format, architecture, widths, k / threshold statistics,
    recorded hookpoint and model, decoder-row norm statistics (min/mean/max). A family
    (one checkpoint per hookpoint) is listed instead: each member's hookpoint, where it was
    read from, format and path (:func:`~autointerp.bases.families.describe_family`)."""
    fam = scan_family(source, format)
    if not fam.single and fam.members:
        return describe_family(fam)
    basis = load_checkpoint(source, format)
    info = dict(basis.info)
    out: dict[str, Any] = {
        "source": str(source),
        "format": info.get("format"),
        "architecture": info.get("architecture", basis.kind),
        "d_in": basis.d_in,
        "d_sae": basis.n_features,
        "k": info.get("k"),
        "hookpoint": info.get("hookpoint"),
        "model": info.get("model"),
        "normalisation": info.get("normalisation"),
        "apply_b_dec_to_input": info.get("apply_b_dec_to_input"),
        "n_parameters": int(sum(p.numel() for p in basis.parameters())),
    }
    W_dec = getattr(basis, "W_dec", None)
    if isinstance(W_dec, torch.Tensor):
        out["decoder_norm"] = _stats(W_dec.norm(dim=-1))
    thr = getattr(basis, "threshold", None)
    if isinstance(thr, torch.Tensor):
        out["threshold"] = _stats(thr)
    for key in ("dict_class", "step", "norm_factor", "training", "config_hash", "layer"):
        if info.get(key) is not None:
            out[key] = info[key]
    return out


def _fmt(d: dict[str, Any]) -> str:
    if d.get("family"):
        return _fmt_family(d)
    lines = []
    for k, v in d.items():
        if isinstance(v, dict):
            v = ", ".join(
                f"{kk}={vv:.4g}" if isinstance(vv, float) else f"{kk}={vv}" for kk, vv in v.items()
            )
        lines.append(f"{k:>22}: {v}")
    return "\n".join(lines)


def _fmt_family(d: dict[str, Any]) -> str:
    """A family as a table: hookpoint, recorded as, from, format, path."""
    rows = [("hookpoint", "recorded as", "from", "format", "path")]
    rows += [
        (str(m["hookpoint"]), str(m["recorded"]), m["from"], m["format"], m["path"])
        for m in d["members"]
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"{d['source']}: a family of {d['n_members']} checkpoints, one per hookpoint"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[4]
              for r in rows]  # fmt: skip
    return "\n".join(lines)


def reference_tokens(
    sm: SubjectModel, n_tokens: int, source: str = "gensim-wiki"
) -> tuple[np.ndarray, np.ndarray]:
    """Token rows ``[rows, BOS + 64]`` of ``source`` (tokenised as the suite runner does)
    holding ``n_tokens`` non-BOS tokens, and their special-token mask."""
    from autointerp.activations import special_mask
    from autointerp.config import CorpusConfig
    from autointerp.corpus import tokenize_corpus

    tokens = tokenize_corpus(CorpusConfig(source=source, n_tokens=n_tokens), sm.tokenizer)
    return tokens, special_mask(tokens, sm.special_token_ids())


def check_checkpoint(
    source: str | Path,
    format: str | None = None,
    *,
    model: str | None = None,
    hookpoint: str | None = None,
    corpus: str = "gensim-wiki",
    n_tokens: int = 2048,
    sm: SubjectModel | None = None,
) -> GateReport:
    """Load a checkpoint and the subject model (unless ``sm`` is given) and run the sanity
    gate at ``hookpoint`` (default: the one the checkpoint records) on ``n_tokens`` tokens of
    ``corpus``. Returns the :class:`~autointerp.gate.GateReport`."""
    from autointerp.errors import ConfigError
    from autointerp.gate import check_basis
    from autointerp.model import DEFAULT_MODEL, load_model

    if n_tokens < 64:
        raise ConfigError(f"--n-tokens must be at least 64, got {n_tokens}")
    # a family: the member for --hookpoint (a single checkpoint is gated as it is)
    source = pick_member(source, hookpoint, format)
    basis = load_checkpoint(source, format, device="cpu")
    hookpoint = hookpoint or basis.info.get("hookpoint")
    if not hookpoint:
        raise ConfigError(
            f"{source} records no hookpoint: pass --hookpoint, e.g. --hookpoint "
            "blocks.6.hook_resid_post"
        )
    if sm is None:
        sm = load_model(model or DEFAULT_MODEL, device="cpu")
    tokens, mask = reference_tokens(sm, n_tokens, corpus)
    return check_basis(sm, basis, tokens, mask, hookpoint, n_tokens=n_tokens)


def _cmd(args: argparse.Namespace) -> int:
    if not args.check and (args.model or args.hookpoint):
        from autointerp.errors import ConfigError

        raise ConfigError("--model and --hookpoint go with --check (the sanity gate)")
    if args.check:
        from autointerp.gate import GateError

        report = check_checkpoint(
            args.checkpoint,
            args.format,
            model=args.model,
            hookpoint=args.hookpoint,
            n_tokens=args.n_tokens,
        )
        print(json.dumps(report.to_dict(), indent=2) if args.json else report.format_table())
        if not report.passed:
            raise GateError(report.error_message())
        return 0
    d = inspect_checkpoint(args.checkpoint, args.format)
    print(json.dumps(d, indent=2, default=str) if args.json else _fmt(d))
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="describe an SAE checkpoint (format, architecture, widths, hookpoint, norms), "
        "or list a family's checkpoints and their hookpoints",
    )
    p.add_argument("checkpoint", help="folder, file, or hf://owner/repo[/subfolder][@revision]")
    p.add_argument(
        "--format", default=None, help="saelens | dictionary_learning | sparsify | native | plugin"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--check",
        action="store_true",
        help="run the sanity gate (FVU, L0, norm ratio, CE recovered; wrong hookpoint or "
        "scaling diagnosed) on the default corpus; exit 2 when it fails",
    )
    p.add_argument("--model", default=None, help="subject model for --check (default: bundled)")
    p.add_argument(
        "--hookpoint", default=None, help="hookpoint for --check (default: the checkpoint's)"
    )
    p.add_argument(
        "--n-tokens", type=int, default=2048, help="reference tokens for --check (default 2048)"
    )
    p.set_defaults(func=_cmd)

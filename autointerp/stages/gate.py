"""Stage ``gate``: every plugged-in checkpoint (an ``sae`` basis with a ``path``) checked on the
held-out reference rows at the suite's hookpoint before anything expensive runs
(:mod:`autointerp.gate`, ``docs/plugging-in.md``). A failure stops the run with one error
naming the figure, the likely cause and the fix, unless the basis has ``allow_mismatch``.
Value: ``{basis label: GateReport.to_dict()}`` (into the manifest's ``gate``); ``{}`` without
plugged-in bases (nothing loaded). Keyed by the contents of each checkpoint's files, so a
fixed checkpoint is checked again."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from autointerp.run.stage import Artifact, JsonCodec, Stage, StageContext

log = logging.getLogger(__name__)


def _plugged(suite) -> list:
    return [bc for bc in suite.bases if bc.kind == "sae" and bc.path]


def _fingerprint(path: str) -> str:
    """Content hash of a local checkpoint's files (not its path or mtimes: a checkpoint
    edited in place is checked again); the source string otherwise."""
    from autointerp.bases.fingerprint import files_hash

    p = Path(path)
    return files_hash(p) if p.exists() else str(path)


def _member(bc, hookpoint: str) -> str:
    """A local family folder's member for the hookpoint (else the path as it is)."""
    if not Path(bc.path).is_dir():
        return bc.path
    from autointerp.bases.families import pick_member

    return pick_member(bc.path, hookpoint, bc.format)


def gate_key(ctx: StageContext, inputs: dict[str, Any]) -> dict[str, Any]:
    s = ctx.env.suite
    return {
        "plugged": [
            {"cfg": bc.model_dump(), "files": _fingerprint(_member(bc, s.model.hookpoint))}
            for bc in _plugged(s)
        ],
        "model": s.model.model_dump(),
        "tokens": ctx.upstream.get("tokens"),
        "v": 1,  # the files are content-hashed now: old verdicts are not reused
    }


def compute_gate(ctx: StageContext, inputs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from autointerp.bases.builtin_kinds import load_plugged
    from autointerp.gate import gate_plugged_basis

    env = ctx.env
    s = env.suite
    plugged = _plugged(s)
    if not plugged:
        return {}
    tok, split = inputs["tokens"], inputs["split"]
    rows = split.metric_rows
    sm = env.sm
    width = sm.hookpoint(s.model.hookpoint).width
    out = {}
    for bc in plugged:
        b = load_plugged(
            bc, device=env.device, width=width, hookpoint=s.model.hookpoint, model_name=env.sm_name
        )
        report = gate_plugged_basis(
            sm, b, tok.ids[rows], split.mask[rows], s.model.hookpoint, bc.allow_mismatch
        )
        out[bc.label] = report.to_dict()
    return out


GATE = Stage(
    "gate",
    compute_gate,
    deps=("tokens", "split"),
    key=gate_key,
    artifact=Artifact(JsonCodec()),  # content-keyed: safe to share between runs
    doc="plugged-in checkpoints -> sanity gate on the held-out rows (stops a wrong reading)",
)

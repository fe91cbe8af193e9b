"""One steering experiment over many features at once (docs/steering.md).

For every target feature and every arm — ``feature`` (its own direction, added or clamped),
``diffmean`` (its DiffMean direction) — and every factor ``α > 0`` of the grid, each
instruction is answered greedily under the edit; the ``prompting`` arm answers
"Write about <explanation>. <instruction>" unsteered. The unsteered answers (``α = 0``) are
generated once per instruction and shared by every feature. Every continuation is then read
back through the unsteered model after the plain instruction: NLL, the feature's own code, and
(with a client) the explanation-PMI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from autointerp.bases.base import Basis
from autointerp.llm.base import LLMClient
from autointerp.model import Hookpoint, SubjectModel
from autointerp.steering.generate import prompt_ids, read_back, steered_generate
from autointerp.steering.interventions import Steer
from autointerp.steering.scores import (
    choose_factor,
    mean_code,
    pmi_per_token,
    repeated_bigrams,
)
from autointerp.templates import render

ARMS = ("feature", "diffmean")


@dataclass
class Target:
    """One feature to steer: its basis, decoder direction ``d``, scale ``s`` (``‖s d‖ = m``),
    max activation, explanation, and optional DiffMean direction (already scaled)."""

    basis: Basis
    feature: int
    direction: torch.Tensor
    scale: float
    max_act: float
    explanation: str | None = None
    diffmean: torch.Tensor | None = None


@dataclass
class Settings:
    factors: list[float]
    max_new_tokens: int = 24
    budget: float = 1.0
    repeat_budget: float = float("inf")
    clamp: bool = False
    batch_size: int = 64
    prompting: bool = True
    pmi: bool = True
    judge_max_tokens: int = 256


@dataclass
class _Row:
    prompt: int  # instruction index (selection then report)
    ids: list[int]
    edit: Steer
    target: int = -1  # -1: the unsteered answer
    arm: str = ""
    factor: float = 0.0
    cont: list[int] = field(default_factory=list)


def _edit(t: Target, arm: str, a: float, width: int, clamp: bool) -> Steer:
    if arm == "diffmean":
        assert t.diffmean is not None
        return Steer(a * t.diffmean)
    if clamp:
        unit = t.direction
        return Steer(torch.zeros(width), (t.basis, t.feature, a * t.max_act, unit))
    return Steer(a * t.scale * t.direction)


def _rows(
    sm: SubjectModel,
    hp: Hookpoint,
    targets: Sequence[Target],
    instr: Sequence[str],
    n_select: int,
    s: Settings,
) -> list[_Row]:
    w = hp.width
    zero = torch.zeros(w)
    ids = [prompt_ids(sm, q) for q in instr]
    rows = [_Row(p, ids[p], Steer(zero)) for p in range(len(instr))]
    for ti, t in enumerate(targets):
        for arm in ARMS:
            if arm == "diffmean" and t.diffmean is None:
                continue
            for a in s.factors:
                if a == 0:
                    continue
                for p in range(len(instr)):
                    rows.append(_Row(p, ids[p], _edit(t, arm, a, w, s.clamp), ti, arm, a))
        if s.prompting and t.explanation:  # no factor to pick: the report instructions only
            for p, q in enumerate(instr[n_select:], n_select):
                text = render("steer_prompting", explanation=t.explanation, instruction=q)
                rows.append(_Row(p, prompt_ids(sm, text), Steer(zero), ti, "prompting"))
    return rows


def _codes(targets: Sequence[Target], rows: list[_Row], acts: list[torch.Tensor], P: int):
    """Per row its target's mean code / max_act (``unst[ti, p]`` for the unsteered rows)."""
    own = np.full(len(rows), np.nan)
    unst = np.full((len(targets), P), np.nan)
    by_basis: dict[int, list[int]] = {}
    for ti, t in enumerate(targets):
        by_basis.setdefault(id(t.basis), []).append(ti)
    for tis in by_basis.values():
        basis = targets[tis[0]].basis
        feats = torch.tensor([targets[ti].feature for ti in tis])
        mine = [r for r, row in enumerate(rows) if row.target < 0 or row.target in set(tis)]
        for r in mine:
            x = acts[r]
            if len(x) == 0:
                continue
            c = basis.encode(x.to(basis.device, torch.float32))[:, feats.to(basis.device)]
            c = c.float().cpu().numpy()
            row = rows[r]
            if row.target < 0:
                for k, ti in enumerate(tis):
                    m = targets[ti].max_act
                    v = mean_code(c[:, k])
                    unst[ti, row.prompt] = np.nan if v is None or m <= 0 else v / m
            else:
                k = tis.index(row.target)
                m = targets[row.target].max_act
                v = mean_code(c[:, k])
                own[r] = np.nan if v is None or m <= 0 else v / m
    return own, unst


async def run_experiment(
    sm: SubjectModel,
    hp: Hookpoint,
    targets: Sequence[Target],
    select: Sequence[str],
    report: Sequence[str],
    s: Settings,
    client: LLMClient | None = None,
    judge: LLMClient | None = None,
) -> dict[str, Any]:
    """Per target the chosen factors, held-out scores and example texts, plus the unsteered
    answers (see the module docstring); with a ``judge`` client, its ratings
    (:mod:`autointerp.steering.judging`)."""
    instr = [*select, *report]
    P = len(instr)
    rows = _rows(sm, hp, targets, instr, len(select), s)
    conts = steered_generate(
        sm, hp, [r.ids for r in rows], [r.edit for r in rows],
        max_new_tokens=s.max_new_tokens, batch_size=s.batch_size,
    )  # fmt: skip
    for r, c in zip(rows, conts, strict=True):
        r.cont = c
    plain = [prompt_ids(sm, q) for q in instr]
    rb = read_back(sm, hp, [plain[r.prompt] for r in rows], conts, batch_size=s.batch_size)
    own, unst = _codes(targets, rows, rb.acts, P)
    texts = [sm.tokenizer.decode(c, skip_special_tokens=True) for c in conts]
    rep = np.array([np.nan if (v := repeated_bigrams(c)) is None else v for c in conts])
    pmi = np.full(len(rows), np.nan)
    pmi0 = np.full((len(targets), P), np.nan)
    if s.pmi and client is not None:
        jobs = [
            (r, targets[row.target].explanation) for r, row in enumerate(rows) if row.target >= 0
        ]
        jobs = [(r, e) for r, e in jobs if e]
        got = await pmi_per_token(client, [e for _, e in jobs], [texts[r] for r, _ in jobs])
        for (r, _), v in zip(jobs, got, strict=True):
            pmi[r] = np.nan if v is None else v
        base = [(ti, p) for ti, t in enumerate(targets) if t.explanation for p in range(P)]
        got = await pmi_per_token(
            client, [targets[ti].explanation or "" for ti, _ in base], [texts[p] for _, p in base]
        )
        for (ti, p), v in zip(base, got, strict=True):
            pmi0[ti, p] = np.nan if v is None else v
    nll0 = rb.nll[:P]
    rep0 = rep[:P]
    sel, rpt = np.arange(len(select)), np.arange(len(select), P)
    out = []
    for ti, t in enumerate(targets):
        d: dict[str, Any] = {
            "basis": t.basis.name,
            "feature": t.feature,
            "scale": t.scale,
            "max_act": t.max_act,
            "explanation": t.explanation,
            "arms": {},
        }
        for arm in (*ARMS, "prompting"):
            idx = [r for r, row in enumerate(rows) if row.target == ti and row.arm == arm]
            if not idx:
                continue
            fs = [0.0] if arm == "prompting" else list(s.factors)
            ga, gp, ri = (np.full((len(fs), P), np.nan) for _ in range(3))
            rp = np.tile(rep0, (len(fs), 1))
            if arm != "prompting":  # factor 0 is the unsteered answer: a gain of 0 where defined
                j0 = fs.index(0.0)
                ga[j0] = np.where(np.isfinite(unst[ti]), 0.0, np.nan)
                gp[j0] = np.where(np.isfinite(pmi0[ti]), 0.0, np.nan)
                ri[j0] = np.where(np.isfinite(nll0), 0.0, np.nan)
            for r in idx:
                j = fs.index(rows[r].factor)
                p = rows[r].prompt
                ga[j, p] = own[r] - unst[ti, p]
                gp[j, p] = pmi[r] - pmi0[ti, p]
                ri[j, p] = rb.nll[r] - nll0[p]
                rp[j, p] = rep[r]
            first = {rows[r].factor: texts[r] for r in idx if rows[r].prompt == 0}
            first.setdefault(0.0, texts[0])
            a = _arm(arm, fs, ga, gp, ri, rp, sel, rpt, s.budget, s.repeat_budget, first)
            j = fs.index(a["factor"])
            show = [r for r in idx if rows[r].factor == fs[j] and rows[r].prompt == rpt[0]]
            a["text"] = texts[show[0]] if show else texts[rpt[0]]
            d["arms"][arm] = a
        d["unsteered"] = {"act": _m(unst[ti, rpt]), "pmi": _m(pmi0[ti, rpt]),
                          "repeat": _m(rep0[rpt]), "text": texts[rpt[0]]}  # fmt: skip
        out.append(d)
    if judge is not None:
        from autointerp.steering.judging import judge_targets

        at = {(row.target, row.arm, row.factor, row.prompt): r for r, row in enumerate(rows)}

        def text_of(ti: int, arm: str, a: float, p: int) -> str:
            return texts[p if arm != "prompting" and a == 0 else at[(ti, arm, a, p)]]

        sp, rp = [int(i) for i in sel], [int(i) for i in rpt]
        await judge_targets(judge, out, text_of, instr, sp, rp, s.factors, s.judge_max_tokens)
    return {
        "targets": out,
        "instructions": {"selection": list(select), "report": list(report)},
        "unsteered": [
            {"instruction": q, "text": texts[p], "nll": _f(nll0[p])} for p, q in enumerate(instr)
        ],  # fmt: skip
        "n_generated": len(rows),
    }


def _arm(arm, fs, ga, gp, ri, rp, sel, rpt, budget, rbudget, texts) -> dict[str, Any]:
    """One arm's numbers; ``texts``: {factor: continuation of the first selection prompt}."""
    if arm == "prompting":  # no factor: the held-out prompts' numbers
        return {"factor": 0.0, "act": _m(ga[0, rpt]), "pmi": _m(gp[0, rpt]),
                "nll_rise": _m(ri[0, rpt]), "repeat": _m(rp[0, rpt])}  # fmt: skip
    ca = choose_factor(fs, ga, ri, rp, sel, rpt, budget, rbudget)
    cp = choose_factor(fs, gp, ri, rp, sel, rpt, budget, rbudget)
    curve = {str(f): {"act": _m(ga[j, sel]), "pmi": _m(gp[j, sel]), "nll_rise": _m(ri[j, sel]),
                      "repeat": _m(rp[j, sel])} for j, f in enumerate(fs)}  # fmt: skip
    for f, t in texts.items():
        curve[str(f)]["text"] = t
    return {"factor": ca.factor, "act": ca.score, "nll_rise": ca.nll_rise, "repeat": ca.repeat,
            "factor_pmi": cp.factor, "pmi": cp.score if np.isfinite(gp).any() else None,
            "curve": curve}  # fmt: skip


def _m(x: np.ndarray) -> float | None:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


def _f(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None

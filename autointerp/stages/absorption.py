"""Stage ``absorption``: SAEBench's first-letter feature absorption for every basis
(:mod:`autointerp.absorption`, docs/absorption.md) -> the columns
``mean_absorption_fraction_score``, ``mean_full_absorption_score``, ``mean_num_split_features``
(a :class:`~autointerp.columns.StageColumns`; CIs over letters).

The prompts, their activations and the ground-truth probe depend on the model and hookpoint
only: one cached item (``stages/absorption-probe-<h>.npz``, shared by every run), built from
the prompts' activations by word (the work dir's ``stages/absorption-prompts-<h>.npz``, which
every sample of the vocabulary adds to and reuses); each basis's result is one cached item too
(``stages/absorption-<basis>-<h>.json``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from autointerp.columns import Cell, ColumnDoc, StageColumns
from autointerp.results import atomic_write_with, stable_hash
from autointerp.run.stage import JSON, STAGE_COLUMNS, Artifact, FileCodec, Stage, StageContext
from autointerp.stages.env import model_salt

log = logging.getLogger(__name__)
#: bump when the computation changes (invalidates cached values)
ABSORPTION_VERSION = 2

COLUMNS = [
    ColumnDoc(
        "mean_absorption_fraction_score",
        "SAEBench absorption: mean over first letters of the share of the ground-truth probe's "
        "projection carried by other latents where the letter's main latents fall short",
        better="lower", group="absorption",
    ),
    ColumnDoc(
        "mean_full_absorption_score",
        "SAEBench absorption: mean over first letters of the share of words on which every main "
        "latent is off and one other latent carries >= 40% of the probe projection",
        better="lower", group="absorption",
    ),
    ColumnDoc(
        "mean_num_split_features",
        "SAEBench absorption: mean over first letters of the number of main latents (k-sparse "
        "probing, k grows while F1 rises by > 0.03; 1 = no feature splitting)",
        better="none", group="absorption", fmt=".2f",
    ),
]  # fmt: skip


class NpzCodec(FileCodec):
    """A dict of arrays as one ``.npz`` (no pickles)."""

    suffix = ".npz"

    def save(self, path: Path, value: Any) -> None:
        def write(p: Path) -> None:
            with p.open("wb") as f:
                np.savez(f, **value.to_arrays())

        atomic_write_with(path, write)

    def load(self, path: Path) -> Any:
        from autointerp.absorption.groundtruth import GroundTruth

        with np.load(path, allow_pickle=False) as d:
            return GroundTruth.from_arrays({k: d[k] for k in d.files})


PROBE_ARTIFACT = Artifact(NpzCodec())
BASIS_ARTIFACT = Artifact(JSON)


#: the settings the prompts' activations depend on (the rest: the probe, the per-basis eval)
PROMPT_FIELDS = ("prompt_template", "max_icl_examples", "train_fraction")
#: ... and the ones the ground truth (words sampled, probe) adds
PROBE_FIELDS = ("max_words", "probe_epochs", "probe_lr", "probe_end_lr", "probe_weight_decay",
                "probe_batch_size")  # fmt: skip


def prompts_key(ctx: StageContext) -> dict[str, Any]:
    s = ctx.env.suite
    return {
        "model": s.model.name,
        **model_salt(s),
        "dtype": s.model.dtype,
        "hookpoint": s.model.hookpoint,
        "bos": s.corpus.prepend_bos,
        "cfg": s.absorption.model_dump(include=set(PROMPT_FIELDS)),
        "seed": s.seed,
        "v": ABSORPTION_VERSION,
    }


def probe_key(ctx: StageContext) -> dict[str, Any]:
    return {
        "prompts": prompts_key(ctx),
        "cfg": ctx.env.suite.absorption.model_dump(include=set(PROBE_FIELDS)),
    }


def eval_cfg(ctx: StageContext) -> dict[str, Any]:
    """Every setting but the switch and the forward batch size."""
    return ctx.env.suite.absorption.model_dump(exclude={"enabled", "batch_size"})


def absorption_key(ctx: StageContext, inputs: dict[str, Any]) -> dict[str, Any]:
    bases = inputs["bases"]
    return {
        "probe": probe_key(ctx),
        "cfg": eval_cfg(ctx),
        "bases": [b.info.get("stage_hash", b.name) for b in bases],
        "names": [b.name for b in bases],
        "n_boot": ctx.env.suite.scoring.n_bootstrap,
        "enabled": ctx.env.suite.absorption.enabled,
    }


def ground_truth(ctx: StageContext) -> tuple[Any, dict[str, int]]:
    """The hookpoint's prompts, activations and ground-truth probe (cached; the prompts'
    activations also by word, for any other sample of the vocabulary), and how many prompts
    this call ran and found done."""
    from autointerp.absorption.groundtruth import build_ground_truth
    from autointerp.absorption.store import PromptActs

    env = ctx.env
    s = env.suite
    info: dict[str, int] = {}

    def build() -> Any:
        sm = env.sm
        hp = sm.hookpoint(s.model.hookpoint)
        bos = sm.bos_token_id if s.corpus.prepend_bos else None
        path = env.store.shared_file("absorption-prompts", stable_hash(prompts_key(ctx)), ".npz")
        store = PromptActs(path, hp.width)
        gt = build_ground_truth(sm, hp, s.absorption, s.seed, bos, store)
        info.update(run=store.computed, reused=store.reused)
        return gt

    gt = ctx.cached("absorption-probe", stable_hash(probe_key(ctx)), build, PROBE_ARTIFACT)
    return gt, info


def letter_cell(values: list[float], ctx: StageContext, reason: str | None) -> Cell:
    """Mean over letters with a bootstrap CI over letters; undefined with the reason."""
    from autointerp.stats import bootstrap_mean_ci

    if reason is not None:
        return Cell.undefined(reason)
    s = ctx.env.suite
    ci = bootstrap_mean_ci(values, n_boot=s.scoring.n_bootstrap, seed=s.seed)
    if ci.n == 0:
        return Cell.undefined("no letter with a probe-positive test word", n=0)
    return Cell(ci.mean, ci.low, ci.high, ci.n)


def basis_hash(ctx: StageContext, b: Any) -> str:
    """One basis's absorption item: the probe, the eval's config, the basis's weights, its
    name."""
    key = {"probe": stable_hash(probe_key(ctx)), "cfg": eval_cfg(ctx)}
    return stable_hash({**key, "basis": b.info.get("stage_hash", b.name), "name": b.name})


def absorption_one(ctx: StageContext, inputs: dict[str, Any], name: str) -> None:
    """One basis's absorption (an executor task; the probe is already cached)."""
    from autointerp.absorption.evaluate import evaluate_basis

    s = ctx.env.suite
    gt, _ = ground_truth(ctx)
    b = next(b for b in inputs["bases"] if b.name == name)
    ctx.cached(
        f"absorption-{name}", basis_hash(ctx, b),
        lambda: evaluate_basis(b, gt, s.absorption, s.seed).to_dict(), BASIS_ARTIFACT,
    )  # fmt: skip


def compute_absorption(ctx: StageContext, inputs: dict[str, Any]) -> StageColumns | None:
    from autointerp.absorption.evaluate import METRICS, evaluate_basis

    s = ctx.env.suite
    cfg = s.absorption
    if not cfg.enabled:
        return None
    t0 = time.perf_counter()
    gt, prompts = ground_truth(ctx)
    t_probe = time.perf_counter() - t0
    cols = StageColumns("absorption", list(COLUMNS))
    details: dict[str, Any] = {}
    secs: dict[str, float] = {}
    if ctx.parallel:  # the probe is built (once, here) before the bases' tasks
        ctx.prefetch(absorption_one, [
            b.name for b in inputs["bases"]
            if not ctx.available(f"absorption-{b.name}", basis_hash(ctx, b), BASIS_ARTIFACT)
        ], gpu=True)  # fmt: skip
    for b in inputs["bases"]:
        tb = time.perf_counter()
        res = ctx.cached(
            f"absorption-{b.name}", basis_hash(ctx, b),
            lambda b=b: evaluate_basis(b, gt, cfg, s.seed).to_dict(), BASIS_ARTIFACT,
        )  # fmt: skip
        secs[b.name] = round(time.perf_counter() - tb, 2)
        details[b.name] = res
        per = {m: [float(a[k]) for a in res["letters"]] for m, k in zip(METRICS, (
            "mean_absorption_fraction", "full_absorption_rate", "num_split_features"))}  # fmt: skip
        for m in METRICS:
            cols.set(b.name, m, letter_cell(per[m], ctx, res["reason"]))
    kept = gt.kept_letters(cfg.min_probe_f1)
    cols.extra.update(
        seconds=round(time.perf_counter() - t0, 2),
        seconds_probe=round(t_probe, 2),
        seconds_per_basis=secs,
        # prompts this call ran / found in the prompts' store (None: the ground truth cached)
        prompts_run=prompts.get("run", 0),
        prompts_reused=prompts.get("reused"),
        words={
            "vocabulary": gt.n_vocab_words,
            "train": len(gt.train_words),
            "test": len(gt.test_words),
            "probe_positive_test": len(gt.abs_idx),
        },  # fmt: skip
        word_token_pos=[int(p) for p in gt.rel_positions],
        probe_f1={
            c: (None if not np.isfinite(f) else round(float(f), 4))
            for c, f in zip("abcdefghijklmnopqrstuvwxyz", gt.probe_f1)
        },  # fmt: skip
        letters_kept="".join("abcdefghijklmnopqrstuvwxyz"[c] for c in kept),
        details=details,
    )
    log.info("absorption: %d letters kept, %d bases in %.1f s", len(kept), len(secs),
             time.perf_counter() - t0)  # fmt: skip
    return cols


ABSORPTION = Stage(
    "absorption",
    compute_absorption,
    deps=("bases",),
    key=absorption_key,
    artifact=Artifact(STAGE_COLUMNS),
    doc="bases + subject model -> SAEBench first-letter absorption (docs/absorption.md)",
)

"""Stage ``activations``: one forward pass to the hookpoint over every token row, stored
memory-mapped in ``work/acts-<h>.npy`` (written by the compute itself, streaming)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autointerp.run.stage import Artifact, FileCodec, Stage, StageContext
from autointerp.stages.env import model_salt


@dataclass
class Activations:
    """``acts [n_rows, T, width]`` (memory-mapped float32)."""

    acts: np.ndarray
    width: int


class ActsCodec(FileCodec):
    suffix = ".npy"
    streams = True

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def save(self, path: Path, value: Any) -> None:  # pragma: no cover - streamed
        raise AssertionError("activations are written by the stage itself")

    def load(self, path: Path) -> Activations:
        from autointerp.activations import load_activations

        acts = load_activations(path, self.shape)
        return Activations(acts, int(acts.shape[-1]))


def acts_key(ctx: StageContext, inputs: dict[str, Any]) -> dict[str, Any]:
    m = ctx.env.suite.model
    key = {"tokens": ctx.upstream["tokens"], "model": m.name, "hook": m.hookpoint, "dt": m.dtype}
    return {**key, **model_salt(ctx.env.suite)}


def compute_acts(ctx: StageContext, inputs: dict[str, Any]) -> Activations:
    from autointerp.activations import cache_activations

    env = ctx.env
    m = env.suite.model
    hp = env.sm.hookpoint(m.hookpoint)
    acts = cache_activations(
        env.sm, hp, inputs["tokens"].ids, ctx.path, batch_size=m.batch_size, progress=ctx.progress
    )
    return Activations(acts, hp.width)


def acts_artifact(ctx: StageContext, inputs: dict[str, Any]) -> Artifact:
    codec = ActsCodec(inputs["tokens"].ids.shape)
    return Artifact(codec, place=lambda s, h: s.work(f"acts-{h}.npy"), shared=False)


ACTIVATIONS = Stage(
    "activations",
    compute_acts,
    deps=("tokens",),
    key=acts_key,
    artifact=acts_artifact,
    doc="token rows -> activations at the hookpoint",
)

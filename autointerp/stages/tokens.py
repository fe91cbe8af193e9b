"""Stage ``tokens``: the corpus tokenised into rows (``work/tokens-<h>.npy`` + ``.json``), and
the glue stage ``split``: the special-token mask and the held-out metric rows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autointerp.run.stage import Artifact, FileCodec, Stage, StageContext
from autointerp.run.store import RunStore, save_npy


@dataclass
class Tokens:
    """Token ids ``[n_rows, T]`` and the tokenizer's special ids (excluded everywhere)."""

    ids: np.ndarray
    special_ids: set[int]
    bos: int | None = None


class TokensCodec(FileCodec):
    """``tokens-<h>.npy`` plus ``tokens-<h>.json`` (special ids, BOS); both must exist."""

    suffix = ".npy"

    def exists(self, path: Path) -> bool:
        return path.exists() and path.with_suffix(".json").exists()

    def save(self, path: Path, value: Tokens) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_npy(path, value.ids)
        RunStore.write_json(
            path.with_suffix(".json"), {"special_ids": sorted(value.special_ids), "bos": value.bos}
        )

    def load(self, path: Path) -> Tokens:
        meta = json.loads(path.with_suffix(".json").read_text())
        return Tokens(np.load(path), set(meta["special_ids"]), meta.get("bos"))


def tokens_key(ctx: StageContext, inputs: dict[str, Any]) -> dict[str, Any]:
    s = ctx.env.suite
    return {"corpus": s.corpus.model_dump(), "model": s.model.name}


def compute_tokens(ctx: StageContext, inputs: dict[str, Any]) -> Tokens:
    from autointerp.corpus import tokenize_corpus

    sm = ctx.env.sm
    arr = tokenize_corpus(ctx.env.suite.corpus, sm.tokenizer)
    return Tokens(arr, set(sm.special_token_ids()), sm.bos_token_id)


TOKENS = Stage(
    "tokens",
    compute_tokens,
    key=tokens_key,
    artifact=Artifact(TokensCodec(), place=lambda s, h: s.work(f"tokens-{h}.npy"), shared=False),
    doc="corpus -> token rows (BOS + context)",
)


# --------------------------------------------------------------------------- split


def held_out_rows(n_rows: int, n: int) -> np.ndarray:
    """``n`` rows spread evenly over the whole corpus (strided, first and last included): the
    held-out metric tokens come from every part of it, not one contiguous slice."""
    return np.unique(np.linspace(0, n_rows - 1, n).round().astype(np.int64))


@dataclass
class Split:
    """Which tokens count (``mask``: True at special tokens) and which rows serve what:
    ``metric_rows`` held out for the metrics, ``fit_rows`` the rest (bases are fitted there),
    ``all_rows`` for densities and records."""

    mask: np.ndarray
    metric_rows: np.ndarray
    fit_rows: np.ndarray
    all_rows: np.ndarray


def compute_split(ctx: StageContext, inputs: dict[str, Any]) -> Split:
    from autointerp.activations import special_mask

    tok: Tokens = inputs["tokens"]
    s = ctx.env.suite
    n_rows = len(tok.ids)
    n_metric = min(max(1, -(-s.metrics.n_tokens // s.corpus.context)), n_rows // 4)
    metric_rows = held_out_rows(n_rows, n_metric)
    return Split(
        special_mask(tok.ids, tok.special_ids),
        metric_rows,
        np.setdiff1d(np.arange(n_rows), metric_rows),
        np.arange(n_rows),
    )


SPLIT = Stage("split", compute_split, deps=("tokens",), summary=False)

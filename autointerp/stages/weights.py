"""Stage ``weights``: each basis's per-feature weight statistics, and the decoder vector and
nearest decoder neighbours of its recorded features (:mod:`autointerp.bases.weight_stats`),
kept in the work dir per basis (``work/weights/<basis>-<h>.parquet``); the report stage
publishes them as ``weights/<basis>.parquet``, which the exports read (SAEBench ``core``'s
weight fields, Neuronpedia's ``vector`` and ``topkCosSim``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from autointerp.results import stable_hash, write_parquet
from autointerp.run.stage import Artifact, FileCodec, Stage, StageContext

#: bump when the statistics change (a new value for every cached basis)
WEIGHTS_VERSION = 1


class ParquetCodec(FileCodec):
    """A polars DataFrame as one parquet file."""

    suffix = ".parquet"

    def save(self, path: Path, value: pl.DataFrame) -> None:
        write_parquet(value, path)

    def load(self, path: Path) -> pl.DataFrame:
        return pl.read_parquet(path)


def compute_weights(ctx: StageContext, inputs: dict[str, Any]) -> dict[str, pl.DataFrame]:
    from autointerp.bases.weight_stats import weight_stats

    recs = inputs["records"].records
    out = {}
    for b in inputs["bases"]:
        feats = sorted({r.feature for r in recs.get(b.name, [])})
        key = {"basis": b.info.get("stage_hash", b.name), "f": feats, "v": WEIGHTS_VERSION}
        art = Artifact(
            ParquetCodec(),
            place=lambda s, h, n=b.name: s.work("weights", f"{n}-{h}.parquet"),
            shared=False,
        )
        out[b.name] = ctx.cached(
            f"weights-{b.name}", stable_hash(key), lambda b=b, f=feats: weight_stats(b, f), art
        )
    return out


WEIGHTS = Stage(
    "weights",
    compute_weights,
    deps=("bases", "records"),
    doc="bases -> per-feature weight statistics, recorded features' decoder vectors",
)

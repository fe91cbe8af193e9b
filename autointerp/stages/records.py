"""Stage ``records``: per basis, the selected features' windows (``records/<basis>.jsonl``,
its hash in ``stages/records-<basis>.hash``), and stage ``diagnostics``: redundancy and the
top-token mode of each basis's scored features (``stages/diagnostics-<basis>-<h>.json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autointerp.errors import ConfigError
from autointerp.results import stable_hash
from autointerp.run.stage import JSON, Artifact, FileCodec, Stage, StageContext
from autointerp.run.store import RunStore
from autointerp.stages.density import density_key
from autointerp.stages.tokens import held_out_rows
from autointerp.types import FeatureRecord


@dataclass
class RecordSet:
    """Each basis's feature records, and the hash each basis's records were built with."""

    records: dict[str, list[FeatureRecord]]
    hashes: dict[str, str]


def read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of a records file (written whole and atomically); a bad line is an error."""
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise ConfigError(
                f"{path}: line {n} is corrupt; rerun with --force records to rebuild it"
            ) from None
    return rows


class RecordsCodec(FileCodec):
    suffix = ".jsonl"

    def save(self, path: Path, value: list[FeatureRecord]) -> None:
        RunStore.write_text(path, "".join(json.dumps(r.to_dict()) + "\n" for r in value))

    def load(self, path: Path) -> list[FeatureRecord]:
        return [FeatureRecord.from_dict(r) for r in read_records(path)]


def records_artifact(name: str) -> Artifact:
    return Artifact(
        RecordsCodec(),
        place=lambda s, h: s.out("records", f"{name}.jsonl"),
        marker=lambda s: s.stages / f"records-{name}.hash",
    )


def records_hash(ctx: StageContext, inputs: dict[str, Any], b: Any) -> str:
    """What one basis's records depend on (its weights, the records settings, the corpus)."""
    suite = ctx.env.suite
    return stable_hash(
        {
            "basis": b.info.get("stage_hash", ""),
            "records": suite.records.model_dump(),
            "seed": suite.seed,
            "n_rows": len(inputs["tokens"].ids),
        }
    )


def _tokenizer(env: Any) -> Any:
    """The subject model's tokenizer, loaded once per run environment."""
    tok = getattr(env, "_records_tokenizer", None)
    if tok is None:
        tok = env._records_tokenizer = env.tokenizer()
    return tok


def records_of(ctx: StageContext, inputs: dict[str, Any], b: Any) -> list[FeatureRecord]:
    """One basis's records: ``records/<basis>.jsonl`` when it holds them, else collected."""
    from autointerp.records import collect_records, select_features

    env = ctx.env
    suite = env.suite
    rc = suite.records
    tokens, acts, split = inputs["tokens"].ids, inputs["activations"].acts, inputs["split"]
    density = inputs["density"][b.name]

    def collect() -> list[FeatureRecord]:
        feats = select_features(
            density, rc.n_features_of(b.name), mode=rc.feature_selection, seed=suite.seed,
            min_density=rc.min_density,
        )  # fmt: skip
        return collect_records(
            b, acts, tokens, split.mask, feats, density, rc, _tokenizer(env), seed=suite.seed,
            offset=1 if suite.corpus.prepend_bos else 0, device=env.device,
            progress=ctx.progress,
            codes=env.codes.pop(density_key(b, np.arange(len(tokens))), None),
        )  # fmt: skip

    h = records_hash(ctx, inputs, b)
    return ctx.cached(f"records-{b.name}", h, collect, records_artifact(b.name))


def records_one(ctx: StageContext, inputs: dict[str, Any], name: str) -> None:
    """One basis's records (an executor task)."""
    records_of(ctx, inputs, next(b for b in inputs["bases"] if b.name == name))


def compute_records(ctx: StageContext, inputs: dict[str, Any]) -> RecordSet:
    rc = ctx.env.suite.records
    bases = inputs["bases"]
    unknown = sorted(set(rc.n_features_by_basis) - {b.name for b in bases})
    if unknown:
        raise ConfigError(
            f"records.n_features_by_basis names {', '.join(unknown)}, not a basis of this suite "
            f"({', '.join(b.name for b in bases)}); use a [[bases]] name"
        )
    if ctx.parallel:
        ctx.prefetch(records_one, [
            b.name for b in bases
            if not ctx.available(f"records-{b.name}", records_hash(ctx, inputs, b),
                                 records_artifact(b.name))
        ])  # fmt: skip
    out = {b.name: records_of(ctx, inputs, b) for b in bases}
    hashes = {b.name: records_hash(ctx, inputs, b) for b in bases}
    ctx.env.codes.clear()  # the density pass's kept codes served the records
    return RecordSet(out, hashes)


RECORDS = Stage(
    "records",
    compute_records,
    deps=("tokens", "activations", "split", "bases", "density"),
    doc="bases + densities -> per-feature top / quantile / random windows",
)


# --------------------------------------------------------------------------- diagnostics


def compute_diagnostics(ctx: StageContext, inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """Redundancy and top-token mode of each basis's scored features
    (``autointerp.diagnostics``), on 512 rows spread over the corpus; one cached item per
    basis (``stages/diagnostics-<basis>-<h>.json``, keyed by its records)."""
    from autointerp.diagnostics import basis_diagnostics

    mask = inputs["split"].mask
    rows = held_out_rows(len(mask), min(512, len(mask)))
    records, hashes = inputs["records"].records, inputs["records"].hashes
    acts = inputs["activations"].acts
    dev = ctx.env.device

    def one(b: Any) -> dict[str, Any]:
        return basis_diagnostics(b, records[b.name], acts, mask, rows, device=dev).to_dict()

    return [
        ctx.cached(
            f"diagnostics-{b.name}",
            stable_hash({"records": hashes.get(b.name), "v": 2}),
            lambda b=b: one(b),
            Artifact(JSON),
        )
        for b in inputs["bases"]
    ]


DIAGNOSTICS = Stage(
    "diagnostics",
    compute_diagnostics,
    deps=("activations", "split", "bases", "records"),
    forced_by=("records",),
    doc="records -> redundancy and top-token mode per basis",
)

"""The suite runner: corpus -> activations -> bases -> metrics -> records -> explain -> score.

Every stage is keyed by a hash of its config and upstream hashes. Heavy artifacts (tokens,
activations, trained/fitted bases) live in the work dir (``$AUTOINTERP_CACHE_DIR/work``); small
results live in ``results/<suite>/<run>/``, written by one process at a time (``RunLock``).
Per-item LLM results are appended to checksummed journals named by the stage's protocol hash
(``autointerp.journal``) as each item finishes, so a killed run loses at most the items in
flight, a rerun resumes, a changed protocol recomputes, and a rerun of a finished suite makes
zero LLM calls.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import platform
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm

from autointerp import __version__
from autointerp.activations import cache_activations, special_mask
from autointerp.bases.base import Basis
from autointerp.config import BasisConfig, Suite, check_name, load_suite, suite_from_dict
from autointerp.errors import AutointerpError, ConfigError, FatalLLMError
from autointerp.journal import Journal, RunLock
from autointerp.results import (
    atomic_write_json,
    atomic_write_with,
    score_schema,
    stable_hash,
    write_parquet,
)
from autointerp.scoring.shuffled import assign_donors
from autointerp.types import Explanation, FeatureRecord, Score

log = logging.getLogger(__name__)

# change when a baseline's fit procedure changes
FIT_VERSION = "ica8192x100f32-pca-all-random32768f32"
STAGES = ("tokens", "activations", "bases", "metrics", "records", "explain", "score", "report")


# --------------------------------------------------------------------------- helpers


def protocol_of(suite: Suite) -> dict[str, Any]:
    """Every choice that changes what a score means (rows with equal ids are comparable)."""
    prompts = files("autointerp.prompts")
    templates = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12]
        for p in sorted(prompts.iterdir(), key=lambda p: p.name)
        if p.name.endswith(".txt")
    }
    llm = {}
    for role in ("explainer", "simulator", "scorer"):
        c = getattr(suite.llm, role)
        llm[role] = {"backend": c.backend, "model": c.model, "temperature": c.temperature}
        if c.backend == "transformers":
            llm[role]["dtype"] = c.dtype
    return {
        "corpus": {"source": suite.corpus.source, "context": suite.corpus.context},
        "records": suite.records.model_dump(),
        "explain": suite.explain.model_dump(),
        "scoring": suite.scoring.model_dump(exclude={"n_bootstrap"}),
        "llm": llm,
        "templates": templates,
        "seed": suite.seed,
    }


def _read_records(path: Path) -> list[dict[str, Any]]:
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


def _save_npy(path: Path, arr: np.ndarray) -> None:
    """np.save to a unique temp name in the same folder, then rename (atomic, no clashes)."""

    def write(p: Path) -> None:
        with p.open("wb") as f:
            np.save(f, arr)

    atomic_write_with(path, write)


def held_out_rows(n_rows: int, n: int) -> np.ndarray:
    """``n`` rows spread evenly over the whole corpus (strided, first and last included): the
    held-out metric tokens come from every part of it, not one contiguous slice."""
    return np.unique(np.linspace(0, n_rows - 1, n).round().astype(np.int64))


@dataclass
class Timer:
    timings: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, seconds: float) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + seconds


# --------------------------------------------------------------------------- the run


@dataclass
class RunPaths:
    run_dir: Path
    work_dir: Path

    @property
    def stages(self) -> Path:
        return self.run_dir / "stages"


class SuiteRun:
    """One execution of a suite; ``run()`` does every stage, skipping finished ones."""

    def __init__(
        self,
        suite: Suite,
        *,
        results_root: str | Path = "results",
        run_name: str | None = None,
        work_dir: str | Path | None = None,
        force: tuple[str, ...] = (),
        progress: bool = True,
        llm_cache: str | Path | None = None,
        retry_failed: bool = False,
    ) -> None:
        from autointerp.model import cache_dir, resolve_device

        self.suite = suite
        self.protocol = protocol_of(suite)
        self.protocol_id = stable_hash(self.protocol)
        self.config_hash = stable_hash(suite.model_dump())
        name = check_name(run_name, "run name") if run_name else f"run-{self.config_hash}"
        self.paths = RunPaths(
            Path(results_root) / suite.name / name,
            Path(work_dir) if work_dir else cache_dir() / "work",
        )
        bad = set(force) - set(STAGES)
        if bad:
            raise ConfigError(f"--force {sorted(bad)}: unknown stage; use one of {STAGES}")
        self.force = set(force)
        self.progress = progress
        self.retry_failed = retry_failed
        self._rec_hashes: dict[str, str] = {}
        self.llm_cache = Path(llm_cache) if llm_cache else cache_dir() / "llm-cache.sqlite"
        self.timer = Timer()
        self._sm = None
        self._dens_cache: dict[str, np.ndarray] = {}
        self._codes: dict[str, Any] = {}  # density key -> TokenCodes (full-corpus passes)
        self.device = resolve_device(suite.model.device)

    # ---------------------------------------------------------------- model, tokens, acts

    @property
    def sm(self):
        if self._sm is None:
            from autointerp.model import load_model

            t = time.perf_counter()
            dtype = getattr(torch, self.suite.model.dtype)
            self._sm = load_model(self.suite.model.name, device=self.device, dtype=dtype)
            self.timer.add("model_load", time.perf_counter() - t)
        return self._sm

    def _tokens(self) -> tuple[np.ndarray, str]:
        from autointerp.corpus import tokenize_corpus

        c = self.suite.corpus
        h = stable_hash({"corpus": c.model_dump(), "model": self.suite.model.name})
        path = self.paths.work_dir / f"tokens-{h}.npy"
        meta_path = path.with_suffix(".json")
        if path.exists() and meta_path.exists() and "tokens" not in self.force:
            return np.load(path), h
        tok = self.sm.tokenizer  # loading the model is timed as model_load, not here
        t = time.perf_counter()
        arr = tokenize_corpus(c, tok)
        specials = sorted(self.sm.special_token_ids())
        path.parent.mkdir(parents=True, exist_ok=True)
        _save_npy(path, arr)
        atomic_write_json(meta_path, {"special_ids": specials, "bos": self.sm.bos_token_id})
        self.timer.add("tokens", time.perf_counter() - t)
        return arr, h

    def _special_ids(self, tok_hash: str) -> set[int]:
        meta = json.loads((self.paths.work_dir / f"tokens-{tok_hash}.json").read_text())
        return set(meta["special_ids"])

    def _activations(self, tokens: np.ndarray, tok_hash: str) -> tuple[np.ndarray, str, int]:
        m = self.suite.model
        h = stable_hash({"tokens": tok_hash, "model": m.name, "hook": m.hookpoint, "dt": m.dtype})
        path = self.paths.work_dir / f"acts-{h}.npy"
        if "activations" in self.force and path.exists():
            path.unlink()
        if path.exists():
            from autointerp.activations import load_activations

            acts = load_activations(path, tokens.shape)
            return acts, h, int(acts.shape[-1])
        hp = self.sm.hookpoint(m.hookpoint)
        t = time.perf_counter()
        acts = cache_activations(
            self.sm, hp, tokens, path, batch_size=m.batch_size, progress=self.progress
        )
        self.timer.add("activations", time.perf_counter() - t)
        return acts, h, hp.width

    # ---------------------------------------------------------------- bases

    def _fit_tokens(self, acts, mask, fit_rows, n: int) -> torch.Tensor:
        """Up to ``n`` non-special activations from the fit rows (seeded subsample)."""
        xs = []
        for s in range(0, len(fit_rows), 256):
            r = fit_rows[s : s + 256]
            a = np.asarray(acts[r])
            xs.append(torch.from_numpy(a[~mask[r]]))
        x = torch.cat(xs)
        if len(x) > n:
            g = torch.Generator().manual_seed(self.suite.seed)
            x = x[torch.randperm(len(x), generator=g)[:n].sort().values]
        return x

    def _build_bases(
        self, acts, mask, fit_rows, metric_rows, acts_hash: str, width: int
    ) -> list[Basis]:
        from autointerp.bases.linear import (
            fit_ica,
            fit_pca,
            fit_random,
            load_linear,
            neuron_basis,
            save_linear,
        )

        cfgs = self.suite.bases
        names = [b.label for b in cfgs]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ConfigError(f"bases: duplicate names {sorted(dup)}; give each a distinct `name`")
        x_fit: torch.Tensor | None = None

        def fit_x() -> torch.Tensor:
            nonlocal x_fit
            if x_fit is None:
                x_fit = self._fit_tokens(acts, mask, fit_rows, 10**9)
            return x_fit

        bases: list[Basis] = []
        first_sae: Basis | None = None
        # SAEs first (they set the L0), the random null last (its densities match the others)
        for bc in sorted(cfgs, key=lambda b: (b.kind != "sae", b.kind == "random")):
            t = time.perf_counter()
            if bc.kind == "sae":
                b = self._load_sae(bc, fit_x, acts_hash, width)
                first_sae = first_sae or b
            else:
                k = (
                    bc.l0
                    if bc.l0 is not None
                    else self._default_l0(first_sae, acts, mask, metric_rows)
                )
                h = stable_hash(
                    {
                        "acts": acts_hash,
                        "cfg": bc.model_dump(),
                        "k": k,
                        "fit": FIT_VERSION,
                        "sae": first_sae.info.get("config_hash", first_sae.name)
                        if (bc.kind == "random" and first_sae)
                        else None,
                        "matched": [b.info.get("stage_hash", b.name) for b in bases]
                        if (bc.kind == "random" and bc.match == "bases")
                        else None,
                        "seed": self.suite.seed,
                    }
                )
                d = self.paths.work_dir / "bases" / f"{bc.label}-{h}"
                if (d / "basis.json").exists() and "bases" not in self.force:
                    b = load_linear(d)
                else:
                    seed = self.suite.seed
                    if bc.kind == "pca":
                        b = fit_pca(fit_x(), k=k, name=bc.label)
                    elif bc.kind == "ica":
                        b = fit_ica(
                            self._fit_tokens(acts, mask, fit_rows, 8192),
                            k=k,
                            name=bc.label,
                            seed=seed,
                        )
                    elif bc.kind == "neurons":
                        b = neuron_basis(width, k=k, name=bc.label)
                    else:
                        n_f, target = self._random_target(bc, first_sae, bases, acts, mask, width)
                        b = fit_random(
                            self._fit_tokens(acts, mask, fit_rows, 32768),
                            n_features=n_f,
                            target_density=target,
                            seed=seed,
                            name=bc.label,
                            space=bc.space or "whitened",
                        )
                        b.info["match"] = bc.match
                    save_linear(b, d)
                b.info["stage_hash"] = h
            b.to(self.device)
            self.timer.add(f"bases.{bc.label}", time.perf_counter() - t)
            bases.append(b)
        order = {n: i for i, n in enumerate(names)}
        return sorted(bases, key=lambda b: order[b.name])

    def _random_target(
        self, bc: BasisConfig, first_sae: Basis | None, built: list[Basis], acts, mask, width: int
    ) -> tuple[int, np.ndarray | None]:
        """(count, per-feature target densities) of a random null: the first SAE's count (else
        8x the width); densities the SAE's (``match = "sae"``) or an equal mixture of every
        other basis's (``match = "bases"``, ``docs/nulls.md``)."""
        from autointerp.bases.linear import mixture_target_density, random_target_density

        rows = np.arange(len(mask))
        n_f = first_sae.n_features if first_sae is not None else 8 * width
        others = [b for b in built if b.kind != "random"]
        if bc.match == "bases" and others:
            dens = [self._density(b, acts, mask, rows) for b in others]
            return n_f, mixture_target_density(dens, n_f, self.suite.seed)
        if first_sae is not None:
            dens = self._density(first_sae, acts, mask, rows)
            return n_f, random_target_density(dens, n_f, self.suite.seed)
        return n_f, None

    def _load_sae(self, bc: BasisConfig, fit_x, acts_hash: str, width: int) -> Basis:
        m = self.suite.model
        if bc.path:
            from autointerp.bases.checkpoints import load_checkpoint

            b = load_checkpoint(
                bc.path,
                bc.format,
                device=self.device,
                expected_d_in=width,
                expected_hookpoint=m.hookpoint,
                expected_model=self.sm_name,
                allow_mismatch=bc.allow_mismatch,
                name=bc.label,
            )
            b.info.setdefault("config_hash", stable_hash({"path": str(bc.path), "fmt": bc.format}))
            b.info["stage_hash"] = b.info["config_hash"]
            return b
        if bc.train is None:
            raise ConfigError(
                f"bases.{bc.label}: an sae basis needs `path` (a checkpoint) or `train` "
                '(e.g. train = {{ architecture = "topk", expansion = 8, k = 32 }})'
            )
        from autointerp.train import train_or_load

        out = self.paths.work_dir / "sae" / f"{bc.label}-{acts_hash}"
        meta = {"model": self.sm_name, "hookpoint": m.hookpoint, "corpus": self.suite.corpus.source}
        b = train_or_load(
            fit_x(),
            bc.train,
            out,
            meta,
            device=self.device,
            progress=self.progress,
            name=bc.label,
        )
        b.info["stage_hash"] = b.info.get("config_hash", "")
        return b

    @property
    def sm_name(self) -> str:
        if self._sm is not None:
            return self._sm.name
        from autointerp.model import DEFAULT_MODEL

        n = self.suite.model.name
        return "SmolLM2-135M-Instruct" if n == DEFAULT_MODEL else n

    def _default_l0(self, sae: Basis | None, acts, mask, rows) -> int:
        if sae is None:
            raise ConfigError(
                "bases: a linear basis needs `l0` (top-k per token) when the suite has no SAE "
                'to match; e.g. { kind = "pca", l0 = 32 }'
            )
        if "k" in sae.info and sae.info.get("architecture") == "topk":
            return int(sae.info["k"])
        d = self._density(sae, acts, mask, rows)
        return max(1, int(round(float(d.sum()))))

    # ---------------------------------------------------------------- metrics & density

    def _iter_x(self, acts, mask, rows, batch_rows: int = 32) -> Iterator[tuple]:
        for r in self._iter_rows(rows, batch_rows):
            yield self._rows_x(acts, mask, r)

    @staticmethod
    def _rows_x(acts, mask, r: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(np.array(acts[r])), torch.from_numpy(mask[r])

    @staticmethod
    def _iter_rows(rows: np.ndarray, batch_rows: int = 32) -> Iterator[np.ndarray]:
        for s in range(0, len(rows), batch_rows):
            yield np.asarray(rows[s : s + batch_rows])

    @staticmethod
    def _token_codes(nz: list[tuple[np.ndarray, ...]], shape: tuple[int, int]):
        from autointerp.records import TokenCodes

        def cat(i: int, dtype) -> np.ndarray:
            return np.concatenate([p[i] for p in nz]).astype(dtype) if nz else np.zeros(0, dtype)

        return TokenCodes(shape, cat(0, np.int32), cat(1, np.int32), cat(2, np.float32))

    @staticmethod
    def _density_key(basis: Basis, rows: np.ndarray) -> str:
        return f"{basis.name}-{basis.info.get('stage_hash', '')}-{stable_hash(rows.tolist())}"

    @torch.no_grad()
    def _density(self, basis: Basis, acts, mask, rows) -> np.ndarray:
        """Per-feature firing fraction over the non-special tokens of ``rows`` (cached)."""
        key = self._density_key(basis, rows)
        cached = self._dens_cache.get(key)
        if cached is not None:
            return cached
        path = self.paths.stages / f"density-{stable_hash(key)}.npy"
        if path.exists() and "metrics" not in self.force:
            d = np.load(path)
        else:
            counts = torch.zeros(basis.n_features, dtype=torch.float64)
            n = 0
            # Over the whole corpus, a basis that records would encode in full again keeps its
            # non-zero codes for the records stage (~80 MB for a topk-32 SAE on 205k tokens).
            keep = len(rows) == len(mask) and not basis.separable_features
            T = mask.shape[1]
            nz: list[tuple[np.ndarray, ...]] = []
            for r in self._iter_rows(rows):
                x, ex = self._rows_x(acts, mask, r)
                x = x[~ex].to(self.device)
                tok = (r[:, None] * T + np.arange(T))[~ex.numpy()]
                for s in range(0, len(x), 4096):
                    c = basis.encode(x[s : s + 4096])
                    fired = c > 0
                    counts += fired.sum(0, dtype=torch.int32).double().cpu()
                    if keep:
                        i, j = (c != 0).nonzero(as_tuple=True)
                        v = c[i, j].float().cpu().numpy()
                        nz.append((tok[s : s + 4096][i.cpu().numpy()], j.cpu().numpy(), v))
                n += len(x)
            d = (counts / max(n, 1)).numpy()
            if keep:
                self._codes[key] = self._token_codes(nz, mask.shape)
            path.parent.mkdir(parents=True, exist_ok=True)
            _save_npy(path, d)
        self._dens_cache[key] = d
        return d

    def _metrics(self, bases, acts, mask, tokens, metric_rows, fit_rows) -> list[dict[str, Any]]:
        from autointerp.metrics import downstream_metrics, reconstruction_metrics

        mc = self.suite.metrics
        h = stable_hash(
            {
                "bases": [b.info.get("stage_hash", b.name) for b in bases],
                "names": [b.name for b in bases],
                "metrics": mc.model_dump(),
                "rows": stable_hash(metric_rows.tolist()),
                "model": self.suite.model.model_dump(),
            }
        )
        path = self.paths.stages / f"metrics-{h}.json"
        if path.exists() and "metrics" not in self.force:
            return json.loads(path.read_text())
        t = time.perf_counter()
        rows_out = []
        for b in tqdm(bases, desc="metrics: reconstruction", disable=not self.progress):
            r = reconstruction_metrics(self._iter_x(acts, mask, metric_rows), b, batch_size=4096)
            r.pop("density", None)
            rows_out.append(
                {
                    "basis": b.name,
                    "kind": b.kind,
                    "n_features": b.n_features,
                    **{k: float(v) for k, v in r.items()},
                }
            )
        hp = self.sm.hookpoint(self.suite.model.hookpoint)
        mean_act = None
        if "mean" in mc.ablations:
            s = torch.zeros(hp.width, dtype=torch.float64)
            n = 0
            for x, ex in self._iter_x(acts, mask, fit_rows):
                x = x[~ex]
                s += x.double().sum(0)
                n += len(x)
            mean_act = (s / max(n, 1)).float().to(self.device)
        ids = torch.from_numpy(tokens[metric_rows].astype(np.int64))
        ex = torch.from_numpy(mask[metric_rows])
        log.info("downstream metrics on %d tokens x %d bases", int((~ex).sum()), len(bases))
        down = downstream_metrics(
            self.sm,
            hp,
            ids,
            bases,
            ablations=tuple(mc.ablations),
            mean_act=mean_act,
            exclude_mask=ex,
            batch_size=mc.batch_size,
            acts=torch.from_numpy(np.array(acts[metric_rows])),
        )
        for row in rows_out:
            row.update({k: float(v) for k, v in down[row["basis"]].items()})
        atomic_write_json(path, rows_out)
        self.timer.add("metrics", time.perf_counter() - t)
        return rows_out

    # ---------------------------------------------------------------- records

    def _records(self, b: Basis, acts, tokens, mask, density, tok) -> list[FeatureRecord]:
        from autointerp.records import collect_records, select_features

        rc = self.suite.records
        h = stable_hash(
            {
                "basis": b.info.get("stage_hash", ""),
                "records": rc.model_dump(),
                "seed": self.suite.seed,
                "n_rows": len(tokens),
            }
        )
        self._rec_hashes[b.name] = h
        path = self.paths.run_dir / "records" / f"{b.name}.jsonl"
        done = self.paths.stages / f"records-{b.name}.hash"
        if (
            path.exists()
            and done.exists()
            and done.read_text() == h
            and "records" not in self.force
        ):
            return [FeatureRecord.from_dict(r) for r in _read_records(path)]
        t = time.perf_counter()
        feats = select_features(
            density,
            rc.n_features,
            mode=rc.feature_selection,
            seed=self.suite.seed,
            min_density=rc.min_density,
        )
        offset = 1 if self.suite.corpus.prepend_bos else 0
        codes = self._codes.pop(self._density_key(b, np.arange(len(tokens))), None)
        recs = collect_records(
            b,
            acts,
            tokens,
            mask,
            feats,
            density,
            rc,
            tok,
            seed=self.suite.seed,
            offset=offset,
            device=self.device,
            progress=self.progress,
            codes=codes,
        )
        from autointerp.results import atomic_write_text

        atomic_write_text(path, "".join(json.dumps(r.to_dict()) + "\n" for r in recs))
        atomic_write_text(done, h)
        self.timer.add("records", time.perf_counter() - t)
        return recs

    def _diagnostics(self, bases, records, acts, mask) -> list[dict[str, Any]]:
        """Redundancy and top-token mode of each basis's scored features
        (``autointerp.diagnostics``), on 512 rows spread over the corpus; cached by records."""
        from autointerp.diagnostics import basis_diagnostics

        rows = held_out_rows(len(mask), min(512, len(mask)))
        h = stable_hash({"records": [self._rec_hashes.get(b.name) for b in bases], "v": 1})
        path = self.paths.stages / f"diagnostics-{h}.json"
        if path.exists() and "records" not in self.force:
            out = json.loads(path.read_text())
        else:
            t = time.perf_counter()
            out = [
                basis_diagnostics(
                    b, records[b.name], acts, mask, rows, device=self.device
                ).to_dict()
                for b in bases
            ]
            atomic_write_json(path, out)
            self.timer.add("diagnostics", time.perf_counter() - t)
        atomic_write_json(self.paths.run_dir / "diagnostics.json", out)
        return out

    # ---------------------------------------------------------------- LLM stages

    def _clients(self):
        from autointerp.llm import make_client
        from autointerp.llm.accounting import Ledger
        from autointerp.llm.cache import ResponseCache

        cache = ResponseCache(self.llm_cache)
        ledger = Ledger()
        made: dict[str, Any] = {}
        clients = {}
        for role in ("explainer", "simulator", "scorer"):
            cfg = getattr(self.suite.llm, role)
            key = cfg.model_dump_json()
            if key not in made:  # roles sharing a config share one client (one model load)
                made[key] = make_client(cfg, cache=cache, ledger=ledger)
            clients[role] = made[key]
        return clients, ledger

    def _stage_hashes(self) -> tuple[str, str]:
        """(explain hash, score hash): every input and choice of the stage, so a changed
        protocol (e.g. ``--set records.window=8``) recomputes instead of resuming."""
        p = self.protocol
        eh = stable_hash(
            {
                "records": self._rec_hashes,
                "explain": p["explain"],
                "llm": p["llm"]["explainer"],
                "templates": p["templates"],
                "floor": self.suite.scoring.floor,
            }
        )
        sh = stable_hash(
            {
                "explain": eh,
                "scoring": p["scoring"],
                "llm": [p["llm"]["simulator"], p["llm"]["scorer"]],
                "templates": p["templates"],
                "seed": p["seed"],
            }
        )
        return eh, sh

    def _journals(self) -> tuple[Journal, Journal]:
        eh, sh = self._stage_hashes()
        st = self.paths.stages
        return Journal(st / f"explain-{eh}.jsonl", "explain"), Journal(
            st / f"score-{sh}.jsonl", "score"
        )

    @staticmethod
    def _latest(rows: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
        """The last row per item key (a retried item's newer line wins)."""
        return {tuple(r["key"]): r for r in rows}

    async def _llm_stages(self, records: dict[str, list[FeatureRecord]]) -> None:
        from autointerp.llm.base import Tag

        exp_j, score_j = self._journals()
        calls_j = Journal(self.paths.stages / "llm_calls.jsonl")
        if "explain" in self.force:
            exp_j.path.unlink(missing_ok=True)
        if self.force & {"explain", "score"}:
            score_j.path.unlink(missing_ok=True)
        sc = self.suite.scoring
        styles = [self.suite.explain.style] + (
            ["top_tokens"] if sc.floor and self.suite.explain.style != "top_tokens" else []
        )
        have_exp = self._latest(exp_j.read())
        have_score = self._latest(score_j.read())
        if self.retry_failed:
            have_exp = {k: v for k, v in have_exp.items() if v["exp"]["status"] == "ok"}
            have_score = {
                k: v
                for k, v in have_score.items()
                if not any(r["status"] == "failed" for r in v["rows"])
            }
        todo_exp = [
            (r, style)
            for rs in records.values()
            for r in rs
            for style in styles
            if (r.basis, r.feature, style) not in have_exp
        ]
        nulls = [""] + (["shuffled"] if sc.shuffled_null and "simulation" in sc.scorers else [])
        kinds = ["llm"] + (["floor"] if sc.floor and "simulation" in sc.scorers else [])
        kind_style = dict(zip(kinds, styles, strict=False))  # llm -> explain style, floor -> top

        def plan_scores() -> list[tuple]:
            """(record, explanation, null, kind, donor feature) still to score; a shuffled
            null whose journaled donor differs from today's assignment is scored again."""
            exps = {k: Explanation(**v["exp"]) for k, v in have_exp.items()}
            jobs = []
            for rs in records.values():
                for kind, style in kind_style.items():
                    own = [exps[(r.basis, r.feature, style)] for r in rs]
                    texts = [e.text if e.status == "ok" else None for e in own]
                    donors = assign_donors(texts, self.suite.seed) if "shuffled" in nulls else []
                    for j, r in enumerate(rs):
                        for null in nulls:
                            d = None if not null else donors[j]
                            if null and d is None:
                                e, donor = own[j], None  # no valid null: an undefined row
                            else:
                                e = own[j] if not null else own[d]
                                donor = None if not null else rs[d].feature
                            got = have_score.get((r.basis, r.feature, null, kind))
                            if got is None or got.get("donor") != donor:
                                jobs.append((r, e, null, kind, donor))
            return jobs

        def llm_job(j: tuple) -> bool:
            return j[3] == "llm" and not (j[2] and j[4] is None)

        if not todo_exp:
            jobs = plan_scores()
            if not jobs:
                return
            needs_llm = any(map(llm_job, jobs))
        else:
            needs_llm = any(s != "top_tokens" for _, s in todo_exp) or "llm" in kinds
        clients, ledger = self._clients() if needs_llm else ({}, None)
        if "simulator" in clients and "simulation" in sc.scorers:
            from autointerp.scoring.simulation import pick_method

            pick_method(clients["simulator"], sc.simulation_method)  # a clear error up front
        flushed = 0

        def flush_ledger() -> None:
            nonlocal flushed
            if ledger is None:
                return
            new = ledger.records[flushed:]
            flushed += len(new)
            calls_j.append([asdict(r) for r in new])

        ec = self.suite.explain
        from autointerp.explain import explain_feature

        t = time.perf_counter()
        bar = tqdm(total=len(todo_exp), desc="explain", disable=not self.progress)

        async def one_exp(r: FeatureRecord, style: str) -> None:
            e = await explain_feature(
                r,
                clients.get("explainer"),
                style=style,
                max_examples=ec.max_examples,
                max_tokens=ec.max_tokens,
                max_parse_retries=self.suite.llm.explainer.max_parse_retries,
                tag=Tag("explain", r.basis, r.feature),
            )
            item = {"key": [r.basis, r.feature, style], "exp": asdict(e)}
            exp_j.append([item])
            have_exp[(r.basis, r.feature, style)] = item
            flush_ledger()
            bar.update()

        # Shortest prompts first: a model that falls back to ``model.generate`` pads each batch
        # to its longest prompt (0-163 tokens here); llm/greedy.py does not pad its prefill.
        from autointerp.explain import build_messages

        def prompt_chars(job: tuple[FeatureRecord, str]) -> tuple[bool, int]:
            r, style = job
            if style == "top_tokens":
                return (False, 0)
            try:
                msgs = build_messages(r, style, ec.max_examples)
            except AutointerpError:  # explain_feature reports it
                return (True, 0)
            return (True, sum(len(m["content"]) for m in msgs))

        todo_exp.sort(key=prompt_chars)
        await _gather_fatal([one_exp(r, s) for r, s in todo_exp])
        bar.close()
        if any(s != "top_tokens" for _, s in todo_exp):
            self.timer.add("explain", time.perf_counter() - t)

        t = time.perf_counter()
        jobs = plan_scores()
        bar = tqdm(total=len(jobs), desc="score", disable=not self.progress)

        async def one_score(
            r: FeatureRecord, e: Explanation, null: str, kind: str, donor: int | None
        ) -> None:
            if null and donor is None:
                rows, sims = self._no_null_rows(r, kind, clients), []
            else:
                rows, sims = await self._score_feature(r, e, null, kind, clients)
            for row in rows:
                if null:
                    row["extra"] = json.dumps({**json.loads(row["extra"]), "donor": donor})
            key = [r.basis, r.feature, null, kind]
            score_j.append([{"key": key, "rows": rows, "sims": sims, "donor": donor}])
            flush_ledger()
            bar.update()

        await _gather_fatal([one_score(*j) for j in jobs])
        bar.close()
        if any(map(llm_job, jobs)):
            self.timer.add("score", time.perf_counter() - t)
        for c in {id(c): c for c in clients.values()}.values():
            await c.aclose()

    def _no_null_rows(self, r: FeatureRecord, kind: str, clients) -> list[dict[str, Any]]:
        """Undefined shuffled-null rows of a feature no other explanation can serve (the
        basis has one usable explanation, or every other one has the same text)."""
        sc = self.suite.scoring
        method = "token_match" if kind == "floor" else sc.simulation_method
        if method == "auto" and "simulator" in clients:
            from autointerp.scoring.simulation import pick_method

            method = pick_method(clients["simulator"], "auto")
        why = "no shuffled null: no other feature's explanation is usable and differs in text"
        rows = []
        for v in sc.variants:
            s = Score(r.basis, r.feature, "simulation", v, None, method=method,
                      protocol_id=self.protocol_id, status="undefined", error=why,
                      null="shuffled")  # fmt: skip
            d = asdict(s)
            d["extra"] = json.dumps(d["extra"])
            rows.append(d)
        return rows

    async def _score_feature(self, r, e: Explanation, null: str, kind: str, clients):
        from autointerp.llm.base import Tag
        from autointerp.scoring.correlation import score_simulation

        sc = self.suite.scoring
        pid = self.protocol_id
        stage = "score" if not null else f"score.{null}"
        scores: list[Score] = []
        sims: list[dict[str, Any]] = []
        if kind == "floor":
            s = await score_simulation(
                r, e, None, variants=tuple(sc.variants), protocol_id=pid, null=null,
                method="token_match",
            )  # fmt: skip
            scores += s.scores
        if kind == "llm" and "simulation" in sc.scorers:
            s = await score_simulation(
                r,
                e,
                clients["simulator"],
                variants=tuple(sc.variants),
                protocol_id=pid,
                null=null,
                method=sc.simulation_method,
                max_parse_retries=self.suite.llm.simulator.max_parse_retries,
                tag=Tag(stage, r.basis, r.feature),
            )
            scores += s.scores
            if not null:
                sims = s.rows(r.basis, r.feature)
        if kind == "llm" and not null:
            text = e.text if e.status == "ok" else ""
            kw = dict(seed=self.suite.seed, protocol_id=pid)
            for name in ("detection", "fuzzing"):
                if name not in sc.scorers:
                    continue
                if not text:
                    scores.append(
                        Score(
                            r.basis,
                            r.feature,
                            name,
                            "balanced_accuracy",
                            None,
                            protocol_id=pid,
                            status="failed",
                            error=f"explanation failed: {e.error}",
                        )
                    )
                    continue
                from autointerp.scoring.detection import score_detection
                from autointerp.scoring.fuzzing import score_fuzzing

                fn = score_detection if name == "detection" else score_fuzzing
                scores += await fn(
                    r,
                    text,
                    clients["scorer"],
                    examples_per_prompt=sc.examples_per_prompt,
                    tag=Tag(name, r.basis, r.feature),
                    **kw,
                )
            if "intruder" in sc.scorers:
                from autointerp.scoring.intruder import score_intruder

                scores += await score_intruder(
                    r, clients["scorer"], tag=Tag("intruder", r.basis, r.feature), **kw
                )
        rows = []
        for s in scores:
            d = asdict(s)
            d["extra"] = json.dumps(d["extra"], default=float)
            rows.append(d)
        return rows, sims

    # ---------------------------------------------------------------- main

    def run(self) -> Path:
        """Every stage, skipping finished ones, under an exclusive lock on the run dir."""
        with RunLock(self.paths.run_dir):
            return self._run()

    def _run(self) -> Path:
        t0 = time.perf_counter()
        rd = self.paths.run_dir
        atomic_write_json(rd / "suite.json", self.suite.model_dump())
        tokens, tok_hash = self._tokens()
        acts, acts_hash, width = self._activations(tokens, tok_hash)
        mask = special_mask(tokens, self._special_ids(tok_hash))
        n_rows = len(tokens)
        n_metric = min(
            max(1, -(-self.suite.metrics.n_tokens // self.suite.corpus.context)), n_rows // 4
        )
        metric_rows = held_out_rows(n_rows, n_metric)
        fit_rows = np.setdiff1d(np.arange(n_rows), metric_rows)
        all_rows = np.arange(n_rows)
        bases = self._build_bases(acts, mask, fit_rows, metric_rows, acts_hash, width)
        metrics = self._metrics(bases, acts, mask, tokens, metric_rows, fit_rows)
        t = time.perf_counter()
        densities = {b.name: self._density(b, acts, mask, all_rows) for b in bases}
        self.timer.add("density", time.perf_counter() - t)
        tok = self._tokenizer()
        records = {
            b.name: self._records(b, acts, tokens, mask, densities[b.name], tok) for b in bases
        }
        self._codes.clear()  # the density pass's kept codes served the records
        self._diagnostics(bases, records, acts, mask)
        asyncio.run(self._llm_stages(records))
        t = time.perf_counter()
        self._write_outputs(bases, metrics, densities, records)
        self.timer.add("report", time.perf_counter() - t)
        self._write_manifest(bases, time.perf_counter() - t0)
        return rd

    def _tokenizer(self):
        if self._sm is not None:
            return self._sm.tokenizer
        from autointerp.model import load_tokenizer

        return load_tokenizer(self.suite.model.name)

    def _write_outputs(self, bases, metrics, densities, records) -> None:
        rd = self.paths.run_dir
        for row in metrics:  # L0 over the whole corpus, next to the held-out tokens' L0
            row["l0_corpus"] = float(densities[row["basis"]].sum())
        write_parquet(pl.DataFrame(metrics), rd / "metrics.parquet")
        from autointerp.saebench import write_saebench_json

        for b, row in zip(bases, metrics, strict=True):
            info = {"name": b.name, "kind": b.kind, "n_features": b.n_features, **b.info}
            write_saebench_json(
                row,
                densities[b.name],
                basis_info=info,
                model=self.sm_name,
                hookpoint=self.suite.model.hookpoint,
                path=rd / "saebench" / f"{b.name}_core.json",
                eval_config={
                    "n_tokens": self.suite.metrics.n_tokens,
                    "context": self.suite.corpus.context,
                },
            )
        write_parquet(
            pl.DataFrame(
                {
                    "basis": [b for b, d in densities.items() for _ in range(len(d))],
                    "feature": [i for d in densities.values() for i in range(len(d))],
                    "density": np.concatenate(list(densities.values())).astype(np.float64),
                }
            ),
            rd / "density.parquet",
        )
        exp_j, score_j = self._journals()
        style = self.suite.explain.style
        exps = {k[:2]: v["exp"] for k, v in self._latest(exp_j.read()).items() if k[2] == style}
        items = list(self._latest(score_j.read()).values())
        feats = []
        for rs in records.values():
            for r in rs:
                e = exps.get((r.basis, r.feature), {})
                feats.append(
                    {
                        "basis": r.basis,
                        "feature": r.feature,
                        "density": r.density,
                        "max_act": r.max_act,
                        "explanation": e.get("text", ""),
                        "explanation_status": e.get("status", "missing"),
                        "explanation_error": e.get("error", ""),
                    }
                )
        write_parquet(pl.DataFrame(feats), rd / "features.parquet")
        scores = [r for it in items for r in it["rows"]]
        write_parquet(pl.DataFrame(scores, schema=score_schema()), rd / "scores.parquet")
        sims = [s for it in items for s in it["sims"]]
        sim_schema = {
            "basis": pl.Utf8,
            "feature": pl.Int64,
            "example": pl.Int64,
            "kind": pl.Utf8,
            "tokens": pl.List(pl.Utf8),
            "true": pl.List(pl.Float64),
            "pred": pl.List(pl.Float64),
        }
        write_parquet(pl.DataFrame(sims, schema=sim_schema), rd / "simulations.parquet")

    def _llm_identity(self) -> dict[str, dict[str, Any]]:
        """Per role: backend, model and, for in-process torch, the dtype ``auto`` resolves to
        here (without loading any model)."""
        out = {}
        for role in ("explainer", "simulator", "scorer"):
            c = getattr(self.suite.llm, role)
            out[role] = {"backend": c.backend, "model": c.model}
            if c.backend == "transformers":
                from autointerp.llm.transformers_backend import resolve_dtype
                from autointerp.model import resolve_device

                dev = resolve_device(c.device)
                out[role].update(device=str(dev), dtype=resolve_dtype(c.dtype, dev))
        return out

    def _write_manifest(self, bases, wall: float) -> None:
        from autointerp.llm.accounting import CallRecord, Ledger

        rd = self.paths.run_dir
        ledger = Ledger()
        calls = Journal(rd / "stages" / "llm_calls.jsonl").read()
        ledger.records = [CallRecord(**r) for r in calls]
        prev = {}
        if (rd / "manifest.json").exists():
            prev = json.loads((rd / "manifest.json").read_text())
        timings = dict(prev.get("timings_first_run", {})) or dict(self.timer.timings)
        import transformers

        manifest = {
            "suite": self.suite.name,
            "run": rd.name,
            "model": self.sm_name,
            "hookpoint": self.suite.model.hookpoint,
            "protocol_id": self.protocol_id,
            "protocol": self.protocol,
            "config": self.suite.model_dump(),
            "config_hash": self.config_hash,
            "seed": self.suite.seed,
            "versions": {
                "autointerp": __version__,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "python": platform.python_version(),
                "polars": pl.__version__,
                "numpy": np.__version__,
            },
            "device": str(self.device),
            "llm": self._llm_identity(),
            "timings": self.timer.timings,
            "timings_first_run": timings,
            # summed over the invocations that computed something (a killed-and-resumed run
            # counts both parts; a pure rerun adds nothing)
            "wall_time_s": prev.get("wall_time_s", 0.0) + (0.0 if self._resumed_all() else wall),
            "this_invocation_s": wall,
            "llm_usage": ledger.totals(),
            "bases": [
                {"name": b.name, "kind": b.kind, "n_features": b.n_features, "info": b.info}
                for b in bases
            ],
            "work_dir": str(self.paths.work_dir),
        }
        atomic_write_json(rd / "manifest.json", manifest)
        from autointerp.report import write_run_leaderboard

        write_run_leaderboard(rd)

    def _resumed_all(self) -> bool:
        heavy = {"tokens", "activations", "metrics", "records", "explain", "score"}
        return not (heavy & set(self.timer.timings))


async def _gather_fatal(coros) -> None:
    """Run coroutines concurrently; a FatalLLMError cancels the rest and propagates."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        for fut in asyncio.as_completed(tasks):
            await fut
    except FatalLLMError:
        for t in tasks:
            t.cancel()
        # retrieve every outcome: a sibling that failed too would otherwise be logged at exit
        # as "Task exception was never retrieved" with its traceback
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


# --------------------------------------------------------------------------- API + CLI


def run_suite(suite: Suite | str | Path, **kwargs: Any) -> Path:
    """Run a suite (a ``Suite`` or a TOML path); returns the run directory."""
    if not isinstance(suite, Suite):
        suite = load_suite(suite)
    return SuiteRun(suite, **kwargs).run()


def _cmd_run(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite)
    if args.set:
        suite = suite_from_dict(_apply_overrides(suite.model_dump(), args.set), str(args.suite))
    rd = run_suite(
        suite,
        results_root=args.results,
        run_name=args.run,
        work_dir=args.work_dir,
        force=tuple(args.force or ()),
        progress=not args.quiet,
        retry_failed=args.retry_failed,
    )
    _print_summary(rd)
    return 0


def _print_summary(rd: Path) -> None:
    """The leaderboard, its sanity flags and the per-stage times of this invocation."""
    print((rd / "leaderboard.md").read_text())
    from autointerp.report import leaderboard_table, load_run

    board = leaderboard_table([load_run(rd)])
    for df in board.groups.values():
        for r in df.iter_rows(named=True):
            if r.get("flag"):
                print(f"FLAG {r['basis']} ({r['method']}): {r['flag']}")
    m = json.loads((rd / "manifest.json").read_text())
    t = m.get("timings") or {}
    if t:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in sorted(t.items(), key=lambda kv: -kv[1]))
        print(f"stage times (s, this invocation): {parts}; total {m['this_invocation_s']:.1f}")
    else:
        print(f"nothing recomputed; total {m['this_invocation_s']:.1f} s")
    print(f"results in {rd}")


def _apply_overrides(d: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """``a.b.c=value`` overrides (value parsed as TOML, else a string)."""
    import tomllib

    for s in sets:
        if "=" not in s:
            raise ConfigError(f"--set {s!r}: expected FIELD=VALUE, e.g. records.n_features=8")
        k, v = s.split("=", 1)
        try:
            val = tomllib.loads(f"v = {v}")["v"]
        except tomllib.TOMLDecodeError:
            val = v
        cur = d
        parts = k.split(".")
        for p in parts[:-1]:
            if not isinstance(cur.get(p), dict):
                raise ConfigError(f"--set {k}: {p!r} is not a section of the suite")
            cur = cur[p]
        cur[parts[-1]] = val
    return d


def _cmd_score(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite) if args.suite else Suite()
    d = suite.model_dump()
    d["name"] = args.name or "score"
    d["model"]["name"] = args.model or d["model"]["name"]
    hookpoint = args.hookpoint
    if not hookpoint:
        from autointerp.bases.checkpoints import load_checkpoint

        hookpoint = load_checkpoint(args.checkpoint, args.format, device="cpu").info.get(
            "hookpoint"
        )
        if not hookpoint:
            raise ConfigError(
                f"{args.checkpoint} records no hookpoint: pass --hookpoint, e.g. "
                "--hookpoint blocks.6.hook_resid_post"
            )
    d["model"]["hookpoint"] = hookpoint
    bases = [
        {
            "kind": "sae",
            "name": args.basis_name or Path(str(args.checkpoint)).name or "sae",
            "path": str(args.checkpoint),
            "format": args.format,
            "allow_mismatch": args.allow_mismatch,
        }
    ]
    if args.baselines:
        bases += [{"kind": k} for k in ("pca", "ica", "neurons")]
    bases.append({"kind": "random"})
    d["bases"] = bases
    if args.set:
        d = _apply_overrides(d, args.set)
    rd = run_suite(
        suite_from_dict(d, "autointerp score"),
        results_root=args.results,
        run_name=args.run,
        work_dir=args.work_dir,
        progress=not args.quiet,
        retry_failed=args.retry_failed,
    )
    _print_summary(rd)
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", default="results", help="results root (default: results)")
    p.add_argument("--run", default=None, help="run name (default: run-<config hash>)")
    p.add_argument("--work-dir", default=None, help="heavy artifacts (default: user cache)")
    p.add_argument(
        "--set",
        action="append",
        metavar="FIELD=VALUE",
        help="override a suite field, e.g. --set records.n_features=8",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="ask the LLM again for items that failed (transient errors, unparsable answers)",
    )


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run a benchmark suite (TOML) end to end")
    p.add_argument("suite", help="suite file, e.g. evals/default.toml ('default' = bundled)")
    p.add_argument("--force", action="append", choices=STAGES, help="redo a stage")
    _common(p)
    p.set_defaults(func=_cmd_run)
    s = sub.add_parser("score", help="score one SAE checkpoint with the suite's defaults")
    s.add_argument("checkpoint", help="checkpoint dir/file or hf://owner/repo[/subfolder]")
    s.add_argument("--model", default=None, help="subject model (default: the suite's)")
    s.add_argument("--hookpoint", default=None, help="hookpoint (default: the checkpoint's)")
    s.add_argument("--format", default=None, help="checkpoint format (default: detected)")
    s.add_argument("--suite", default=None, help="suite whose defaults to use")
    s.add_argument("--name", default=None, help="suite name for results (default: score)")
    s.add_argument("--basis-name", default=None, help="row label (default: folder name)")
    s.add_argument("--baselines", action="store_true", help="also score PCA, ICA and neurons")
    s.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="score even if the checkpoint records another model/hookpoint",
    )
    _common(s)
    s.set_defaults(func=_cmd_score)

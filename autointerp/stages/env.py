"""What every stage of a suite shares: the suite, its protocol, the device, the subject model
(loaded on first use), and the LLM session (clients made on first use, closed at the end)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

from autointerp.config import Suite
from autointerp.results import stable_hash
from autointerp.run.store import RunStore


def model_salt(suite: Suite) -> dict[str, Any]:
    """What the subject model's weights add to every key that depends on them: ``{}`` for the
    trained weights (hashes as before), ``{"reinit": {...}}`` for the random-model null."""
    r = suite.model.reinit
    return {} if r is None else {"reinit": r.model_dump()}


#: the templates of the input-side protocol (explanations and their scores); a stage with
#: templates of its own (steering: ``steer_*``) keys on them itself, so adding one does not
#: change the protocol id of every explanation and score
PROTOCOL_TEMPLATES = ("explain_", "simulate_", "detection", "fuzzing", "intruder")


def template_hashes(prefixes: tuple[str, ...]) -> dict[str, str]:
    """``{file name: sha256[:12]}`` of the bundled ``prompts/*.txt`` whose names start with one
    of ``prefixes``."""
    prompts = files("autointerp.prompts")
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12]
        for p in sorted(prompts.iterdir(), key=lambda p: p.name)
        if p.name.endswith(".txt") and p.name.startswith(prefixes)
    }


def protocol_of(suite: Suite) -> dict[str, Any]:
    """Every choice that changes what a score means (rows with equal ids are comparable)."""
    templates = template_hashes(PROTOCOL_TEMPLATES)
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
        **model_salt(suite),
    }


def suite_store(
    suite: Suite,
    *,
    results_root: str | Path = "results",
    run_name: str | None = None,
    work_dir: str | Path | None = None,
    run_dir: str | Path | None = None,
) -> tuple[str, RunStore]:
    """``(config hash, store)`` of a run of ``suite``: the run directory is ``run_dir``, else
    ``results_root/<suite>/<run_name>`` (default name ``run-<config hash>``); heavy artifacts
    go to ``work_dir`` (default: the cache dir's ``work``)."""
    from autointerp.config import check_name
    from autointerp.model import cache_dir

    config_hash = stable_hash(suite.model_dump())
    name = check_name(run_name, "run name") if run_name else f"run-{config_hash}"
    store = RunStore(
        Path(run_dir) if run_dir else Path(results_root) / suite.name / name,
        Path(work_dir) if work_dir else cache_dir() / "work",
    )
    return config_hash, store


def llm_cache_path(llm_cache: str | Path | None) -> Path:
    """The LLM response cache: ``llm_cache``, else ``llm-cache.sqlite`` in the cache dir."""
    from autointerp.model import cache_dir

    return Path(llm_cache) if llm_cache else cache_dir() / "llm-cache.sqlite"


class SuiteEnv:
    """The environment the suite's stages see as ``ctx.env``."""

    def __init__(
        self,
        suite: Suite,
        store: RunStore,
        *,
        progress: bool = True,
        retry_failed: bool = False,
        llm_cache: Path,
        max_cost: float | None = None,
    ) -> None:
        from autointerp.model import resolve_device

        self.suite = suite
        self.store = store
        self.progress = progress
        self.retry_failed = retry_failed
        self.llm_cache = llm_cache
        self.max_cost = max_cost
        self.protocol = protocol_of(suite)
        self.protocol_id = stable_hash(self.protocol)
        self.device = resolve_device(suite.model.device)
        self.timings: dict[str, float] = {}  # work done outside any one stage (model_load)
        self.codes: dict[str, Any] = {}  # density key -> TokenCodes kept for the records stage
        self.llm = LLMSession(self)
        self._sm = None

    @property
    def sm(self):
        """The subject model, loaded on first use (timed as ``model_load``)."""
        if self._sm is None:
            import torch

            from autointerp.model import load_model, shared_model

            t = time.perf_counter()
            dtype = getattr(torch, self.suite.model.dtype)
            if self.suite.model.reinit is not None:  # in memory only; the cache stays trained
                from autointerp.reinit import reinit_model

                sm = load_model(self.suite.model.name, device=self.device, dtype=dtype)
                reinit_model(sm.model, self.suite.model.reinit.seed)
            else:  # one copy shared with in-process LLM roles that name the same weights
                sm = shared_model(self.suite.model.name, device=self.device, dtype=dtype)
            self._sm = sm
            self.timings["model_load"] = time.perf_counter() - t
        return self._sm

    @property
    def sm_name(self) -> str:
        if self._sm is not None:
            return self._sm.name
        from autointerp.model import DEFAULT_MODEL

        n = self.suite.model.name
        return "SmolLM2-135M-Instruct" if n == DEFAULT_MODEL else n

    def tokenizer(self):
        if self._sm is not None:
            return self._sm.tokenizer
        from autointerp.model import load_tokenizer

        return load_tokenizer(self.suite.model.name)


class RoleClients(Mapping[str, Any]):
    """The explainer / simulator / scorer (and, when configured, judge) clients, each made on
    first use (a role the run's stages never ask for is never loaded: the default suite's
    llama.cpp scorer role needs no llama.cpp when no scorer uses it); roles sharing a config
    share one client."""

    ROLES = ("explainer", "simulator", "scorer", "judge")

    def __init__(self, suite: Suite, make: Callable[[str], Any]) -> None:
        self._suite, self._make = suite, make
        self._by_key: dict[str, Any] = {}

    def __getitem__(self, role: str) -> Any:
        if role not in self.ROLES or getattr(self._suite.llm, role) is None:
            raise KeyError(role)
        key = getattr(self._suite.llm, role).model_dump_json()
        if key not in self._by_key:
            self._by_key[key] = self._make(role)
        return self._by_key[key]

    def __iter__(self) -> Iterator[str]:
        return iter([r for r in self.ROLES if getattr(self._suite.llm, r) is not None])

    def __len__(self) -> int:
        return len(list(self))

    def made(self) -> list[Any]:
        """The clients made so far (each once)."""
        return list(self._by_key.values())


class LLMSession:
    """The explainer / simulator / scorer clients of a run, made once on first use (roles
    sharing a config share one client), with the ledger of every call appended to the
    ``llm_calls.jsonl`` journal after each item."""

    def __init__(self, env: SuiteEnv) -> None:
        self.env = env
        self._clients: RoleClients | None = None
        self._ledger = None
        self._flushed = 0
        #: in a worker making LLM items for the driver: the calls' rows, kept here for the
        #: driver to journal (one writer of llm_calls.jsonl) instead of appended
        self.collected: list[dict[str, Any]] | None = None

    @property
    def started(self) -> bool:
        return self._clients is not None

    def clients(self, ctx: Any) -> RoleClients:
        """The clients by role; the first call makes them and closes them when the run ends.
        A simulation method the simulator cannot serve is a clear error here, up front."""
        if self._clients is not None:
            return self._clients
        from autointerp.llm import make_client
        from autointerp.llm.accounting import Ledger
        from autointerp.llm.cache import ResponseCache

        suite = self.env.suite
        cache = ResponseCache(self.env.llm_cache)
        # earlier invocations' (a worker collecting its calls has no --max-cost to check,
        # and leaves the file the driver appends to alone)
        journal = self.env.store.journal("llm_calls.jsonl")
        calls = [] if self.collected is not None else journal.read()
        spent = sum(r.get("cost_usd", 0.0) for r in calls)
        self._ledger = Ledger(self.env.max_cost, spent_before=spent)
        ledger = self._ledger

        def make(role: str) -> Any:
            return make_client(getattr(suite.llm, role), cache=cache, ledger=ledger)

        clients = RoleClients(suite, make)
        self._clients = clients

        async def aclose() -> None:
            for c in clients.made():
                await c.aclose()

        ctx.on_close(aclose)
        if "simulation" in suite.scoring.scorers:
            from autointerp.scoring.simulation import pick_method

            pick_method(clients["simulator"], suite.scoring.simulation_method)
        return clients

    def flush(self) -> None:
        """Append the calls made since the last flush to ``stages/llm_calls.jsonl``."""
        if self._ledger is None:
            return
        new = self._ledger.records[self._flushed :]
        self._flushed += len(new)
        # a CallRecord holds scalars only: its __dict__ is asdict() without the deep copies
        # (9 us -> 0.3 us a record; one record per prompt, ~20 per PMI-scored feature)
        rows = [dict(vars(r)) for r in new]
        if self.collected is not None:
            self.collected += rows
            return
        self.env.store.journal("llm_calls.jsonl").append(rows)

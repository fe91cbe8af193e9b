"""Costs up front and a spending cap for runs that call a paid API.

``estimate_cost`` counts, from the stage plan (the records to explain and score, the suite's
styles, scorers, methods and nulls), the calls each paid role will make and their tokens
(prompt characters / 4, a completion's ``max_tokens`` or its method's size) and prices them
with the role's price table (``autointerp.llm.prices``). A role is paid when its backend is
``openai`` or ``litellm`` and its endpoint is not on loopback. The figure is an estimate
(retries, parse failures and cache hits move it); an unpriced model's dollars are unknown.

``--max-cost USD``: the ledger totals this run's spending (earlier invocations' calls from
``llm_calls.jsonl`` included); once it reaches the cap no new request is sent
(:class:`BudgetExceeded`, a fatal LLM error: in-flight items finish, finished items stay in
their journals, and a rerun with a higher cap resumes where this one stopped).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autointerp.llm import remote
from autointerp.llm.accounting import BudgetExceeded
from autointerp.llm.prices import PriceTable

__all__ = ["BudgetExceeded", "CostEstimate", "estimate_cost", "is_paid"]

CHARS_PER_TOKEN = 4
PAID_BACKENDS = ("openai", "litellm")


def is_paid(cfg: Any) -> bool:
    """Whether calls through ``cfg`` (an ``LLMConfig``) are billed."""
    urls = cfg.base_urls
    local = bool(urls) and all(remote.is_local_url(u) for u in urls)
    return cfg.backend in PAID_BACKENDS and not local


@dataclass
class RoleCost:
    role: str
    model: str
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float | None = 0.0  # None: no price known for the model


@dataclass
class CostEstimate:
    roles: list[RoleCost] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return sum(r.calls for r in self.roles)

    @property
    def usd(self) -> float | None:
        if any(r.usd is None for r in self.roles):
            return None
        return sum(r.usd or 0.0 for r in self.roles)

    def format(self, max_cost: float | None = None) -> str:
        lines = ["estimated LLM cost of this run (paid roles; an estimate, see docs):"]
        for r in self.roles:
            usd = "unknown (no price for the model)" if r.usd is None else f"${r.usd:.2f}"
            lines.append(
                f"  {r.role:<10} {r.model}: {r.calls} calls, ~{r.prompt_tokens} prompt + "
                f"~{r.completion_tokens} completion tokens, {usd}"
            )
        total = "unknown" if self.usd is None else f"${self.usd:.2f}"
        cap = f" (--max-cost ${max_cost:.2f})" if max_cost is not None else ""
        lines.append(f"  total      {self.calls} calls, {total}{cap}")
        return "\n".join(lines)


def _tokens(chars: int) -> int:
    return max(1, chars // CHARS_PER_TOKEN)


def _window_chars(ex: Any) -> int:
    return sum(len(t) for t in ex.tokens)


def estimate_cost(suite: Any, records: dict[str, list[Any]], styles: list[str]) -> CostEstimate:
    """Calls, tokens and dollars of the paid roles for explaining (in each of ``styles``) and
    scoring ``records`` (``{basis: [FeatureRecord]}``) under ``suite``."""
    from autointerp.explain import build_messages
    from autointerp.explain_styles import get_explain_style

    out = CostEstimate()
    recs = [r for rs in records.values() for r in rs]
    llm = suite.llm
    ec, sc = suite.explain, suite.scoring
    if is_paid(llm.explainer):
        rc = RoleCost("explainer", llm.explainer.model)
        for style in styles:
            if not get_explain_style(style).uses_llm:
                continue
            for r in recs:
                try:
                    msgs = build_messages(r, style, ec.max_examples)
                except Exception:  # noqa: BLE001 - explain reports it; no call is made
                    continue
                rc.calls += 1
                rc.prompt_tokens += _tokens(sum(len(m["content"]) for m in msgs))
                rc.completion_tokens += ec.max_tokens
        out.roles.append(rc)
    n_runs = 2 if sc.shuffled_null else 1  # the real explanation, the shuffled null
    if "simulation" in sc.scorers and is_paid(llm.simulator):
        rc = RoleCost("simulator", llm.simulator.model)
        method = sc.simulation_method
        for r in recs:
            exs = list(r.test_top) + list(r.test_random)
            chars = [_window_chars(e) + 80 for e in exs]  # + the explanation / prefix
            if method == "pmi":  # two prompt-logprob passes per example
                rc.calls += 2 * len(exs) * n_runs
                rc.prompt_tokens += 2 * _tokens(sum(chars)) * n_runs
                rc.completion_tokens += 2 * len(exs) * n_runs
            elif method in ("all_at_once", "auto"):  # one prompt for every example
                rc.calls += n_runs
                rc.prompt_tokens += _tokens(sum(chars) * 2 + 1200) * n_runs
                rc.completion_tokens += n_runs
            else:  # json / top_logprobs: one chat per example
                rc.calls += len(exs) * n_runs
                rc.prompt_tokens += _tokens(sum(chars) + 400 * len(exs)) * n_runs
                rc.completion_tokens += sum(4 * len(e.tokens) for e in exs) * n_runs
        out.roles.append(rc)
    others = [s for s in sc.scorers if s != "simulation"]
    if others and is_paid(llm.scorer):
        rc = RoleCost("scorer", llm.scorer.model)
        for r in recs:
            exs = list(r.test_top) + list(r.test_quantile) + list(r.test_random)
            n = len(others) * n_runs
            rc.calls += n * max(1, len(exs) // max(1, sc.examples_per_prompt))
            rc.prompt_tokens += n * _tokens(sum(_window_chars(e) + 40 for e in exs) + 600)
            rc.completion_tokens += n * 8 * max(1, len(exs) // max(1, sc.examples_per_prompt))
        out.roles.append(rc)
    for rc in out.roles:
        cfg = getattr(llm, rc.role)
        price = PriceTable.from_config(cfg.prices).lookup(cfg.model)
        rc.usd = (
            None
            if price is None
            else (rc.prompt_tokens * price.input + rc.completion_tokens * price.output) / 1e6
        )
    return out

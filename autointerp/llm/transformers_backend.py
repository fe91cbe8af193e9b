"""In-process transformers backend: any HF causal LM (hub id, local dir, ``.gguf`` file or
``"smollm2-gguf"``) run by torch, on CUDA when present.

Why it exists next to llama.cpp: on a CPU with bf16 instructions (AVX512-BF16 / AMX) or on a GPU,
a torch forward over a long prompt is several times faster than llama.cpp's prompt evaluation of
the quantised GGUF (``benchmarks/bench_simulator.py``: 1.0 s vs 4.2 s for a 1,280-token prompt on
2 cores; llama.cpp stays near 3 s even without logits or with larger batches or flash
attention), and the all-at-once simulator is one long prompt per feature. Greedy chats in
flight together are generated as one batch (the default explainer, ``llm/greedy.py``);
explanation-PMI prompts of concurrent callers are merged into multi-prefix passes
(:meth:`TransformersClient._prompt_batch_sync`).

The client is put together from parts: ``transformers_base`` (model loading, dtype, shared
state), ``transformers_prompt`` (prompt-logprob passes, the LM-head readout and the
shared-prefix key/value LRU), ``transformers_chat`` (chat and batched greedy generation) and this
module (the client, which merges the prompt batches of concurrent callers into multi-prefix
passes). The names they define are importable from here.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

import torch

from autointerp.errors import AutointerpError, FatalLLMError
from autointerp.llm.config import LLMConfig
from autointerp.llm.greedy import end_ids, supports_greedy_batch
from autointerp.llm.registry import register_backend
from autointerp.llm.transformers_base import (
    TorchClientBase,
    _contiguous_head_input,
    cpu_has_native_bf16,
    load_lm,
    resolve_dtype,
)
from autointerp.llm.transformers_chat import GreedyChat
from autointerp.llm.transformers_prompt import PREFIX_CACHE, PromptPasses, prefix_groups
from autointerp.llm.types import PromptBatch, PromptLogprobs

__all__ = [
    "MERGED_PROMPTS",
    "MIN_SHARED_PREFIX",
    "PREFIX_CACHE",
    "ROWS_PER_PASS",
    "TorchClientBase",
    "TransformersClient",
    "_contiguous_head_input",
    "cpu_has_native_bf16",
    "load_lm",
    "prefix_groups",
    "resolve_dtype",
    "supports_greedy_batch",
]

MIN_SHARED_PREFIX = 8  # tokens; shorter shared prefixes are not worth a cache
ROWS_PER_PASS = 64  # prompts per forward pass (larger batches were slower per token on 2 cores)
MERGED_PROMPTS = 256  # prompts of concurrent callers merged into one batched call


@register_backend("transformers")
class TransformersClient(GreedyChat, PromptPasses):
    backend = "transformers"
    batch_prompts = True

    def __init__(self, cfg: LLMConfig | None = None, **kw: Any):
        super().__init__(cfg, **kw)
        from autointerp.model import resolve_device

        try:
            self.device = resolve_device(self.cfg.device)
        except AutointerpError as e:
            raise FatalLLMError(str(e)) from e
        self.dtype = resolve_dtype(self.cfg.dtype, self.device)
        self.sm, self.lock = load_lm(self.cfg.model, self.device, self.dtype)
        self.tok = self.sm.tokenizer
        self.model = self.sm.name
        self._piece: dict[int, str] = {}
        self._lead = self._leading_special()  # e.g. a BOS the tokenizer prepends
        self._split = self._split_head()
        self._prefixes = OrderedDict()
        self._pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        self._greedy = supports_greedy_batch(self.sm.model)
        self._ends = end_ids(self.sm.model, self.tok)  # rows of greedy_generate end at these

    def describe(self) -> dict[str, Any]:
        # device is left out: the same weights and dtype give the same answers to rounding
        return {"backend": self.backend, "model": self.cfg.model, "dtype": self.dtype}

    # ------------------------------------------------------------------ prompt logprobs
    def _prompt_sync(
        self, prompt: str, top_n: int, candidates: list[str] | None, only_at: list[int] | None
    ) -> PromptLogprobs:
        return self._prompt_batch_sync([prompt], top_n, candidates, [only_at])[0]

    def _prompt_batch_sync(
        self,
        prompts: list[str],
        top_n: int,
        candidates: list[str] | None,
        only_at: list[list[int] | None],
    ) -> list[PromptLogprobs]:
        """Prompt logprobs of several prompts in batched forward passes: prompts that share
        a prefix with others (:func:`prefix_groups`) run as suffixes on top of their prefix's
        keys/values, up to ``ROWS_PER_PASS`` of them (of any prefixes) per pass; a prompt that
        shares nothing runs alone."""
        cand_ids = self._candidate_ids(candidates) if candidates else None
        preps = [self._prepare(p, at) for p, at in zip(prompts, only_at, strict=True)]
        seqs = [ids for ids, *_ in preps]
        fns: list[Any] = [None] * len(seqs)
        with self.lock, torch.inference_mode():
            rows: list[tuple[int, int]] = []  # (shared prefix length, prompt index)
            for shared, members in prefix_groups(seqs, MIN_SHARED_PREFIX):
                if shared:
                    rows += [(shared, i) for i in members]
                else:
                    (fns[members[0]],) = self._logits_fns([seqs[members[0]]])
            for s in range(0, len(rows), ROWS_PER_PASS):
                part = rows[s : s + ROWS_PER_PASS]
                got = self._prefixed_fns([(seqs[i][:n], seqs[i][n:]) for n, i in part])
                for (_, i), fn in zip(part, got, strict=True):
                    fns[i] = fn
            return self._readout(fns, preps, top_n, candidates, cand_ids)

    async def _prompt_logprobs_batch(
        self, prompts: list[str], top_logprobs: int, only_at: list[list[int] | None]
    ) -> PromptBatch:
        """Batches requested while another is being computed are merged into the next pass
        (up to ``MERGED_PROMPTS`` prompts; ``max_concurrency`` callers can be waiting), so
        prompts of several callers that share a prefix (PMI's neutral prompt of every
        feature) run as one larger batch."""
        return await self._submit("prompt", self._drain_prompts, prompts, top_logprobs, only_at)

    async def _drain_prompts(self, queue: list) -> None:
        while queue:
            top = queue[0][1]
            take, n = [], 0
            for q in [q for q in queue if q[1] == top]:
                if take and n + len(q[0]) > MERGED_PROMPTS:
                    break
                take.append(q)
                n += len(q[0])
            for q in take:
                queue.remove(q)
            prompts = [p for q in take for p in q[0]]
            ats = [a for q in take for a in q[2]]
            try:
                res = await asyncio.to_thread(self._prompt_batch_sync, prompts, top, None, ats)
            except Exception as e:
                if len(take) == 1:
                    if not take[0][3].done():
                        take[0][3].set_exception(e)
                    continue
                for q in take:  # alone again, so an error reaches only the caller it belongs to
                    try:
                        r = await asyncio.to_thread(self._prompt_batch_sync, q[0], top, None, q[2])
                    except Exception as e1:
                        if not q[3].done():
                            q[3].set_exception(e1)
                    else:
                        if not q[3].done():
                            q[3].set_result(PromptBatch(r))
                continue
            pos = 0
            for q in take:
                if not q[3].done():
                    q[3].set_result(PromptBatch(res[pos : pos + len(q[0])]))
                pos += len(q[0])

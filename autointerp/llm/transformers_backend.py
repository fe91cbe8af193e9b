"""In-process transformers backend: any HF causal LM (hub id, local dir, ``.gguf`` file or
``"smollm2-gguf"``) run by torch, on CUDA when present.

Why it exists next to llama.cpp: on a CPU with bf16 instructions (AVX512-BF16 / AMX) or on a GPU,
a torch forward over a long prompt is several times faster than llama.cpp's prompt evaluation of
the quantised GGUF (``benchmarks/bench_simulator.py``: 1.0 s vs 4.2 s for a 1,280-token prompt on
2 cores; llama.cpp stays near 3 s even without logits or with larger batches or flash
attention), and the all-at-once simulator is one long prompt per feature. Greedy chats in
flight together are generated as one batch (the default explainer, ``llm/greedy.py``);
explanation-PMI prompts of concurrent callers are merged into multi-prefix passes
(:meth:`_prefixed_fns`).

Prompt logprobs: one forward pass; the hidden state before token ``i`` (row ``i-1``) goes
through the LM head and a log-softmax over the whole vocabulary, so position ``i`` holds the
distribution of token ``i`` given tokens ``0..i-1`` and ``candidates`` are exact. With
``only_at`` the head runs only at the positions asked for (the others get ``{}``): the head
over a 49k vocabulary is a quarter of the cost of a 135M model's forward. A model whose forward
does more than ``lm_head(decoder(x))`` (logit soft-capping, scaling) is found by a probe at load
and then read from its full forward instead.
(Keeping the keys/values of the prefix shared by consecutive all-at-once prompts was tried and
dropped: with a cache, SDPA on CPU leaves its causal kernel for an explicit mask, and the 15%
of tokens saved cost more than they saved.)

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

from autointerp.errors import AutointerpError, FatalLLMError, LLMError
from autointerp.llm.base import (
    ChatResponse,
    Message,
    PromptBatch,
    PromptLogprobs,
    TokenLogprob,
    Usage,
)
from autointerp.llm.greedy import end_ids, greedy_generate, supports_greedy_batch
from autointerp.llm.inprocess import InProcessClient, top_by_text

_MODELS: dict[tuple[str, str, str], tuple[Any, threading.Lock]] = {}
_MODELS_LOCK = threading.Lock()
_CHUNK = 256  # positions through the LM head at a time (bounds the logits' memory)
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
            from autointerp.model import load_model

            try:
                sm = load_model(spec, device=device, dtype=_DTYPES[dtype])
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


MIN_SHARED_PREFIX = 8  # tokens; shorter shared prefixes are not worth a cache
ROWS_PER_PASS = 64  # prompts per forward pass (larger batches were slower per token on 2 cores)
MERGED_PROMPTS = 256  # prompts of concurrent callers merged into one batched call
PREFIX_CACHE = 128  # prefixes whose keys/values are kept (~25 KB per token for SmolLM2-135M)


def prefix_groups(seqs: list[list[int]], min_shared: int) -> list[tuple[int, list[int]]]:
    """Group sequence indices by a shared leading run of ids: ``[(shared, [i, ...])]``, where
    ``shared`` is the run every member starts with (0 for a group of one), at most each
    member's length minus one (so each keeps a suffix token). Sequences are sorted; a new group
    starts where the common run with the previous one is shorter than ``min_shared`` or than
    half the group's run (prompts that share only an instruction's first words stay apart)."""
    order = sorted(range(len(seqs)), key=lambda k: seqs[k])
    groups: list[tuple[int, list[int]]] = []
    cur: list[int] = []
    shared = 0
    for k in order:
        if cur:
            prev, q = seqs[cur[-1]], seqs[k]
            n = 0
            for a, b in zip(prev, q, strict=False):
                if a != b:
                    break
                n += 1
            n = min(n, len(prev) - 1, len(q) - 1)
            if n >= min_shared and (len(cur) == 1 or n >= shared // 2):
                shared = n if len(cur) == 1 else min(shared, n)
                cur.append(k)
                continue
            groups.append((shared if len(cur) > 1 else 0, cur))
        cur, shared = [k], 0
    if cur:
        groups.append((shared if len(cur) > 1 else 0, cur))
    return groups


class TransformersClient(InProcessClient):
    backend = "transformers"
    batch_prompts = True

    def __init__(self, cfg=None, **kw: Any):
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
        self._prefixes: OrderedDict[tuple[int, ...], tuple[list, Any]] = OrderedDict()
        self._pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        self._greedy = supports_greedy_batch(self.sm.model)
        self._ends = end_ids(self.sm.model, self.tok)  # rows of greedy_generate end at these

    def describe(self) -> dict[str, Any]:
        # device is left out: the same weights and dtype give the same answers to rounding
        return {"backend": self.backend, "model": self.cfg.model, "dtype": self.dtype}

    # ------------------------------------------------------------------ helpers
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

    def _logits_fns(self, seqs: list[list[int]]) -> list[Any]:
        """Run the decoder over each id list (one right-padded batch); per sequence return
        ``rows -> hidden states (or logits, see :meth:`_head`) at those rows``. Right padding
        leaves every real position's causal context as it is alone."""
        n = max(len(q) for q in seqs)
        pad = self._pad
        x = torch.tensor([q + [pad] * (n - len(q)) for q in seqs], device=self.device)
        kw: dict[str, Any] = {"input_ids": x}
        if len(seqs) > 1:
            kw["attention_mask"] = torch.tensor(
                [[1] * len(q) + [0] * (n - len(q)) for q in seqs], device=self.device
            )

        def at(mat: torch.Tensor) -> Any:
            return lambda rows: mat[torch.tensor(rows, device=self.device)]

        if self._split is None:  # full forward: every row's logits
            logits = self.sm.model(**kw).logits
            return [at(logits[b]) for b in range(len(seqs))]
        hidden = self._split[0](**kw).last_hidden_state
        return [at(hidden[b]) for b in range(len(seqs))]

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        """Logits from what the ``*_fns`` return (hidden states when the head is split off)."""
        return h if self._split is None else self._split[1](h)

    def _split_head(self) -> tuple[Any, Any] | None:
        """(decoder, LM head) when ``head(decoder(x))`` equals the model's logits (checked on a
        probe), else None: the full forward is used."""
        model = self.sm.model
        body = getattr(model, "base_model", None)
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if body is None or head is None or body is model:
            return None
        x = torch.tensor([self._lead + self._encode("The probe text.")], device=self.device)
        with self.lock, torch.inference_mode():
            full = model(input_ids=x).logits[0].float()
            split = head(body(input_ids=x).last_hidden_state[0]).float()
        tol = 1e-3 if self.dtype == "float32" else 5e-2
        return (body, head) if torch.allclose(full, split, atol=tol, rtol=tol) else None

    def _max_len(self) -> int:
        n = getattr(self.sm.model.config, "max_position_embeddings", None)
        return int(n) if n else 1 << 30

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

    def _prefixed_fns(self, items: list[tuple[list[int], list[int]]]) -> list[Any]:
        """Like :meth:`_logits_fns` for (prefix, suffix) id lists: each distinct prefix is run
        once (or comes from the LRU), the prefixes' keys/values are left-padded to the longest
        and gathered per row, and the right-padded suffixes run in one pass with their own
        position ids, so every token sees exactly its prompt's earlier tokens."""
        from transformers import DynamicCache

        body, head = self._split if self._split is not None else (self.sm.model, None)
        slot: dict[tuple[int, ...], int] = {}
        for pre, _ in items:
            slot.setdefault(tuple(pre), len(slot))
        states = self._prefix_states([list(p) for p in slot])
        if any(kv is None for kv, _ in states):  # sliding-window layers: each prompt alone
            return [self._logits_fns([pre + suf])[0] for pre, suf in items]
        lens = [len(p) for p in slot]
        lmax = max(lens)
        which = [slot[tuple(pre)] for pre, _ in items]
        per_row = torch.tensor(which, device=self.device)  # prefix slot of each row
        layers = []
        for layer in zip(*(kv for kv, _ in states), strict=True):  # one layer, every prefix
            ks, vs = [], []
            for (k, v), n in zip(layer, lens, strict=True):  # [1, heads, n, dim]
                ks.append(torch.nn.functional.pad(k, (0, 0, lmax - n, 0)))
                vs.append(torch.nn.functional.pad(v, (0, 0, lmax - n, 0)))
            layers.append((torch.cat(ks)[per_row], torch.cat(vs)[per_row]))
        cache = DynamicCache(ddp_cache_data=layers)
        pad = self._pad
        n = max(len(suf) for _, suf in items)
        x, mask, pos = [], [], []
        for pre, suf in items:
            x.append(suf + [pad] * (n - len(suf)))
            gap, tail = lmax - len(pre), n - len(suf)
            mask.append([0] * gap + [1] * (len(pre) + len(suf)) + [0] * tail)
            pos.append(list(range(len(pre), len(pre) + n)))
        out = body(
            input_ids=torch.tensor(x, device=self.device),
            attention_mask=torch.tensor(mask, device=self.device),
            position_ids=torch.tensor(pos, device=self.device),
            past_key_values=cache,
            use_cache=False,
        )
        rest = out.logits if head is None else out.last_hidden_state

        def at(b: int, first: torch.Tensor, shared: int) -> Any:
            def fn(rows: list[int]) -> torch.Tensor:
                return torch.stack([first[r] if r < shared else rest[b, r - shared] for r in rows])

            return fn

        return [at(b, states[w][1], lens[w]) for b, w in enumerate(which)]

    def _prefix_states(self, prefixes: list[list[int]]) -> list[tuple[list | None, Any]]:
        """Per prefix: (each layer's keys and values of its ids, the rows :meth:`_logits_fns`
        would give for them). Prefixes seen recently come from an LRU of ``PREFIX_CACHE`` (the
        PMI prompts of an explanation are read once for the feature and once as another
        feature's shuffled null, and the neutral prefix for every feature); the others run
        together in one right-padded pass (a prefix alone is a slow, small product)."""
        body, head = self._split if self._split is not None else (self.sm.model, None)
        new = [p for p in dict.fromkeys(map(tuple, prefixes)) if p not in self._prefixes]
        if new:
            pad = self._pad
            n = max(len(p) for p in new)
            out = body(
                input_ids=torch.tensor([list(p) + [pad] * (n - len(p)) for p in new]).to(
                    self.device
                ),
                attention_mask=torch.tensor([[1] * len(p) + [0] * (n - len(p)) for p in new]).to(
                    self.device
                ),
                use_cache=True,
            )
            rows = out.logits if head is None else out.last_hidden_state
            layers = list(out.past_key_values)
            for b, p in enumerate(new):
                kv: list | None = []
                for k, v, *sliding in layers:
                    if sliding and sliding[0] is not None:  # windows count cache slots
                        kv = None
                        break
                    kv.append((k[b : b + 1, :, : len(p)], v[b : b + 1, :, : len(p)]))
                self._prefixes[p] = (kv, rows[b, : len(p)])
        got = []
        for p in map(tuple, prefixes):
            self._prefixes.move_to_end(p)
            got.append(self._prefixes[p])
        while len(self._prefixes) > max(PREFIX_CACHE, len(prefixes)):
            self._prefixes.popitem(last=False)
        return got

    async def _prompt_logprobs_batch(
        self, prompts: list[str], top_logprobs: int, only_at: list[list[int] | None]
    ) -> PromptBatch:
        """Batches requested while another is being computed are merged into the next pass
        (up to ``MERGED_PROMPTS`` prompts; ``max_concurrency`` callers can be waiting), so
        prompts of several callers that share a prefix (PMI's neutral prompt of every
        feature) run as one larger batch."""
        return await self._submit("prompt", self._drain_prompts, prompts, top_logprobs, only_at)

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

    def _prepare(self, prompt: str, only_at: list[int] | None) -> tuple:
        """(ids incl. leading specials, prompt token ids, offsets, wanted token indices)."""
        enc = self.tok(prompt, add_special_tokens=False, return_offsets_mapping=True)
        toks = [int(t) for t in enc["input_ids"]]
        offs = [int(a) for a, _ in enc["offset_mapping"]]
        nb, ids = len(self._lead), self._lead + toks
        if not toks:
            raise LLMError("prompt_logprobs needs a non-empty prompt")
        if len(ids) > self._max_len():
            raise LLMError(
                f"prompt is {len(ids)} tokens, more than the model's {self._max_len()} positions; "
                "use fewer or shorter examples per prompt, or a model with a longer context"
            )
        want = list(range(0 if nb else 1, len(toks)))
        if only_at is not None:
            keep = set(only_at)
            want = [i for i in want if offs[i] in keep]
        return ids, toks, offs, want

    def _readout(
        self,
        fns: list[Any],
        preps: list[tuple],
        top_n: int,
        candidates: list[str] | None,
        cand_ids: list[int] | None,
    ) -> list[PromptLogprobs]:
        """Log-softmax at the wanted rows of every prompt, the LM head and softmax batched over
        all prompts' rows together."""
        k = max(0, min(top_n, int(self.sm.model.config.vocab_size)))
        outs, flat, mats = [], [], []
        for p, (fn, (ids, toks, _, want)) in enumerate(zip(fns, preps, strict=True)):
            nb = len(ids) - len(toks)
            outs.append(
                (
                    [{} for _ in toks],
                    [{} for _ in toks] if cand_ids else None,
                    [None for _ in toks],
                )
            )
            if want:  # prompt token i (after nb added tokens) is predicted by row nb + i - 1
                mats.append(fn([nb + i - 1 for i in want]))
                flat += [(p, i, toks[i]) for i in want]
        h = torch.cat(mats) if mats else None
        for s in range(0, len(flat), _CHUNK):
            assert h is not None
            logits = self._head(h[s : s + _CHUNK]).float()
            part = flat[s : s + _CHUNK]
            tid = torch.tensor([t for _, _, t in part], device=logits.device)
            if k or cand_ids:
                lp = torch.log_softmax(logits, dim=-1)
                ov = lp.gather(1, tid[:, None])[:, 0].cpu().tolist()
            else:  # own-token logprobs only: no [rows, vocab] log-softmax written
                own_lp = logits.gather(1, tid[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)
                ov = own_lp.cpu().tolist()
            if k:
                vals, idx = lp.topk(k, dim=-1)
                vals, idx = vals.cpu().tolist(), idx.cpu().tolist()
            if cand_ids:
                cv = lp[:, cand_ids].cpu().tolist()
            for j, (p, i, _) in enumerate(part):
                top, cands, own = outs[p]
                own[i] = float(ov[j])
                if k:
                    top[i] = top_by_text(
                        (self._piece_text(int(t)), float(v)) for t, v in zip(idx[j], vals[j])
                    )
                if cands is not None:
                    cands[i] = dict(zip(candidates or [], map(float, cv[j])))
        return [
            PromptLogprobs(
                tokens=[self._piece_text(t) for t in toks],
                offsets=offs,
                top=top,
                usage=Usage(prompt_tokens=len(ids), completion_tokens=0),
                candidates=cands,
                exact_candidates=cands is not None,
                token_logprobs=own,
            )
            for (ids, toks, offs, _), (top, cands, own) in zip(preps, outs, strict=True)
        ]

    # ------------------------------------------------------------------ chat
    async def _chat(self, messages: list[Message], **params: Any) -> ChatResponse:
        """Greedy chats that are in flight together are generated as one batch
        (``max_concurrency`` bounds it; see :meth:`_chat_batch_sync`): on a CPU a batch of 16
        costs little more per step than one. Sampled chats and chats asking for logprobs run
        one at a time."""
        if params.get("temperature", 0) > 0 or params.get("top_logprobs") is not None:
            return await super()._chat(messages, **params)
        return await self._submit("chat", self._drain, messages, params)

    async def _drain(self, queue: list) -> None:
        size = max(1, self.cfg.max_concurrency)
        while queue:
            for _ in range(25):  # let the callers in flight enqueue (they take a few ticks)
                seen = len(queue)
                await asyncio.sleep(0.002)
                if len(queue) == seen or len(queue) >= size:
                    break
            params = queue[0][1]
            batch = [q for q in queue if q[1] == params][:size]
            for q in batch:
                queue.remove(q)
            try:
                res = await asyncio.to_thread(
                    self._chat_batch_sync, [m for m, _, _ in batch], **params
                )
            except Exception as e:  # every caller of the batch sees the failure
                for _, _, f in batch:
                    if not f.done():
                        f.set_exception(e)
                continue
            for (_, _, f), r in zip(batch, res, strict=True):
                if not f.done():
                    f.set_result(r)

    def _chat_batch_sync(
        self,
        messages: list[list[Message]],
        *,
        max_tokens: int,
        temperature: float,
        top_logprobs: int | None,
        stop: list[str] | None,
        seed: int | None,
    ) -> list[ChatResponse]:
        """Greedy generation of several chats at once: :func:`greedy_generate` for the model
        families it supports, else ``generate`` on one left-padded batch."""
        kw = dict(max_tokens=max_tokens, temperature=temperature, top_logprobs=top_logprobs)
        if len(messages) == 1:
            return [self._chat_sync(messages[0], stop=stop, seed=seed, **kw)]
        seqs = [self._chat_ids(m, max_tokens) for m in messages]
        pad = self._pad
        ends = (self.tok.eos_token_id, self.tok.pad_token_id)
        if self._greedy:
            hit = (lambda new: _meets_stop(self.tok, new, stop)) if stop else None
            with self.lock:
                outs = greedy_generate(
                    self.sm.model,
                    seqs,
                    max_new_tokens=max_tokens,
                    ends=self._ends,
                    pad_id=pad,
                    stop=hit,
                )
            return [
                self._finish(o, len(q), max_tokens, stop, ends=ends)
                for o, q in zip(outs, seqs, strict=True)
            ]
        n = max(len(q) for q in seqs)
        x = torch.tensor([[pad] * (n - len(q)) + q for q in seqs], device=self.device)
        mask = torch.tensor([[0] * (n - len(q)) + [1] * len(q) for q in seqs], device=self.device)
        gen: dict[str, Any] = dict(
            max_new_tokens=max_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=pad,
        )
        if stop:
            gen["stopping_criteria"] = _stop_on_text(self.tok, n, list(stop))
        with self.lock, torch.inference_mode():
            out = self.sm.model.generate(input_ids=x, attention_mask=mask, **gen)
        return [
            self._finish(out[b, n:].tolist(), len(q), max_tokens, stop, ends=ends)
            for b, q in enumerate(seqs)
        ]

    def _chat_ids(self, messages: list[Message], max_tokens: int) -> list[int]:
        if not getattr(self.tok, "chat_template", None):
            raise FatalLLMError(
                f"{self.model} has no chat template; use a chat model for explainer/scorer roles"
            )
        ids = self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if hasattr(ids, "keys"):  # a BatchEncoding in transformers 5
            ids = ids["input_ids"]
        if len(ids) + max_tokens > self._max_len():
            raise LLMError(
                f"prompt ({len(ids)} tokens) + max_tokens ({max_tokens}) exceed the model's "
                f"{self._max_len()} positions"
            )
        return [int(t) for t in ids]

    def _finish(
        self,
        new: list[int],
        n_prompt: int,
        max_tokens: int,
        stop: list[str] | None,
        ends: tuple[int | None, ...] = (),
    ) -> ChatResponse:
        """The response of one generated row: cut at the first of ``ends`` (EOS, and padding in
        a batch) and at a stop string; ``completion_tokens`` counts the tokens kept before the
        end token."""
        finish = "length" if len(new) >= max_tokens else "stop"
        for end in ends:
            if end is not None and end in new:
                new = new[: new.index(end)]
                finish = "stop"
        text = self.tok.decode(new, skip_special_tokens=True)
        if stop:
            hits = [text.find(s) for s in stop if s in text]
            if hits:
                text = text[: min(hits)]
                finish = "stop"
        return ChatResponse(
            text=text,
            usage=Usage(prompt_tokens=n_prompt, completion_tokens=len(new)),
            finish_reason=finish,
        )

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
        if not getattr(self.tok, "chat_template", None):
            raise FatalLLMError(
                f"{self.model} has no chat template; use a chat model for explainer/scorer roles"
            )
        ids = self._chat_ids(messages, max_tokens)
        gen: dict[str, Any] = dict(
            max_new_tokens=max_tokens,
            do_sample=temperature > 0,
            return_dict_in_generate=True,
            output_logits=top_logprobs is not None,
            pad_token_id=self.tok.pad_token_id,
        )
        if temperature > 0:
            gen.update(temperature=temperature, top_p=1.0, top_k=0)
        else:
            gen.update(temperature=None, top_p=None, top_k=None)
        if stop:  # decoded-text check: transformers' stop_strings needs a byte-level vocab
            gen["stopping_criteria"] = _stop_on_text(self.tok, len(ids), list(stop))
        with self.lock, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            x = torch.tensor([ids], device=self.device)
            out = self.sm.model.generate(input_ids=x, attention_mask=torch.ones_like(x), **gen)
        new = out.sequences[0, len(ids) :].tolist()
        resp = self._finish(new, len(ids), max_tokens, stop, ends=(self.tok.eos_token_id,))
        new, text = new[: resp.usage.completion_tokens], resp.text
        lps = None
        if top_logprobs is not None:
            lps = []
            for step, tid in enumerate(new):
                lp = torch.log_softmax(out.logits[step][0].float(), dim=-1)
                vals, idx = lp.topk(max(1, top_logprobs))
                lps.append(
                    TokenLogprob(
                        token=self._piece_text(tid),
                        logprob=float(lp[tid]),
                        top=top_by_text(
                            (self._piece_text(int(i)), float(v))
                            for i, v in zip(idx.tolist(), vals.tolist())
                        ),
                    )
                )
            # keep only the tokens that make up the (stop-trimmed) text
            acc, keep = "", 0
            for t in lps:
                if len(acc) >= len(text):
                    break
                acc += t.token
                keep += 1
            lps = lps[:keep]
        resp.logprobs = lps
        return resp


def _meets_stop(tok: Any, new: Any, stop: list[str]) -> bool:
    """True when the decoded completion ``new`` (token ids) contains one of ``stop``."""
    text = tok.decode(new, skip_special_tokens=True)
    return any(s in text for s in stop)


def _stop_on_text(tok: Any, n_prompt: int, stop: list[str]) -> Any:
    """Stop generating once the decoded completion contains one of ``stop``."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: Any, **kw: Any) -> torch.Tensor:
            hits = [_meets_stop(tok, row, stop) for row in input_ids[:, n_prompt:]]
            return torch.tensor(hits, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_Stop()])

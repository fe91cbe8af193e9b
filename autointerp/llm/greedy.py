"""Greedy generation of many prompts at once, without padding in the prefill.

``model.generate`` on a left-padded batch of chats runs every row's prefill to the longest
prompt, and its dynamic cache concatenates the whole key/value cache at every step. With 160
explanation prompts of 30-160 tokens on a 2-core CPU each can cost as much as the matmuls
(torch profiler, a decode step at batch 160 after 152-token prompts: 340 of 730 ms in
``torch.cat``; ``benchmarks/bench_batching.py`` prints both ways side by side).
:func:`greedy_generate` sorts the prompts by length and prefills them in chunks of similar
length, writes their keys/values into one preallocated cache (each prompt ends at the same
column, left-padded behind it), and then decodes all rows together, one token per step,
writing each step's keys/values into the next column of the cache. The attention itself is
the model's own (SDPA or eager) with an explicit 4-D padding mask.

It returns what ``generate`` returns for greedy decoding: per prompt the new tokens, where a
row that produced an end token (or met ``stop``) is padded from the next step on, and the
loop ends when every row has ended or at ``max_new_tokens``. :func:`supports_greedy_batch`
says whether a model's decoder follows the layout this relies on (standard causal decoder
layers that take ``position_ids``, a 4-D mask and a cache ``update``); others use
``generate``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from autointerp.llm.hf_compat import cache_kwarg

# decoder-only families whose layers attend with one causal mask over a plain key/value cache
_FAMILIES = {"llama", "mistral", "qwen2", "qwen3"}
# generation-config fields that add logits processors greedy argmax would skip
_PROCESSORS = {
    "repetition_penalty": (None, 1.0),
    "encoder_repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0),
    "bad_words_ids": (None,),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "sequence_bias": (None,),
    "min_new_tokens": (None, 0),
    "min_length": (None, 0),
    "exponential_decay_length_penalty": (None,),
}
PREFILL_TOKENS = 2048  # padded tokens per prefill forward pass
MIN_SHARED = 4  # shared leading tokens worth a pass of their own
#: key/value cache of one greedy batch at most (bytes): the default explainer's 320 prompts of
#: 40-70 tokens would otherwise hold 1.6 GiB of float32 keys/values in one cache
KV_BYTES = 1 << 30


def supports_greedy_batch(model: Any) -> bool:
    """True when :func:`greedy_generate` gives ``generate``'s greedy answers for ``model``."""
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) not in _FAMILIES:
        return False
    if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
        return False
    if getattr(cfg, "_attn_implementation", None) not in ("sdpa", "eager"):
        return False
    gc = getattr(model, "generation_config", None)
    return gc is None or all(getattr(gc, k, None) in ok for k, ok in _PROCESSORS.items())


def end_ids(model: Any, tokenizer: Any) -> set[int]:
    """The tokens that end a row: the tokenizer's EOS and the generation config's."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    out = set(ids if isinstance(ids, list | tuple) else [] if ids is None else [ids])
    if tokenizer.eos_token_id is not None:
        out.add(int(tokenizer.eos_token_id))
    return out


class _SlotCache:
    """Keys/values of every layer in preallocated ``[rows, kv_heads, length, head_dim]``
    tensors. In a prefill (``fill``) a chunk of rows writes its keys/values at the columns
    that end at ``end`` and attends to them (and to the ``back`` columns before them, where a
    shared prefix sits; ``real`` then marks the columns a row writes, so its padding does not
    overwrite its prefix); in decoding (``step``) every row writes column ``col`` and attends to
    columns ``0..col``. ``share(starts)``: a one-row pass of the prompts' shared prefix, whose
    keys/values are written at every row's columns ``starts[r] ..``. Duck-types the one method
    of transformers' ``Cache`` the decoder layers call."""

    def __init__(self, rows: int, length: int):
        self.rows, self.length = rows, length
        self.k: dict[int, torch.Tensor] = {}
        self.v: dict[int, torch.Tensor] = {}
        self.chunk = slice(0, rows)
        self.end = 0
        self.col = -1
        self.back = 0
        self.real: torch.Tensor | None = None
        self.starts: torch.Tensor | None = None

    def fill(self, chunk: slice, end: int, back: int = 0, real: torch.Tensor | None = None):
        self.chunk, self.end, self.col, self.back, self.real = chunk, end, -1, back, real
        self.starts = None

    def share(self, starts: torch.Tensor) -> None:
        self.starts, self.col = starts, -1

    def step(self, col: int) -> None:
        self.col = col

    def update(self, k: torch.Tensor, v: torch.Tensor, layer_idx: int, *_: Any, **__: Any):
        if layer_idx not in self.k:
            shape = (self.rows, k.shape[1], self.length, k.shape[3])
            self.k[layer_idx] = k.new_zeros(shape)
            self.v[layer_idx] = v.new_zeros(shape)
        kk, vv = self.k[layer_idx], self.v[layer_idx]
        if self.starts is not None:  # the shared prefix: one row, copied to every row
            cols = self.starts[:, None] + torch.arange(k.shape[2], device=k.device)
            idx = cols[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
            kk.scatter_(2, idx, k.expand(self.rows, -1, -1, -1))
            vv.scatter_(2, idx, v.expand(self.rows, -1, -1, -1))
            return k, v
        if self.col < 0:
            cols = slice(self.end - k.shape[2], self.end)
            if self.real is None:
                kk[self.chunk, :, cols] = k
                vv[self.chunk, :, cols] = v
                return k, v
            keep = self.real[:, None, :, None]
            kk[self.chunk, :, cols] = torch.where(keep, k, kk[self.chunk, :, cols])
            vv[self.chunk, :, cols] = torch.where(keep, v, vv[self.chunk, :, cols])
            wide = slice(self.end - k.shape[2] - self.back, self.end)
            return kk[self.chunk, :, wide], vv[self.chunk, :, wide]
        kk[:, :, self.col] = k[:, :, 0]
        vv[:, :, self.col] = v[:, :, 0]
        return kk[:, :, : self.col + 1], vv[:, :, : self.col + 1]


def _kv_groups(
    model: Any, seqs: list[list[int]], max_new_tokens: int, kv_bytes: int | None
) -> list[list[int]]:
    """Sequence indices in groups of ascending length whose key/value cache (rows x (longest
    prompt + ``max_new_tokens``) slots, each ``2 x layers x kv_heads x head_dim`` values)
    stays within ``kv_bytes``; one group when it fits or ``kv_bytes`` is None."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    cfg = getattr(model, "config", None)
    if kv_bytes is None or cfg is None:
        return [order]
    heads = getattr(cfg, "num_attention_heads", 1)
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    per = 2 * cfg.num_hidden_layers * kv * dim * torch.finfo(model.dtype).bits // 8
    groups: list[list[int]] = [[]]
    for i in order:  # ascending: a group's longest prompt is its last
        g = groups[-1]
        if g and (len(g) + 1) * (len(seqs[i]) + max_new_tokens) * per > kv_bytes:
            groups.append([])
        groups[-1].append(i)
    return groups


def shared_prefix(seqs: list[list[int]], min_len: int = MIN_SHARED) -> int:
    """Length of the leading tokens every sequence starts with, leaving each at least one
    token of its own; 0 when shorter than ``min_len`` (or fewer than two sequences)."""
    if len(seqs) < 2:
        return 0
    n = min(len(q) for q in seqs) - 1
    first = seqs[0]
    for q in seqs[1:]:
        k = 0
        while k < n and q[k] == first[k]:
            k += 1
        n = k
    return n if n >= min_len else 0


def _chunks(lengths: list[int], budget: int) -> list[slice]:
    """Consecutive slices of ascending ``lengths`` whose padded size stays within ``budget``
    tokens (at least one row each)."""
    out, start = [], 0
    for j in range(1, len(lengths) + 1):
        if j == len(lengths) or (j + 1 - start) * lengths[j] > budget:
            out.append(slice(start, j))
            start = j
    return out


@torch.inference_mode()
def greedy_generate(
    model: Any,
    seqs: list[list[int]],
    *,
    max_new_tokens: int,
    ends: set[int],
    pad_id: int,
    stop: Callable[[list[int]], bool] | None = None,
    prefill_tokens: int = PREFILL_TOKENS,
    share_prefix: bool = True,
    kv_bytes: int | None = KV_BYTES,
) -> list[list[int]]:
    """Per sequence, the greedily generated tokens (see the module docstring). ``stop(new)``
    ends a row whose new tokens so far meet it (e.g. a stop string in their text).
    ``share_prefix``: the leading tokens all sequences share (a chat template's system
    prompt and the instruction's first words) are run once and their keys/values copied to
    every row; the prefill then runs the rest of each prompt (the same answers, to float
    rounding). ``kv_bytes``: the key/value cache holds every row at the longest prompt's
    length plus ``max_new_tokens``; a batch whose cache would pass this many bytes is
    generated in groups of similar prompt lengths, one after the other (each within it where
    a row fits; None: one group)."""
    if not seqs or max_new_tokens < 1:
        return [[] for _ in seqs]
    groups = _kv_groups(model, seqs, max_new_tokens, kv_bytes)
    if len(groups) > 1:
        out: list[list[int]] = [[] for _ in seqs]
        for g in groups:
            got = greedy_generate(
                model, [seqs[i] for i in g], max_new_tokens=max_new_tokens, ends=ends,
                pad_id=pad_id, stop=stop, prefill_tokens=prefill_tokens,
                share_prefix=share_prefix, kv_bytes=None,
            )  # fmt: skip
            for i, o in zip(g, got, strict=True):
                out[i] = o
        return out
    dev, dtype = model.device, model.dtype
    neg = torch.finfo(dtype).min
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    lens = [len(seqs[i]) for i in order]
    b, n = len(seqs), lens[-1]
    cache = _SlotCache(b, n + max_new_tokens)
    kv = {cache_kwarg(model): cache}  # ``cache`` (transformers 5) or ``past_key_values``
    P = shared_prefix(seqs) if share_prefix else 0
    if P:
        cache.share(torch.tensor([n - q for q in lens], device=dev))
        causal = torch.ones(P, P, dtype=torch.bool, device=dev).tril()
        base = getattr(model, getattr(model, "base_model_prefix", "model"), model)
        base(  # the decoder alone: no logits are needed for the prefix
            input_ids=torch.tensor([seqs[0][:P]], device=dev),
            position_ids=torch.arange(P, device=dev)[None],
            attention_mask=torch.zeros(1, 1, P, P, dtype=dtype, device=dev).masked_fill(
                ~causal, neg
            ),
            **{cache_kwarg(base): cache},
            use_cache=True,
        )
    first = torch.empty(b, dtype=torch.long, device=dev)
    for ch in _chunks([q - P for q in lens], prefill_tokens):
        rows = [seqs[i][P:] for i in order[ch]]
        m = len(rows[-1])
        x = torch.tensor([[pad_id] * (m - len(q)) + q for q in rows], device=dev)
        real = torch.tensor([[0] * (m - len(q)) + [1] * len(q) for q in rows], device=dev)
        pos = (real.cumsum(1) - 1).clamp(min=0) + P
        if P:  # keys: the P prefix columns before each row's own, then the block
            q_col = torch.arange(m, device=dev) + P  # a query's column in the window
            own = torch.tensor([P + m - P - len(q) for q in rows], device=dev)  # prefix start
            w = torch.arange(P + m, device=dev)
            allowed = (w[None, None, :] <= q_col[None, :, None]) & (
                w[None, None, :] >= own[:, None, None]
            )
            cache.fill(ch, n, back=P, real=real.bool())
        else:
            causal = torch.ones(m, m, dtype=torch.bool, device=dev).tril()
            allowed = causal[None] & real[:, None, :].bool()
            cache.fill(ch, n)
        mask = torch.zeros(allowed.shape, dtype=dtype, device=dev).masked_fill(~allowed, neg)
        out = model(
            input_ids=x,
            position_ids=pos,
            attention_mask=mask[:, None],
            **kv,
            use_cache=True,
            logits_to_keep=1,
        )
        first[ch] = out.logits[:, -1].argmax(-1)
    # columns n - len .. n - 1 hold each row's prompt; columns from n on its new tokens
    col = torch.arange(n + max_new_tokens, device=dev)
    start = torch.tensor([n - q for q in lens], device=dev)
    mask = torch.zeros(b, 1, 1, n + max_new_tokens, dtype=dtype, device=dev)
    mask.masked_fill_((col[None] < start[:, None])[:, None, None], neg)
    pos = torch.tensor(lens, device=dev)
    end_t = torch.tensor(sorted(ends), dtype=torch.long, device=dev)
    tok = first
    new = [tok]
    done = torch.isin(tok, end_t)

    def check_stop() -> torch.Tensor:
        rows = torch.stack(new, 1).tolist()
        hit = [not d and stop(r) for r, d in zip(rows, done.tolist(), strict=True)]
        return torch.tensor(hit, dtype=torch.bool, device=dev)

    if stop is not None:
        done = done | check_stop()
    for t in range(1, max_new_tokens):
        if bool(done.all()):
            break
        cache.step(n + t - 1)
        out = model(
            input_ids=tok[:, None],
            position_ids=(pos + t - 1)[:, None],
            attention_mask=mask[..., : n + t],
            **kv,
            use_cache=True,
        )
        nxt = out.logits[:, -1].argmax(-1)
        tok = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        new.append(tok)
        done = done | torch.isin(tok, end_t)
        if stop is not None:
            done = done | check_stop()
    gen = torch.stack(new, 1).tolist()
    result: list[list[int]] = [[] for _ in seqs]
    for r, i in enumerate(order):
        result[i] = gen[r]
    return result

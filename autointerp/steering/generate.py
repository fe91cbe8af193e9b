"""Steered greedy generation (batched, with a key/value cache) and the read-back of a
continuation through the unsteered model.

:func:`steered_generate` runs :func:`autointerp.llm.greedy.greedy_generate` with a hook at the
hookpoint that applies each row's edit (:class:`~autointerp.steering.interventions.Steer`) at
every position it computes: the prompt in the prefill, then each new token. The rows are sorted
by prompt length up front and prefilled in one chunk, so the hook's row ``b`` is the ``b``-th
sorted prompt in both phases.

:func:`read_back` runs the unsteered model once over ``prompt + continuation`` (right padding):
the per-token NLL of the continuation and the activations at the hookpoint on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from autointerp.causal.hook_forward import base_and_head
from autointerp.errors import AutointerpError
from autointerp.llm.greedy import end_ids, greedy_generate, supports_greedy_batch
from autointerp.model import Hookpoint, SubjectModel, splice
from autointerp.steering.interventions import Steer, apply_edits


def prompt_ids(sm: SubjectModel, instruction: str) -> list[int]:
    """The instruction as a user turn of the model's chat template (with the generation
    prompt); a model without one reads ``instruction + "\\n"`` after its BOS token."""
    tok = sm.tokenizer
    if getattr(tok, "chat_template", None):
        ids = tok.apply_chat_template(
            [{"role": "user", "content": instruction}], add_generation_prompt=True, tokenize=True
        )
        if hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return [int(t) for t in ids]
    ids = tok(instruction + "\n", add_special_tokens=False)["input_ids"]
    bos = sm.bos_token_id
    return ([bos] if bos is not None else []) + [int(t) for t in ids]


def _cut(new: list[int], ends: set[int]) -> list[int]:
    for j, t in enumerate(new):
        if t in ends:
            return new[:j]
    return new


@torch.no_grad()
def steered_generate(
    sm: SubjectModel,
    hp: Hookpoint,
    prompts: Sequence[list[int]],
    edits: Sequence[Steer],
    *,
    max_new_tokens: int,
    batch_size: int = 64,
) -> list[list[int]]:
    """Greedy continuations (end token and padding cut) of ``prompts[r]`` under ``edits[r]``."""
    if not supports_greedy_batch(sm.model):
        raise AutointerpError(
            f"steering needs a decoder the batched greedy generator supports (llama / mistral / "
            f"qwen families, sdpa or eager attention); {sm.name} is not one"
        )
    if len(prompts) != len(edits):
        raise ValueError("one edit per prompt")
    ends = end_ids(sm.model, sm.tokenizer)
    pad = sm.tokenizer.pad_token_id
    pad = int(pad if pad is not None else min(ends))
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[list[int]] = [[] for _ in prompts]
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        rows = [list(prompts[i]) for i in idx]  # ascending length: greedy_generate keeps order
        row_edits = [edits[i] for i in idx]
        with splice(hp, lambda a, e=row_edits: apply_edits(a, e)):
            gen = greedy_generate(
                sm.model, rows, max_new_tokens=max_new_tokens, ends=ends, pad_id=pad,
                prefill_tokens=1 << 40,
            )  # fmt: skip
        for i, g in zip(idx, gen, strict=True):
            out[i] = _cut(g, ends)
    return out


@dataclass
class ReadBack:
    """Per row: ``nll`` (mean over continuation tokens, nats; NaN for an empty one) and
    ``acts`` ``[n_tokens, width]`` at the hookpoint on the continuation (unsteered model)."""

    nll: np.ndarray
    acts: list[torch.Tensor]


@torch.no_grad()
def read_back(
    sm: SubjectModel,
    hp: Hookpoint,
    prompts: Sequence[list[int]],
    conts: Sequence[list[int]],
    *,
    batch_size: int = 32,
) -> ReadBack:
    """NLL and hookpoint activations of each continuation given its prompt, unsteered.

    Rows sharing a prompt share one pass over it: its key/value cache is repeated over a batch
    of their continuations (right-padded), and its last logits give each continuation's first
    token."""
    import copy

    from autointerp.llm.hf_compat import cache_kwarg, returned_cache

    base, head = base_and_head(sm)
    dev = sm.device
    pad = sm.tokenizer.pad_token_id or 0
    kw = cache_kwarg(base)
    nll = np.full(len(prompts), np.nan)
    acts: list[torch.Tensor] = [torch.zeros(0, hp.width) for _ in prompts]
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (p, c) in enumerate(zip(prompts, conts, strict=True)):
        if c:
            groups.setdefault(tuple(p), []).append(i)
    for prompt, rows in groups.items():
        out = base(input_ids=torch.tensor([list(prompt)], device=dev), use_cache=True)
        cache0 = returned_cache(out)
        first = F.log_softmax(head(out.last_hidden_state[0, -1]).float(), -1)
        P = len(prompt)
        for s in range(0, len(rows), batch_size):
            idx = rows[s : s + batch_size]
            n_max = max(len(conts[i]) for i in idx)
            ids = torch.tensor([list(conts[i]) + [pad] * (n_max - len(conts[i])) for i in idx],
                               device=dev)  # fmt: skip
            mask = torch.tensor([[1] * (P + len(conts[i])) + [0] * (n_max - len(conts[i]))
                                 for i in idx], device=dev)  # fmt: skip
            cache = copy.deepcopy(cache0)
            cache.batch_repeat_interleave(len(idx))
            grabbed: list[torch.Tensor] = []

            def grab(a: torch.Tensor, g: list = grabbed) -> torch.Tensor:
                g.append(a.detach().float().cpu())
                return a

            pos = torch.arange(P, P + n_max, device=dev)[None].expand(len(idx), -1)
            with splice(hp, grab):
                h = base(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                         **{kw: cache}).last_hidden_state  # fmt: skip
            x = grabbed[0]
            for r, i in enumerate(idx):
                n = len(conts[i])
                tgt = torch.tensor(conts[i], device=h.device)
                lp = F.log_softmax(head(h[r, : n - 1]).float(), -1)
                tok = torch.cat([first[tgt[:1]], lp.gather(1, tgt[1:, None])[:, 0]])
                nll[i] = float(-tok.mean())
                acts[i] = x[r, :n].clone()
    return ReadBack(nll, acts)

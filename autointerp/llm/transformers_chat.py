"""Chat completions of the transformers backend.

Greedy chats in flight together are generated as one batch: :func:`greedy_generate`
(``llm/greedy.py``) for the model families it supports, else ``generate`` on one left-padded
batch. Sampled chats and chats asking for logprobs run one at a time through ``generate``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import torch

from autointerp.errors import FatalLLMError, LLMError
from autointerp.llm.greedy import greedy_generate
from autointerp.llm.inprocess import top_by_text
from autointerp.llm.transformers_base import TorchClientBase
from autointerp.llm.types import ChatResponse, Message, TokenLogprob, Usage


class GreedyChat(TorchClientBase):
    """``_chat`` of ``TransformersClient``: batched greedy generation, else ``generate``."""

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

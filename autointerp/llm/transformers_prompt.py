"""Prompt logprobs of the transformers backend: forward passes, shared-prefix keys/values and
the LM-head readout.

One forward pass per prompt batch; the hidden state before token ``i`` (row ``i-1``) goes through
the LM head and a log-softmax over the whole vocabulary, so position ``i`` holds the distribution
of token ``i`` given tokens ``0..i-1`` and ``candidates`` are exact. With ``only_at`` the head runs
only at the positions asked for (the others get ``{}``): the head over a 49k vocabulary is a
quarter of the cost of a 135M model's forward. A model whose forward does more than
``lm_head(decoder(x))`` (logit soft-capping, scaling) is found by a probe at load and then read
from its full forward instead. Prompts that share a prefix (:func:`prefix_groups`) run as
suffixes on top of the prefix's keys/values (:meth:`PromptPasses._prefixed_fns`), each distinct
prefix run once and kept in an LRU. (Keeping the keys/values of the prefix shared by consecutive
all-at-once prompts was tried and dropped: with a cache, SDPA on CPU leaves its causal kernel for
an explicit mask, and the 15% of tokens saved cost more than they saved.)
"""

from __future__ import annotations

from typing import Any

import torch

from autointerp.errors import LLMError
from autointerp.llm.hf_compat import cache_kwarg, returned_cache
from autointerp.llm.inprocess import top_by_text
from autointerp.llm.transformers_base import TorchClientBase
from autointerp.llm.types import PromptLogprobs, Usage

_CHUNK = 256  # positions through the LM head at a time (bounds the logits' memory)
PREFIX_CACHE = 128  # prefixes whose keys/values are kept at most
#: ... and their bytes at most: SmolLM2-135M's keys/values are ~46 KB a token, so 128 prefixes
#: of a long instruction (~250 tokens) would hold 1.4 GiB (the PMI prompts' ~40 take ~0.2 GiB)
PREFIX_BYTES = 384 << 20


def _entry_bytes(entry: tuple[list | None, Any]) -> int:
    """Bytes one cached prefix holds: its keys/values and its rows."""
    kv, rows = entry
    return rows.nbytes + sum(k.nbytes + v.nbytes for k, v in kv or [])


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


class PromptPasses(TorchClientBase):
    """The forward passes and readout behind ``TransformersClient``'s prompt logprobs."""

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
            **{cache_kwarg(body): cache},
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
            layers = list(returned_cache(out))
            # each entry is copied out of the padded batch: a view would keep the whole
            # batch's keys/values (and rows) alive for as long as any of its prefixes is cached
            for b, p in enumerate(new):
                kv: list | None = []
                for k, v, *sliding in layers:
                    if sliding and sliding[0] is not None:  # windows count cache slots
                        kv = None
                        break
                    kv.append(
                        (k[b : b + 1, :, : len(p)].clone(), v[b : b + 1, :, : len(p)].clone())
                    )
                self._prefixes[p] = (kv, rows[b, : len(p)].clone())
        got = []
        for p in map(tuple, prefixes):
            self._prefixes.move_to_end(p)
            got.append(self._prefixes[p])
        keep = max(PREFIX_CACHE, len(prefixes))
        size = sum(_entry_bytes(e) for e in self._prefixes.values())
        while len(self._prefixes) > len(prefixes) and (
            len(self._prefixes) > keep or size > PREFIX_BYTES
        ):
            size -= _entry_bytes(self._prefixes.popitem(last=False)[1])
        return got

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

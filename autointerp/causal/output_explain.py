"""Output-centric explanations of a feature from its logit-lens tokens (docs/output.md):
``top_tokens`` (no LLM: the list itself) and ``llm`` (the explainer summarises the list in a
short phrase; the summary's words, as subject-model tokens, are the tokens it is scored on)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from autointerp.causal.logit_lens import LensTokens

LLM_PROMPT = (
    "A feature inside a language model makes these tokens more likely when it is active "
    "(most promoted first):\n{tokens}\n\nIn a short phrase (at most 10 words), what do these "
    "tokens have in common? Answer with the phrase only."
)

#: words of a summary that name no token the feature promotes
STOPWORDS = frozenset(
    "a an the of and or to in on for with as by at from is are be this that these those it "
    "its their words word tokens token related relating common forms form like such various "
    "other mostly mainly often some".split()
)


def top_tokens_explanation(lens: LensTokens, n: int) -> tuple[str, list[int]]:
    """``tokens: "a", "b", ...`` (the ``n`` most promoted tokens) and their ids."""
    toks = lens.top_tokens[:n]
    return "tokens: " + ", ".join(json.dumps(t, ensure_ascii=False) for t in toks), lens.top_ids[:n]


def llm_messages(lens: LensTokens, n: int) -> list[dict[str, str]]:
    toks = ", ".join(json.dumps(t, ensure_ascii=False) for t in lens.top_tokens[:n])
    return [{"role": "user", "content": LLM_PROMPT.format(tokens=toks)}]


def words_to_token_ids(text: str, tokenizer) -> list[int]:
    """The first subject-model token of each content word of ``text`` (with and without a
    leading space; stopwords dropped), deduplicated in order."""
    out: list[int] = []
    for w in re.findall(r"[A-Za-z0-9']+", text):
        if w.lower() in STOPWORDS:
            continue
        for form in (" " + w, w):
            ids = tokenizer.encode(form, add_special_tokens=False)
            if ids and ids[0] not in out:
                out.append(int(ids[0]))
    return out


async def llm_explanation(
    client, lens: LensTokens, n: int, *, max_tokens: int, max_parse_retries: int, tag
) -> dict:
    """``{"text", "status", "error"}``: the explainer's summary of the logit-lens tokens."""
    from autointerp.errors import FatalLLMError, LLMError, ParseError
    from autointerp.explain import parse_compact_answer
    from autointerp.llm.helpers import chat_parsed_response

    try:
        text, _, _ = await chat_parsed_response(
            client,
            llm_messages(lens, n),
            lambda r: parse_compact_answer(r.text),
            max_parse_retries=max_parse_retries,
            tag=tag,
            max_tokens=max_tokens,
        )
    except FatalLLMError:
        raise
    except (ParseError, LLMError) as e:
        return {"text": "", "status": "failed", "error": str(e)}
    return {"text": text, "status": "ok", "error": ""}


def token_sets_for(texts: Sequence[str], tokenizer) -> list[list[int]]:
    return [words_to_token_ids(t, tokenizer) if t else [] for t in texts]

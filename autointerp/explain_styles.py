"""Explain styles by name: ``[explain] style = "compact"`` names an :class:`ExplainStyle`.

A style says which explain examples the explainer sees (``select``: the strongest first, or
spread over the explain set), how they become chat messages (``messages``) and how the answer
is parsed into one explanation (``parse``, raising :class:`~autointerp.errors.ParseError` with
feedback); a style with ``text`` instead needs no LLM (``top_tokens``). The built-in styles are
registered by :mod:`autointerp.explain`; a third-party package registers more with
:func:`register_explain_style` or the entry-point group ``autointerp.explain_styles``
(``NAME = "package.module:STYLE"``, an :class:`ExplainStyle`). Importing this module imports
nothing heavy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from autointerp.registry import Registry


@dataclass(frozen=True)
class ExplainStyle:
    name: str
    #: examples -> chat messages (``[{"role": ..., "content": ...}]``); None: no LLM
    messages: Callable[[Sequence[Any]], list[dict[str, str]]] | None = None
    #: the answer text -> the explanation (raises ParseError with feedback for the LLM)
    parse: Callable[[str], str] | None = None
    #: no-LLM styles: examples -> the explanation
    text: Callable[[Sequence[Any]], str] | None = None
    #: "top": the strongest examples; "spread": spread evenly over the explain set
    select: str = "top"
    doc: str = ""

    @property
    def uses_llm(self) -> bool:
        return self.text is None


def _check(name: str, obj: Any) -> None:
    if not isinstance(obj, ExplainStyle):
        raise TypeError(f"explain style {name!r}: {obj!r} is not an autointerp ExplainStyle")
    if (obj.text is None) == (obj.messages is None):
        raise ValueError(f"explain style {name!r}: give either `messages` + `parse` or `text`")
    if obj.select not in ("top", "spread"):
        raise ValueError(f"explain style {name!r}: select must be 'top' or 'spread'")


BUILTIN = {s: "autointerp.explain" for s in ("openai", "highlight", "compact", "top_tokens")}

EXPLAIN_STYLES: Registry[ExplainStyle] = Registry(
    "explain style", "autointerp.explain_styles", BUILTIN, check=_check
)


def register_explain_style(style: ExplainStyle, *, replace: bool = False) -> ExplainStyle:
    """Make ``style = "<style.name>"`` usable in suites (no edit to autointerp)."""
    return EXPLAIN_STYLES.register(style.name, style, replace=replace)  # type: ignore[return-value]


def get_explain_style(name: str) -> ExplainStyle:
    return EXPLAIN_STYLES.get(name)

"""IOI prompt pairs: a clean prompt (``... S gave a drink to`` -> IO) and its counterfactual,
the indirect object replaced by a third name (same token length, subject kept).

Templates come in two orders: ABBA (IO first: "When Mary and John went ..., John gave ... to")
and BABA (S first: "When John and Mary went ..., John gave ... to"); the answer is the IO name.
Names are single tokens with their leading space, checked against the tokenizer.

Every pair belongs to one of two halves (``IOIPair.half``) for the held-out ranking: the
templates are split into two seeded halves, and so are the names (when each half has at least
3 names); a pair of half ``h`` uses a template and names of half ``h`` only, so a ranking
fitted on one half is evaluated on prompts whose templates and names it never saw.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from autointerp.errors import AutointerpError

#: ``{A}`` and ``{B}`` are the two names of the first clause, ``{S}`` the repeated subject
TEMPLATES: tuple[str, ...] = (
    "When{A} and{B} went to the store,{S} gave a drink to",
    "When{A} and{B} went to the park,{S} gave a ball to",
    "After{A} and{B} went to the office,{S} handed a letter to",
    "Then,{A} and{B} had a long argument. Afterwards{S} said to",
    "While{A} and{B} were working at the school,{S} gave a book to",
    "Friends{A} and{B} found a necklace at the garden.{S} gave it to",
)
#: candidate first names (with the leading space); only single-token ones are kept
NAMES: tuple[str, ...] = tuple(
    " " + n
    for n in """Mary John Tom James Dan Sarah Paul Mark Anna Lisa David Kate Michael Emma Peter
    Alice Bob Jack Susan Laura Steve Chris Linda Helen Frank George Rose Amy Ben Sam""".split()
)


class NoIOINames(AutointerpError):
    """The tokenizer has fewer than 3 single-token names: IOI cannot be built."""


@dataclass(frozen=True)
class IOIPair:
    """One clean / counterfactual prompt pair (token ids of equal length)."""

    template: int
    order: str  # "ABBA" or "BABA"
    io: str
    s: str
    cf_io: str
    clean_ids: tuple[int, ...]
    cf_ids: tuple[int, ...]
    io_id: int
    s_id: int
    cf_io_id: int
    half: int = 0  # 0 or 1: the held-out split (by template and names)


def single_token_names(tokenizer, names: tuple[str, ...] = NAMES) -> list[tuple[str, int]]:
    """(name, id) of the names the tokenizer encodes as exactly one token."""
    out = []
    for n in names:
        ids = tokenizer.encode(n, add_special_tokens=False)
        if len(ids) == 1:
            out.append((n, int(ids[0])))
    return out


def _encode(tokenizer, text: str, bos: int | None) -> list[int]:
    ids = [int(i) for i in tokenizer.encode(text, add_special_tokens=False)]
    return ([bos] if bos is not None else []) + ids


def ioi_pairs(tokenizer, n_pairs: int, seed: int, bos: int | None = None) -> list[IOIPair]:
    """``n_pairs`` seeded pairs, alternating ABBA / BABA, cycling through the templates.

    Every pair is checked: each name is one token, the clean and counterfactual prompts have
    the same length and differ at exactly the IO name's position."""
    names = single_token_names(tokenizer)
    if len(names) < 3:
        raise NoIOINames(
            f"IOI needs at least 3 single-token names in the tokenizer's vocabulary, found "
            f"{len(names)}"
        )
    rng = random.Random(seed)
    t_half = split_halves(len(TEMPLATES), seed)
    n_half = split_halves(len(names), seed + 1)
    pools = [[n for n, h in zip(names, n_half) if h == j] for j in (0, 1)]
    if min(len(p) for p in pools) < 3:  # too few names to split: templates only
        pools = [names, names]
    out: list[IOIPair] = []
    for i in range(n_pairs):
        t = i % len(TEMPLATES)
        half = int(t_half[t])
        order = "ABBA" if (i // len(TEMPLATES)) % 2 == 0 else "BABA"
        (io, io_id), (s, s_id), (c, c_id) = rng.sample(pools[half], 3)
        a, b = (io, s) if order == "ABBA" else (s, io)
        clean = _encode(tokenizer, TEMPLATES[t].format(A=a, B=b, S=s), bos)
        ca, cb = (c, s) if order == "ABBA" else (s, c)
        cf = _encode(tokenizer, TEMPLATES[t].format(A=ca, B=cb, S=s), bos)
        diff = [j for j, (x, y) in enumerate(zip(clean, cf)) if x != y]
        if len(clean) != len(cf) or len(diff) != 1 or clean[diff[0]] != io_id:
            raise AutointerpError(
                f"IOI template {t} does not tokenise names as separate tokens "
                f"({io!r}/{c!r}): clean and counterfactual prompts must differ in exactly the "
                "IO token"
            )
        out.append(IOIPair(t, order, io, s, c, tuple(clean), tuple(cf), io_id, s_id, c_id, half))
    return out


def split_halves(n: int, seed: int) -> list[int]:
    """A seeded split of ``n`` items into halves 0 and 1 (sizes ``ceil(n/2)``, ``floor(n/2)``)."""
    perm = list(range(n))
    random.Random(seed).shuffle(perm)
    half = [0] * n
    for j in perm[(n + 1) // 2 :]:
        half[j] = 1
    return half

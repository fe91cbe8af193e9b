"""Shuffled-explanation nulls: which other feature's explanation each feature is scored with.

A feature's null is another feature's explanation of the same basis (``docs/nulls.md``). The
assignment is a seeded permutation over the features whose explanation is usable, with two
rules the plain derangement did not keep:

* never the feature's own explanation (a basis with one usable explanation has no null), and
* never an explanation with the same text as its own (duplicate texts are common among
  ``top_tokens`` explanations and collapsed bases): such a null is the real score again.

Features that cannot get a valid donor get ``None`` (no null; counted in the table), as do
features whose own explanation failed (their real score is failed, so no pair can form).
"""

from __future__ import annotations

import numpy as np


def assign_donors(texts: list[str | None], seed: int) -> list[int | None]:
    """``donor[i]``: the index whose explanation is feature ``i``'s null, or None.

    ``texts[i]`` is feature ``i``'s explanation text, None when it is not usable (failed).
    Deterministic in ``(texts, seed)``: a seeded permutation of the usable features with no
    fixed point, then each pair with equal texts repaired by a swap that keeps both sides valid
    (candidates in a seeded order); what cannot be repaired gets None."""
    ok = [i for i, t in enumerate(texts) if t is not None]
    donor: list[int | None] = [None] * len(texts)
    if len(ok) < 2:
        return donor
    rng = np.random.default_rng([seed, 104729])
    for _ in range(1000):  # a random permutation is a derangement with probability ~1/e
        p = rng.permutation(len(ok))
        if not np.any(p == np.arange(len(ok))):
            break
    else:  # pragma: no cover - (1 - 1/e)^1000
        p = np.roll(np.arange(len(ok)), 1)
    for a, b in zip(ok, p.tolist(), strict=True):
        donor[a] = ok[b]

    def valid(i: int, d: int | None) -> bool:
        return d is not None and d != i and texts[d] != texts[i]

    for i in ok:
        if valid(i, donor[i]):
            continue
        fixed = False
        for j in rng.permutation(ok).tolist():
            if j != i and valid(i, donor[j]) and valid(j, donor[i]):
                donor[i], donor[j] = donor[j], donor[i]
                fixed = True
                break
        if not fixed:
            donor[i] = None
    return donor

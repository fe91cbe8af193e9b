"""Per-basis diagnostics of the scored features: redundancy and a shared top-token mode.

Both catch a basis (or a null) whose scored features are near-copies of one feature, which the
mean of their scores cannot show (``docs/nulls.md``):

* **redundancy**: the activations of the record features on a token sample spread over the
  corpus; two features are duplicates when the Pearson correlation of their activations is at
  least ``DUPLICATE_R``; ``distinct`` is the number of groups (connected components) of
  duplicates, ``mean_abs_r`` the mean |r| over pairs (pairs with a constant side left out).
  ``edges`` keeps the duplicate pairs (feature ids), so the report counts the groups among the
  features actually scored (:func:`distinct_among`).
* **top-token mode**: per feature, the most common max-activating token of its top windows
  (explain and test); ``mode_share`` is the share of features whose mode is the most common one.
  A share of at least ``MODE_FLAG_SHARE`` is a sanity flag.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from autointerp.bases.base import Basis
from autointerp.types import FeatureRecord

DUPLICATE_R = 0.5
MODE_FLAG_SHARE = 0.25
MODE_FLAG_MIN = 4  # features sharing a mode before the flag can fire


@dataclass
class BasisDiagnostics:
    basis: str
    n_features: int  # scored features examined
    distinct: int  # groups of duplicates (r >= DUPLICATE_R)
    mean_abs_r: float | None
    mode_token: str
    mode_count: int
    n_tokens: int  # tokens in the correlation sample
    features: list[int] = field(default_factory=list)  # the record features examined
    edges: list[list[int]] = field(default_factory=list)  # duplicate pairs, feature ids

    @property
    def mode_share(self) -> float | None:
        return self.mode_count / self.n_features if self.n_features else None

    def flag(self) -> str:
        """A sanity-flag text when many scored features share one top token, else ""."""
        share = self.mode_share
        if share is None or self.mode_count < MODE_FLAG_MIN or share < MODE_FLAG_SHARE:
            return ""
        return (
            f"{self.mode_count} of {self.n_features} scored features share the top token "
            f"{self.mode_token!r}"
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "mode_share": self.mode_share}


def top_token_mode(record: FeatureRecord) -> str | None:
    """The most common max-activating token over the record's top windows (ties: first)."""
    toks = []
    for ex in [e for e in record.explain if e.kind == "top"] + list(record.test_top):
        if ex.acts and max(ex.acts) > 0:
            toks.append(ex.tokens[int(np.argmax(ex.acts))])
    return Counter(toks).most_common(1)[0][0] if toks else None


def _components(n: int, pairs: Sequence[tuple[int, int]]) -> int:
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        parent[find(i)] = find(j)
    return len({find(i) for i in range(n)})


def distinct_among(features: Sequence[int], edges: Sequence[Sequence[int]]) -> int:
    """Groups of duplicates among ``features`` only: the connected components of the duplicate
    pairs ``edges`` with both ends in ``features`` (a chain through a feature left out does not
    join two groups)."""
    pos = {int(f): i for i, f in enumerate(dict.fromkeys(int(f) for f in features))}
    pairs = [(pos[int(a)], pos[int(b)]) for a, b in edges if int(a) in pos and int(b) in pos]
    return _components(len(pos), pairs)


def duplicate_pairs(codes: np.ndarray, threshold: float = DUPLICATE_R) -> list[tuple[int, int]]:
    """Column pairs ``(i, j)``, ``i < j``, of ``codes`` correlated at ``>= threshold``."""
    return _corr(codes, threshold)[0]


def distinct_groups(codes: np.ndarray, threshold: float = DUPLICATE_R) -> tuple[int, float | None]:
    """(number of groups of features whose activations correlate at ``>= threshold``, chained;
    mean |r| over the pairs where r is defined) for ``codes`` [tokens, features]."""
    pairs, mean_abs = _corr(codes, threshold)
    return _components(codes.shape[1], pairs), mean_abs


def _corr(codes: np.ndarray, threshold: float) -> tuple[list[tuple[int, int]], float | None]:
    n = codes.shape[1]
    if n == 0:
        return [], None
    x = codes.astype(np.float64)
    x = x - x.mean(0)
    norm = np.sqrt((x * x).sum(0))
    live = norm > 0
    r = np.full((n, n), np.nan)
    xl = x[:, live] / norm[live]
    r[np.ix_(live, live)] = xl.T @ xl
    iu, ju = np.triu_indices(n, 1)
    vals = r[iu, ju]
    hit = vals >= threshold
    pairs = list(zip(iu[hit].tolist(), ju[hit].tolist(), strict=True))
    defined = vals[~np.isnan(vals)]
    mean_abs = float(np.abs(defined).mean()) if len(defined) else None
    return pairs, mean_abs


@torch.no_grad()
def basis_diagnostics(
    basis: Basis,
    records: Sequence[FeatureRecord],
    acts: np.ndarray,
    mask: np.ndarray,
    rows: np.ndarray,
    *,
    device: torch.device | str = "cpu",
) -> BasisDiagnostics:
    """Diagnostics of ``records``' features on the non-special tokens of ``rows``."""
    feats = torch.as_tensor([r.feature for r in records], dtype=torch.long)
    parts = []
    for s in range(0, len(rows), 64):
        r = np.asarray(rows[s : s + 64])
        x = torch.from_numpy(np.array(acts[r]))[~torch.from_numpy(mask[r])].to(device)
        if len(feats):
            parts.append(basis.encode_features(x, feats).float().cpu().numpy())
    codes = np.concatenate(parts) if parts else np.zeros((0, len(feats)), np.float32)
    pairs, mean_abs = _corr(codes, DUPLICATE_R)
    distinct = _components(codes.shape[1], pairs)
    ids = [int(r.feature) for r in records]
    edges = [[ids[i], ids[j]] for i, j in pairs]
    modes = Counter(m for m in map(top_token_mode, records) if m is not None)
    tok, cnt = modes.most_common(1)[0] if modes else ("", 0)
    return BasisDiagnostics(
        basis.name, len(records), distinct, mean_abs, tok, cnt, len(codes), ids, edges
    )

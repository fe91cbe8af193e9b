"""Per-feature records: top-activating windows, activation-quantile samples, uniform random windows.

Windows are fixed, non-overlapping chunks of ``window`` tokens of each row (after BOS), so two
examples never overlap. One streaming pass over the activations keeps, per selected feature,
  * the top ``n_top`` windows by max activation (running ``topk`` merge), and
  * a uniform reservoir of firing windows (random-key reservoir: each window gets a seeded key,
    the ``reservoir`` smallest keys among firing windows are kept), later cut into
    ``n_quantiles`` equal-count activation bins for quantile sampling;
so memory is O(features x (n_top + reservoir)) whatever the number of tokens. The quantile bins
need no first pass for each feature's maximum: they are cut from the reservoir at the end. Codes
kept from the density pass are densified one batch of rows at a time, and the gather pass keeps
only the chosen windows' activations, so selecting every alive feature (``n_features = "all"``)
stays O(features x examples) too. Random windows are
drawn uniformly over all windows except the explain windows and the top test windows (not
conditioned on firing; they may coincide with a quantile test window). Explain (train) and test
sets are disjoint; every choice is seeded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from autointerp.bases.base import Basis
from autointerp.config import RecordsConfig
from autointerp.errors import AutointerpError
from autointerp.types import Example, FeatureRecord


def select_features(
    density: np.ndarray,
    n: int | str,
    *,
    mode: str = "random_alive",
    seed: int = 0,
    min_density=0.0,
) -> np.ndarray:
    """Feature ids to score: ``random_alive`` = a seeded uniform sample of features with
    density > max(0, min_density); ``first`` = the first ``n`` alive ones; ``n = "all"`` =
    every alive feature (the same set as any ``n`` >= the alive count)."""
    alive = np.flatnonzero(np.asarray(density) > max(0.0, min_density))
    if len(alive) == 0 or n == "all":
        return alive
    if mode == "first":
        return alive[:n]
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(alive, size=min(n, len(alive)), replace=False))


@dataclass
class _Layout:
    offset: int  # first window position (1 when rows start with BOS)
    window: int
    n_chunks: int  # windows per row

    def locate(self, wid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return wid // self.n_chunks, self.offset + (wid % self.n_chunks) * self.window


def _window_keys(n_windows: int, seed: int) -> np.ndarray:
    return np.random.default_rng([seed, 7919]).random(n_windows)


def _split_interleaved(items: list[int], n_first: int, n_second: int) -> tuple[list, list]:
    """Split a ranked list into two evenly interleaved parts (``second`` gets its quota spread)."""
    first, second = [], []
    total = n_first + n_second
    for r, it in enumerate(items[:total]):
        if len(second) < n_second and len(second) < r * n_second / total:
            second.append(it)
        elif len(first) < n_first:
            first.append(it)
        else:
            second.append(it)
    return first, second


def _quantile_sample(
    pool: list[tuple[int, float]], rng: np.random.Generator, cfg: RecordsConfig
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Cut the firing-window pool into ``n_quantiles`` equal-count bins by activation (bin 0 =
    weakest) and draw round-robin across bins; returns (explain, test) lists of (window, bin)."""
    if not pool:
        return [], []
    pool = sorted(pool, key=lambda p: p[1])
    nq = max(1, min(cfg.n_quantiles, len(pool)))
    bins = [list(b) for b in np.array_split(np.arange(len(pool)), nq)]
    for b in bins:
        rng.shuffle(b)
    picked: list[tuple[int, int]] = []
    need = cfg.n_explain_quantile + cfg.n_test_quantile
    while len(picked) < need and any(bins):
        for q, b in enumerate(bins):
            if b and len(picked) < need:
                picked.append((pool[b.pop()][0], q))
    return _split_interleaved(picked, cfg.n_explain_quantile, cfg.n_test_quantile)


@dataclass
class TokenCodes:
    """A basis's non-zero codes over every token of a corpus (kept from the density pass so
    that bases which need a full encode are not encoded twice): flat token index
    ``row * T + t``, feature id and value of each non-zero."""

    shape: tuple[int, int]  # (n_rows, T)
    tok: np.ndarray
    col: np.ndarray
    val: np.ndarray

    def columns(self, features: np.ndarray) -> np.ndarray:
        """Dense codes ``[n_rows, T, len(features)]`` of ``features`` (every row at once:
        O(tokens x features); :meth:`rows` densifies a few rows at a time)."""
        return self.rows(np.arange(self.shape[0]), features)

    def rows(self, rows: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Dense codes ``[len(rows), T, len(features)]`` of ``features`` on ``rows``."""
        n_rows, T = self.shape
        feats = np.asarray(features, dtype=np.int64)
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros((len(rows), T, len(feats)), dtype=np.float32)
        if not len(feats) or not len(rows):
            return out
        if not hasattr(self, "_row_start"):
            if len(self.tok) > 1 and np.any(np.diff(self.tok) < 0):
                order = np.argsort(self.tok, kind="stable")
                self.tok, self.col, self.val = self.tok[order], self.col[order], self.val[order]
            bounds = np.arange(n_rows + 1, dtype=np.int64) * T
            self._row_start = np.searchsorted(self.tok, bounds)
        fmap = np.full(max(int(feats.max()), int(self.col.max(initial=0))) + 1, -1, np.int64)
        fmap[feats] = np.arange(len(feats))
        lo, hi = self._row_start[rows], self._row_start[rows + 1]
        lens = hi - lo
        idx = np.repeat(lo - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))
        local = np.repeat(np.arange(len(rows)), lens)
        j = fmap[self.col[idx]]
        hit = j >= 0
        t = self.tok[idx] % T
        out[local[hit], t[hit], j[hit]] = self.val[idx][hit]
        return out


class _Decoder:
    """Token id -> display string, each id decoded once."""

    def __init__(self, tokenizer) -> None:
        self.tok = tokenizer
        self.cache: dict[int, str] = {}

    def __call__(self, ids: list[int]) -> list[str]:
        out = []
        for i in ids:
            s = self.cache.get(i)
            if s is None:
                s = self.tok.decode([i])
                self.cache[i] = s
            out.append(s)
        return out


@torch.no_grad()
def collect_records(
    basis: Basis,
    acts: np.ndarray,
    tokens: np.ndarray,
    mask: np.ndarray,
    features: np.ndarray,
    density: np.ndarray,
    cfg: RecordsConfig,
    tokenizer,
    *,
    seed: int = 0,
    offset: int = 1,
    batch_rows: int = 64,
    reservoir: int = 256,
    device: torch.device | str = "cpu",
    progress: bool = True,
    codes: TokenCodes | None = None,
) -> list[FeatureRecord]:
    """Build a ``FeatureRecord`` for each feature id in ``features``.

    ``acts`` [n_rows, T, d] (memory-mapped), ``tokens`` [n_rows, T], ``mask`` True at special
    tokens (their activations count as 0), ``density`` per feature (all features). ``codes``
    (optional): the basis's codes of every token, read instead of encoding ``acts``.
    """
    n_rows, T = tokens.shape
    W = cfg.window
    n_chunks = (T - offset) // W
    if n_chunks < 1:
        raise AutointerpError(
            f"records.window={W} is longer than a row ({T - offset} tokens after BOS); "
            "lower records.window or raise corpus.context"
        )
    lay = _Layout(offset, W, n_chunks)
    n_windows = n_rows * n_chunks
    feats = torch.as_tensor(np.asarray(features, dtype=np.int64))
    nf = len(feats)
    if nf == 0:
        return []
    n_top = cfg.n_explain_top + cfg.n_test_top
    keys_all = torch.from_numpy(_window_keys(n_windows, seed))
    top_v = torch.full((nf, n_top), -1.0)
    top_i = torch.full((nf, n_top), -1, dtype=torch.long)
    res_k = torch.full((nf, reservoir), float("inf"), dtype=torch.float64)
    res_i = torch.full((nf, reservoir), -1, dtype=torch.long)
    res_v = torch.zeros((nf, reservoir))
    mask_t = torch.from_numpy(np.asarray(mask))
    feats_np = feats.numpy()

    def codes_of(rows: np.ndarray | slice) -> torch.Tensor:
        """Codes [rows, T, nf] of the selected features, 0 at special tokens."""
        if codes is not None:
            r = np.arange(n_rows)[rows] if isinstance(rows, slice) else rows
            c = torch.from_numpy(codes.rows(r, feats_np))
        else:
            x = torch.from_numpy(np.array(acts[rows])).to(device)
            c = basis.encode_features(x.reshape(-1, x.shape[-1]), feats).float().cpu()
            c = c.reshape(len(x), T, nf)
        return c.masked_fill(mask_t[rows][:, :, None], 0.0)

    it = range(0, n_rows, batch_rows)
    for r0 in tqdm(it, desc=f"records {basis.name}", unit="batch", disable=not progress):
        r1 = min(n_rows, r0 + batch_rows)
        b = r1 - r0
        codes_b = codes_of(slice(r0, r1))
        win = codes_b[:, offset : offset + n_chunks * W].reshape(b, n_chunks, W, nf).amax(2)
        win = win.reshape(b * n_chunks, nf).T  # [nf, windows in batch]
        wid = torch.arange(r0 * n_chunks, r1 * n_chunks)
        v = torch.cat([top_v, win], 1)
        i = torch.cat([top_i, wid.expand(nf, -1)], 1)
        top_v, sel = v.topk(n_top, dim=1)
        top_i = i.gather(1, sel)
        k = keys_all[wid].expand(nf, -1).masked_fill(win <= 0, float("inf"))
        kk = torch.cat([res_k, k], 1)
        ii = torch.cat([res_i, wid.expand(nf, -1)], 1)
        vv = torch.cat([res_v, win], 1)
        res_k, sel = kk.topk(reservoir, dim=1, largest=False)
        res_i = ii.gather(1, sel)
        res_v = vv.gather(1, sel)

    plans = []
    for j in range(nf):
        rng = np.random.default_rng([seed, int(feats[j])])
        tops = [int(w) for w, a in zip(top_i[j].tolist(), top_v[j].tolist()) if a > 0]
        ex_top, te_top = _split_interleaved(tops, cfg.n_explain_top, cfg.n_test_top)
        chosen = set(tops)
        pool = [
            (int(w), float(a))
            for w, kv, a in zip(res_i[j].tolist(), res_k[j].tolist(), res_v[j].tolist())
            if kv < np.inf and int(w) not in chosen
        ]
        ex_q, te_q = _quantile_sample(pool, rng, cfg)
        # random windows avoid the explain windows and the top test windows they are pooled
        # with, nothing else: excluding the quantile test windows too would condition them
        # against firing (for a rare feature those are most of its firing windows)
        chosen |= {w for w, _ in ex_q}
        rand = []
        while len(rand) < cfg.n_test_random and len(chosen) < n_windows:
            w = int(rng.integers(n_windows))
            if w not in chosen:
                rand.append(w)
                chosen.add(w)
        plans.append((ex_top, te_top, ex_q, te_q, rand))

    # Gather pass: encode only the rows holding chosen windows, keep only those windows.
    wanted: dict[int, set[tuple[int, int]]] = {}  # row -> {(feature index, window start)}
    for j, p in enumerate(plans):
        for part in p:
            for w in part:
                row, start = lay.locate(np.asarray(w if isinstance(w, int) else w[0]))
                wanted.setdefault(int(row), set()).add((j, int(start)))
    need = sorted(wanted)
    win_acts: dict[tuple[int, int, int], list[float]] = {}  # (row, start, j) -> acts
    for s in range(0, len(need), batch_rows):
        rows = np.asarray(need[s : s + batch_rows])
        for r, c in zip(rows.tolist(), codes_of(rows).numpy()):
            for j, start in wanted[r]:
                win_acts[(r, start, j)] = c[start : start + W, j].tolist()
    dec = _Decoder(tokenizer)
    out = []
    for j, (ex_top, te_top, ex_q, te_q, rand) in enumerate(plans):

        def mk(w: int, kind: str, q: int = -1, j: int = j) -> Example:
            row, start = lay.locate(np.asarray(w))
            row, start = int(row), int(start)
            ids = tokens[row, start : start + W].astype(int).tolist()
            a = win_acts[(row, start, j)]
            return Example(dec(ids), ids, a, kind, seq=row, start=start, quantile=q)

        fid = int(feats[j])
        out.append(
            FeatureRecord(
                basis=basis.name,
                feature=fid,
                density=float(density[fid]),
                max_act=float(max(top_v[j, 0].item(), 0.0)),
                explain=[mk(w, "top") for w in ex_top] + [mk(w, "quantile", q) for w, q in ex_q],
                test_top=[mk(w, "top") for w in te_top],
                test_quantile=[mk(w, "quantile", q) for w, q in te_q],
                test_random=[mk(w, "random") for w in rand],
            )
        )
    return out

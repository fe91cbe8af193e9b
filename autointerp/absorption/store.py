"""The first-letter prompts' activations by word, kept across runs (one ``.npz`` in the work
dir, keyed by everything a prompt and its activation depend on: model, hookpoint, dtype, BOS,
template, in-context examples, seed, split).

A word's prompt is a function of the word, its role and the seed alone (its in-context examples
come from a per-word random stream and a pool fixed by the whole vocabulary's split), so any
sample of the vocabulary reuses the activations earlier samples computed: a larger
``max_words`` prompts only the new words, and a run killed mid-way resumes from the last
chunk saved.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from autointerp.results import atomic_write_with

#: train and test words' prompts, and the probe-positive test words' second prompts
ROLES = ("train", "test", "abs")
#: prompts computed between two saves
CHUNK = 1024


class PromptActs:
    """``{role: {word: (activation, relative position)}}``, loaded from and saved to ``path``
    (None: in memory only)."""

    def __init__(self, path: Path | None, width: int) -> None:
        self.path = path
        self.width = width
        self.computed = 0  # prompts run by this object
        self.reused = 0  # prompts found done
        self.acts: dict[str, dict[str, np.ndarray]] = {r: {} for r in ROLES}
        self.rel: dict[str, dict[str, int]] = {r: {} for r in ROLES}
        self._load()

    def _load(self) -> None:
        """Add what the file holds (another run's prompts too) to what is in memory."""
        if self.path is None or not self.path.is_file():
            return
        with np.load(self.path, allow_pickle=False) as d:
            for r in ROLES:
                if f"words_{r}" in d.files:
                    ws, xs, rs = d[f"words_{r}"], d[f"acts_{r}"], d[f"rel_{r}"]
                    for w, x, p in zip(ws.tolist(), xs, rs.tolist()):
                        self.acts[r].setdefault(w, x)
                        self.rel[r].setdefault(w, p)

    def __len__(self) -> int:
        return sum(len(v) for v in self.acts.values())

    def get(
        self,
        role: str,
        words: Sequence[str],
        compute: Callable[[list[str]], tuple[np.ndarray, np.ndarray]],
        chunk: int = CHUNK,
    ) -> tuple[np.ndarray, set[int]]:
        """``([len(words), width] activations, relative positions seen)``: the stored ones,
        and ``compute(missing words) -> (activations, relative positions)`` for the rest, a
        chunk at a time, saved after each."""
        have = self.acts[role]
        missing = list(dict.fromkeys(w for w in words if w not in have))
        self.reused += len(set(words)) - len(missing)
        for s in range(0, len(missing), chunk):
            part = missing[s : s + chunk]
            x, rel = compute(part)
            self.computed += len(part)
            for w, a, p in zip(part, x, rel):
                have[w] = a
                self.rel[role][w] = int(p)
            self.save()
        if not words:
            return np.zeros((0, self.width), dtype=np.float32), set()
        out = np.stack([have[w] for w in words]).astype(np.float32, copy=False)
        return out, {self.rel[role][w] for w in words}

    def save(self) -> None:
        """Atomically, with whatever another run saved meanwhile."""
        if self.path is None:
            return
        self._load()
        arrays: dict[str, np.ndarray] = {}
        for r in ROLES:
            ws = list(self.acts[r])
            if not ws:
                continue
            arrays[f"words_{r}"] = np.array(ws, dtype=str)
            arrays[f"acts_{r}"] = np.stack([self.acts[r][w] for w in ws])
            arrays[f"rel_{r}"] = np.array([self.rel[r][w] for w in ws], dtype=np.int64)

        def write(p: Path) -> None:
            with p.open("wb") as f:
                np.savez(f, **arrays)

        atomic_write_with(self.path, write)

"""The bundled neutral instructions (``prompts/steer_instructions.txt``) and their seeded split
into a selection half (picks each feature's factor) and a report half (AxBench's protocol)."""

from __future__ import annotations

import numpy as np

from autointerp.errors import AutointerpError
from autointerp.templates import load_template

MIN_INSTRUCTIONS = 16


def instructions() -> list[str]:
    """The bundled instructions, one a line (``#`` lines and blank lines skipped)."""
    lines = [ln.strip() for ln in load_template("steer_instructions").splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def split_prompts(n: int, seed: int) -> tuple[list[str], list[str]]:
    """``(selection, report)``: ``n`` of the bundled instructions in a seeded order, the first
    ``n // 2`` for selection and the rest for the report (disjoint)."""
    all_ = instructions()
    if not 2 <= n <= len(all_):
        raise AutointerpError(
            f"steering.n_prompts must be in 2..{len(all_)} (the bundled instructions), got {n}"
        )
    order = np.random.default_rng(seed).permutation(len(all_))[:n]
    picked = [all_[i] for i in order]
    return picked[: n // 2], picked[n // 2 :]

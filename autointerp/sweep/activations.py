"""One forward pass for every hookpoint of a sweep.

Per token batch, a hook on each hookpoint copies its activation, and the hook that completes
the set stops the forward pass (nothing after the deepest hookpoint runs). Each hookpoint's
activations go to exactly the file, ``work/acts-<h>.npy``, that the single-hookpoint
``activations`` stage of its member run would write (same batches, so the same numbers), so
each member run then finds its activations cached. Every file is written under a temp name
and renamed once the pass is complete; files already there are not recomputed."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from autointerp.activations import _reserve
from autointerp.errors import HookpointError
from autointerp.model import Hookpoint, SubjectModel, splice


class _AllCaptured(Exception):
    """Raised by the hook that captures the last missing hookpoint of a batch."""


@torch.no_grad()
def run_to_hookpoints(
    sm: SubjectModel, hps: Sequence[Hookpoint], input_ids: torch.Tensor
) -> list[torch.Tensor]:
    """Activations ``[B, T, width]`` at every hookpoint of ``hps`` from one forward pass, which
    stops as soon as the last of them has been reached."""
    got: dict[int, torch.Tensor] = {}

    def grabber(i: int):
        def grab(x: torch.Tensor) -> torch.Tensor:
            got.setdefault(i, x.detach())
            if len(got) == len(hps):
                raise _AllCaptured
            return x

        return grab

    with contextlib.ExitStack() as stack:
        for i, hp in enumerate(hps):
            stack.enter_context(splice(hp, grabber(i)))
        with contextlib.suppress(_AllCaptured):
            sm.model(input_ids=input_ids.to(sm.device), use_cache=False)
    missing = [hp.name for i, hp in enumerate(hps) if i not in got]
    if missing:
        raise HookpointError(f"hookpoints {missing} were never reached in the forward pass")
    return [got[i] for i in range(len(hps))]


def sweep_activations(
    sm: SubjectModel,
    hps: Sequence[Hookpoint],
    tokens: np.ndarray,
    paths: Sequence[Path],
    *,
    batch_size: int = 16,
    progress: bool = True,
) -> list[bool]:
    """Write the activations of each ``hps[i]`` over ``tokens`` to ``paths[i]`` (.npy float32)
    in one pass over the corpus; returns, per hookpoint, whether it was computed now (False:
    its file was already there)."""
    todo = [i for i, p in enumerate(paths) if not Path(p).exists()]
    if not todo:
        return [False] * len(paths)
    n, t = tokens.shape
    tmps: list[Path] = []
    try:
        outs = []
        for i in todo:
            path = Path(paths[i])
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(
                dir=path.parent, prefix=f".{path.stem}.", suffix=".partial.npy"
            )
            os.close(fd)
            tmps.append(Path(name))
            shape = (n, t, hps[i].width)
            outs.append(np.lib.format.open_memmap(tmps[-1], "w+", np.float32, shape))
            _reserve(tmps[-1])
        sub = [hps[i] for i in todo]
        it = range(0, n, batch_size)
        for b in tqdm(it, desc=f"activations x{len(sub)}", unit="batch", disable=not progress):
            ids = torch.from_numpy(tokens[b : b + batch_size].astype(np.int64))
            for out, acts in zip(outs, run_to_hookpoints(sm, sub, ids), strict=True):
                out[b : b + len(ids)] = acts.float().cpu().numpy()
        for out, tmp, i in zip(outs, tmps, todo, strict=True):
            out.flush()
            os.replace(tmp, paths[i])
    except BaseException:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        raise
    return [i in todo for i in range(len(paths))]

"""One forward pass from edited upstream codes to the downstream basis's codes.

The activation at the upstream hookpoint ``hp1`` is replaced by ``decode1(c) + e`` (the
upstream basis's error term ``e`` kept, as in :mod:`autointerp.causal.intervene`), the pass
runs on until the downstream hookpoint ``hp2`` and stops there (the layers before a residual
``hp1`` are skipped: they only compute what ``decode1(c) + e`` replaces); the downstream
activation is encoded by the downstream basis. The graph is kept, so gradients reach ``c``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from autointerp.bases.base import Basis
from autointerp.causal.intervene import encode_with_error, hidden
from autointerp.errors import AutointerpError
from autointerp.metrics import _n_skippable, _resume_at
from autointerp.model import Hookpoint, SubjectModel, _Stop, splice


@dataclass
class Pair:
    """Two hookpoints (``hp1`` strictly upstream of ``hp2``) with a basis at each."""

    sm: SubjectModel
    hp1: Hookpoint
    hp2: Hookpoint
    b1: Basis
    b2: Basis

    def __post_init__(self) -> None:
        if (
            self.hp1.layer > self.hp2.layer
            or self.hp1.module_path == self.hp2.module_path
            and (self.hp1.io == self.hp2.io)
        ):
            raise AutointerpError(
                f"circuits: the upstream hookpoint {self.hp1.name!r} must come before the "
                f"downstream one {self.hp2.name!r}; swap them"
            )
        for b, hp in ((self.b1, self.hp1), (self.b2, self.hp2)):
            if b.d_in != hp.width:
                raise AutointerpError(
                    f"circuits: basis {b.name!r} reads width {b.d_in} but {hp.name!r} has width "
                    f"{hp.width}; give each hookpoint a basis fitted there"
                )

    @torch.no_grad()
    def upstream(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Upstream codes ``[B, T, F1]`` and error term ``[B, T, d1]`` of ``ids``."""
        return encode_with_error(self.b1, hidden(self.sm, self.hp1, ids))

    def down(self, ids: torch.Tensor, c: torch.Tensor, err: torch.Tensor) -> torch.Tensor:
        """Downstream codes ``[B, T, F2]`` when the upstream codes are ``c [B, T, F1]`` (error
        ``err`` kept); differentiable in ``c`` and ``err`` when grad is enabled."""
        x1 = self.b1.decode(c.reshape(-1, c.shape[-1])).reshape(err.shape) + err
        got: list[torch.Tensor] = []
        order: list[str] = []

        def put(a: torch.Tensor) -> torch.Tensor:
            order.append("up")
            return x1.to(a.device, a.dtype)

        def grab(a: torch.Tensor) -> torch.Tensor:
            if not order:
                raise AutointerpError(
                    f"circuits: {self.hp2.name!r} is reached before {self.hp1.name!r}; the "
                    "upstream hookpoint must come first"
                )
            got.append(a)
            raise _Stop

        # a residual hp1: the layers up to it are skipped (they only make what x1 replaces)
        skip = _n_skippable(self.sm, self.hp1)
        if skip:
            order.append("up")
            dtype = next(self.sm.model.parameters()).dtype
            given = _resume_at(self.sm, skip, x1.to(self.sm.device, dtype))
        else:
            given = splice(self.hp1, put)
        with given, splice(self.hp2, grab), contextlib.suppress(_Stop):
            self.sm.model(input_ids=ids.to(self.sm.device), use_cache=False)
        if not got:
            raise AutointerpError(f"circuits: {self.hp2.name!r} was never reached")
        x2 = got[0].float()
        return self.b2.encode(x2.reshape(-1, x2.shape[-1]).to(self.b2.device)).reshape(
            *x2.shape[:-1], -1
        )

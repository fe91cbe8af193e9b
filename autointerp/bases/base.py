"""The one protocol every basis follows: SAEs, PCA, ICA, neurons, random directions.

``encode(x [N, d_in]) -> codes [N, n_features]`` (non-negative) and
``decode(codes) -> x_hat [N, d_in]``. Scoring, records and metrics see nothing else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn


class Basis(nn.Module, ABC):
    """A dictionary of features over activations of width ``d_in``.

    Attributes:
        name: display name (row label on the leaderboard).
        kind: family, e.g. ``"sae"``, ``"pca"``, ``"ica"``, ``"neurons"``, ``"random"``.
        info: free-form metadata (architecture, hookpoint, model, k, source path...).
    """

    name: str
    kind: str

    def __init__(self, name: str, kind: str, info: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.name = name
        self.kind = kind
        self.info: dict[str, Any] = dict(info or {})

    @property
    @abstractmethod
    def d_in(self) -> int:
        """Width of the activations this basis reads."""

    @property
    @abstractmethod
    def n_features(self) -> int:
        """Number of (non-negative) features."""

    @abstractmethod
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Activations ``[N, d_in]`` -> non-negative codes ``[N, n_features]``."""

    @abstractmethod
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[N, n_features]`` -> reconstruction ``[N, d_in]``."""

    def encode_features(self, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """``encode(x)[:, features]``; bases whose features are computed independently of
        each other override it to compute only those columns (and set
        :attr:`separable_features`)."""
        return self.encode(x)[:, features.to(x.device)]

    @property
    def separable_features(self) -> bool:
        """True when :meth:`encode_features` costs only the asked columns (no full encode)."""
        return False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``x``."""
        return self.decode(self.encode(x))

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error when ``x`` has the wrong width."""
        from autointerp.errors import AutointerpError

        if x.shape[-1] != self.d_in:
            raise AutointerpError(
                f"basis {self.name!r} expects activations of width d_in={self.d_in}, "
                f"got {x.shape[-1]}: check the hookpoint matches the one the basis was built for"
            )

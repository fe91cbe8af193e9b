"""Sparse autoencoders as a :class:`~autointerp.bases.base.Basis`.

One canonical layout for every architecture and every checkpoint format:

  ``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``, ``W_dec [d_sae, d_in]``, ``b_dec [d_in]``,
  plus ``threshold`` (jumprelu ``[d_sae]``; batchtopk scalar or ``[d_sae]``) and
  ``b_gate``, ``r_mag``, ``b_mag`` (gated, which has no ``b_enc``).

Encoding (``x`` one token, after input normalisation ``n_in``):

  ``u = n_in(x) - b_dec`` if ``apply_b_dec_to_input`` else ``n_in(x)``;  ``pre = u W_enc + b_enc``

  * relu:      ``f = relu(pre)``
  * topk:      keep the ``k`` largest entries of ``pre``, ``f = relu`` of them, zeros elsewhere
  * batchtopk: ``f = relu(pre) * [relu(pre) > threshold]`` when a threshold (>= 0) is stored
               (the inference rule of BatchTopK SAEs), else per-token topk as above
  * jumprelu:  ``f = relu(pre) * [pre > threshold]``
  * gated:     ``h = u W_enc``; ``f = [h + b_gate > 0] * relu(exp(r_mag) * h + b_mag)``

  With ``rescale_acts_by_decoder_norm`` (SAELens topk option) ``pre`` is multiplied by
  ``||W_dec[i]||`` before selection and codes are divided by it again before decoding.

Decoding: ``x_hat = n_out(f W_dec + b_dec)``.

Input normalisation (SAELens names):
  * ``none``
  * ``expected_average_only_in``: ``n_in(x) = s x``, ``n_out(y) = y / s`` with a fixed
    ``scaling_factor`` s (typically ``sqrt(d_in) / E||x||``).
  * ``constant_norm_rescale``: per token ``c = sqrt(d_in) / ||x||``, ``n_in(x) = c x``,
    ``n_out(y) = y / c``.
  * ``layer_norm``: per token ``n_in(x) = (x - mu) / (std + 1e-5)`` (unbiased std over the
    features), ``n_out(y) = y std + mu``.
  The per-token ones need the statistics of the encoded batch at decode time: ``decode``
  uses those stashed by the last ``encode`` (same number of rows), so call ``sae(x)`` or
  ``decode(encode(x))`` on the same batch.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from autointerp.bases.base import Basis
from autointerp.errors import AutointerpError

ARCHITECTURES = ("relu", "topk", "batchtopk", "jumprelu", "gated")
ARCH_ALIASES = {
    "relu": "relu",
    "standard": "relu",
    "autoencoder": "relu",
    "topk": "topk",
    "top_k": "topk",
    "batchtopk": "batchtopk",
    "batch_topk": "batchtopk",
    "jumprelu": "jumprelu",
    "jump_relu": "jumprelu",
    "gated": "gated",
}
NORMALISATIONS = ("none", "expected_average_only_in", "constant_norm_rescale", "layer_norm")

# tensors each architecture needs (besides W_enc, W_dec, b_dec)
ARCH_TENSORS: dict[str, tuple[str, ...]] = {
    "relu": ("b_enc",),
    "topk": ("b_enc",),
    "batchtopk": ("b_enc",),
    "jumprelu": ("b_enc", "threshold"),
    "gated": ("b_gate", "r_mag", "b_mag"),
}
OPTIONAL_TENSORS: dict[str, tuple[str, ...]] = {"batchtopk": ("threshold",)}
TENSOR_NAMES = ("W_enc", "b_enc", "W_dec", "b_dec", "threshold", "b_gate", "r_mag", "b_mag")


def canonical_architecture(name: str) -> str | None:
    """``"standard"`` -> ``"relu"`` etc.; ``None`` when unknown."""
    return ARCH_ALIASES.get(str(name).strip().lower())


def expected_shapes(architecture: str, d_in: int, d_sae: int, **kw: Any) -> dict[str, tuple]:
    """Shapes of the canonical tensors of an architecture (threshold of batchtopk may be
    a scalar ``()`` or ``(d_sae,)``, see ``kw["threshold_shape"]``)."""
    shapes: dict[str, tuple] = {
        "W_enc": (d_in, d_sae),
        "W_dec": (d_sae, d_in),
        "b_dec": (d_in,),
    }
    for name in ARCH_TENSORS[architecture] + OPTIONAL_TENSORS.get(architecture, ()):
        shapes[name] = (d_sae,)
    if architecture == "batchtopk" and "threshold_shape" in kw:
        shapes["threshold"] = tuple(kw["threshold_shape"])
    return shapes


class SAE(Basis):
    """A sparse autoencoder in the canonical layout (see the module docstring)."""

    def __init__(
        self,
        W_enc: torch.Tensor,
        b_enc: torch.Tensor | None,
        W_dec: torch.Tensor,
        b_dec: torch.Tensor,
        *,
        architecture: str = "relu",
        k: int | None = None,
        threshold: torch.Tensor | None = None,
        b_gate: torch.Tensor | None = None,
        r_mag: torch.Tensor | None = None,
        b_mag: torch.Tensor | None = None,
        apply_b_dec_to_input: bool = True,
        normalisation: str = "none",
        scaling_factor: float | None = None,
        rescale_acts_by_decoder_norm: bool = False,
        name: str = "sae",
        info: dict[str, Any] | None = None,
    ) -> None:
        arch = canonical_architecture(architecture)
        if arch is None:
            raise AutointerpError(
                f"unknown SAE architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}"
            )
        if normalisation not in NORMALISATIONS:
            raise AutointerpError(
                f"unknown activation normalisation {normalisation!r}; known: "
                f"{', '.join(NORMALISATIONS)}"
            )
        if arch == "topk" and (k is None or int(k) <= 0):
            raise AutointerpError(f"topk SAE needs a positive k, got {k!r}")
        if normalisation == "expected_average_only_in" and scaling_factor is None:
            raise AutointerpError(
                "normalisation 'expected_average_only_in' needs scaling_factor "
                "(sqrt(d_in) / mean activation norm)"
            )
        super().__init__(name, "sae", info)
        self.architecture = arch
        self.k = int(k) if k is not None else None
        self.apply_b_dec_to_input = bool(apply_b_dec_to_input)
        self.normalisation = normalisation
        self.scaling_factor = float(scaling_factor) if scaling_factor is not None else None
        self.rescale_acts_by_decoder_norm = bool(rescale_acts_by_decoder_norm)
        self.W_enc = nn.Parameter(W_enc.detach().clone())
        self.W_dec = nn.Parameter(W_dec.detach().clone())
        self.b_dec = nn.Parameter(b_dec.detach().clone())
        for pname, val in (
            ("b_enc", b_enc),
            ("threshold", threshold),
            ("b_gate", b_gate),
            ("r_mag", r_mag),
            ("b_mag", b_mag),
        ):
            if val is None:
                setattr(self, pname, None)
            else:
                setattr(self, pname, nn.Parameter(val.detach().clone()))
        if arch == "batchtopk" and not self._has_threshold() and self.k is None:
            raise AutointerpError("batchtopk SAE needs a threshold >= 0 or k")
        self._stash: tuple[torch.Tensor, ...] | None = None

    # ------------------------------------------------------------------ properties
    @property
    def d_in(self) -> int:
        return int(self.W_enc.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.W_enc.shape[1])

    @property
    def d_sae(self) -> int:
        return self.n_features

    def _has_threshold(self) -> bool:
        t = self.threshold
        return t is not None and bool((t >= 0).all())

    def tensors(self) -> dict[str, torch.Tensor]:
        """The canonical tensors present (detached, contiguous)."""
        out = {}
        for n in TENSOR_NAMES:
            t = getattr(self, n, None)
            if t is not None:
                out[n] = t.detach().contiguous()
        return out

    def config(self) -> dict[str, Any]:
        """Everything but the tensors needed to rebuild this SAE."""
        return {
            "architecture": self.architecture,
            "d_in": self.d_in,
            "d_sae": self.d_sae,
            "k": self.k,
            "apply_b_dec_to_input": self.apply_b_dec_to_input,
            "normalisation": self.normalisation,
            "scaling_factor": self.scaling_factor,
            "rescale_acts_by_decoder_norm": self.rescale_acts_by_decoder_norm,
        }

    # ------------------------------------------------------------------ normalisation
    def _norm_in(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalisation == "none":
            return x
        if self.normalisation == "expected_average_only_in":
            return x * self.scaling_factor
        if self.normalisation == "constant_norm_rescale":
            coeff = math.sqrt(self.d_in) / x.norm(dim=-1, keepdim=True).clamp_min(1e-30)
            self._stash = (coeff,)
            return x * coeff
        mu = x.mean(dim=-1, keepdim=True)
        xc = x - mu
        std = xc.std(dim=-1, keepdim=True)
        self._stash = (mu, std)
        return xc / (std + 1e-5)

    def _norm_out(self, y: torch.Tensor) -> torch.Tensor:
        if self.normalisation == "none":
            return y
        if self.normalisation == "expected_average_only_in":
            return y / self.scaling_factor
        st = self._stash
        if st is None or st[0].shape[0] != y.shape[0]:
            raise AutointerpError(
                f"SAE {self.name!r} uses per-token normalisation {self.normalisation!r}: "
                "decode needs the statistics of the batch just encoded; call sae(x) or "
                "decode(encode(x)) on the same batch"
            )
        if self.normalisation == "constant_norm_rescale":
            return y / st[0]
        return y * st[1] + st[0]

    # ------------------------------------------------------------------ encode / decode
    def pre_activations(
        self, x: torch.Tensor, features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``pre`` of the module docstring (for gated: ``h = u W_enc``); only the columns
        ``features`` when given."""
        self.check_input(x)
        x = x.to(self.W_enc.dtype)
        u = self._norm_in(x)
        if self.apply_b_dec_to_input:
            u = u - self.b_dec
        W = self.W_enc if features is None else self.W_enc[:, features]
        if self.b_enc is not None and self.architecture != "gated":
            b = self.b_enc if features is None else self.b_enc[features]
            return torch.addmm(b, u, W)
        return u @ W

    def _topk(self, pre: torch.Tensor, k: int) -> torch.Tensor:
        k = min(k, pre.shape[-1])
        vals, idx = pre.topk(k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, idx, torch.relu(vals))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._activate(self.pre_activations(x), slice(None))

    def encode_features(self, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        if self._topk_rule():  # a token's top k depends on every feature
            return super().encode_features(x, features)
        f = features.to(self.W_enc.device)
        return self._activate(self.pre_activations(x, f), f)

    @property
    def separable_features(self) -> bool:
        return not self._topk_rule()

    def _topk_rule(self) -> bool:
        return self.architecture == "topk" or (
            self.architecture == "batchtopk" and not self._has_threshold()
        )

    def _activate(self, pre: torch.Tensor, f: torch.Tensor | slice) -> torch.Tensor:
        """Codes from the pre-activations of the features ``f`` (a slice for all)."""
        arch = self.architecture
        if arch == "gated":
            gate = (pre + self.b_gate[f]) > 0
            mag = torch.relu(pre * torch.exp(self.r_mag[f]) + self.b_mag[f])
            return mag * gate.to(mag.dtype)
        if self.rescale_acts_by_decoder_norm:
            pre = pre * self.W_dec[f].norm(dim=-1)
        if arch == "relu":
            return torch.relu(pre)
        if arch == "jumprelu":
            return torch.relu(pre) * (pre > self._thr(f)).to(pre.dtype)
        if arch == "batchtopk" and self._has_threshold():
            post = torch.relu(pre)
            return post * (post > self._thr(f)).to(post.dtype)
        return self._topk(pre, int(self.k))

    def _thr(self, f: torch.Tensor | slice) -> torch.Tensor:
        t = self.threshold
        return t if t.dim() == 0 or t.numel() == 1 else t[f]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        codes = codes.to(self.W_dec.dtype)
        if self.rescale_acts_by_decoder_norm:
            codes = codes / self.W_dec.norm(dim=-1)
        return self._norm_out(codes @ self.W_dec + self.b_dec)

    def extra_repr(self) -> str:
        return (
            f"architecture={self.architecture}, d_in={self.d_in}, d_sae={self.d_sae}, "
            f"k={self.k}, normalisation={self.normalisation}"
        )


def sae_from_tensors(tensors: dict[str, torch.Tensor], cfg: dict[str, Any], **kw: Any) -> SAE:
    """Build an :class:`SAE` from canonical tensors and a :meth:`SAE.config` dict."""
    return SAE(
        tensors["W_enc"],
        tensors.get("b_enc"),
        tensors["W_dec"],
        tensors["b_dec"],
        architecture=cfg["architecture"],
        k=cfg.get("k"),
        threshold=tensors.get("threshold"),
        b_gate=tensors.get("b_gate"),
        r_mag=tensors.get("r_mag"),
        b_mag=tensors.get("b_mag"),
        apply_b_dec_to_input=cfg.get("apply_b_dec_to_input", True),
        normalisation=cfg.get("normalisation", "none"),
        scaling_factor=cfg.get("scaling_factor"),
        rescale_acts_by_decoder_norm=cfg.get("rescale_acts_by_decoder_norm", False),
        **kw,
    )

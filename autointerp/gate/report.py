"""The gate's report: figures, per-check verdicts, alternatives tried and the diagnosis
(:class:`GateReport`, JSON-able for the manifest, with a text table), and :class:`GateError`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from autointerp.errors import ConfigError

FVU_MAX = 1.0
NORM_RATIO_MAX = 2.0
CE_MIN = 0.0
ALT_REL = 0.9  # an alternative "fits clearly better" below ALT_REL * FVU ...
ALT_ABS = 0.01  # ... and at least ALT_ABS lower

_NAN = float("nan")


class GateError(ConfigError):
    """A plugged-in basis failed the sanity gate (message: figure, likely cause, fix)."""


@dataclass
class Check:
    """One gate criterion: its figure, the allowed range, and why it failed."""

    name: str
    value: float
    limit: str
    ok: bool
    reason: str = ""


@dataclass
class Alternative:
    """Reconstruction of the basis at another hookpoint and/or input scaling."""

    hookpoint: str
    variant: str
    fvu: float
    l0: float
    l2_ratio: float
    scale: float = 1.0  # input multiplier relative to the loaded basis
    alias: str = ""  # e.g. "= blocks.6.hook_resid_pre = hidden_states[6]"
    current: bool = False

    @property
    def sane(self) -> bool:
        """Passes the reconstruction limits (FVU, L0 > 0, norm ratio)."""
        return (
            _finite(self.fvu)
            and self.fvu <= FVU_MAX
            and self.l0 > 0
            and 1 / NORM_RATIO_MAX <= self.l2_ratio <= NORM_RATIO_MAX
        )


@dataclass
class GateReport:
    """The gate's figures, per-check verdicts, alternatives and diagnosis."""

    basis: str
    hookpoint: str
    model: str
    d_sae: int
    n_tokens: int
    n_ce_tokens: int
    fvu: float
    l0: float
    dead_frac: float
    l2_ratio: float
    ce_loss_score: float
    checks: list[Check] = field(default_factory=list)
    alternatives: list[Alternative] = field(default_factory=list)
    likely: Alternative | None = None
    runner_up: Alternative | None = None  # the next reading at another hookpoint
    cause: str = ""
    fix: str = ""
    seconds: float = 0.0
    forward_passes: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    allowed_mismatch: bool = False
    n_search_tokens: int = 0  # tokens every alternative is compared on
    n_hookpoints: int = 0  # hookpoints read (the current one and every other candidate)

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (NaN -> None), for the manifest."""
        d = asdict(self)
        d["passed"] = self.passed
        return _json_safe(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GateReport:
        """Inverse of :meth:`to_dict` (None figures back to NaN)."""
        d = {k: v for k, v in d.items() if k != "passed"}
        for k in ("fvu", "l0", "dead_frac", "l2_ratio", "ce_loss_score"):
            d[k] = _NAN if d.get(k) is None else d[k]
        d["checks"] = [Check(**{**c, "value": _nan(c["value"])}) for c in d.get("checks", [])]
        d["alternatives"] = [_alt_from(a) for a in d.get("alternatives", [])]
        d["likely"] = _alt_from(d["likely"]) if d.get("likely") else None
        d["runner_up"] = _alt_from(d["runner_up"]) if d.get("runner_up") else None
        return cls(**d)

    def error_message(self) -> str:
        """One line: the failed figures, the likely cause and the fix."""
        what = "; ".join(c.reason for c in self.failed)
        msg = f"basis {self.basis!r} at {self.hookpoint} fails the sanity gate: {what}"
        if self.likely is not None:
            msg += f"; likely cause: {self.cause}; fix: {self.fix}"
        else:
            msg += (
                "; no other hookpoint or input scaling tried reconstructs it: check the "
                "checkpoint's model, architecture (TopK k, thresholds) and normalisation"
            )
        return msg + "; or pass --allow-mismatch (suite: allow_mismatch = true) to proceed anyway"

    def format_table(self, n_alternatives: int = 6) -> str:
        """Text table: header, one line per check, verdict, best alternatives, diagnosis."""
        lines = [
            f"sanity gate: {self.basis} at {self.hookpoint} ({self.model}); "
            f"{self.n_tokens:,} tokens, CE on {self.n_ce_tokens:,}; "
            f"{self.forward_passes} forward passes, {self.seconds:.1f} s",
            f"  {'check':<14}{'value':>10}  {'limit':<18}result",
        ]
        for c in self.checks:
            res = "ok" if c.ok else "FAIL"
            lines.append(f"  {c.name:<14}{_f(c.value):>10}  {c.limit:<18}{res}")
        lines.append(f"  {'dead fraction':<14}{_f(self.dead_frac):>10}  {'(on this batch)':<18}-")
        lines.append(
            "PASSED" if self.passed else "FAILED: " + "; ".join(r.reason for r in self.failed)
        )
        if self.alternatives:
            on = f" on {self.n_search_tokens:,} tokens" if self.n_search_tokens else ""
            lines.append(f"alternatives ({self.n_hookpoints} hookpoints read{on}; best first):")
            for a in self.alternatives[:n_alternatives]:
                tag = "  <- current" if a.current else ""
                hp = f"{a.hookpoint} {a.alias}".strip()
                lines.append(
                    f"  FVU {_f(a.fvu):>8}  L0 {_f(a.l0):>7}  ratio {_f(a.l2_ratio):>6}  "
                    f"{hp}, {a.variant}{tag}"
                )
        if self.likely is not None and not self.passed:
            a = self.likely
            lines.append(f"best reading: {a.hookpoint} ({a.variant}), FVU {_f(a.fvu)}")
            if self.runner_up is not None:
                r = self.runner_up
                lines.append(f"runner-up:    {r.hookpoint} ({r.variant}), FVU {_f(r.fvu)}")
            lines.append(f"likely cause: {self.cause}")
            lines.append(f"fix: {self.fix}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- helpers


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _nan(x: Any) -> float:
    return _NAN if x is None else float(x)


def _f(x: float) -> str:
    if not _finite(x):
        return "n/a"
    return f"{x:.1f}" if abs(x) >= 100 else f"{x:.3g}"


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _alt_from(d: dict[str, Any]) -> Alternative:
    return Alternative(**{**d, **{k: _nan(d.get(k)) for k in ("fvu", "l0", "l2_ratio")}})

"""A sweep's members: the single-hookpoint suite of each hookpoint, and its folder name.

A member suite is the sweep's suite with ``model.hookpoint`` set and ``model.hookpoints``
removed, so it dumps, hashes and runs exactly as the same suite written by hand for that one
hookpoint (same run name, same stage keys, same shared caches). A checkpoint basis (``path``)
is resolved per hookpoint: ``{hookpoint}`` / ``{layer}`` in the path are filled in; otherwise a
checkpoint family (a folder, a release) is asked for its member at that hookpoint through
``autointerp.bases.families.resolve_family_member`` when that module is installed, and a
plain path is kept (a folder of per-hookpoint subfolders is then matched by the loader)."""

from __future__ import annotations

import re
from typing import Any

from autointerp.config import SAFE_NAME, Suite, suite_from_dict

_LAYER = re.compile(r"(?:^blocks|layers|\bh)\.(\d+)(?:\.|$|:)")


def layer_of(hookpoint: str) -> int | None:
    """The decoder layer a hookpoint name points into (``blocks.L.*`` or ``*.layers.L.*``),
    or None when the name does not say."""
    m = _LAYER.search(hookpoint)
    return int(m.group(1)) if m else None


def hookpoint_folder(hookpoint: str) -> str:
    """The member run's folder name: the hookpoint itself when it is a safe name, else with
    every other character replaced by ``_`` (``model.layers.3.mlp.down_proj:input`` ->
    ``model.layers.3.mlp.down_proj_input``)."""
    if re.match(SAFE_NAME, hookpoint):
        return hookpoint
    return re.sub(r"[^A-Za-z0-9._-]", "_", hookpoint).lstrip("._-")[:128] or "hookpoint"


def member_path(path: str, hookpoint: str, fmt: str | None) -> str:
    """The checkpoint of a basis ``path`` at ``hookpoint`` (see the module docstring)."""
    if "{hookpoint}" in path or "{layer}" in path:
        layer = layer_of(hookpoint)
        return path.replace("{hookpoint}", hookpoint).replace(
            "{layer}", "" if layer is None else str(layer)
        )
    try:
        from autointerp.bases.families import resolve_family_member  # type: ignore[import-not-found]
    except ImportError:
        return path
    return str(resolve_family_member(path, hookpoint, fmt))


def member_suite(suite: Suite, hookpoint: str) -> Suite:
    """The single-hookpoint suite of one member of the sweep ``suite``."""
    d: dict[str, Any] = suite.model_dump()
    d["model"].pop("hookpoints", None)
    d.pop("circuits", None)  # a sweep-level stage: members are plain single-hookpoint runs
    d["model"]["hookpoint"] = hookpoint
    for b in d["bases"]:
        if b.get("path"):
            b["path"] = member_path(b["path"], hookpoint, b.get("format"))
    return suite_from_dict(d, f"suite {suite.name!r} at hookpoint {hookpoint}")


def member_suites(suite: Suite) -> dict[str, Suite]:
    """Hookpoint -> its member suite, in the sweep's order (a single-hookpoint suite: itself)."""
    names = suite.model.sweep_hookpoints
    if names is None:
        return {suite.model.hookpoint: suite}
    folders = [hookpoint_folder(h) for h in names]
    if len(set(folders)) != len(folders):
        from autointerp.errors import ConfigError

        raise ConfigError(
            f"model.hookpoints {names} give clashing folder names {folders}; rename them"
        )
    return {h: member_suite(suite, h) for h in names}

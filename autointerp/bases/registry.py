"""Third-party checkpoint formats through the entry-point group ``autointerp.bases``.

An entry point names either

* an object (class, instance or module) with ``detect(path: Path) -> bool`` and
  ``load(path: Path, cfg: dict) -> Basis``, or
* a loader callable ``(path, cfg) -> Basis`` carrying a ``detect`` attribute.

The entry-point name is the format name (``format="NAME"`` forces it). ``cfg`` holds
``{"format": NAME, "device": str | None}``; the plugin reads its own files from ``path``.
:func:`autointerp.bases.checkpoints.load_checkpoint` tries the built-in formats first (the
``BUILTIN`` table of :mod:`autointerp.bases.formats`; their names and aliases win over a plugin
of the same name), then every plugin's ``detect``. Plugins can also be registered in-process with
:func:`register_plugin`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "autointerp.bases"


@dataclass(frozen=True)
class Plugin:
    name: str
    detect: Callable[[Path], bool]
    load: Callable[[Path, dict], Any]
    origin: str = ""


_MANUAL: dict[str, Plugin] = {}


def register_plugin(
    name: str, detect: Callable[[Path], bool], load: Callable[[Path, dict], Any]
) -> None:
    """Register a format in this process (no packaging needed)."""
    _MANUAL[name] = Plugin(name, detect, load, "register_plugin")


def _as_plugin(name: str, obj: Any, origin: str) -> Plugin | None:
    detect = getattr(obj, "detect", None)
    load = getattr(obj, "load", None)
    if load is None and callable(obj) and not isinstance(obj, type):
        load = obj
    if isinstance(obj, type) and load is None:
        load = obj  # the class itself constructs from (path, cfg)
    if not callable(detect) or not callable(load):
        log.warning(
            "entry point %s (%s) in group %s ignored: needs detect(path) and load(path, cfg)",
            name,
            origin,
            ENTRY_POINT_GROUP,
        )
        return None
    return Plugin(name, detect, load, origin)


def plugins() -> dict[str, Plugin]:
    """Every available plugin by format name (entry points, then in-process ones)."""
    out: dict[str, Plugin] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:  # a broken plugin must not break the built-in formats
            log.warning("cannot import autointerp.bases plugin %s (%s): %s", ep.name, ep.value, e)
            continue
        p = _as_plugin(ep.name, obj, ep.value)
        if p is not None:
            out[ep.name] = p
    out.update(_MANUAL)
    return out


def get_plugin(name: str) -> Plugin | None:
    return plugins().get(name)


def detect_plugin(path: Path) -> str | None:
    """Name of the first plugin whose ``detect(path)`` is true."""
    for name, p in plugins().items():
        try:
            if p.detect(Path(path)):
                return name
        except Exception as e:
            log.warning("plugin %s: detect(%s) failed: %s", name, path, e)
    return None

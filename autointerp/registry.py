"""Named plug-in tables, one pattern for every kind of plug-in.

A :class:`Registry` maps names to objects (a basis kind, an explain style, a scorer, a stage).
Names come from three places, looked up in this order (the pattern of
:mod:`autointerp.llm.registry`):

* :meth:`Registry.register` in this process, usually as a decorator. Each built-in module
  registers its objects that way when it is imported.
* the built-ins (name -> the module that registers it): the module is imported the first time
  one of its names is asked for, so checking a suite's names imports no torch.
* the registry's entry-point group (``NAME = "package.module:object"`` in a third-party
  package's ``pyproject.toml``), loaded when ``NAME`` is first asked for.

An unknown name is one :class:`~autointerp.errors.ConfigError` naming the allowed ones.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from autointerp.errors import ConfigError

T = TypeVar("T")


def one_of(names: list[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    if not names:
        return "(none registered)"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


class Registry(Generic[T]):
    """Objects by name: in-process registrations, lazily imported built-ins, entry points."""

    def __init__(
        self,
        what: str,
        group: str,
        builtin: dict[str, str],
        check: Callable[[str, Any], None] | None = None,
    ) -> None:
        self.what = what  # "basis kind", "scorer", ... (for messages)
        self.group = group  # the entry-point group
        self.builtin = dict(builtin)  # name -> module registering it
        self._check = check
        self._objs: dict[str, T] = {}

    def register(
        self, name: str, obj: T | None = None, *, replace: bool = False
    ) -> Callable[[T], T] | T:
        """Register ``obj`` as ``name``; without ``obj``, a decorator that does. A taken name
        (a built-in one included) raises ``ValueError`` unless ``replace`` is true."""

        def add(o: T) -> T:
            if self._check is not None:
                self._check(name, o)
            mod = self.builtin.get(name)
            if mod and name not in self._objs and mod not in sys.modules:
                importlib.import_module(mod)  # the built-in registers itself first
            old = self._objs.get(name)
            if old is not None and old is not o and not replace:
                raise ValueError(
                    f"{self.what} {name!r} is already registered; pass replace=True to replace it"
                )
            self._objs[name] = o
            return o

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> None:
        """Forget an in-process registration (a built-in comes back on its next use)."""
        self._objs.pop(name, None)

    def _entry_points(self) -> dict[str, Any]:
        return {ep.name: ep for ep in entry_points(group=self.group)}

    def names(self) -> list[str]:
        """Every name :meth:`get` accepts: the built-ins first, then the others sorted."""
        extra = (set(self._objs) | set(self._entry_points())) - set(self.builtin)
        return [*self.builtin, *sorted(extra)]

    def is_known(self, name: str) -> bool:
        """True when ``name`` is registered, built in or an entry point (imports nothing)."""
        return name in self._objs or name in self.builtin or name in self._entry_points()

    def unknown_message(self, name: str) -> str:
        return f"unknown {self.what} {name!r}; use {one_of([repr(n) for n in self.names()])}"

    def get(self, name: str) -> T:
        """The object registered as ``name``, importing its module or entry point first."""
        obj = self._objs.get(name)
        if obj is not None:
            return obj
        if name in self.builtin:
            importlib.import_module(self.builtin[name])
            if name not in self._objs:
                raise ConfigError(f"{self.builtin[name]} did not register {self.what} {name!r}")
            return self._objs[name]
        ep = self._entry_points().get(name)
        if ep is None:
            raise ConfigError(self.unknown_message(name))
        try:
            obj = ep.load()
        except Exception as e:
            raise ConfigError(
                f"cannot import {self.what} {name!r} ({self.group} entry point {ep.value}): "
                f"{type(e).__name__}: {e}"
            ) from e
        self.register(name, obj)
        return self._objs[name]

    def loaded(self) -> dict[str, T]:
        """Every object by name (built-ins, entry points and registrations), in names() order."""
        return {n: self.get(n) for n in self.names()}

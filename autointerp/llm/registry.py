"""LLM backends by name: ``autointerp.llm.make_client`` builds a role's client from the
factory this registry holds for ``cfg.backend``.

A backend is a factory ``factory(cfg, *, cache=None, ledger=None) -> LLMClient``; an
``LLMClient`` subclass is one. Names come from three places, looked up in this order:

* :func:`register_backend` in this process, usually as a class decorator. Each built-in backend
  module registers its client that way when it is imported.
* the built-in backends of :data:`BUILTIN` (name -> module): the module is imported the first
  time its name is asked for, so importing this registry imports no torch, llama.cpp or litellm.
* the entry-point group ``autointerp.llm_backends`` of installed packages
  (``NAME = "package.module:Factory"`` in their ``pyproject.toml``), loaded when ``NAME`` is
  first asked for.

An unknown name is one :class:`~autointerp.errors.FatalLLMError` naming the allowed ones;
``LLMConfig`` checks ``backend`` against :func:`is_known` when a suite is read.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeVar, overload

from autointerp.errors import FatalLLMError

ENTRY_POINT_GROUP = "autointerp.llm_backends"

#: built-in backends: name -> the module that registers it (imported on first use)
BUILTIN: dict[str, str] = {
    "llamacpp": "autointerp.llm.llamacpp",
    "transformers": "autointerp.llm.transformers_backend",
    "openai": "autointerp.llm.openai_backend",
    "litellm": "autointerp.llm.litellm_backend",
}

#: ``factory(cfg: LLMConfig, *, cache: ResponseCache | None, ledger: Ledger | None) -> LLMClient``
#: (typed loosely here so that this module imports nothing of autointerp.llm)
BackendFactory = Callable[..., Any]

F = TypeVar("F", bound=Callable[..., Any])

_FACTORIES: dict[str, BackendFactory] = {}


@overload
def register_backend(
    name: str, factory: None = None, *, replace: bool = False
) -> Callable[[F], F]: ...
@overload
def register_backend(name: str, factory: F, *, replace: bool = False) -> F: ...
def register_backend(
    name: str, factory: F | None = None, *, replace: bool = False
) -> Callable[[F], F] | F:
    """Register ``factory`` as backend ``name``; without ``factory``, a decorator that does.

    Registering a name that is taken (a built-in one included) raises ``ValueError`` unless
    ``replace`` is true.
    """

    def add(f: F) -> F:
        if not callable(f):
            raise TypeError(f"llm backend {name!r}: {f!r} is not callable")
        if name in BUILTIN and name not in _FACTORIES and BUILTIN[name] not in sys.modules:
            importlib.import_module(BUILTIN[name])  # the built-in registers itself first
        old = _FACTORIES.get(name)
        if old is not None and old is not f and not replace:
            raise ValueError(
                f"llm backend {name!r} is already registered ({_origin(old)}); "
                "pass replace=True to replace it"
            )
        _FACTORIES[name] = f
        return f

    return add if factory is None else add(factory)


def unregister_backend(name: str) -> None:
    """Forget an in-process registration (a built-in comes back on its next use)."""
    _FACTORIES.pop(name, None)


def _origin(f: Any) -> str:
    return f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', repr(f))}"


def _entry_points() -> dict[str, Any]:
    """The group's entry points by name (nothing imported)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def backend_names() -> list[str]:
    """Every name :func:`get_backend` accepts: the built-ins first, then the others sorted."""
    extra = (set(_FACTORIES) | set(_entry_points())) - set(BUILTIN)
    return [*BUILTIN, *sorted(extra)]


def is_known(name: str) -> bool:
    """True when ``name`` is a backend (imports nothing)."""
    return name in _FACTORIES or name in BUILTIN or name in _entry_points()


def unknown_backend_message(name: str) -> str:
    names = backend_names()
    allowed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return f"unknown llm backend {name!r}; use {allowed}"


def get_backend(name: str) -> BackendFactory:
    """The factory of backend ``name``, importing its module or entry point on first use."""
    f = _FACTORIES.get(name)
    if f is not None:
        return f
    if name in BUILTIN:
        importlib.import_module(BUILTIN[name])
        if name not in _FACTORIES:
            raise FatalLLMError(f"{BUILTIN[name]} did not register llm backend {name!r}")
        return _FACTORIES[name]
    ep = _entry_points().get(name)
    if ep is None:
        raise FatalLLMError(unknown_backend_message(name))
    try:
        obj = ep.load()
    except Exception as e:
        raise FatalLLMError(
            f"cannot import llm backend {name!r} ({ENTRY_POINT_GROUP} entry point {ep.value}): "
            f"{type(e).__name__}: {e}"
        ) from e
    if not callable(obj):
        raise FatalLLMError(
            f"llm backend {name!r} ({ep.value}) is not callable; an entry point in "
            f"{ENTRY_POINT_GROUP} names a factory (cfg, *, cache, ledger) -> LLMClient"
        )
    return _FACTORIES.setdefault(name, obj)

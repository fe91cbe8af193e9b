"""The name a transformers model gives its key/value cache, across transformers versions.

transformers 5 renamed the forward argument and output field ``past_key_values`` to ``cache``
(the old keyword still works but warns with a ``FutureWarning`` on every model class it reaches,
and reading ``output.past_key_values`` logs a deprecation). Earlier versions, and models whose
forward still takes ``past_key_values``, only know the old name. Both names carry the same
object, so which one is used changes no result.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any


@functools.cache
def _cache_kwarg_of(cls: type) -> str:
    try:
        params = inspect.signature(cls.forward).parameters  # follows the decorators' __wrapped__
    except (AttributeError, TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def cache_kwarg(model: Any) -> str:
    """The keyword ``model``'s forward takes a key/value cache by: ``cache`` or
    ``past_key_values``."""
    return _cache_kwarg_of(type(model))


def returned_cache(out: Any) -> Any:
    """The key/value cache a forward pass returned (``out.cache``, else ``out.past_key_values``)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values

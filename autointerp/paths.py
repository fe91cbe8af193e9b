"""Where autointerp keeps what it caches on disk (no imports from the rest of the package, so
any module can ask)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$AUTOINTERP_CACHE_DIR`` or the user cache dir (dequantised models, activations, LLM
    response cache)."""
    import platformdirs

    p = Path(os.environ.get("AUTOINTERP_CACHE_DIR") or platformdirs.user_cache_dir("autointerp"))
    p.mkdir(parents=True, exist_ok=True)
    return p

"""The page of the static feature browser (``templates/browser.html.j2`` with its CSS and JS;
``browser.py`` writes its data chunks).

No network and no external JS/CSS; all run text (explanations, tokens, names) is put into the
page with ``textContent`` only. URL hash (for links and headless tests): ``q`` (search: every
word must occur in the basis, id, ``basis:id``, explanation or top tokens), ``sort`` (``score``,
``lift``, ``density``, ``feature``), ``dir`` (``asc``/``desc``), ``m`` (simulation method),
``page`` (0-based) and ``open`` (``basis:id``, the feature whose panel is open). The page sets
``data-ready="1"`` on <html> once every list chunk is in, and ``data-open="basis:id"`` once
that feature's panel shows its detail.
"""

from __future__ import annotations

import json
from typing import Any

from autointerp.report.templating import render


def render_index(meta: dict[str, Any]) -> str:
    """index.html of the browser; ``meta`` (see ``browser.write_browser``) is embedded as JSON."""
    data = json.dumps(meta, separators=(",", ":"), allow_nan=False, default=str)
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    title = f"features of {meta['run']}"
    sub = [
        str(x)
        for x in (
            meta.get("model"),
            meta.get("hookpoint"),
            f"{meta['n_rows']} features with records",
            "bases: " + ", ".join(b["name"] for b in meta["bases"]),
            f"score: simulation/{meta['sim_variant']}; lift: score minus its shuffled null",
        )
        if x
    ]
    heads = [
        ("basis", None),
        ("id", "feature"),
        ("score", "score"),
        ("lift", "lift"),
        ("density", "density"),
        ("explanation", None),
        ("top tokens", None),
    ]
    links = meta.get("attribute") or []
    return render("browser.html.j2", title=title, sub=sub, heads=heads, meta_json=data, links=links)

"""First-letter absorption in the feature browser (docs/absorption.md): per latent that is a
main first-letter latent of its basis, its letter and the words it misses with the latents that
absorb them; per absorbing latent, the words it absorbs and from which main latents.

Read from ``columns/absorption.json`` (``extra.details[basis].latents``, written by the
absorption stage). The latents named there are mostly not among the recorded features, so
each one without a record gets a list row of its own (no windows, no scores): every name in the
panel is a link that opens a row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: absorbed words listed per absorbing latent
MAX_ABSORBED = 20


def absorption_panels(run_dir: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """Per (basis, latent): ``{"main": {...}}`` for a main first-letter latent (letter, cosine
    with the probe direction, words missed with their absorbers) and ``{"absorbs": [...]}``
    for a latent that absorbs a letter (word, letter, fraction, full, the main latents)."""
    from autointerp.columns import load_columns

    out: dict[tuple[str, int], dict[str, Any]] = {}
    for cols in load_columns(run_dir):
        if cols.stage != "absorption":
            continue
        for basis, res in (cols.extra.get("details") or {}).items():
            for lat, d in ((res or {}).get("latents") or {}).items():
                main = int(lat)
                out.setdefault((basis, main), {})["main"] = {
                    "letter": d.get("letter", ""),
                    "cos": d.get("cos"),
                    "n_missed": d.get("n_missed", 0),
                    "missed": d.get("missed") or [],
                }
                for m in d.get("missed") or []:
                    for a in m.get("absorbers") or []:
                        lst = out.setdefault((basis, int(a)), {}).setdefault("absorbs", [])
                        row = next((x for x in lst if x["word"] == m.get("word")), None)
                        if row is None and len(lst) < MAX_ABSORBED:
                            lst.append({"word": m.get("word", ""), "letter": d.get("letter", ""),
                                        "fraction": m.get("fraction"), "full": m.get("full"),
                                        "main": [main]})  # fmt: skip
                        elif row is not None and main not in row["main"]:
                            row["main"].append(main)
    return out


def status_of(panel: dict[str, Any]) -> str:
    """The list row's text for a latent that has no record (shown in place of an
    explanation)."""
    if "main" in panel:
        return f'main latent of first letter "{panel["main"]["letter"]}", no record'
    letters = sorted({a["letter"] for a in panel.get("absorbs") or []})
    return f"absorbs first letter {', '.join(letters)}, no record"


def tags_of(panel: dict[str, Any] | None) -> str:
    """Search words of a latent's absorption role (``letter:s main`` / ``absorbs:s``)."""
    if not panel:
        return ""
    tags = []
    if "main" in panel:
        tags.append(f"letter:{panel['main']['letter']} main-latent")
    tags += sorted({f"absorbs:{a['letter']}" for a in panel.get("absorbs") or []})
    return " ".join(tags)

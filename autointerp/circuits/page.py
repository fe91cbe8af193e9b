"""The files of one ``autointerp attribute`` question: ``RUN/attribute/<slug>.md`` and
``<slug>.html`` (template ``report/templates/attribute.html.j2``), the top features of every
hookpoint's bases by ``delta(good) - delta(bad)`` with their explanations and simulation
scores; each feature with a record links to its page in its run's feature browser
(``<member>/browser/index.html#open=basis:id``), whose index links back to the pages
(:func:`pages_of`)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from autointerp.report.templating import render
from autointerp.results import atomic_write_text

DIR = "attribute"


def slug(prompt: str, good: str, bad: str) -> str:
    """A file name for the question: the two completions' words and a hash of all three."""
    words = re.sub(r"[^A-Za-z0-9]+", "-", f"{good} vs {bad}").strip("-").lower()[:40]
    h = hashlib.sha256("\0".join((prompt, good, bad)).encode()).hexdigest()[:8]
    return f"why-{words or 'completion'}-{h}"


def sim_scores(run_dir: Path) -> dict[tuple[str, int], float]:
    """(basis, feature) -> the explanation's simulation score (variant ``top_and_random``,
    the first method by name; scores that are not ok are left out)."""
    p = run_dir / "scores.parquet"
    if not p.exists():
        return {}
    import polars as pl

    from autointerp.report.columns import SIM_VARIANT

    s = pl.read_parquet(p)
    need = {"scorer", "variant", "value", "status"}
    if not need <= set(s.columns):
        return {}
    s = s.filter(
        (pl.col("scorer") == "simulation")
        & (pl.col("variant") == SIM_VARIANT)
        & (pl.col("status") == "ok")
        & pl.col("value").is_not_null()
    )
    if "null" in s.columns:
        s = s.filter(pl.col("null").fill_null("") == "")
    if "method" in s.columns:
        s = s.sort(["basis", "feature", "method"])
    out: dict[tuple[str, int], float] = {}
    for b, f, v in s.select(["basis", "feature", "value"]).iter_rows():
        out.setdefault((b, int(f)), float(v))
    return out


def feature_href(folder: str, basis: str, feat: int) -> str:
    """The feature's page in a run's browser, relative to ``RUN/attribute/`` (``folder``: the
    member run's folder below the run, "" for the run itself)."""
    base = "../" + (quote(folder) + "/" if folder else "")
    return f"{base}browser/index.html#open={quote(f'{basis}:{feat}')}"


def section(
    hookpoint: str,
    folder: str,
    ranked: dict[str, list[tuple[int, float]]],
    explanations: dict[tuple[str, int], str],
    scores: dict[tuple[str, int], float],
    top: int,
) -> dict[str, Any]:
    """One hookpoint's rows per basis (``ranked``: every feature, largest ``|delta|`` first):
    the ``top`` features, then the ``top`` explained features with their rank among all
    (``explained``; only they have records, hence browser pages). A row: rank, feature,
    delta, explanation, score and the link (None for a feature without a record)."""

    def row(b: str, k: int, i: int, d: float) -> dict[str, Any]:
        return {
            "rank": k,
            "feature": i,
            "delta": d,
            "explanation": explanations.get((b, i), ""),
            "score": scores.get((b, i)),
            "href": feature_href(folder, b, i) if (b, i) in explanations else None,
        }

    bases, explained = {}, {}
    for b, order in ranked.items():
        bases[b] = [row(b, k, i, d) for k, (i, d) in enumerate(order[:top], 1)]
        ex = [(k, i, d) for k, (i, d) in enumerate(order, 1) if (b, i) in explanations]
        explained[b] = [row(b, k, i, d) for k, i, d in ex[:top]]
    return {"hookpoint": hookpoint, "folder": folder, "bases": bases, "explained": explained}


def _cell(s: str) -> str:
    return s.replace("|", "/").replace("\n", " ")


def _table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| rank | feature | delta | score | explanation |", "|---|---|---|---|---|"]
    for r in rows:
        sc = "" if r["score"] is None else f"{r['score']:.3f}"
        e = _cell(r["explanation"]) or "(not explained)"
        out.append(f"| {r['rank']} | {r['feature']} | {r['delta']:+.4g} | {sc} | {e} |")
    return out


def render_md(sections: list[dict[str, Any]], prompt: str, good: str, bad: str) -> str:
    """The question's markdown (the same rows as the page)."""
    lines = [
        f"# Why {good!r} rather than {bad!r}?",
        "",
        f"Prompt: {prompt!r}. delta = OpenAI (2025) latent attribution summed over the good "
        "completion minus the bad one (docs/circuits.md); positive: the feature makes the model "
        "prefer the good completion. score: the explanation's simulation score.",
    ]
    for sec in sections:
        if len(sections) > 1:
            lines += ["", f"## {sec['hookpoint']}"]
        for b, rows in sec["bases"].items():
            lines += ["", f"{'###' if len(sections) > 1 else '##'} {b}", ""]
            lines += _table(rows)
            ex = sec.get("explained", {}).get(b) or []
            if ex:
                lines += ["", "Explained features, by rank among all:", "", *_table(ex)]
    return "\n".join(lines) + "\n"


def write_pages(
    run_dir: Path, sections: list[dict[str, Any]], prompt: str, good: str, bad: str, name: str
) -> tuple[Path, Path]:
    """``RUN/attribute/<name>.md`` and ``.html`` (atomic); returns both paths."""
    out = Path(run_dir) / DIR
    out.mkdir(parents=True, exist_ok=True)
    md, html = out / f"{name}.md", out / f"{name}.html"
    atomic_write_text(md, render_md(sections, prompt, good, bad))
    title = f"Why {good!r} rather than {bad!r}?"
    page = render(
        "attribute.html.j2",
        title=title,
        prompt=prompt,
        good=good,
        bad=bad,
        sections=sections,
        md=md.name,
    )
    atomic_write_text(html, page)
    return md, html


def pages_of(run_dir: Path) -> list[dict[str, str]]:
    """The attribute pages a run's browser links to (``href`` relative to
    ``RUN/browser/``, ``title``): the run's own, and its sweep's (the parent folder holding a
    ``sweep.json``)."""
    run_dir = Path(run_dir)
    found = [(run_dir / DIR, "../" + DIR)]
    if (run_dir.parent / "sweep.json").exists():
        found.append((run_dir.parent / DIR, "../../" + DIR))
    out = []
    for d, rel in found:
        for p in sorted(d.glob("*.html")):
            m = re.search(r"<title>(.*?)</title>", p.read_text(errors="replace"), re.S)
            out.append({"href": f"{rel}/{quote(p.name)}", "title": m.group(1) if m else p.stem})
    return out

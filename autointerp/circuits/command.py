"""``autointerp attribute``: which features of a finished run's bases make the model prefer one
completion to another (:mod:`autointerp.circuits.attribute`), with their explanations and
scores: printed as markdown and written as ``RUN/attribute/<name>.md`` / ``.html`` (a sweep:
every member's hookpoint on one page), linked from the run's feature browser
(:mod:`autointerp.circuits.page`).

A finished run does not store its bases in the run directory: they are loaded back through the
suite's stage cache (the stages ``tokens``, ``split``, ``activations`` and ``bases`` of the
run's own ``suite.json``, under the same work dir), which reads them from the cache when the
run was made on this machine and recomputes them (minutes) otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autointerp.errors import AutointerpError

NEEDED = ("tokens", "split", "activations", "bases")


def load_run_bases(
    run_dir: str | Path, work_dir: str | Path | None = None, subject_model: Any = None
) -> dict[str, Any]:
    """The run's subject model (``sm``; ``subject_model`` when given, else loaded),
    hookpoint (``hp``), ``bases``, mean activation at the hookpoint over up to 256 rows'
    non-special tokens (``mean``), its features table (``features``: (basis, feature) ->
    explanation) and the ``tokens`` rows, ``split`` and ``acts`` it was made from."""
    from autointerp.config import suite_from_dict
    from autointerp.run.runner import Runner
    from autointerp.stages import suite_stages
    from autointerp.stages.env import SuiteEnv, llm_cache_path, suite_store

    rd = Path(run_dir)
    sj = rd / "suite.json"
    if not sj.exists():
        subs = sorted(p.parent.name for p in rd.glob("*/suite.json"))
        hint = f"; pass one member run, e.g. {rd / subs[0]}" if subs else ""
        raise AutointerpError(f"attribute: {rd} holds no suite.json (not a finished run){hint}")
    suite = suite_from_dict(json.loads(sj.read_text()), str(sj))
    _, store = suite_store(suite, run_dir=rd, work_dir=work_dir)
    env = SuiteEnv(suite, store, progress=False, llm_cache=llm_cache_path(None))
    if subject_model is not None:
        env._sm = subject_model
    runner = Runner([s for s in suite_stages() if s.name in NEEDED], store, env, progress=False)
    vals = runner.run()
    acts, split = vals["activations"].acts, vals["split"]
    rows = np.asarray(split.all_rows)[:256]
    a = np.asarray(acts[rows])
    mean = torch.from_numpy(a[~split.mask[rows]].mean(0)).float()
    return {
        "sm": env.sm,
        "hp": env.sm.hookpoint(suite.model.hookpoint),
        "bases": vals["bases"],
        "mean": mean,
        "features": _explanations(rd),
        "tokens": vals["tokens"].ids,
        "split": split,
        "acts": acts,
        "run_dir": rd,
    }


def _explanations(rd: Path) -> dict[tuple[str, int], str]:
    p = rd / "features.parquet"
    if not p.exists():
        return {}
    import polars as pl

    df = pl.read_parquet(p)
    return {
        (r["basis"], int(r["feature"])): r["explanation"] or "" for r in df.iter_rows(named=True)
    }


def ranked(loaded: dict[str, Any], prompt: str, good: str, bad: str) -> dict:
    """Per basis, every feature by ``|delta(good) - delta(bad)|``: ``[(feature, delta)]``."""
    from autointerp.circuits.attribute import rank

    r = rank(loaded["sm"], loaded["hp"], loaded["bases"], prompt, good, bad, loaded["mean"])
    out = {}
    for name, d in r.items():
        order = torch.argsort(-d.abs(), stable=True)
        out[name] = [(int(i), float(d[i])) for i in order.tolist()]
    return out


def _section(loaded: dict[str, Any], folder: str, prompt: str, good: str, bad: str, top: int):
    from autointerp.circuits.page import section, sim_scores

    return section(
        loaded["hp"].name,
        folder,
        ranked(loaded, prompt, good, bad),
        loaded["features"],
        sim_scores(Path(loaded["run_dir"])),
        top,
    )


def attribute_md(loaded: dict[str, Any], prompt: str, good: str, bad: str, top: int = 10) -> str:
    """The top features of every basis by ``delta(good) - delta(bad)`` as markdown."""
    from autointerp.circuits.page import render_md

    return render_md([_section(loaded, "", prompt, good, bad, top)], prompt, good, bad)


def members(run_dir: Path) -> list[Path]:
    """The run itself, or a sweep's member runs (folders with a ``suite.json``)."""
    if (run_dir / "suite.json").exists() and not (run_dir / "sweep.json").exists():
        return [run_dir]
    subs = sorted(p.parent for p in run_dir.glob("*/suite.json"))
    if (run_dir / "sweep.json").exists() and subs:
        return subs
    hint = f"; pass one run, e.g. {subs[0]}" if subs else ""
    raise AutointerpError(f"attribute: {run_dir} holds no suite.json (not a finished run){hint}")


def attribute(
    run_dir: str | Path,
    prompt: str,
    good: str,
    bad: str,
    *,
    top: int = 10,
    work_dir: str | Path | None = None,
    name: str | None = None,
    write: bool = True,
) -> tuple[str, list[Path]]:
    """The question's markdown over every member of ``run_dir`` (a run or a sweep); with
    ``write``, also ``RUN/attribute/<name>.md`` / ``.html`` and the members' browsers (whose
    index then links to the page). Returns the markdown and the written paths."""
    from autointerp.circuits.page import render_md, slug, write_pages

    rd = Path(run_dir)
    sm = None
    sections = []
    for m in members(rd):
        loaded = load_run_bases(m, work_dir, sm)
        sm = loaded["sm"]
        sections.append(_section(loaded, "" if m == rd else m.name, prompt, good, bad, top))
        del loaded
    md = render_md(sections, prompt, good, bad)
    if not write:
        return md, []
    from autointerp.report.browser import write_browser

    paths = list(write_pages(rd, sections, prompt, good, bad, name or slug(prompt, good, bad)))
    paths += [write_browser(m) for m in members(rd) if (m / "manifest.json").exists()]
    return md, paths


def _cmd(args: argparse.Namespace) -> int:
    md, paths = attribute(
        args.run,
        args.prompt,
        args.good,
        args.bad,
        top=args.top,
        work_dir=args.work_dir,
        name=args.name,
        write=not args.no_page,
    )
    print(md, end="")
    for p in paths[:2]:
        print(f"wrote {p}", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "attribute",
        help="which features make the model prefer one completion to another",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--run", required=True, help="a finished run directory (results/SUITE/RUN)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--good", required=True, help="the completion to explain (e.g. ' Mary')")
    p.add_argument("--bad", required=True, help="the completion to compare with (' John')")
    p.add_argument("--top", type=int, default=10, help="features shown per basis")
    p.add_argument("--work-dir", default=None, help="the run's work dir, if not the default")
    p.add_argument("--name", default=None, help="file name of the page (default: from the words)")
    p.add_argument(
        "--no-page", action="store_true", help="print only; write no page under RUN/attribute/"
    )
    p.set_defaults(func=_cmd)

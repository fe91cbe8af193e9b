"""``autointerp attribute``: which features of a finished run's bases make the model prefer one
completion to another (:mod:`autointerp.circuits.attribute`), with their explanations.

A finished run does not store its bases in the run directory: they are loaded back through the
suite's stage cache (the stages ``tokens``, ``split``, ``activations`` and ``bases`` of the
run's own ``suite.json``, under the same work dir), which reads them from the cache when the
run was made on this machine and recomputes them (minutes) otherwise.
"""

from __future__ import annotations

import argparse
import json
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


def attribute_md(loaded: dict[str, Any], prompt: str, good: str, bad: str, top: int = 10) -> str:
    """The top features of every basis by ``delta(good) - delta(bad)`` as markdown."""
    from autointerp.circuits.attribute import rank

    r = rank(loaded["sm"], loaded["hp"], loaded["bases"], prompt, good, bad, loaded["mean"])
    ex = loaded["features"]
    lines = [
        f"# Why {good!r} rather than {bad!r}?",
        "",
        f"Prompt: {prompt!r}; hookpoint `{loaded['hp'].name}`. delta = OpenAI (2025) latent "
        "attribution summed over the good completion minus the bad one (docs/circuits.md); "
        "positive: the feature makes the model prefer the good completion.",
    ]
    for name, d in r.items():
        lines += [
            "",
            f"## {name}",
            "",
            "| rank | feature | delta | explanation |",
            "|---|---|---|---|",
        ]
        order = torch.argsort(-d.abs(), stable=True)[:top]
        for k, i in enumerate(order.tolist(), 1):
            e = ex.get((name, i), "").replace("|", "/").replace("\n", " ") or "(not explained)"
            lines.append(f"| {k} | {i} | {float(d[i]):+.4g} | {e} |")
    return "\n".join(lines) + "\n"


def _cmd(args: argparse.Namespace) -> int:
    loaded = load_run_bases(args.run, args.work_dir)
    print(attribute_md(loaded, args.prompt, args.good, args.bad, args.top), end="")
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
    p.set_defaults(func=_cmd)

"""The ``run`` and ``score`` commands: parse, build a suite, call
:func:`autointerp.pipeline.run_suite`, print the leaderboard, its flags and the stage summary."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from autointerp.config import Suite, load_suite, suite_from_dict
from autointerp.errors import ConfigError


def run_suite(*args: Any, **kwargs: Any) -> Path:
    from autointerp.pipeline import run_suite as run

    return run(*args, **kwargs)


def _cmd_run(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite)
    if args.set:
        suite = with_overrides(suite, args.set, str(args.suite))
    rd = run_suite(
        suite,
        results_root=args.results,
        run_name=args.run,
        work_dir=args.work_dir,
        force=tuple(args.force or ()),
        progress=not args.quiet,
        retry_failed=args.retry_failed,
        max_cost=args.max_cost,
        executor=args.executor,
        address=args.address,
    )
    _print_summary(rd)
    return 0


def with_overrides(suite: Suite, sets: list[str], source: str) -> Suite:
    """``suite`` with ``--set FIELD=VALUE`` overrides, its ``[run]`` section included (it is
    left out of the suite's dump and config hash)."""
    d = {**suite.model_dump(), "run": suite.run.model_dump()}
    return suite_from_dict(_apply_overrides(d, sets), source)


def _print_summary(rd: Path) -> None:
    """The leaderboard, its sanity flags and the per-stage time summary of this invocation
    (stage, seconds, computed / cached / reused from another run)."""
    print((rd / "leaderboard.md").read_text())
    if (rd / "sweep.json").is_file():  # a sweep's root: its members print their own
        from autointerp.sweep.summary import print_sweep_summary

        print_sweep_summary(rd)
        return
    from autointerp.report import leaderboard_table, load_run

    board = leaderboard_table([load_run(rd)])
    for df in board.groups.values():
        for r in df.iter_rows(named=True):
            if r.get("flag"):
                print(f"FLAG {r['basis']} ({r['method']}): {r['flag']}")
    from autointerp.run.runner import format_summary

    m = json.loads((rd / "manifest.json").read_text())
    print(format_summary(m.get("stages") or [], m["this_invocation_s"], m.get("peak_rss_mib")))
    reused = reused_lines(m.get("stages") or [])
    if reused:
        print("reused from earlier runs (per basis):")
        print("\n".join(reused))
    print(f"results in {rd.resolve()}")


def reused_lines(stages: list[dict[str, Any]]) -> list[str]:
    """``  stage: item, item`` for each stage that reused items another run computed (item
    names without the stage prefix: the basis labels of per-basis items)."""
    out = []
    for row in stages:
        items = row.get("reused_items") or []
        if items:
            pre = f"{row['stage']}-"
            names = [i[len(pre) :] for i in items if i.startswith(pre)]
            unnamed = len(items) - len(names)  # items named by the stage alone (density)
            names += [f"{unnamed} item{'s' * (unnamed > 1)}"] if unnamed else []
            out.append(f"  {row['stage']}: {', '.join(names)}")
    return out


def _apply_overrides(d: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """``a.b.c=value`` overrides (value parsed as TOML, else a string)."""
    import tomllib

    for s in sets:
        if "=" not in s:
            raise ConfigError(f"--set {s!r}: expected FIELD=VALUE, e.g. records.n_features=8")
        k, v = s.split("=", 1)
        try:
            val = tomllib.loads(f"v = {v}")["v"]
        except tomllib.TOMLDecodeError:
            val = v
        cur = d
        parts = k.split(".")
        for p in parts[:-1]:
            if not isinstance(cur.get(p), dict):
                raise ConfigError(f"--set {k}: {p!r} is not a section of the suite")
            cur = cur[p]
        cur[parts[-1]] = val
    return d


def _cmd_score(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite) if args.suite else Suite()
    d = suite.model_dump()
    d["name"] = args.name or "score"
    d["model"]["name"] = args.model or d["model"]["name"]
    hookpoint = args.hookpoint
    if not hookpoint:
        from autointerp.bases.checkpoints import load_checkpoint

        hookpoint = load_checkpoint(args.checkpoint, args.format, device="cpu").info.get(
            "hookpoint"
        )
        if not hookpoint:
            raise ConfigError(
                f"{args.checkpoint} records no hookpoint: pass --hookpoint, e.g. "
                "--hookpoint blocks.6.hook_resid_post"
            )
    d["model"]["hookpoint"] = hookpoint
    bases = [
        {
            "kind": "sae",
            "name": args.basis_name or Path(str(args.checkpoint)).name or "sae",
            "path": str(args.checkpoint),
            "format": args.format,
            "allow_mismatch": args.allow_mismatch,
        }
    ]
    if args.baselines:
        bases += [{"kind": k} for k in ("pca", "ica", "neurons")]
    bases.append({"kind": "random"})
    d["bases"] = bases
    if args.set:
        d = _apply_overrides(d, args.set)
    from autointerp.pipeline import SuiteRun

    run = SuiteRun(
        suite_from_dict(d, "autointerp score"),
        results_root=args.results,
        run_name=args.run,
        work_dir=args.work_dir,
        progress=not args.quiet,
        retry_failed=args.retry_failed,
        max_cost=args.max_cost,
    )
    # the results path up front (absolute: --results is relative to the current directory);
    # stages an earlier run with the same inputs computed are reused from the work dir
    print(f"writing results to {run.store.run_dir.resolve()}", flush=True)
    print(f"reusing earlier runs' stages from {run.store.work_dir.resolve()}", flush=True)
    _print_summary(run.run())
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", default="results", help="results root (default: results)")
    p.add_argument("--run", default=None, help="run name (default: run-<config hash>)")
    p.add_argument("--work-dir", default=None, help="heavy artifacts (default: user cache)")
    p.add_argument(
        "--set",
        action="append",
        metavar="FIELD=VALUE",
        help="override a suite field, e.g. --set records.n_features=8",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="ask the LLM again for items that failed (transient errors, unparsable answers)",
    )
    p.add_argument(
        "--max-cost",
        type=float,
        default=None,
        metavar="USD",
        help="stop cleanly once this run's paid LLM calls cost USD (finished items are kept; "
        "rerun with a higher cap to continue)",
    )


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run a benchmark suite (TOML) end to end")
    p.add_argument("suite", help="suite file, e.g. evals/default.toml ('default' = bundled)")
    p.add_argument(
        "--force",
        action="append",
        metavar="STAGE",
        help="redo a stage: tokens, activations, bases, metrics, records, explain, score, "
        "report, or a plug-in stage's name",
    )
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default=None,
        help="where a sweep's members and a suite's per-basis items run: local (here, in order; "
        "the default) or ray (Ray tasks; needs pip install 'autointerp[ray]'); default: the "
        "suite's [run] executor",
    )
    p.add_argument(
        "--address",
        default=None,
        help="a running Ray cluster to use with --executor ray (e.g. auto, host:6379)",
    )
    _common(p)
    p.set_defaults(func=_cmd_run)
    s = sub.add_parser("score", help="score one SAE checkpoint with the suite's defaults")
    s.add_argument("checkpoint", help="checkpoint dir/file or hf://owner/repo[/subfolder]")
    s.add_argument("--model", default=None, help="subject model (default: the suite's)")
    s.add_argument("--hookpoint", default=None, help="hookpoint (default: the checkpoint's)")
    s.add_argument("--format", default=None, help="checkpoint format (default: detected)")
    s.add_argument("--suite", default=None, help="suite whose defaults to use")
    s.add_argument("--name", default=None, help="suite name for results (default: score)")
    s.add_argument("--basis-name", default=None, help="row label (default: folder name)")
    s.add_argument("--baselines", action="store_true", help="also score PCA, ICA and neurons")
    s.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="score even if the checkpoint records another model/hookpoint",
    )
    _common(s)
    s.set_defaults(func=_cmd_score)

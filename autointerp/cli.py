"""Command line: a thin layer that parses, builds a config and calls the library.

Each command lives in the module that implements it, which exposes ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from autointerp.errors import AutointerpError, FatalLLMError

# module -> registers one or more subcommands (each sets ``func`` via set_defaults)
COMMAND_MODULES = [
    "autointerp.commands",  # run, score
    "autointerp.train",  # train-sae
    "autointerp.bases.inspect",  # inspect
    "autointerp.report.command",  # leaderboard
    "autointerp.report.browser",  # browse
    "autointerp.report.docgen",  # docs
    "autointerp.export.command",  # export, card
    "autointerp.circuits.command",  # attribute
    "autointerp.run.progress",  # status
]


DESCRIPTION = """\
Does a feature of a language model mean something? autointerp collects the text where each
feature of a basis fires (SAE latents, PCA / ICA directions, raw neurons, and random directions
as a null), has an LLM explain each feature, has an LLM predict the feature's activations from
that explanation alone, and scores the match. Reconstruction, sparsity and CE-loss / KL metrics
and the scores of null rows go into the same table. Runs offline on a CPU with the bundled
model; point the explainer / simulator at any OpenAI-compatible endpoint for stronger judges."""

EPILOG = """\
examples:
  autointerp run evals/default.toml           the default suite (tens of minutes cold on 2 cores)
  autointerp run evals/default.toml --set records.n_features=8 --run quick
  autointerp score hf://owner/repo/layer_6 --baselines
                                              one SAE checkpoint vs PCA, ICA, neurons, random
  autointerp inspect path/to/sae              what a checkpoint holds
  autointerp leaderboard results --format html --out board.html
  autointerp browse results/default/RUN    a feature browser: RUN/browser/index.html
  autointerp docs --check                  README / docs numbers vs the committed runs
  autointerp export results/default/RUN out/ --to saebench    (or --to neuronpedia)
  autointerp card results/default/RUN      a one-page results card: RUN/card.md
  autointerp status results/default/RUN    progress per member, stage and task (while it runs)

results: each run writes results/<suite>/<run>/ (change the root with --results): the
leaderboard (leaderboard.md, leaderboard.html), manifest.json, and the scores, metrics and
per-feature explanations as parquet files. A rerun resumes where the last one stopped; a
finished run reruns with no LLM calls. Heavy artifacts (activations, trained SAEs) are cached
in $AUTOINTERP_CACHE_DIR (default: the user cache dir).

Run 'autointerp COMMAND --help' for the options of a command. Definitions of every score and
metric: the docs/ folder of the source tree."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="autointerp",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    for mod in COMMAND_MODULES:
        importlib.import_module(mod).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except (AutointerpError, FatalLLMError) as e:
        msg = " ".join(str(e).split("\n")[0].split()) if isinstance(e, FatalLLMError) else e
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except OSError as e:
        from autointerp.journal import disk_error

        print(f"error: {disk_error(e, e.filename or 'a results or cache file')}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

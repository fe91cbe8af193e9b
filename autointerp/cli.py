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
    "autointerp.pipeline",  # run, score
    "autointerp.train",  # train-sae
    "autointerp.bases.inspect",  # inspect
    "autointerp.report",  # leaderboard
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="autointerp", description=__doc__)
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

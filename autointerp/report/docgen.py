"""``autointerp docs [--check]``: the numbers in README.md and docs/*.md regenerated from the
committed runs.

Two marker forms, in any markdown file it reads:

- a block, on lines of their own::

      <!-- autointerp:table NAME ARGS -->
      ...generated markdown...
      <!-- /autointerp:table -->

- an inline cell in prose: ``<!-- autointerp:cell RUN BASIS COLUMN [method=M] [ci] -->0.256<!--
  /autointerp:cell -->``.

NAME is a generator of :mod:`autointerp.report.doc_tables`; ARGS are words, ``key=value`` ones
are options. ``docs`` rewrites what is between the markers (files written atomically, only when
something changed); ``docs --check`` rewrites nothing and exits 1 listing every section whose
text differs from what the committed runs give.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autointerp.errors import AutointerpError
from autointerp.report.doc_tables import GENERATORS, Context, cell_value
from autointerp.results import atomic_write_text

_BLOCK = re.compile(
    r"(?P<open>^[ \t]*<!--\s*autointerp:table\s+(?P<spec>[^>]*?)\s*-->[ \t]*\n)"
    r"(?P<body>.*?)"
    r"(?P<close>^[ \t]*<!--\s*/autointerp:table\s*-->)",
    re.S | re.M,
)
_CELL = re.compile(
    r"(?P<open><!--\s*autointerp:cell\s+(?P<spec>[^>]*?)\s*-->)(?P<body>.*?)"
    r"(?P<close><!--\s*/autointerp:cell\s*-->)",
    re.S,
)
_ANY_OPEN = re.compile(r"<!--\s*autointerp:(table|cell)\b")
_CODE = re.compile(r"^[ \t]*```.*?^[ \t]*```[^\n]*$|`[^`\n]+`", re.S | re.M)


def _code_spans(text: str) -> list[tuple[int, int]]:
    """Fenced code blocks and inline code spans: markers shown there as examples are text."""
    return [m.span() for m in _CODE.finditer(text)]


def _in(pos: int, spans: list[tuple[int, int]]) -> bool:
    return any(a <= pos < b for a, b in spans)


@dataclass
class Section:
    """One marked section: where it is, what it holds, what the runs give."""

    path: Path
    line: int
    kind: str  # "table" or "cell"
    spec: str
    old: str
    new: str

    @property
    def differs(self) -> bool:
        return self.old != self.new

    def describe(self, root: Path) -> str:
        where = f"{_rel(self.path, root)}:{self.line}"
        if self.kind == "cell":
            return (
                f"{where}: cell {self.spec}: the text says {self.old!r}, the run gives {self.new!r}"
            )
        return f"{where}: table {self.spec} differs from the committed run"


def _rel(p: Path, root: Path) -> str:
    try:
        return str(p.relative_to(root))
    except ValueError:
        return str(p)


def _parse(spec: str) -> tuple[str, list[str], dict[str, str]]:
    words = spec.split()
    if not words:
        raise AutointerpError("an autointerp marker without a name")
    args = [w for w in words[1:] if "=" not in w]
    opts = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    return words[0], args, opts


def _generate_table(ctx: Context, spec: str) -> str:
    name, args, opts = _parse(spec)
    fn = GENERATORS.get(name)
    if fn is None:
        raise AutointerpError(
            f"unknown table generator {name!r}; known: {', '.join(sorted(GENERATORS))}"
        )
    return fn(ctx, args, opts)


def process(text: str, path: Path, ctx: Context) -> tuple[str, list[Section]]:
    """``text`` with every marked section regenerated, and the sections."""
    sections: list[Section] = []

    def line_of(pos: int, within: str | None = None) -> int:
        return (text if within is None else within).count("\n", 0, pos) + 1

    code = _code_spans(text)

    def block(m: re.Match[str]) -> str:
        if _in(m.start(), code):
            return m[0]
        spec = m["spec"]
        try:
            new = _generate_table(ctx, spec).rstrip("\n") + "\n"
        except AutointerpError as e:
            raise AutointerpError(f"{path}:{line_of(m.start())}: {e}") from None
        sections.append(Section(path, line_of(m.start()), "table", spec, m["body"], new))
        return m["open"] + new + m["close"]

    def cell(m: re.Match[str]) -> str:
        if _in(m.start(), code):
            return m[0]
        words = m["spec"].split()
        try:
            new = cell_value(ctx, [w for w in words if "=" not in w],
                             dict(w.split("=", 1) for w in words if "=" in w))  # fmt: skip
        except AutointerpError as e:
            raise AutointerpError(f"{path}:{line_of(m.start(), out)}: {e}") from None
        sections.append(Section(path, line_of(m.start(), out), "cell", m["spec"], m["body"], new))
        return m["open"] + new + m["close"]

    n_open = sum(1 for m in _ANY_OPEN.finditer(text) if not _in(m.start(), code))
    out = _BLOCK.sub(block, text)
    code = _code_spans(out)
    out = _CELL.sub(cell, out)
    if n_open != len(sections):
        raise AutointerpError(
            f"{path}: {n_open} autointerp markers open but {len(sections)} are closed: each "
            "<!-- autointerp:table NAME --> needs a <!-- /autointerp:table --> on a later line "
            "of its own, each <!-- autointerp:cell ... --> a <!-- /autointerp:cell -->"
        )
    sections.sort(key=lambda s: s.line)
    return out, sections


def doc_files(root: Path) -> list[Path]:
    """README.md and docs/*.md under ``root`` (those that exist)."""
    files = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    return [f for f in files if f.is_file()]


def run_docs(
    root: str | Path, files: list[str | Path] | None = None, *, check: bool = False
) -> list[Section]:
    """Regenerate (or with ``check`` only compare) the marked sections of ``files`` (default:
    :func:`doc_files`); returns every section found. Writes only files that changed."""
    root = Path(root).resolve()
    paths = [Path(f) if Path(f).is_absolute() else root / f for f in files] if files else None
    paths = paths or doc_files(root)
    ctx = Context(root)
    found: list[Section] = []
    for p in paths:
        if not p.is_file():
            raise AutointerpError(f"{p} does not exist")
        text = p.read_text()
        new, sections = process(text, p, ctx)
        found += sections
        if not check and new != text:
            atomic_write_text(p, new)
    return found


def _cmd(args: argparse.Namespace) -> int:
    root = Path(args.root).resolve()
    sections = run_docs(root, args.files or None, check=args.check)
    diff = [s for s in sections if s.differs]
    if args.check:
        if diff:
            print(f"{len(diff)} of {len(sections)} generated sections differ from the runs "
                  "(run `autointerp docs` to regenerate them):", file=sys.stderr)  # fmt: skip
            for s in diff:
                print("  " + s.describe(root), file=sys.stderr)
            return 1
        print(f"{len(sections)} generated sections match the committed runs")
        return 0
    for s in diff:
        print("updated " + s.describe(root).split(": ", 1)[0] + f" ({s.kind} {s.spec})")
    print(f"{len(diff)} of {len(sections)} generated sections updated")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "docs",
        help="regenerate the numbers in README.md and docs/ from the committed runs",
        description="Regenerate the sections of README.md and docs/*.md between "
        "<!-- autointerp:table NAME ARGS --> and <!-- /autointerp:table --> and the inline "
        "<!-- autointerp:cell RUN BASIS COLUMN -->...<!-- /autointerp:cell --> values from the "
        "committed runs. Table generators: " + ", ".join(sorted(GENERATORS)) + " (docs/report.md).",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="markdown files (default: README.md "
                   "and docs/*.md under --root)")  # fmt: skip
    p.add_argument("--root", default=".", help="repository root (default: the current folder)")
    p.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 listing every section that differs from the runs",
    )
    p.set_defaults(func=_cmd)

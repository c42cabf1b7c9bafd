"""Everything the CLI prints goes through here: rich tables on a terminal, plain text when
piped, ``--json`` with stable keys and nothing else on stdout, errors on stderr."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["JsonOpt", "Output", "human_bytes", "short", "table"]


JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output, nothing else on stdout.")]


def _console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(
        file=stream,
        no_color="NO_COLOR" in os.environ,
        highlight=False,
    )


@dataclass
class Output:
    """The CLI's view of the terminal, created once per invocation."""

    quiet: bool = False
    debug: bool = False
    out: Console = field(default_factory=_console)
    err: Console = field(default_factory=lambda: _console(stderr=True))

    def json(self, value: Any) -> None:
        sys.stdout.write(json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")

    def print(self, *objects: Any) -> None:
        self.out.print(*objects)

    def info(self, message: str) -> None:
        # Messages quote user values (names, params); they are never read as rich markup.
        if not self.quiet:
            self.err.print(message, soft_wrap=True, markup=False, highlight=False)

    def error(self, message: str) -> None:
        self.err.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold", show_lines=False)
    for column in columns:
        t.add_column(column, overflow="fold")
    for row in rows:
        # Cells hold user values ("[relu, tanh]" is a fine param): plain text, never markup.
        t.add_row(*[v if isinstance(v, Text) else Text("" if v is None else str(v)) for v in row])
    return t


def short(value: str | None, n: int = 8) -> str:
    return "" if value is None else value[:n]


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover

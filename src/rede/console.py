"""How every ``rede`` command writes to a terminal, a pipe or a log.

On a terminal, output is laid out for the terminal's width, as rich does. Anywhere else (a pipe,
a file, CI, a test's captured output) the layout no longer depends on a width nobody chose:
:class:`RedeConsole` is then as wide as its content, so a table cell, a path or an id is never
cut or wrapped, whatever ``COLUMNS`` says or however long the path. An error is one line, always
(:func:`print_error`): a terminal wraps it for the eye, and a log or ``grep`` sees it whole.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, ConsoleDimensions
from rich.markup import escape

from rede.errors import one_line

PIPE_WIDTH = 10_000
"""The width of a console that is not a terminal: wider than any line Rede prints, so content
decides the layout. Nothing Rede prints expands to the full width off a terminal."""


class RedeConsole(Console):
    """A rich console whose width is the terminal's on a terminal and unbounded elsewhere."""

    @property
    def size(self) -> ConsoleDimensions:
        if not self.is_terminal:
            return ConsoleDimensions(PIPE_WIDTH, 25)
        return super().size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


def make_console(*, stderr: bool = False, **options: Any) -> RedeConsole:
    """The console of a command: standard output, or standard error with ``stderr=True``."""
    return RedeConsole(stderr=stderr, **options)


def print_error(console: Console, message: object, *, prefix: str = "error") -> None:
    """``error: MESSAGE`` on one line, never wrapped, the message taken as plain text."""
    console.print(
        f"[red]{prefix}:[/red] {escape(one_line(str(message)))}", highlight=False, soft_wrap=True
    )

"""Warnings of a command, one line each, held until the command is under way: a command
that fails prints its one error line and nothing else, as bad input must."""
from __future__ import annotations

import click

__all__ = ["hold", "show", "flush", "drop"]

_held: list[str] | None = None


def hold() -> None:
    """Hold warnings from now until :func:`flush` or :func:`drop`."""
    global _held
    _held = []


def show(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning``: one ``qaev: warning:`` line, printed now or held."""
    text = f"qaev: warning: {' '.join(str(message).split())}"
    if _held is None:
        click.echo(text, err=True)
    elif text not in _held:
        _held.append(text)


def flush() -> None:
    """Print the held warnings; later ones print at once."""
    global _held
    for text in _held or []:
        click.echo(text, err=True)
    _held = None


def drop() -> None:
    """Forget the held warnings (the command failed: its error line says what matters)."""
    global _held
    _held = None

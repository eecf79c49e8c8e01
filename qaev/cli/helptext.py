"""Help text shared by every command: defaults shown everywhere, options grouped by purpose,
and a walk over the command tree (for the CLI reference and its tests)."""
from __future__ import annotations

from typing import Iterator, Sequence

import click

__all__ = ["GroupedCommand", "show_flag_defaults", "walk"]


class GroupedCommand(click.Command):
    """A command whose ``--help`` lists its options under headings.

    Args:
        sections: ``(heading, option names)`` in the order to print; options in no
            section come last, under "Other options".
    """

    def __init__(self, *args, sections: Sequence[tuple[str, Sequence[str]]] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sections = [(title, tuple(names)) for title, names in sections]

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        records = {p.name: p.get_help_record(ctx) for p in self.get_params(ctx) if isinstance(p, click.Option)}
        placed: set[str] = set()
        for title, names in [*self.sections, ("Other options", tuple(records))]:
            rows = [records[n] for n in names if n in records and n not in placed and records[n]]
            placed.update(names)
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def show_flag_defaults(command: click.Command) -> None:
    """Show ``[default: (off)]`` on every on/off flag of ``command`` and its subcommands that
    is off by default (click shows nothing for those)."""
    for _, cmd in walk(command):
        for param in cmd.params:
            if (isinstance(param, click.Option) and param.is_bool_flag and not param.secondary_opts
                    and param.get_default(click.Context(cmd)) in (False, None)
                    and not isinstance(param.show_default, str)):
                param.show_default = "off"


def walk(command: click.Command, path: tuple[str, ...] = ("qaev",)) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """``(path, command)`` for ``command`` and every subcommand, in listing order."""
    yield path, command
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            yield from walk(command.commands[name], (*path, name))

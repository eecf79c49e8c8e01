"""The CLI reference (``docs/cli.md``), generated from the click definitions so it cannot drift:

    python -m qaev.cli.reference > docs/cli.md

``tests/cli/test_help.py`` fails when the file differs from what this prints.
"""
from __future__ import annotations

import sys

import click

from qaev.cli.helptext import walk
from qaev.cli.main import cli

__all__ = ["render"]

#: The help's width, fixed so the file does not depend on the terminal that wrote it.
WIDTH = 100


def _help(path: tuple[str, ...]) -> str:
    """``--help`` of the command at ``path``, with the contexts above it as at run time
    (settings such as ``-h`` and shown defaults are inherited)."""
    ctx, command = None, cli
    for depth, name in enumerate(path):
        if depth:
            command = command.commands[name]
        settings = {"terminal_width": WIDTH, "max_content_width": WIDTH, **command.context_settings}
        ctx = click.Context(command, parent=ctx, info_name=name, **settings)
    return command.get_help(ctx)


def render() -> str:
    """The whole reference as Markdown: each command's ``--help``, in a code block."""
    commands = list(walk(cli))
    lines = ["# qaev command-line reference", "",
             "Generated from the click definitions by `python -m qaev.cli.reference > docs/cli.md`; "
             "do not edit by hand. Every command also answers `-h`/`--help`.", ""]
    lines += [f"- [`{' '.join(path)}`](#{'-'.join(path)})" for path, _ in commands]
    for path, _ in commands:
        lines += ["", f'<a id="{"-".join(path)}"></a>', "", f"## `{' '.join(path)}`", "", "```text",
                  _help(path).rstrip(), "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
